"""The commands of ``keras-apps`` (parsing, plug-ins, errors and logging: :mod:`keras_apps_cli`).

Each function takes the parsed arguments and returns the exit status. Flags are checked
before anything slow starts: ``train`` refuses ``--width``/``--aux-logits`` for a model that
does not take them, an ``--output`` that is a file, and ``--export`` targets that already
exist, before any data is read.

    >>> from keras_apps import cli
    >>> cli.main(["list", "vgg*"])
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

from keras_apps_cli import build_parser, discover_plugins, main

__all__ = ["build_parser", "discover_plugins", "main", "summary", "datasets", "train",
           "evaluate", "export", "analyze"]


def _progress() -> int:
    """Keras ``verbose``: the progress bar on a terminal, one plain line per epoch otherwise
    (Keras' bar writes ANSI codes even into a pipe)."""
    return 1 if sys.stdout.isatty() else 2


def _blocking_file(path: pathlib.Path) -> pathlib.Path | None:
    """The nearest existing ancestor of ``path`` if it is a file (nothing can be created)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _check_folder(flag: str, value) -> None:
    if value is None:
        return
    path = pathlib.Path(value)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {value} is a file; {flag} names a folder.")
    blocking = _blocking_file(path)
    if blocking is not None:
        raise ValueError(f"{flag} {value} lies under the file {blocking}; {flag} names a folder.")


def _check_file(flag: str, value) -> None:
    if value is None:
        return
    path = pathlib.Path(value)
    if path.is_dir():
        raise ValueError(
            f"{flag} {value} is a folder; {flag} names a file, e.g. {path / 'metrics.json'}."
        )
    blocking = _blocking_file(path)
    if blocking is not None:
        raise ValueError(f"{flag} {value} lies under the file {blocking}, not a folder.")


def _check_builder_flags(name: str, flags: dict) -> dict:
    """``{argument: (flag, value)}`` -> the builder overrides; a flag whose argument the
    builder of ``name`` does not take is a ValueError naming the models that take it."""
    from keras_apps import registry

    registry.get_spec(name)
    overrides = {}
    for argument, (flag, value) in flags.items():
        if value is None:
            continue
        try:
            registry.check_arguments(name, {argument: value})
        except ValueError:
            takers = []
            for other in registry.list_models():
                try:
                    registry.check_arguments(other, {argument: value})
                    takers.append(other)
                except ValueError:
                    pass
            where = f"; it applies to {', '.join(takers)}" if takers else ""
            raise ValueError(
                f"{flag} does not apply to {name} (its builder has no `{argument}` argument)"
                f"{where}."
            ) from None
        overrides[argument] = value
    return overrides


def summary(args) -> int:
    import keras_apps

    overrides = {}
    if args.input_shape is not None:
        overrides["input_shape"] = args.input_shape
    if args.classes is not None:
        overrides["classes"] = args.classes
    keras_apps.build(args.name, **overrides).summary()
    return 0


def datasets(args) -> int:
    from keras_apps import data

    for name in data.list_datasets():
        print(name)
    return 0


def train(args) -> int:
    from keras_apps import export as kexport
    from keras_apps import training

    _check_folder("--output", args.output)
    build_kwargs = _check_builder_flags(args.name, {
        "width": ("--width", args.width),
        "aux_logits": ("--aux-logits", True if args.aux_logits else None),
    })
    targets = {
        fmt: kexport.check_target(args.name, fmt, root=args.export_dir, overwrite=args.overwrite)
        for fmt in args.export
    }
    result = training.fit(
        args.name,
        args.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        strategy=args.strategy,
        output_dir=args.output,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule,
        trainable=args.trainable,
        validation_fraction=args.validation_fraction or None,
        precision=args.precision,
        data_dir=args.data_dir,
        image_size=args.image_size,
        channels=args.channels,
        limit=args.limit,
        download=args.download,
        seed=args.seed,
        build_kwargs=build_kwargs,
        verbose=_progress(),
        overwrite=args.overwrite,
    )
    print(json.dumps(result.metrics, indent=2))
    print(f"Model, checkpoints, TensorBoard logs and metrics.json in {result.output_dir}")
    for fmt, target in targets.items():
        representative = None
        if fmt == "tflite_int8":
            representative = _representative(args.data, args.data_dir, args.image_size, args.download,
                                             channels=args.channels)
        exported = kexport.export_model(
            result.model, fmt, output=target.parent if fmt == "serving" else target,
            representative_data=representative, overwrite=args.overwrite,
        )
        print(f"exported {fmt}: {exported.path} ({_verified(exported)})")
    return 0


def _representative(data, data_dir, image_size, download, count=256, channels=None):
    from keras_apps import data as kdata

    ds, _ = kdata.load(data, "train", data_dir=data_dir, batch_size=32, image_size=image_size,
                       augment=False, shuffle=False, limit=count, download=download,
                       channels=channels)
    return ds


def evaluate(args) -> int:
    from keras_apps import training

    _check_file("--output", args.output)
    metrics = training.evaluate(
        args.model,
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        image_size=args.image_size,
        channels=args.channels,
        limit=args.limit,
        precision=args.precision,
        download=args.download,
    )
    if args.output:
        training.atomic_write_text(args.output, json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    return 0


def export(args) -> int:
    import keras_apps
    from keras_apps import export as kexport
    from keras_apps import training

    if args.format == "tflite_int8" and not args.data:
        raise ValueError("--format tflite_int8 needs --data (representative images for calibration).")
    if args.format != "serving" and args.version is not None:
        raise ValueError(f"--version applies to --format serving, not {args.format}.")
    if args.model.endswith(".keras") or os.path.sep in args.model or os.path.isfile(args.model):
        given = [flag for flag, value in (("--weights", args.weights), ("--input-shape", args.input_shape),
                                          ("--classes", args.classes)) if value is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} apply to a registry name, not to the model file {args.model}."
            )
        model = training.load_model(args.model)
    else:
        overrides = {"weights": args.weights}
        if args.input_shape is not None:
            overrides["input_shape"] = args.input_shape
        if args.classes is not None:
            overrides["classes"] = args.classes
        model = keras_apps.build(args.model, **overrides)
    representative = None
    if args.format == "tflite_int8":
        channels = model.inputs[0].shape[-1]  # the model's, like the size
        representative = _representative(args.data, args.data_dir, tuple(model.inputs[0].shape[1:3]),
                                         args.download,
                                         channels=channels if channels in (1, 3) else None)
    result = kexport.export_model(
        model,
        args.format,
        output=args.output,
        root=args.root,
        version=args.version,
        representative_data=representative,
        overwrite=args.overwrite,
    )
    print(f"exported {args.format}: {result.path} ({result.size_bytes:,} bytes; {_verified(result)})")
    return 0


def _verified(result) -> str:
    measured = getattr(result, result.criterion)
    text = f"verified: {result.criterion.replace('_', ' ')} {measured:.2e} <= {result.tolerance:.0e}"
    if result.agreement is not None:
        text += f", top-1 agreement {result.agreement:.3f}"
    return text


def analyze(args) -> int:
    from keras_apps import analysis

    _check_folder("--output", args.output)
    result = analysis.analyze(
        args.pattern,
        batch_sizes=args.batch_sizes,
        output_dir=args.output,
        input_size=args.input_size,
        measure=not args.no_measure,
        repeats=args.repeats,
        progress=print,
    )
    for kind, path in result["paths"].items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
