"""The ``keras-apps`` command line.

    keras-apps list [PATTERN]                 registered models (fnmatch pattern)
    keras-apps info NAME                      family, paper, input, classes, params, stages
    keras-apps summary NAME [--input-shape]   Keras summary of the built model
    keras-apps datasets                       datasets keras_apps.data can read
    keras-apps train NAME --data D --epochs N --batch-size B --strategy S --output DIR
    keras-apps evaluate MODEL.keras --data D  top-1 / top-5 error
    keras-apps export NAME_OR_FILE --format keras|saved_model|tflite|tflite_int8|serving
    keras-apps analyze [PATTERN] --batch-sizes 1,8,32 --output DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _shape(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape like 32,32,3, got {text!r}") from None


def _int_list(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,8,32, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _cmd_list(args) -> int:
    import keras_apps

    names = keras_apps.list_models(args.pattern)
    if not names:
        print(f"No model matches {args.pattern!r}.", file=sys.stderr)
        return 1
    for name in names:
        info = keras_apps.model_info(name)
        print(f"{name:22s} {info['family']:14s} {info['params']:>13,d} params  "
              f"input {'x'.join(map(str, info['input_shape']))}")
    return 0


def _cmd_info(args) -> int:
    import keras_apps

    print(json.dumps(keras_apps.model_info(args.name), indent=2))
    return 0


def _cmd_summary(args) -> int:
    import keras_apps

    overrides = {"input_shape": args.input_shape} if args.input_shape else {}
    if args.classes:
        overrides["classes"] = args.classes
    keras_apps.build(args.name, **overrides).summary()
    return 0


def _cmd_datasets(args) -> int:
    from keras_apps import data

    for name in data.list_datasets():
        print(name)
    return 0


def _cmd_train(args) -> int:
    from keras_apps import training

    if args.export:
        from keras_apps import export

        unknown = [fmt for fmt in args.export if fmt not in export.FORMATS]
        if unknown:
            raise ValueError(f"Unknown export format(s) {unknown}; choose from {', '.join(export.FORMATS)}.")
    build_kwargs = {}
    if args.width is not None:
        build_kwargs["width"] = args.width
    if args.aux_logits:
        build_kwargs["aux_logits"] = True
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
        data_dir=args.data_dir,
        image_size=args.image_size,
        limit=args.limit,
        seed=args.seed,
        build_kwargs=build_kwargs,
    )
    print(json.dumps(result.metrics, indent=2))
    print(f"Model, checkpoints, TensorBoard logs and metrics.json in {result.output_dir}")
    if args.export:
        for fmt in args.export:
            representative = None
            if fmt == "tflite_int8":
                representative = _representative(args.data, args.data_dir, args.image_size)
            exported = export.export_model(
                result.model, fmt, root=args.export_dir, representative_data=representative,
                overwrite=args.overwrite,
            )
            print(f"exported {fmt}: {exported.path} ({_verified(exported)})")
    return 0


def _representative(data, data_dir, image_size, count=256):
    from keras_apps import data as kdata

    ds, _ = kdata.load(data, "train", data_dir=data_dir, batch_size=32, image_size=image_size,
                       augment=False, shuffle=False, limit=count)
    return ds


def _cmd_evaluate(args) -> int:
    from keras_apps import training

    metrics = training.evaluate(
        args.model,
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        image_size=args.image_size,
        limit=args.limit,
    )
    if args.output:
        training.atomic_write_text(args.output, json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    return 0


def _cmd_export(args) -> int:
    import keras_apps
    from keras_apps import export, training

    if args.model.endswith(".keras") or os.path.sep in args.model:
        model = training.load_model(args.model)
    else:
        overrides = {"weights": args.weights}
        if args.input_shape:
            overrides["input_shape"] = args.input_shape
        if args.classes:
            overrides["classes"] = args.classes
        model = keras_apps.build(args.model, **overrides)
    representative = None
    if args.format == "tflite_int8":
        if not args.data:
            print("--format tflite_int8 needs --data (representative images for calibration).",
                  file=sys.stderr)
            return 2
        representative = _representative(args.data, args.data_dir, tuple(model.inputs[0].shape[1:3]))
    result = export.export_model(
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


def _cmd_analyze(args) -> int:
    from keras_apps import analysis

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


def build_parser() -> argparse.ArgumentParser:
    from keras_apps.training import LR_SCHEDULES, STRATEGIES

    parser = argparse.ArgumentParser(
        prog="keras-apps", description="Landmark CNN papers as Keras 3 applications."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'resnet*'")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="model metadata as JSON")
    p.add_argument("name")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("summary", help="Keras summary of a built model")
    p.add_argument("name")
    p.add_argument("--input-shape", type=_shape, default=None, help="e.g. 224,224,3")
    p.add_argument("--classes", type=int, default=None)
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("datasets", help="datasets keras_apps.data can read")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("train", help="train a registered model")
    p.add_argument("name", help="registered model name (keras-apps list)")
    p.add_argument("--data", default="digits", help="dataset name (keras-apps datasets); default digits")
    p.add_argument("--data-dir", default=None, help="where the dataset's files are")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--strategy", choices=STRATEGIES, default="auto")
    p.add_argument("--output", default=None, help="run directory (default runs/NAME)")
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="cosine")
    p.add_argument("--image-size", type=_shape, default=None, help="resize images, e.g. 32,32")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images per split")
    p.add_argument("--width", type=float, default=None, help="width multiplier (NIN)")
    p.add_argument("--aux-logits", action="store_true",
                   help="train with auxiliary classifiers (GoogLeNet); the saved model has none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export", type=lambda s: tuple(s.split(",")), default=(),
                   help="after training, export to these formats, e.g. saved_model,tflite")
    p.add_argument("--export-dir", default="saved_models", help="where exports land")
    p.add_argument("--overwrite", action="store_true",
                   help="replace earlier exports of this model (only after the new ones verify)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="top-1/top-5 error of a .keras model")
    p.add_argument("model", help="a .keras file (e.g. runs/NAME/model.keras)")
    p.add_argument("--data", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--split", default=None, help="default: test (or validation)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=_shape, default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--output", default=None, help="write the metrics as JSON here")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="export a registered model or a .keras file")
    p.add_argument("model", help="registry name or .keras file")
    p.add_argument("--format", required=True,
                   choices=("keras", "saved_model", "tflite", "tflite_int8", "serving"))
    p.add_argument("--output", default=None, help="target path (default under --root)")
    p.add_argument("--root", default="saved_models")
    p.add_argument("--version", type=int, default=None, help="serving version (default: next)")
    p.add_argument("--weights", default=None, help="weights file for a registry name")
    p.add_argument("--input-shape", type=_shape, default=None)
    p.add_argument("--classes", type=int, default=None)
    p.add_argument("--data", default=None, help="representative data for tflite_int8")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("analyze", help="params/FLOPs/memory/latency table and charts")
    p.add_argument("pattern", nargs="?", default=None)
    p.add_argument("--batch-sizes", type=_int_list, default=(1, 8, 32))
    p.add_argument("--output", default="analysis")
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-measure", action="store_true", help="skip latency measurement")
    p.set_defaults(func=_cmd_analyze)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FileExistsError as err:
        print(f"keras-apps {args.command}: error: {err} (command line: --overwrite)", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as err:
        print(f"keras-apps {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
