"""Developmental networks (Wang et al., CVPR 2017): grow a trained model, fine-tune it the paper's way.

    keras-apps grow runs/alexnet/model.keras --mode width --units 1024 --data sun397 \\
        --output grown/alexnet_wa.keras
    keras-apps grow source.keras --mode wwa --units 1024 --classes 67 --output wwa.keras
    keras-apps finetune grown/alexnet_wa.keras --data sun397 --scenario fc7-new \\
        --epochs 10 --output runs/alexnet_wa_sun397 --retrain-source-data imagenet2012

``grow`` is :func:`keras_apps.growth.grow` on a ``.keras`` file (or a ``keras-apps train`` run
folder): ``--mode`` depth | width | depth_width | recursive_width (or the paper's da, wa, dwa,
wwa), ``--at`` the layer to widen (default: the top representation layer, AlexNet's fc7),
``--units`` new units, ``--depth-units`` FC_a of DWA-CNN, ``--classes`` the new classifier's
classes (default: those of ``--data``, else the old classifier's), ``--no-normalize``,
``--scale-init``, ``--no-keep-source`` (drop the source head ``task0``), ``--seed``. It writes
the grown model to ``--output`` (atomically; an existing file only with ``--overwrite``) and
prints the new layers and the parameters before and after.

``finetune`` is :func:`keras_apps.growth.finetune`: ``--scenario`` new | fc7-new | fc6-new |
all (or ``<layer>-new``), new layers at ``--new-lr-multiplier`` times ``--learning-rate``,
SGD with momentum 0.9, weight decay 5e-4 and the step policy by default. With
``--retrain-source-data`` (the source task's data) it reports the source-task accuracy of the
``task0`` head before and after fine-tuning and then re-trains the augmented layers with the
source head for ``--retrain-epochs`` epochs (:func:`keras_apps.growth.retrain_source`,
learning without forgetting; 0: measure only). Under ``--output`` (default
``runs/<model>_finetune``): ``finetune/`` and ``retrain_source/`` (the runs of
``keras-apps train``'s layout) and ``metrics.json`` with every phase's metrics. Images are
delivered at the model's input size and channel count unless ``--image-size`` /
``--channels`` say otherwise. Re-running the same command after an interruption keeps a
finished fine-tuning phase and resumes the interrupted one from its last finished epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re

from keras_apps import cli, growth, training
from keras_apps import data as kdata
from keras_apps.growth.core import ABBREVIATIONS, MODES, SCENARIOS
from keras_apps_cli import (
    CHANNEL_CHOICES,
    LR_SCHEDULES,
    _fraction,
    _non_negative_float,
    _positive_float,
    _positive_int,
    _shape,
)

__all__ = ["COMMANDS", "finetune", "finetune_report", "grow", "grow_report", "register_finetune", "register_grow"]

#: The paper's abbreviations of the modes, accepted by ``--mode`` (``wa`` -> ``width``).
MODE_NAMES = {abbreviation: mode for mode, abbreviation in ABBREVIATIONS.items()}

RESUME_HINT = (
    "interrupted; re-run the same command to resume (a finished fine-tuning phase is kept, "
    "the interrupted one resumes from its last finished epoch)"
)


# ---------------------------------------------------------------------------------- types


def _mode(text: str) -> str:
    key = text.strip().lower().replace("-", "_")
    key = MODE_NAMES.get(key, key)
    if key not in MODES:
        raise argparse.ArgumentTypeError(
            f"unknown growth mode {text!r}; choose one of {', '.join(MODES)} (or the paper's "
            f"{', '.join(MODE_NAMES)})"
        )
    return key


def _scenario(text: str) -> str:
    key = text.strip()
    if key.lower() in ("new", "all") or (key.lower().endswith("-new") and len(key) > len("-new")):
        return key
    raise argparse.ArgumentTypeError(
        f"unknown fine-tuning scenario {text!r}; choose {', '.join(SCENARIOS)} or <layer>-new"
    )


def _epochs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (0: measure only), got {text!r}")
    return value


def _class_ids(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(
            f"expected class ids of the dataset, comma-separated (e.g. 0,3,5), got {text!r}"
        )
    return values


# --------------------------------------------------------------------------------- parser


def _target_data_flags(p) -> None:
    p.add_argument("--data-dir", default=None, help="where the target dataset's files are")
    p.add_argument("--download", action="store_true", help="download the target dataset if it is missing")
    p.add_argument("--classes-subset", type=_class_ids, default=None, metavar="IDS",
                   help="keep only these classes of the target dataset (relabelled 0..k-1)")


#: Top-level commands of this plug-in (``keras-apps grow``, ``keras-apps finetune``).
COMMANDS = ("grow", "finetune")


def register_grow(p: argparse.ArgumentParser) -> None:
    """Grow a trained model: DA-, WA-, DWA- or WWA-CNN (Wang et al., CVPR 2017)."""
    p.description = __doc__.split("\n\n")[2]
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.set_defaults(func=grow)
    p.set_defaults(interrupted="interrupted")
    p.add_argument("model", help="a trained .keras file or a keras-apps train run folder")
    p.add_argument("--mode", type=_mode, required=True,
                   help=f"{', '.join(MODES)} (or da, wa, dwa, wwa)")
    p.add_argument("--at", default=None, metavar="LAYER",
                   help="the layer to widen (default: the top representation layer, e.g. fc7)")
    p.add_argument("--units", type=_positive_int, default=None,
                   help="new units (width modes: added to --at; depth: the size of FC_a)")
    p.add_argument("--depth-units", type=_positive_int, default=None,
                   help="size of FC_a with --mode depth_width (default: the width of --at)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--classes", type=_positive_int, default=None,
                        help="classes of the new classifier (default: those of --data, else the old)")
    source.add_argument("--data", default=None,
                        help="the target dataset, only read for its class count")
    _target_data_flags(p)
    p.add_argument("--no-normalize", action="store_true",
                   help="no L2 normalisation + scaling of the blocks")
    p.add_argument("--scale-init", type=_positive_float, default=10.0,
                   help="initial per-channel scale (default 10; the paper: 10 or 20)")
    p.add_argument("--no-keep-source", action="store_true",
                   help="drop the source classifier (no task0 output)")
    p.add_argument("--seed", type=int, default=None, help="seed of the new layers' initialisers")
    p.add_argument("--name", default=None, help="name of the grown model (default <model>_<da|wa|dwa|wwa>)")
    p.add_argument("--output", required=True, help="the grown model's .keras file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")


def register_finetune(p: argparse.ArgumentParser) -> None:
    """Fine-tune a grown model the paper's way; optionally re-train it on the source task."""
    p.description = __doc__.split("\n\n")[3]
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.set_defaults(func=finetune)
    p.set_defaults(interrupted=RESUME_HINT)
    p.add_argument("model", help="a grown .keras file (keras-apps grow) or a run folder")
    p.add_argument("--data", required=True, help="the target dataset (keras-apps datasets)")
    _target_data_flags(p)
    p.add_argument("--image-size", type=_shape, default=None,
                   help="resize images, e.g. 227,227 (default: the model's input size)")
    p.add_argument("--channels", type=int, choices=CHANNEL_CHOICES, default=None,
                   help="deliver 1 or 3 channels (default: the model's input channels)")
    p.add_argument("--limit", type=_positive_int, default=None, help="use only the first N images per split")
    p.add_argument("--validation-fraction", type=_fraction, default=0.1,
                   help="share of the training split held out for validation (default 0.1; 0: none)")
    p.add_argument("--scenario", type=_scenario, default="all",
                   help="new, fc7-new, fc6-new, all (default) or <layer>-new")
    p.add_argument("--epochs", type=_positive_int, default=10)
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--learning-rate", type=_positive_float, default=0.001,
                   help="base learning rate of the pretrained layers (default 0.001)")
    p.add_argument("--new-lr-multiplier", type=_positive_float, default=10.0,
                   help="the new layers learn at this multiple of --learning-rate (default 10)")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="step",
                   help="default step: divide by 10 at 50%% and 75%% of training")
    p.add_argument("--optimizer", default="sgd", help="a Keras optimizer name (default sgd)")
    p.add_argument("--momentum", type=_non_negative_float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=_non_negative_float, default=5e-4, help="default 5e-4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="run folder (default runs/<model>_finetune)")
    p.add_argument("--overwrite", action="store_true", help="start again in a finished run's --output")
    p.add_argument("--retrain-source-data", default=None, metavar="DATA",
                   help="the source task's dataset: report the task0 accuracy and re-train on it")
    p.add_argument("--retrain-source-data-dir", default=None, help="where the source dataset's files are")
    p.add_argument("--retrain-source-download", action="store_true",
                   help="download the source dataset if it is missing")
    p.add_argument("--retrain-source-classes", type=_class_ids, default=None, metavar="IDS",
                   help="keep only these classes of the source dataset (relabelled 0..k-1)")
    p.add_argument("--retrain-epochs", type=_epochs, default=2,
                   help="epochs of re-training on the source data (default 2; 0: measure only)")
    p.add_argument("--retrain-limit", type=_positive_int, default=None,
                   help="images per split of the source data (default: --limit)")


# -------------------------------------------------------------------------------- shared


def _model_file(value: str) -> pathlib.Path:
    """The ``.keras`` file ``value`` names (a run folder: its ``model.keras``)."""
    path = pathlib.Path(value)
    model_path = path / "model.keras" if path.is_dir() else path
    if path.is_dir() and not model_path.is_file():
        raise FileNotFoundError(f"{value}: the run folder holds no model.keras; give a .keras file.")
    if model_path.suffix != ".keras":
        raise ValueError(f"{value}: expected a .keras model file or a keras-apps train run folder.")
    if not model_path.is_file():
        raise FileNotFoundError(f"{value} does not exist; give a trained .keras file or a run folder.")
    return model_path


def _refuse_without(dataset_flag: str, flags) -> None:
    """``flags`` (``(flag, value)``) that describe a dataset not given are one error."""
    given = [flag for flag, value in flags if value not in (None, False)]
    if given:
        raise ValueError(f"{', '.join(given)} only apply with {dataset_flag} (the dataset they describe).")


def _dataset_classes(name, *, data_dir, classes, download) -> int:
    return kdata.dataset_info(name, data_dir=data_dir, classes=_subset(classes),
                              download=download).num_classes


# ----------------------------------------------------------------------------------- grow


def _check_output_file(value: str, overwrite: bool) -> pathlib.Path:
    path = pathlib.Path(value)
    if path.suffix != ".keras":
        raise ValueError(f"--output {value}: the grown model is written as a .keras file (e.g. grown.keras).")
    cli._check_file("--output", value)
    if path.exists() and not overwrite:
        raise FileExistsError(f"--output {value} exists; it is kept. Pass --overwrite to replace it.")
    return path


def grow_report(source, grown, new_layers, output) -> str:
    """What ``grow`` prints: the new layers and the parameters before and after."""
    outputs = grown.output if isinstance(grown.output, dict) else {"predictions": grown.output}
    lines = [
        f"{grown.name}: grown from {source.name} and written to {output}",
        f"  outputs: {', '.join(f'{key} {tuple(t.shape[1:])}' for key, t in outputs.items())}",
        "",
        "| new layer | type | output shape | parameters |",
        "|---|---|---|---|",
    ]
    for name in new_layers:
        layer = grown.get_layer(name)
        shape = tuple(layer.output.shape[1:])
        lines.append(f"| {name} | {type(layer).__name__} | {shape} | {layer.count_params():,} |")
    old_layers = {layer.name: layer for layer in source.layers}
    widened = []
    for layer in grown.layers:
        old = old_layers.get(re.sub(r"^task\d+_", "", layer.name))
        if layer.name not in new_layers and old is not None and old.count_params() != layer.count_params():
            widened.append(f"{layer.name} {old.count_params():,} -> {layer.count_params():,}")
    if widened:
        lines += ["", "layers reading the new units (zero weights from them): " + "; ".join(widened)]
    before, after = source.count_params(), grown.count_params()
    lines += ["", f"parameters: {before:,} before, {after:,} after (+{after - before:,})"]
    return "\n".join(lines)


def grow(args) -> int:
    """``keras-apps grow``: checks every flag, grows the model, writes it atomically
    and prints the new layers and the parameter counts."""
    if args.data is None:
        _refuse_without("--data", (("--data-dir", args.data_dir), ("--download", args.download),
                                   ("--classes-subset", args.classes_subset)))
    output = _check_output_file(args.output, args.overwrite)
    model_path = _model_file(args.model)

    classes = args.classes
    if args.data is not None:
        classes = _dataset_classes(args.data, data_dir=args.data_dir, classes=args.classes_subset,
                                   download=args.download)
    source = training.load_model(model_path)
    try:
        grown = growth.grow(
            source, args.mode, at=args.at, units=args.units, classes=classes,
            normalize=not args.no_normalize, scale_init=args.scale_init,
            depth_units=args.depth_units, keep_source=not args.no_keep_source, seed=args.seed,
            name=args.name,
        )
    except ValueError as err:
        raise ValueError(_flag_names(str(err))) from err
    training.atomic_save_model(grown, output)
    print(grow_report(source, grown, growth.new_layers(grown), output))
    return 0


def _flag_names(message: str) -> str:
    """A library error in the command's words: ``units`` -> --units, ..."""
    for argument, flag in (("`depth_units`", "--depth-units"), ("`units`", "--units"),
                           ("`at`", "--at"), ("`classes`", "--classes"),
                           ("`scale_init`", "--scale-init")):
        message = message.replace(argument, flag)
    return message


# ------------------------------------------------------------------------------- finetune


def _task_width(model, key):
    outputs = model.output if isinstance(model.output, dict) else {"predictions": model.output}
    return int(outputs[key].shape[-1]) if key in outputs else None


def _delivery(model, args):
    """``image_size`` and ``channels`` that give the model its input (the flags win)."""
    height, width, channels = tuple(model.inputs[0].shape[1:])
    image_size = args.image_size or ((height, width) if None not in (height, width) else None)
    if args.channels is not None:
        return image_size, args.channels
    return image_size, channels if channels in CHANNEL_CHOICES else None


def _check_classes(model, key, data, *, data_dir, classes, download, channels, flag, subset_flag) -> None:
    info = kdata.dataset_info(data, data_dir=data_dir, classes=_subset(classes), download=download,
                              channels=channels)
    width = _task_width(model, key)
    if info.num_classes != width:
        remedy = (f"grow the model for them (keras-apps grow --classes {info.num_classes}) or "
                  if key == "predictions" else "")
        raise ValueError(
            f"{flag} {data} has {info.num_classes} classes but the model's {key!r} head has "
            f"{width}; {remedy}pick {width} of them with {subset_flag}."
        )


def _source_accuracy(model, args, image_size, channels) -> dict:
    return training.evaluate(
        model, args.retrain_source_data, batch_size=args.batch_size,
        data_dir=args.retrain_source_data_dir, image_size=image_size, channels=channels,
        limit=args.retrain_limit or args.limit, classes=_subset(args.retrain_source_classes),
        download=args.retrain_source_download, output="task0", verbose=0,
    )


def _subset(ids):
    return list(ids) if ids else None


def _phase(run, folder: pathlib.Path, overwrite: bool):
    """``run()`` unless ``folder`` holds a finished phase (kept): ``(model, metrics, kept)``."""
    if not overwrite and (folder / "metrics.json").is_file() and (folder / "model.keras").is_file():
        metrics = json.loads((folder / "metrics.json").read_text())
        return training.load_model(folder / "model.keras"), metrics, True
    result = run()
    return result.model, result.metrics, False


def _accuracy(metrics) -> str:
    value = (metrics or {}).get("top1_accuracy")
    return "-" if value is None else f"{100 * value:.2f}"


def finetune_report(summary: dict, output_dir) -> str:
    """What ``finetune`` prints: where the files are and the accuracy table."""
    folder = pathlib.Path(output_dir)
    lines = [f"{summary['model']} fine-tuned on {summary['data']} (scenario {summary['scenario']}) in {folder}:",
             f"  {folder / 'finetune'}/  the fine-tuning run (model.keras, metrics.json, history.csv)"]
    if "retrain_source" in summary:
        lines.append(f"  {folder / 'retrain_source'}/  the re-training on {summary['source_data']}")
    lines += [f"  {folder / 'metrics.json'}  the metrics of every phase", "",
              "| phase | target test top-1 (%) | target validation top-1 (%) | source task0 top-1 (%) |",
              "|---|---|---|---|"]
    source = summary.get("source", {})
    lines.append(f"| grown model (before) | - | - | {_accuracy(source.get('before'))} |")
    tuned = summary["finetune"]
    lines.append(f"| after fine-tuning | {_accuracy(tuned.get('test'))} | "
                 f"{_accuracy(tuned.get('validation'))} | {_accuracy(source.get('after_finetune'))} |")
    if "retrain_source" in summary:
        lines.append(f"| after re-training on the source | {_accuracy(summary['retrain_source'].get('target_test'))} "
                     f"| - | {_accuracy(source.get('after_retrain'))} |")
    if summary.get("note"):
        lines += ["", summary["note"]]
    return "\n".join(lines)


def finetune(args) -> int:
    """``keras-apps finetune``: checks every flag and the data against the model's
    heads, fine-tunes, measures and re-trains on the source task, writes ``metrics.json``."""
    if args.retrain_source_data is None:
        _refuse_without("--retrain-source-data", (
            ("--retrain-source-data-dir", args.retrain_source_data_dir),
            ("--retrain-source-download", args.retrain_source_download),
            ("--retrain-source-classes", args.retrain_source_classes),
            ("--retrain-limit", args.retrain_limit),
        ))
    model_path = _model_file(args.model)
    model = training.load_model(model_path)
    new_layers = growth.new_layers(model)
    output_dir = pathlib.Path(args.output or os.path.join("runs", f"{model.name}_finetune"))
    cli._check_folder("--output", output_dir)
    if (output_dir / "metrics.json").is_file() and not args.overwrite:
        raise FileExistsError(
            f"--output {output_dir} holds a finished run (metrics.json); it is kept. Pass "
            "--overwrite to fine-tune again into it, or choose another --output."
        )
    try:
        trains = growth.scenario_layers(model, args.scenario)
    except ValueError as err:
        raise ValueError(str(err).replace("Scenario", "--scenario", 1)) from err
    if not any(model.get_layer(name).weights for name in trains):
        raise ValueError(f"--scenario {args.scenario} trains no layer with weights in {model.name!r}.")
    image_size, channels = _delivery(model, args)
    _check_classes(model, "predictions", args.data, data_dir=args.data_dir,
                   classes=args.classes_subset, download=args.download, channels=channels,
                   flag="--data", subset_flag="--classes-subset")
    has_source = _task_width(model, "task0") is not None
    if args.retrain_source_data is not None:
        if not has_source:
            raise ValueError(
                f"--retrain-source-data needs the source head 'task0', which {model_path} does not "
                "have (grown with --no-keep-source, or never grown)."
            )
        _check_classes(model, "task0", args.retrain_source_data, data_dir=args.retrain_source_data_dir,
                       classes=args.retrain_source_classes, download=args.retrain_source_download,
                       channels=channels, flag="--retrain-source-data",
                       subset_flag="--retrain-source-classes")

    summary = {"model": model.name, "file": str(model_path), "data": args.data,
               "scenario": args.scenario, "trainable_layers": trains,
               "new_layers": new_layers}
    source = {}
    if args.retrain_source_data is not None:
        summary["source_data"] = args.retrain_source_data
        source["before"] = _source_accuracy(model, args, image_size, channels)
    elif has_source:
        summary["note"] = ("The model keeps its source head 'task0': pass --retrain-source-data "
                           "(the source task's data) to measure how much of the source task it keeps.")
    common = dict(
        batch_size=args.batch_size, learning_rate=args.learning_rate,
        new_lr_multiplier=args.new_lr_multiplier, lr_schedule=args.lr_schedule,
        momentum=args.momentum, weight_decay=args.weight_decay, optimizer=args.optimizer,
        validation_fraction=args.validation_fraction or None, image_size=image_size,
        channels=channels, seed=args.seed, verbose=cli._progress(), overwrite=args.overwrite,
    )
    tuned, metrics, kept = _phase(lambda: growth.finetune(
        model, args.data, scenario=args.scenario, epochs=args.epochs, output_dir=output_dir / "finetune",
        data_dir=args.data_dir, classes=_subset(args.classes_subset), limit=args.limit,
        download=args.download, **common,
    ), output_dir / "finetune", args.overwrite)
    summary["finetune"] = {**metrics, **({"kept": True} if kept else {})}
    if args.retrain_source_data is not None:
        source["after_finetune"] = _source_accuracy(tuned, args, image_size, channels)
        if args.retrain_epochs > 0:
            final, metrics, kept = _phase(lambda: growth.retrain_source(
                tuned, args.retrain_source_data, epochs=args.retrain_epochs,
                output_dir=output_dir / "retrain_source", data_dir=args.retrain_source_data_dir,
                classes=_subset(args.retrain_source_classes), limit=args.retrain_limit or args.limit,
                download=args.retrain_source_download, **common,
            ), output_dir / "retrain_source", args.overwrite)
            source["after_retrain"] = metrics.get("test")
            summary["retrain_source"] = {
                **metrics, **({"kept": True} if kept else {}),
                "target_test": training.evaluate(
                    final, args.data, data_dir=args.data_dir, image_size=image_size,
                    channels=channels, limit=args.limit, classes=_subset(args.classes_subset),
                    batch_size=args.batch_size, download=args.download, output="predictions",
                    verbose=0,
                ),
            }
        summary["source"] = source
    last_phase = "retrain_source" if "retrain_source" in summary else "finetune"
    summary["final_model"] = str(output_dir / last_phase / "model.keras")
    training.atomic_write_text(output_dir / "metrics.json", json.dumps(summary, indent=2) + "\n")
    print(finetune_report(summary, output_dir))
    return 0
