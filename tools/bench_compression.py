"""Benchmark: product-quantization compression (HD-CNN, "Parameter compression") of one model
with several (s, k) settings.

Builds ``--model`` (default ``nin_cifar`` at width 0.5) or loads ``--model-file`` (a trained
``.keras`` model, so that the output differences mean something), compresses it with
``keras_apps.compression.compress_model`` for every ``--settings`` entry ``s:k``, and prints
one row per setting: the layers compressed, the weight-memory factor (all weights, float32
before, uint8 codes + float32 codebooks after), the ``.keras`` file sizes and their ratio,
the largest kernel error ``max |W - W_hat|`` and the largest output difference between the
compressed and the uncompressed model on the same fixed batch, both measured in this run.
The paper's CIFAR files use s = 2 or 3 and k = 64.

    python tools/bench_compression.py                                  # nin_cifar width 0.5
    python tools/bench_compression.py --settings 2:64 3:64 2:256 --output results/pq.json
    python tools/bench_compression.py --model-file runs/nin/best.keras --layers "conv*"
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_apps  # noqa: E402
from keras_apps.compression import DEFAULT_MIN_SIZE, compress_model  # noqa: E402
from keras_apps.training import atomic_write_text  # noqa: E402

HEADER = (
    f"{'s':>3} {'k':>4} {'layers':>6} {'weights MB':>17} {'factor':>6} {'file KB':>17} "
    f"{'ratio':>6} {'max |W-W_hat|':>13} {'max |dy|':>9} {'seconds':>7}"
)


def _setting(text):
    try:
        s, k = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a setting is 's:k' with two integers, e.g. 2:64; got {text!r}") from None
    return s, k


def _shape(text):
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input-shape is 'H,W,C', e.g. 32,32,3; got {text!r}") from None


def _model(args):
    if args.model_file:
        return keras.saving.load_model(args.model_file, safe_mode=True)
    overrides = {"input_shape": args.input_shape, "classes": args.classes, "width": args.width}
    overrides.update(json.loads(args.build_kwargs))
    return keras_apps.build(args.model, **{key: value for key, value in overrides.items() if value is not None})


def _file_size(model, folder, name):
    path = pathlib.Path(folder) / f"{name}.keras"
    model.save(path)
    return path.stat().st_size


def _format(row):
    return (
        f"{row['s']:>3} {row['k']:>4} {row['layers']:>6} "
        f"{row['weight_bytes_before'] / 1e6:>8.3f}->{row['weight_bytes_after'] / 1e6:<7.3f} "
        f"{row['weight_factor']:>6.2f} {row['file_bytes_before'] / 1e3:>8.1f}->{row['file_bytes_after'] / 1e3:<7.1f} "
        f"{row['file_ratio']:>6.2f} {row['max_kernel_error']:>13.4g} {row['max_output_diff']:>9.3g} "
        f"{row['seconds']:>7.1f}"
    )


def main(argv=None) -> list[dict]:
    """Runs the benchmark; returns the table's rows (one dict per setting)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nin_cifar", help="registered model name")
    parser.add_argument("--model-file", default=None, help="a .keras model to compress instead of --model")
    parser.add_argument("--width", type=float, default=0.5,
                        help="builder width (omitted with --build-kwargs '{\"width\": null}')")
    parser.add_argument("--input-shape", type=_shape, default=(32, 32, 3))
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--build-kwargs", default="{}", help="JSON of further builder arguments")
    parser.add_argument("--settings", type=_setting, nargs="+", default=[(2, 64), (3, 64), (2, 16)],
                        help="s:k pairs (segment width : centres per segment)")
    parser.add_argument("--layers", default=None, help="fnmatch pattern of layer paths (default: by --min-size)")
    parser.add_argument("--min-size", type=int, default=DEFAULT_MIN_SIZE)
    parser.add_argument("--batch", type=int, default=16, help="images compared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    model = _model(args)
    rng = np.random.default_rng(args.seed)
    batch = rng.uniform(0, 1, (args.batch, *model.input_shape[1:])).astype("float32")
    reference = np.asarray(model.predict(batch, verbose=0))
    print(f"{model.name}: {model.count_params():,} parameters; compared on {args.batch} uniform [0, 1) images")
    print(HEADER)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        file_before = _file_size(model, folder, "original")
        for s, k in args.settings:
            start = time.perf_counter()
            compressed, report = compress_model(model, args.layers, s=s, k=k, seed=args.seed, min_size=args.min_size)
            seconds = time.perf_counter() - start
            file_after = _file_size(compressed, folder, f"s{s}_k{k}")
            output = np.asarray(compressed.predict(batch, verbose=0))
            totals = report["totals"]
            row = {
                "s": s,
                "k": k,
                "layers": len(report["layers"]),
                "skipped": report["skipped"],
                "weight_bytes_before": totals["bytes_before"],
                "weight_bytes_after": totals["bytes_after"],
                "weight_factor": totals["factor"],
                "file_bytes_before": file_before,
                "file_bytes_after": file_after,
                "file_ratio": file_before / file_after,
                "max_kernel_error": max(entry["max_abs_error"] for entry in report["layers"].values()),
                "max_output_diff": float(np.max(np.abs(output - reference))),
                "seconds": seconds,
                "per_layer": report["layers"],
            }
            rows.append(row)
            print(_format(row), flush=True)
    if args.output:
        atomic_write_text(args.output, json.dumps({"model": model.name, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
