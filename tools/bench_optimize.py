"""Benchmark: pruning, quantization-aware training and int8 TFLite of a suite model on a real
dataset (tensorflow-model-optimization through the Keras 3 -> tf_keras bridge).

Runs :func:`keras_apps.compression.optimize.optimize_model` (the ``keras-apps optimize``
command) for ``--model`` on ``--data``: trains the float baseline (``--train-epochs``), prunes
it to ``--prune`` while fine-tuning, fine-tunes it quantization-aware and converts it to int8
TFLite, and writes post-training int8 TFLite of the baseline and of the pruned model. Every
variant is measured in the same run: bytes and zipped bytes of its file, sparsity of the
prunable kernels, top-1 on the test split, agreement with the baseline's predictions, and the
latency per image (Keras ``predict`` on a batch, or the LiteRT interpreter one image per
invoke, median of alternated rounds) with its ratio to the Keras baseline.

One result file per finished run, ``<output>/<model>_<data>.json`` (kept on re-runs unless
``--overwrite``; the artefacts stay under ``--work-dir``), and ``<output>/README.md``
rebuilt from all of them.

    python tools/bench_optimize.py                                  # resnet20_cifar on digits
    python tools/bench_optimize.py --model nin_cifar --width 0.25 --prune 0.75
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keras_apps.compression import optimize as kopt  # noqa: E402
from keras_apps.training import atomic_write_text  # noqa: E402

README_HEAD = """# Model optimisation (tensorflow-model-optimization + LiteRT)

Written by `tools/bench_optimize.py` (one JSON per run beside this file; this table is rebuilt
from them). `bytes`: the file; `zipped bytes`: that file zipped (deflate), as tfmot's guides
measure; `sparsity`: zeros in the Conv2D/DepthwiseConv2D/Dense kernels; `top-1`: test split;
`agreement`: share of test images where the variant predicts the baseline's class;
`ms/image`: Keras `model.predict` on one batch, or the LiteRT interpreter (`ai_edge_litert`)
one image per `invoke`, median of alternated rounds on the same images; `vs Keras`: that
latency over the Keras baseline's, measured in the same run (2 shared CPU cores: compare
ratios, not absolute times).
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20_cifar", help="registry name or .keras file")
    p.add_argument("--width", type=float, default=None, help="width multiplier (NIN)")
    p.add_argument("--data", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None, help="first N images per split")
    p.add_argument("--prune", type=float, default=0.5)
    p.add_argument("--no-qat", action="store_true")
    p.add_argument("--no-int8", action="store_true")
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (prune, QAT)")
    p.add_argument("--train-epochs", type=int, default=8, help="baseline training epochs")
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--latency-images", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default="runs/bench_optimize", help="artefacts of each run")
    p.add_argument("--output", default=str(ROOT / "results" / "optimize"))
    p.add_argument("--overwrite", action="store_true", help="run again over a finished result")
    return p


def rebuild_readme(output: pathlib.Path) -> pathlib.Path:
    """``README.md`` of ``output`` from every result JSON there (sorted by file name)."""
    parts = [README_HEAD]
    for path in sorted(output.glob("*.json")):
        record = json.loads(path.read_text())
        settings = record["settings"]
        parts.append(f"## {record['model']} on {record['data']}\n\n`{settings.get('command', '')}`\n\n"
                     + kopt.table_markdown(record))
    readme = output / "README.md"
    atomic_write_text(readme, "\n".join(parts))
    return readme


def main(argv=None) -> int:
    """Runs one benchmark (unless its result exists) and rebuilds the README table."""
    args = _parser().parse_args(argv)
    output = pathlib.Path(args.output)
    stem = pathlib.Path(args.model).stem if args.model.endswith(".keras") else args.model
    result = output / f"{stem}_{args.data}.json"
    if result.exists() and not args.overwrite:
        print(f"{result} exists (pass --overwrite to run again); rebuilding the table")
    else:
        report = kopt.optimize_model(
            args.model, args.data, prune=args.prune, qat=not args.no_qat, int8=not args.no_int8,
            epochs=args.epochs, train_epochs=args.train_epochs, learning_rate=args.learning_rate,
            limit=args.limit, data_dir=args.data_dir,
            build_kwargs={"width": args.width} if args.width is not None else None,
            latency_images=args.latency_images, latency_repeats=args.repeats, seed=args.seed,
            output_dir=pathlib.Path(args.work_dir) / f"{stem}_{args.data}", overwrite=True,
            progress=print,
        )
        report["settings"]["command"] = "python tools/bench_optimize.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        report["settings"]["work_dir"] = str(pathlib.Path(args.work_dir) / f"{stem}_{args.data}")
        report.pop("paths", None)
        report.pop("table", None)
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_text(result, json.dumps(report, indent=2) + "\n")
        print(kopt.table_markdown(report))
    print(f"table: {rebuild_readme(output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
