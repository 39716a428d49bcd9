"""Accuracy of the same short training run in float32 and in mixed bfloat16 (and float16).

Each (precision, seed) run trains ``--model`` on ``--data`` with ``keras_apps.training.fit``
(held-out validation carved from the training split, the test split evaluated once at the
end), then writes one JSON file ``<output>/<model>-<data>-<precision>-seed<seed>.json`` with
its validation and test metrics and the wall time. Finished runs are skipped, so the script
resumes; ``--table`` rebuilds ``<output>/README.md`` (mean and standard deviation over seeds)
from the JSON files alone.

    python tools/precision_accuracy.py --model resnet20_cifar --data digits --epochs 5 \
        --precisions float32,bfloat16 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_one(args, precision: str, seed: int, path: pathlib.Path) -> dict:
    from keras_apps import training
    from keras_apps.training import atomic_write_text

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        result = training.fit(
            args.model, args.data, epochs=args.epochs, batch_size=args.batch_size,
            limit=args.limit, seed=seed, precision=precision, strategy="one-device",
            output_dir=run_dir, verbose=0, build_kwargs=json.loads(args.build_kwargs),
        )
    record = {
        "model": args.model,
        "data": args.data,
        "precision": precision,
        "seed": seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "limit": args.limit,
        "build_kwargs": json.loads(args.build_kwargs),
        "seconds": time.perf_counter() - start,
        "validation_top1_error": result.metrics["validation"]["top1_error"],
        "test_top1_error": result.metrics["test"]["top1_error"],
        "test_top5_error": result.metrics["test"]["top5_error"],
        "test_loss": result.metrics["test"]["loss"],
    }
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record


def _mean_std(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(output: pathlib.Path) -> str:
    records = [json.loads(p.read_text()) for p in sorted(output.glob("*.json"))]
    groups = {}
    for r in records:
        key = (r["model"], r["data"], r["epochs"], r["limit"], r["precision"])
        groups.setdefault(key, []).append(r)
    lines = [
        "| model | data | epochs | precision | seeds | validation top-1 error | test top-1 error "
        "| test top-5 error | s / run |",
        "|---|---|---:|---|---:|---|---|---|---:|",
    ]
    for (model, data, epochs, limit, precision), rs in sorted(groups.items()):
        data_label = data if limit is None else f"{data} (limit {limit})"
        lines.append(
            f"| `{model}` | {data_label} | {epochs} | {precision} | {len(rs)} "
            f"| {_mean_std([r['validation_top1_error'] for r in rs])} "
            f"| {_mean_std([r['test_top1_error'] for r in rs])} "
            f"| {_mean_std([r['test_top5_error'] for r in rs])} "
            f"| {statistics.mean(r['seconds'] for r in rs):.0f} |"
        )
    text = (
        "# Accuracy of short runs by precision\n\n"
        "Written by `python tools/precision_accuracy.py --table` from the JSON files here "
        "(one per run; mean ± standard deviation over seeds; validation carved from the "
        "training split, test split evaluated once at the end).\n\n" + "\n".join(lines) + "\n"
    )
    (output / "README.md").write_text(text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20_cifar")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--build-kwargs", default="{}", help='JSON, e.g. \'{"width": 0.25}\'')
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--output", default=str(ROOT / "results" / "precision"))
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    args = parser.parse_args(argv)
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    if not args.table:
        for precision in args.precisions.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                path = output / f"{args.model}-{args.data}-{precision}-seed{seed}.json"
                if path.is_file():
                    print(f"done already: {path.name}", flush=True)
                    continue
                record = run_one(args, precision, seed, path)
                print(f"{path.name}: test top-1 error {record['test_top1_error']:.4f} "
                      f"({record['seconds']:.0f} s)", flush=True)
    print(table(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
