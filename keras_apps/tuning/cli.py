"""Keras Tuner search over a registered model or a method (keras-apps tune).

    keras-apps tune NAME --data D --tuner random|hyperband|bayes --max-trials N --epochs E
                    [--limit L] [--output DIR] [--overwrite] [--variants family|A,B]
                    [--method hdcnn|growth] [--objective val_top1|val_loss]

The data flags are those of ``keras-apps train`` (copied from its parser, so they stay the
same). ``--method hdcnn`` tunes HD-CNN (K, gamma, lambda) with NAME as its building block;
``--method growth`` grows the trained classifier NAME (a ``.keras`` file: mode, units,
scale init). The same command with ``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` set runs as keras-tuner's chief or as one of its workers.
"""

from __future__ import annotations

import argparse
import json

COMMANDS = ("tune",)

TUNERS = ("random", "hyperband", "bayes")
OBJECTIVES = ("val_top1", "val_loss")
METHODS = ("hdcnn", "growth")


def _variants(text: str):
    if text == "family":
        return text
    names = [name for name in text.split(",") if name]
    if not names:
        raise argparse.ArgumentTypeError(f"expected 'family' or names like a,b, got {text!r}")
    return names


def register_tune(p: argparse.ArgumentParser) -> None:
    """Keras Tuner search (random, hyperband, bayes) on the held-out validation split"""
    from keras_apps_cli import _data_flags, _positive_int

    p.add_argument("name", help="registered model name (keras-apps list); with --method growth "
                                "a trained .keras classifier")
    _data_flags(p)  # the data flags of `train`
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tuner", choices=TUNERS, default="random")
    p.add_argument("--max-trials", type=_positive_int, default=10)
    p.add_argument("--epochs", type=_positive_int, default=1,
                   help="epochs per trial (hyperband: the largest budget)")
    p.add_argument("--objective", choices=OBJECTIVES, default="val_top1",
                   help="validation metric to optimise (never the test split)")
    p.add_argument("--variants", type=_variants, default=None,
                   help="also tune the depth: 'family' (the family's variants of the same input "
                        "size) or registry names a,b,...")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="tune a method's hyperparameters instead of the model's")
    p.add_argument("--output", default=None, help="search folder (default tuning/NAME)")
    p.add_argument("--overwrite", action="store_true",
                   help="search again into a folder that holds a finished search")
    p.set_defaults(func=run, interrupted="interrupted; re-run the same command to resume the search")


def run(args) -> int:
    """Runs the search and prints the results table, the best trial and where the files are."""
    from keras_apps import tuning
    from keras_apps.cli import _check_folder

    _check_folder("--output", args.output)
    if args.max_trials < 1:
        raise ValueError(f"--max-trials must be >= 1, got {args.max_trials}.")
    if not args.validation_fraction:
        raise ValueError("--validation-fraction 0 leaves no validation split; the search needs one.")
    model = args.name
    if args.method is not None and args.variants is not None:
        raise ValueError("--variants applies to a model search, not to --method.")
    if args.method == "hdcnn":
        model = tuning.HDCNNHyperModel(args.name)
    elif args.method == "growth":
        from keras_apps import data as kdata

        info = kdata.dataset_info(args.data, data_dir=args.data_dir, download=args.download,
                                  channels=args.channels)
        model = tuning.GrowthHyperModel(args.name, classes=info.num_classes,
                                        fit_kwargs={"batch_size": args.batch_size, "seed": args.seed})
    result = tuning.search(
        model, args.data, tuner=args.tuner, max_trials=args.max_trials, epochs=args.epochs,
        output_dir=args.output, objective=args.objective, batch_size=args.batch_size,
        limit=args.limit, validation_fraction=args.validation_fraction, data_dir=args.data_dir,
        image_size=args.image_size, channels=args.channels, download=args.download,
        seed=args.seed, variants=args.variants, overwrite=args.overwrite,
    )
    if result.role == "worker":
        import os

        print(f"worker {os.environ['KERASTUNER_TUNER_ID']}: trials done; the chief writes the "
              f"results in {result.output_dir}")
        return 0
    print(result.paths["md"].read_text(), end="")
    print(json.dumps({"best_trial": result.best_trial_id, **result.metrics}, indent=2))
    print(f"results in {result.output_dir} (results.md/.csv/.json/.png); best model "
          f"{result.paths['model']}")
    return 0
