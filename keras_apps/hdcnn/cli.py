"""HD-CNN (Yan et al., ICCV 2015): train the whole pipeline, predict with conditional execution.

    keras-apps hdcnn fit --building-block nin_cifar --data cifar10 --coarse 3 --gamma 5
    keras-apps hdcnn fit --data cifar100 --convention release \\
        --hierarchy ../shared/data/hdcnn/cifar100_nin_k9.json --output runs/hdcnn_k9
    keras-apps hdcnn predict runs/hdcnn/model.keras --data cifar10 --beta inf,4,2,1

``fit`` is :func:`keras_apps.hdcnn.fit`, one flag per argument: ``--building-block`` (a
registry name, or a trained building block: a ``.keras`` file or a ``keras-apps train`` run
folder), ``--coarse`` K and ``--gamma`` (the hierarchy learned from the building block's
held-out confusion; without ``--gamma`` the coarse categories are disjoint) or
``--hierarchy`` a JSON file (ours or the authors' format), ``--convention paper|release``,
``--lam`` / ``--no-consistency`` (the coarse consistency term), ``--shared-until`` /
``--no-shared-layers``, ``--width`` (of the building block), ``--block-epochs``,
``--fine-epochs`` and ``--finetune-epochs`` (phases 1, 4 and 5; 0 skips phase 4 or 5),
``--output`` (default ``runs/hdcnn``). Every flag is checked before any training starts: the
building block, the dataset and its class count against ``--coarse`` and ``--hierarchy``,
and the split point, by building the HD-CNN once at the given settings. Re-running the same
command after an interruption keeps the finished phases and resumes the interrupted one.
At the end it prints where the files are and the test top-1 error of the building block
and of the HD-CNN, K and the coarse set sizes.

``predict`` runs :func:`keras_apps.hdcnn.conditional.conditional_predict` on a split (default:
test) for each ``--beta`` (fine component k runs where ``B_k >= 1/(beta K)``; ``inf`` runs
them all) and prints the top-1 error, the mean number of fine components run and the seconds
the split took (after one warm-up batch); ``--output`` writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import time

from keras_apps_cli import (STRATEGIES, _global_options, _non_negative_float, _open_fraction,
                            _positive_float, _positive_int)

__all__ = ["register", "run"]

RESUME_HINT = (
    "interrupted; re-run the same command to resume (finished phases are kept, the "
    "interrupted one resumes from its last finished epoch)"
)


# ---------------------------------------------------------------------------------- types


def _coarse(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"K must be an integer >= 2 (coarse categories), got {text!r}"
        )
    return value


def _epochs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (0 skips the phase), got {text!r}")
    return value


def _betas(text: str) -> tuple:
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not value > 0:
            raise argparse.ArgumentTypeError(
                f"expected positive numbers or inf, comma-separated (e.g. inf,4,2,1), got {text!r}"
            )
        values.append(value)
    return tuple(values)


# --------------------------------------------------------------------------------- parser


def register(parser: argparse.ArgumentParser) -> None:
    """Adds ``fit`` and ``predict`` to the ``keras-apps hdcnn`` parser."""
    parser.description = __doc__.split("\n\n")[0]
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION",
                                    parser_class=type(parser))
    options = _global_options(suppress=True)

    p = actions.add_parser("fit", parents=[options],
                           help="the whole pipeline: building block, hierarchy, fine components, fine-tuning",
                           description="Runs keras_apps.hdcnn.fit (see keras-apps hdcnn --help).")
    p.set_defaults(interrupted=RESUME_HINT)
    p.add_argument("--building-block", default="nin_cifar",
                   help="registry name (default nin_cifar), or a trained building block: a .keras "
                        "file or a keras-apps train run folder")
    p.add_argument("--data", default="cifar10", help="dataset name (keras-apps datasets); default cifar10")
    p.add_argument("--data-dir", default=None, help="where the dataset's files are")
    p.add_argument("--coarse", type=_coarse, default=None, metavar="K",
                   help="coarse categories K of the learned hierarchy (default: 9 for 100 classes, "
                        "round(sqrt(C)) below)")
    p.add_argument("--gamma", type=_positive_float, default=None,
                   help="overlap: fine j joins S_k when u_k(j) >= 1/(gamma K); default: disjoint")
    p.add_argument("--hierarchy", default=None, metavar="PATH",
                   help="a hierarchy JSON file (ours or the authors' format) instead of learning one")
    p.add_argument("--convention", choices=("paper", "release"), default="paper",
                   help="the paper's text (default) or the authors' Caffe release")
    p.add_argument("--lam", type=_non_negative_float, default=None,
                   help="weight lambda of the coarse consistency term (default: the convention's, 20 or 5)")
    p.add_argument("--no-consistency", action="store_true",
                   help="fine-tune without the coarse consistency term")
    p.add_argument("--shared-until", default=None, metavar="LAYER",
                   help="last shared layer of the building block (default: its preset, e.g. drop1 for NIN)")
    p.add_argument("--no-shared-layers", action="store_true",
                   help="every component is a full copy of the building block")
    p.add_argument("--fine-classifier-init", choices=("random", "building_block"), default="random",
                   help="the fine components' last layer: fresh (default, the paper) or the building "
                        "block's rows of their classes")
    p.add_argument("--width", type=_positive_float, default=None,
                   help="width multiplier of the building block (NIN)")
    p.add_argument("--block-epochs", type=_epochs, default=10, help="phase 1, building block (default 10)")
    p.add_argument("--fine-epochs", type=_epochs, default=5, help="phase 4, each fine component (default 5)")
    p.add_argument("--finetune-epochs", type=_epochs, default=5,
                   help="phase 5, the whole HD-CNN (default 5)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--learning-rate", type=_positive_float, default=0.05,
                   help="phase 1 (default 0.05); phases 4 and 5 default to it and a tenth of it")
    p.add_argument("--fine-learning-rate", type=_positive_float, default=None)
    p.add_argument("--finetune-learning-rate", type=_positive_float, default=None)
    held_out = _open_fraction("a fraction 0 < F < 1 such as 0.1 (the held-out part the hierarchy "
                              "is learned on)")
    p.add_argument("--validation-fraction", type=held_out, default=0.1,
                   help="held-out share of the training split: validation and the hierarchy's "
                        "confusion matrix (default 0.1)")
    p.add_argument("--validation-seed", type=int, default=0)
    p.add_argument("--limit", type=_positive_int, default=None, help="use only the first N images per split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strategy", choices=STRATEGIES, default="auto")
    p.add_argument("--output", default="runs/hdcnn", help="run folder (default runs/hdcnn)")
    p.add_argument("--overwrite", action="store_true", help="start again in a finished run's --output")

    p = actions.add_parser("predict", parents=[options],
                           help="conditional execution on a split: error, fine components run, seconds",
                           description="Conditional execution of a trained HD-CNN at each --beta.")
    p.set_defaults(interrupted="interrupted")
    p.add_argument("model", help="an HD-CNN .keras file (e.g. runs/hdcnn/model.keras)")
    p.add_argument("--data", default="cifar10")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--split", default=None, help="default: test (or validation)")
    p.add_argument("--beta", type=_betas, default=(math.inf,),
                   help="comma-separated betas; fine component k runs where B_k >= 1/(beta K); "
                        "inf (default) runs every component")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--limit", type=_positive_int, default=None)
    p.add_argument("--output", default=None, help="write the results as JSON to this file")


def run(args) -> int:
    """Runs ``keras-apps hdcnn fit`` or ``keras-apps hdcnn predict``."""
    return {"fit": fit, "predict": predict}[args.action](args)


# -------------------------------------------------------------------------------------- fit


def _block_file(value: str) -> pathlib.Path | None:
    """The trained building block ``--building-block`` names, or None for a registry name."""
    path = pathlib.Path(value)
    if value.endswith(".keras") or path.is_dir() or os.sep in value or "/" in value:
        model_path = path / "model.keras" if path.is_dir() else path
        if not model_path.is_file():
            what = (f"the run folder {value} holds no model.keras" if path.is_dir()
                    else f"{value} does not exist")
            raise FileNotFoundError(
                f"--building-block {value}: {what}; give a registry name (keras-apps list), a "
                ".keras file or a finished keras-apps train run folder."
            )
        return model_path
    return None


def _check_combinations(args) -> None:
    if args.hierarchy is not None:
        given = [flag for flag, value in (("--coarse", args.coarse), ("--gamma", args.gamma))
                 if value is not None]
        if given:
            verbs = ("learns", "does") if len(given) == 1 else ("learn", "do")
            raise ValueError(
                f"{' and '.join(given)} {verbs[0]} a hierarchy; {verbs[1]} not apply with "
                f"--hierarchy {args.hierarchy} (pass one or the other)."
            )
        if not os.path.isfile(args.hierarchy):
            raise FileNotFoundError(f"--hierarchy {args.hierarchy}: no such file (a hierarchy JSON file).")
    if args.no_shared_layers and args.shared_until is not None:
        raise ValueError("--shared-until does not apply with --no-shared-layers (nothing is shared).")
    if args.no_consistency and args.lam is not None:
        raise ValueError("--lam weighs the coarse consistency term; it does not apply with --no-consistency.")


def _dry_build(block, tree, args, *, input_shape, classes, build_kwargs):
    """Builds the HD-CNN once at the given settings, so that a bad --shared-until (or any
    other model setting) fails now and not after the building block has trained."""
    import keras

    from keras_apps.hdcnn import build_hdcnn

    try:
        build_hdcnn(
            block, tree, args.shared_until, shared_layers=not args.no_shared_layers,
            convention=args.convention, fine_classifier_init=args.fine_classifier_init,
            **({} if isinstance(block, keras.Model) else
               {"input_shape": input_shape, "classes": classes, "building_block_kwargs": build_kwargs}),
        )
    except ValueError as err:
        if "`shared_until`" not in str(err):
            raise
        raise ValueError(str(err).replace("`shared_until`", "--shared-until")) from err
    finally:
        keras.backend.clear_session()


def fit(args) -> int:
    """``keras-apps hdcnn fit``: checks every flag, runs :func:`keras_apps.hdcnn.fit`, prints
    where the files are and the metrics table."""
    _check_combinations(args)
    from keras_apps import cli, registry, training
    from keras_apps import data as kdata
    from keras_apps import hdcnn

    cli._check_folder("--output", args.output)
    block_path = _block_file(args.building_block)
    build_kwargs = {}
    if block_path is None:
        registry.get_spec(args.building_block)
        if registry.model_info(args.building_block)["family"] == "hdcnn":
            raise ValueError(
                f"--building-block {args.building_block} is an HD-CNN; the building block is a "
                "plain CNN such as nin_cifar or resnet20_cifar."
            )
        build_kwargs = cli._check_builder_flags(args.building_block, {"width": ("--width", args.width)})
        if args.block_epochs < 1:
            raise ValueError(
                f"--block-epochs must be >= 1 to train the building block {args.building_block} "
                "(or give a trained one: --building-block MODEL.keras)."
            )
    elif args.width is not None:
        raise ValueError(
            f"--width applies to a building block trained here, not to the trained {block_path}."
        )

    info = kdata.dataset_info(args.data, data_dir=args.data_dir)
    classes = info.num_classes
    tree = None
    if args.hierarchy is not None:
        tree = hdcnn.Hierarchy.load(args.hierarchy)
        if tree.num_fine != classes:
            raise ValueError(
                f"--hierarchy {args.hierarchy} covers {tree.num_fine} fine categories but "
                f"--data {args.data} has {classes} classes."
            )
    elif args.coarse is not None and args.coarse > classes:
        raise ValueError(
            f"--coarse {args.coarse}: K must be at most the {classes} classes of --data {args.data}."
        )
    block = args.building_block
    if block_path is not None:
        block = training.load_model(block_path)
        block_classes = int(block.outputs[0].shape[-1])
        if block_classes != classes:
            raise ValueError(
                f"--building-block {args.building_block} has {block_classes} classes but --data "
                f"{args.data} has {classes}."
            )
    _dry_build(block, tree or hdcnn.Hierarchy.default(classes, args.coarse), args,
               input_shape=tuple(info.image_shape), classes=classes, build_kwargs=build_kwargs)

    result = hdcnn.fit(
        args.building_block,
        args.data,
        n_coarse=args.coarse,
        gamma=args.gamma,
        hierarchy=args.hierarchy,
        convention=args.convention,
        lam=args.lam,
        consistency=not args.no_consistency,
        shared_until=args.shared_until,
        shared_layers=not args.no_shared_layers,
        building_block_kwargs=build_kwargs or None,
        fine_classifier_init=args.fine_classifier_init,
        block_epochs=args.block_epochs,
        fine_epochs=args.fine_epochs,
        finetune_epochs=args.finetune_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        fine_learning_rate=args.fine_learning_rate,
        finetune_learning_rate=args.finetune_learning_rate,
        validation_fraction=args.validation_fraction,
        validation_seed=args.validation_seed,
        data_dir=args.data_dir,
        limit=args.limit,
        seed=args.seed,
        strategy=args.strategy,
        output_dir=args.output,
        overwrite=args.overwrite,
        verbose=cli._progress(),
    )
    print(report(result.metrics, result.output_dir, building_block=args.building_block,
                 gamma=args.gamma, hierarchy=args.hierarchy))
    return 0


def _error(metrics: dict | None) -> str:
    value = ((metrics or {}).get("test") or {}).get("top1_error")
    return "-" if value is None else f"{100 * value:.2f}"


def report(metrics: dict, output_dir, *, building_block: str, gamma=None, hierarchy=None) -> str:
    """The text ``fit`` prints: the run's files and the table of test top-1 errors."""
    folder = pathlib.Path(output_dir)
    tree = metrics["hierarchy"]
    k = tree["num_coarse"]
    lines = [f"HD-CNN run in {folder}:",
             f"  {folder / 'model.keras'}  the fine-tuned HD-CNN (outputs 'coarse' and 'predictions')",
             f"  {folder / 'metrics.json'}  the metrics of every phase"]
    phases = [("building_block", "phase 1, the building block"),
              ("hierarchy", "phase 2, hierarchy.json, hierarchy.png, confusion.npy"),
              ("fine_component_0", f"phase 4, fine components 0..{k - 1} (fine_component_<k>)"),
              ("finetune", "phase 5, the fine-tuning")]
    for name, what in phases:
        if (folder / name).is_dir():
            lines.append(f"  {folder / name}/  {what}")
    if hierarchy is not None:
        kind = f"from {hierarchy}"
    else:
        kind = "learned, disjoint" if gamma is None else f"learned, overlapping with gamma {gamma:g}"
    sizes = ", ".join(str(s) for s in tree["set_sizes"])
    lines += [
        "",
        "| model | test top-1 error (%) |",
        "|---|---|",
        f"| building block ({building_block}) | {_error(metrics.get('building_block'))} |",
        f"| HD-CNN, K={k} | {_error(metrics.get('finetune'))} |",
        "",
        f"K = {k} coarse categories ({kind}); set sizes {sizes} ({tree['memberships']} memberships).",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- predict


def _default_split(info) -> str:
    for split in ("test", "validation", "val"):
        if split in info.splits and split != info.train_split:
            return split
    raise ValueError(
        f"--data {info.name} has no test or validation split ({', '.join(info.splits)}); pass --split."
    )


def _beta_value(beta: float):
    return "inf" if math.isinf(beta) else beta


def predict(args) -> int:
    """``keras-apps hdcnn predict``: conditional execution at each ``--beta`` on a split."""
    import numpy as np

    from keras_apps import cli, training
    from keras_apps import data as kdata
    from keras_apps.hdcnn import components
    from keras_apps.hdcnn.conditional import conditional_predict, threshold

    cli._check_file("--output", args.output)
    model = training.load_model(args.model)
    num_coarse = components(model).num_coarse
    info = kdata.dataset_info(args.data, data_dir=args.data_dir)
    split = args.split or _default_split(info)
    expected = tuple(model.inputs[0].shape[1:])
    if tuple(info.image_shape) != expected or info.num_classes != int(model.output["predictions"].shape[-1]):
        raise ValueError(
            f"{args.model} takes {'x'.join(map(str, expected))} images of "
            f"{int(model.output['predictions'].shape[-1])} classes; --data {args.data} delivers "
            f"{'x'.join(map(str, info.image_shape))} images of {info.num_classes} classes."
        )
    ds, _ = kdata.load(args.data, split, data_dir=args.data_dir, batch_size=args.batch_size,
                       augment=False, shuffle=False, limit=args.limit)
    batches = [(np.asarray(x), np.asarray(y)) for x, y in ds]
    if not batches:
        raise ValueError(f"Split {split!r} of --data {args.data} is empty.")
    images = np.concatenate([x for x, _ in batches])
    labels = np.concatenate([y for _, y in batches]).astype(np.int64)
    conditional_predict(model, images[: args.batch_size], args.beta[0], batch_size=args.batch_size)

    rows = []
    for beta in args.beta:
        start = time.perf_counter()
        result = conditional_predict(model, images, beta, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        rows.append({
            "beta": _beta_value(beta),
            "threshold": threshold(beta, num_coarse),
            "mean_components_run": result.mean_components_run,
            "top1_error": float(np.mean(np.argmax(result.probabilities, axis=1) != labels)),
            "seconds": seconds,
        })
    summary = {"model": str(args.model), "data": args.data, "split": split, "examples": int(len(labels)),
               "num_coarse": num_coarse, "sweep": rows}
    if args.output:
        training.atomic_write_text(args.output, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    lines = [
        f"{args.model} on {args.data}/{split} ({len(labels)} images), K = {num_coarse}:",
        "",
        "| beta | threshold 1/(beta K) | fine components run (mean) | top-1 error (%) | seconds "
        "| ms per image |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {float(row['beta']):g} | {row['threshold']:.4f} | {row['mean_components_run']:.2f} of "
            f"{num_coarse} | {100 * row['top1_error']:.2f} | {row['seconds']:.2f} | "
            f"{1000 * row['seconds'] / len(labels):.3f} |"
        )
    print("\n".join(lines))
    return 0
