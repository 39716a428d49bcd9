"""Benchmark: HD-CNN conditional execution vs running every component (Yan et al. 2015,
"Test-time efficiency"; target: conditional execution at <= 50% of the all-components time).

On the same images and batch size it times

- ``model.predict`` (every fine component on every image: the baseline of the ratios),
- the same full forward pass in one ``tf.function`` per batch (``graph``: the baseline
  without ``model.predict``'s own overhead),
- :func:`keras_apps.hdcnn.conditional.conditional_predict` at each ``--betas`` value,

alternately within each repeat (the order rotates from repeat to repeat; two identical
models timed back to back differ by up to 10% on a shared machine), and prints the median
seconds, the ratios conditional / predict and conditional / graph, and the mean number of
fine components run per image. The speed-up depends on how peaked the coarse probabilities
are: an untrained model spreads B almost evenly, so pass a trained model with ``--model``
for the paper's numbers.

    python tools/bench_hdcnn_conditional.py                          # hdcnn, C=100, K=9, 32x32
    python tools/bench_hdcnn_conditional.py --model hdcnn.keras --images test_images.npy
    python tools/bench_hdcnn_conditional.py --width 0.25 --size 16 --classes 10 --images 64
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_apps  # noqa: E402
from keras_apps.hdcnn.conditional import conditional_predict  # noqa: E402
from keras_apps.hdcnn.model import components  # noqa: E402
from keras_apps.training import atomic_write_text, load_model  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a trained HD-CNN .keras file (default: build one)")
    parser.add_argument("--building-block", default="nin_cifar")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    parser.add_argument("--width", type=float, default=1.0, help="building block width")
    parser.add_argument("--hierarchy", help="hierarchy JSON (ours or the authors' format)")
    parser.add_argument("--convention", default="paper", choices=("paper", "release"))
    parser.add_argument("--images", default="256",
                        help="number of random [0, 1) images, or a .npy array of images")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0, math.inf])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="write the results as JSON here")
    return parser


def _model(args):
    if args.model:
        return load_model(args.model)
    kwargs = {"width": args.width} if args.width != 1.0 else {}
    return keras_apps.build(
        "hdcnn", building_block=args.building_block, classes=args.classes,
        input_shape=(args.size, args.size, 3), hierarchy=args.hierarchy,
        convention=args.convention, building_block_kwargs=kwargs,
    )


def _images(spec: str, input_shape, seed: int) -> np.ndarray:
    if spec.isdigit():
        if any(d is None for d in input_shape):
            raise SystemExit(f"The model input shape {input_shape} is not fully known; pass a .npy array.")
        rng = np.random.default_rng(seed)
        return rng.uniform(0.0, 1.0, (int(spec), *input_shape)).astype(np.float32)
    images = np.load(spec).astype(np.float32)
    if images.ndim != len(input_shape) + 1 or any(
        want is not None and got != want for got, want in zip(images.shape[1:], input_shape)
    ):
        raise SystemExit(f"{spec} holds shape {images.shape}; the model takes (N, *{input_shape}).")
    return images


def _graph_runner(model, images, batch_size):
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    batches = [tf.constant(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]

    def run():
        for batch in batches:
            outputs = forward(batch)
        return outputs["predictions"].numpy()

    return run


def main(argv=None) -> list[dict]:
    args = _parser().parse_args(argv)
    if args.repeats < 1 or args.batch_size < 1:
        raise SystemExit("--repeats and --batch-size must be positive.")
    model = _model(args)
    num_coarse = components(model).num_coarse
    images = _images(args.images, tuple(model.inputs[0].shape[1:]), args.seed)
    graph = _graph_runner(model, images, args.batch_size)
    methods = {
        "predict": lambda: model.predict(images, batch_size=args.batch_size, verbose=0),
        "graph": graph,
    }
    runs = {}
    for beta in args.betas:
        def run(beta=beta):
            runs[beta] = conditional_predict(model, images, beta, batch_size=args.batch_size)
        methods[beta] = run
    for method in methods.values():  # warm-up: traces and first-call allocations
        method()
    seconds = {key: [] for key in methods}
    keys = list(methods)
    for repeat in range(args.repeats):
        shift = repeat % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            methods[key]()
            seconds[key].append(time.perf_counter() - start)
    median = {key: statistics.median(values) for key, values in seconds.items()}
    rows = [
        {
            "beta": beta,
            "threshold": runs[beta].threshold,
            "mean_components_run": runs[beta].mean_components_run,
            "seconds": median[beta],
            "ratio": median[beta] / median["predict"],
            "ratio_graph": median[beta] / median["graph"],
        }
        for beta in args.betas
    ]
    print(f"{model.name}: {len(images)} images, batch {args.batch_size}, K={num_coarse}, "
          f"{args.repeats} alternated repeats (medians)")
    print(f"  all components, model.predict: {median['predict']:.4f} s")
    print(f"  all components, tf.function:   {median['graph']:.4f} s")
    print(f"  {'beta':>6} {'threshold':>9} {'components':>10} {'seconds':>8} {'/predict':>8} {'/graph':>7}")
    for row in rows:
        print(f"  {row['beta']:>6g} {row['threshold']:>9.4f} {row['mean_components_run']:>10.2f} "
              f"{row['seconds']:>8.4f} {row['ratio']:>8.3f} {row['ratio_graph']:>7.3f}")
    if args.output:
        result = {
            "model": args.model or model.name,
            "images": len(images),
            "batch_size": args.batch_size,
            "num_coarse": num_coarse,
            "repeats": args.repeats,
            "predict_seconds": median["predict"],
            "graph_seconds": median["graph"],
            "rows": [{**row, "beta": "inf" if math.isinf(row["beta"]) else row["beta"]} for row in rows],
        }
        atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
