"""Prune, quantization-aware train and int8-convert a model (tfmot + LiteRT); table of size, sparsity, accuracy, latency.

    keras-apps optimize resnet20_cifar --data digits --prune 0.5 --qat --int8 --epochs 2
    keras-apps optimize runs/nin_cifar/model.keras --data digits --prune 0.75 --output opt/nin

``optimize`` is :func:`keras_apps.compression.optimize.optimize_model`. ``NAME`` is a
registry name (trained first with ``keras-apps train``'s loop for ``--train-epochs`` into
``OUTPUT/train``) or a ``.keras`` file (taken as trained; its run's ``config.json``, if any,
gives the preprocessing and channels). ``--prune S`` prunes the Conv2D/DepthwiseConv2D/Dense
kernels to sparsity S while fine-tuning ``--epochs`` epochs (tfmot ``prune_low_magnitude``),
``--qat`` fine-tunes with fake quantisation and converts to int8 TFLite, ``--int8`` writes
post-training int8 TFLite (of the baseline, and of the pruned model with ``--prune``),
calibrated on training images. Under ``--output`` (default ``runs/optimize/NAME``): the
artefacts (``baseline.keras``, ``pruned.keras``, ``*.tflite``) and ``optimize.md`` /
``optimize.json``: bytes, zipped bytes, sparsity, test top-1, agreement with the baseline,
latency per image (Keras ``predict`` or the LiteRT interpreter, median of alternated rounds)
and its ratio to the Keras baseline. Existing results are kept unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
import pathlib

from keras_apps_cli import _data_flags, _open_fraction, _positive_float, _positive_int

__all__ = ["COMMANDS", "optimize", "register_optimize"]

#: The top-level command of this plug-in (``keras-apps optimize``).
COMMANDS = ("optimize",)


def register_optimize(p: argparse.ArgumentParser) -> None:
    """Prune / quantization-aware train / int8-convert a model and tabulate size, sparsity, accuracy, latency."""
    p.description = __doc__.split("\n\n")[2]
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.set_defaults(func=optimize)
    p.add_argument("model", metavar="NAME", help="registry name (keras-apps list) or a .keras file")
    _data_flags(p, image_size_help="resize images, e.g. 32,32 (a .keras file: default its input size)")
    p.add_argument("--prune", type=_open_fraction("a target sparsity 0 < S < 1 such as 0.5"),
                   default=None, metavar="S",
                   help="prune the Conv2D/DepthwiseConv2D/Dense kernels to sparsity S, e.g. 0.5")
    p.add_argument("--qat", action="store_true", help="quantization-aware training, then int8 TFLite")
    p.add_argument("--int8", action="store_true", help="post-training int8 TFLite (baseline and pruned)")
    p.add_argument("--epochs", type=_positive_int, default=2, help="fine-tuning epochs of --prune and --qat")
    p.add_argument("--learning-rate", type=_positive_float, default=0.01,
                   help="fine-tuning learning rate (SGD, momentum 0.9; default 0.01)")
    p.add_argument("--train-epochs", type=_positive_int, default=5,
                   help="a registry name: epochs of baseline training (default 5)")
    p.add_argument("--train-learning-rate", type=_positive_float, default=0.05,
                   help="a registry name: baseline learning rate (default 0.05, cosine)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--width", type=float, default=None, help="width multiplier (NIN), registry names only")
    p.add_argument("--latency-images", type=_positive_int, default=32, help="images of the timed batch")
    p.add_argument("--repeats", type=_positive_int, default=5, help="alternated timing rounds (median)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="results folder (default runs/optimize/NAME)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run")


def optimize(args) -> int:
    """Runs ``keras-apps optimize``; prints the table and where the files are."""
    from keras_apps import cli as kcli
    from keras_apps.compression import optimize as kopt

    if args.prune is None and not args.qat and not args.int8:
        raise ValueError("nothing to do: pass --prune S, --qat and/or --int8.")
    is_file = args.model.endswith(".keras") or os.path.sep in args.model or os.path.isfile(args.model)
    build_kwargs = None
    if is_file:
        if args.width is not None:
            raise ValueError(f"--width applies to a registry name, not to the model file {args.model}.")
        if not pathlib.Path(args.model).is_file():
            raise FileNotFoundError(f"No model file at {args.model}.")
        name = pathlib.Path(args.model).stem
    else:
        build_kwargs = kcli._check_builder_flags(args.model, {"width": ("--width", args.width)}) or None
        name = args.model
    output = args.output or str(pathlib.Path("runs") / "optimize" / name)
    kcli._check_folder("--output", output)
    report = kopt.optimize_model(
        args.model,
        args.data,
        prune=args.prune,
        qat=args.qat,
        int8=args.int8,
        epochs=args.epochs,
        train_epochs=args.train_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        train_learning_rate=args.train_learning_rate,
        validation_fraction=args.validation_fraction,
        limit=args.limit,
        data_dir=args.data_dir,
        image_size=args.image_size,
        channels=args.channels,
        download=args.download,
        build_kwargs=build_kwargs,
        latency_images=args.latency_images,
        latency_repeats=args.repeats,
        seed=args.seed,
        output_dir=output,
        overwrite=args.overwrite,
        progress=print,
    )
    print(report["table"])
    print(f"artefacts and the table ({', '.join(kopt.RESULT_FILES)}) in {output}")
    return 0
