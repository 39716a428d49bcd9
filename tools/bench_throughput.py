"""Benchmark: our builders vs keras.applications, and what the training path adds.

For each network with a keras.applications twin (default ResNet-50, DenseNet-121 and
EfficientNet-B0; a network not registered yet is skipped with a message) both models are
built with ``weights=None`` in one process, compiled the same way (plain SGD, sparse
cross-entropy, ``jit_compile=False``) and timed alternately - ours first on even repeats,
keras.applications first on odd ones - for a train step (``train_on_batch``) and an
inference step (``predict_on_batch``) on the same random batch. It prints the median times
and the ratio keras.applications / ours (>= 1.0: ours at least as fast), the ratio of the
best times and the range of the per-repeat paired ratios; single timings on a shared machine
vary by +-10% and more under load, which only ever slows a run down.

Then, on our first network, the training-path options, each alternated against its baseline
(plain SGD, no XLA, float32):

- XLA: ``compile(jit_compile=True)`` vs ``False`` (train step);
- tf.data prefetch: ``model.fit`` over a parallel-map augmentation pipeline with and
  without ``.prefetch(AUTOTUNE)`` (time per step, fit overhead included in both);
- the suite's compile (``keras_apps.training.compile_for_classification``: SGD with
  momentum and weight decay, top-1/top-5 metrics) vs plain SGD;
- mixed precision ``mixed_bfloat16`` (``keras_apps.training.precision_policy("bfloat16")``),
  train step and inference, on any device (fast on CPUs with AVX512-BF16/AMX);
- mixed precision ``mixed_float16``, train step and inference, on a GPU only ("skipped: no
  GPU" otherwise).

A registry name without a keras.applications twin (``resnet20_cifar``) skips the
comparison and still gets the training-path options; ``--variants`` picks some of them.

    python tools/bench_throughput.py                                   # full size, slow on a CPU
    python tools/bench_throughput.py --models resnet50 --repeats 3
    python tools/bench_throughput.py --models resnet50 --image-size 64 --batch-size 4 --repeats 2
    python tools/bench_throughput.py --models resnet50 --variants bfloat16 --repeats 5
    python tools/bench_throughput.py --models resnet20_cifar --image-size 32 --variants bfloat16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_apps  # noqa: E402
from keras_apps.analysis import describe_device  # noqa: E402

tf.get_logger().setLevel("ERROR")  # retracing notices: each model traces its own functions

DEFAULT_MODELS = ("ResNet50", "DenseNet121", "EfficientNetB0")
VARIANTS = ("xla", "prefetch", "compile", "bfloat16", "float16")


def resolve(names) -> list[tuple[str | None, str | None]]:
    """``(registry name or None, keras.applications name or None)`` for registry or keras
    names (None: no registered builder / no keras.applications twin)."""
    twins = {}
    for name in keras_apps.list_models():
        keras_name = keras_apps.get_spec(name).keras_applications
        if keras_name:
            twins.setdefault(keras_name, name)
    by_lower = {keras_name.lower(): keras_name for keras_name in twins}
    resolved = []
    for name in names:
        if name in keras_apps.list_models():
            resolved.append((name, keras_apps.get_spec(name).keras_applications or None))
        elif name.lower() in by_lower:
            keras_name = by_lower[name.lower()]
            resolved.append((twins[keras_name], keras_name))
        elif hasattr(keras.applications, name):
            resolved.append((None, name))
        else:
            raise SystemExit(
                f"error: unknown model {name!r}: give a registry name with a keras.applications "
                f"twin ({', '.join(sorted(twins.values()))}) or a keras.applications name."
            )
    return resolved


def build_pair(ours_name, keras_name, image_size):
    shape = (image_size, image_size, 3)
    ours = keras_apps.build(ours_name, input_shape=shape)
    reference = getattr(keras.applications, keras_name)(weights=None, input_shape=shape)
    if ours.count_params() != reference.count_params():
        print(
            f"  note: parameter counts differ: ours {ours.count_params():,}, "
            f"keras.applications {reference.count_params():,}"
        )
    return ours, reference


def compile_plain(model, jit_compile=False):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss="sparse_categorical_crossentropy",
        jit_compile=jit_compile,
    )
    return model


def batch(model, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    shape = tuple(model.inputs[0].shape[1:])
    x = rng.uniform(0.0, 1.0, size=(batch_size,) + shape).astype("float32")
    y = rng.integers(0, model.outputs[0].shape[-1], size=(batch_size,)).astype("int32")
    return x, y


def alternate(first, second, repeats):
    """Times two zero-argument callables alternately (first leads on even repeats)."""
    times_first, times_second = [], []
    for index in range(repeats):
        order = ((first, times_first), (second, times_second))
        for fn, times in order if index % 2 == 0 else reversed(order):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return times_first, times_second


def summary(label, baseline_label, times, baseline_times):
    """Median times, the ratio baseline / candidate of the medians (>= 1: candidate at least
    as fast), the ratio of the best times (load spikes on a shared machine only slow a run
    down, so the best time is the least disturbed) and the range of per-repeat ratios."""
    median, baseline = statistics.median(times), statistics.median(baseline_times)
    paired = [b / t for t, b in zip(times, baseline_times)]
    best = min(baseline_times) / min(times)
    return (
        f"{label} {median:.3f} s, {baseline_label} {baseline:.3f} s -> ratio "
        f"{baseline / median:.3f}, best-of-{len(times)} ratio {best:.3f} "
        f"(per-repeat {min(paired):.3f}-{max(paired):.3f})",
        baseline / median,
        best,
    )


def compare_with_keras(ours_name, keras_name, args):
    ours, reference = build_pair(ours_name, keras_name, args.image_size)
    compile_plain(ours)
    compile_plain(reference)
    x, y = batch(ours, args.batch_size)
    results = {}
    for step, run in (
        ("train", lambda m: m.train_on_batch(x, y)),
        ("infer", lambda m: m.predict_on_batch(x)),
    ):
        run(ours)  # warm-up: tracing, first allocation
        run(reference)
        ours_times, keras_times = alternate(lambda: run(ours), lambda: run(reference), args.repeats)
        line, ratio, best = summary("ours", "keras.applications", ours_times, keras_times)
        print(f"  {ours_name} {step:5s}: {line}", flush=True)
        results[step] = (statistics.median(ours_times), statistics.median(keras_times), ratio, best)
    del ours, reference
    keras.backend.clear_session()
    return results


def variant_xla(name, args):
    plain = compile_plain(keras_apps.build(name, input_shape=(args.image_size,) * 2 + (3,)))
    xla = compile_plain(keras_apps.build(name, input_shape=(args.image_size,) * 2 + (3,)), jit_compile=True)
    x, y = batch(plain, args.batch_size)
    start = time.perf_counter()
    xla.train_on_batch(x, y)
    compile_time = time.perf_counter() - start
    plain.train_on_batch(x, y)
    xla_times, plain_times = alternate(
        lambda: xla.train_on_batch(x, y), lambda: plain.train_on_batch(x, y), args.repeats
    )
    line, _, _ = summary("jit_compile=True", "False", xla_times, plain_times)
    print(f"  XLA (train step): {line}; first XLA step incl. compilation {compile_time:.1f} s", flush=True)


def _pipeline(images, labels, image_size, batch_size, prefetch):
    def augment(image, label):
        image = tf.image.random_crop(image, (image_size, image_size, 3))
        image = tf.image.random_flip_left_right(image)
        return tf.cast(image, tf.float32) / 255.0, label

    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def variant_prefetch(name, args):
    model = compile_plain(keras_apps.build(name, input_shape=(args.image_size,) * 2 + (3,)))
    steps = args.fit_steps
    rng = np.random.default_rng(0)
    pad = args.image_size + 8
    images = rng.integers(0, 256, size=(steps * args.batch_size, pad, pad, 3), dtype=np.uint8)
    labels = rng.integers(0, model.outputs[0].shape[-1], size=(steps * args.batch_size,)).astype("int32")
    with_prefetch = _pipeline(images, labels, args.image_size, args.batch_size, True)
    without = _pipeline(images, labels, args.image_size, args.batch_size, False)

    def run(ds):
        return lambda: model.fit(ds, epochs=1, verbose=0, shuffle=False)

    run(with_prefetch)()
    run(without)()
    on, off = alternate(run(with_prefetch), run(without), args.repeats)
    on = [t / steps for t in on]
    off = [t / steps for t in off]
    line, _, _ = summary("prefetch on", "off", on, off)
    print(f"  tf.data prefetch (fit, s/step over {steps} steps): {line}", flush=True)


def variant_suite_compile(name, args):
    from keras_apps.training import compile_for_classification

    shape = (args.image_size,) * 2 + (3,)
    plain = compile_plain(keras_apps.build(name, input_shape=shape))
    suite = compile_for_classification(
        keras_apps.build(name, input_shape=shape), num_classes=plain.outputs[0].shape[-1], jit_compile=False
    )
    x, y = batch(plain, args.batch_size)
    suite.train_on_batch(x, y)
    plain.train_on_batch(x, y)
    suite_times, plain_times = alternate(
        lambda: suite.train_on_batch(x, y), lambda: plain.train_on_batch(x, y), args.repeats
    )
    line, _, _ = summary("suite compile", "plain SGD", suite_times, plain_times)
    print(f"  suite compile (SGD momentum + weight decay, top-1/top-5 metrics): {line}", flush=True)


def variant_mixed_precision(name, args, precision):
    """Train step and inference of the model built under ``precision`` ("bfloat16" or
    "float16", :func:`keras_apps.training.precision_policy`) vs float32, alternated."""
    from keras_apps.training.precision import policy_name, precision_policy

    policy = policy_name(precision)
    if precision == "float16" and not tf.config.list_logical_devices("GPU"):
        print(f"  mixed precision ({policy}): skipped: no GPU", flush=True)
        return
    shape = (args.image_size,) * 2 + (3,)
    plain = compile_plain(keras_apps.build(name, input_shape=shape))
    with precision_policy(precision):
        mixed = compile_plain(keras_apps.build(name, input_shape=shape))
    x, y = batch(plain, args.batch_size)
    for step, run in (
        ("train step", lambda m: m.train_on_batch(x, y)),
        ("inference", lambda m: m.predict_on_batch(x)),
    ):
        run(mixed)  # warm-up: tracing, first allocation
        run(plain)
        mixed_times, plain_times = alternate(lambda: run(mixed), lambda: run(plain), args.repeats)
        line, _, _ = summary(policy, "float32", mixed_times, plain_times)
        print(f"  mixed precision, {precision} {step}: {line}", flush=True)


def variant_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or repr(text)}; "
            f"choose from {', '.join(VARIANTS)}"
        )
    return names


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS),
        help="comma-separated registry or keras.applications names (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--image-size", type=positive_int, default=224)
    parser.add_argument("--repeats", type=positive_int, default=3, help="alternated timed repeats")
    parser.add_argument(
        "--fit-steps", type=positive_int, default=2, help="steps per fit() in the prefetch test"
    )
    parser.add_argument(
        "--no-variants", action="store_true", help="skip XLA / prefetch / compile / mixed precision"
    )
    parser.add_argument(
        "--no-xla", action="store_true", help="skip the XLA variant (slow to compile on a CPU)"
    )
    parser.add_argument(
        "--variants", type=variant_list, default=",".join(VARIANTS),
        help="comma-separated training-path options to time (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    pairs, ours_only = [], []
    for ours_name, keras_name in resolve([n.strip() for n in args.models.split(",") if n.strip()]):
        if ours_name is None:
            print(
                f"skipped {keras_name}: no registered builder declares it as its "
                "keras.applications twin yet"
            )
        elif keras_name is None:
            print(f"{ours_name}: no keras.applications twin, comparison skipped")
            ours_only.append(ours_name)
        else:
            pairs.append((ours_name, keras_name))
    print(
        f"batch {args.batch_size}, {args.image_size}x{args.image_size}, {args.repeats} alternated "
        f"repeats, median seconds per step; ratio = keras.applications / ours (>= 1.0: ours at "
        f"least as fast)\ndevice: {describe_device()}\n"
    )
    results = {}
    for ours_name, keras_name in pairs:
        print(f"{ours_name} vs keras.applications.{keras_name}:", flush=True)
        results[ours_name] = compare_with_keras(ours_name, keras_name, args)

    ours_names = [ours for ours, _ in pairs] + ours_only
    if ours_names and not args.no_variants:
        name = ours_names[0]
        print(f"\ntraining-path options on ours ({name}), alternated against the baseline:")
        variants = {
            "xla": variant_xla,
            "prefetch": variant_prefetch,
            "compile": variant_suite_compile,
            "bfloat16": lambda n, a: variant_mixed_precision(n, a, "bfloat16"),
            "float16": lambda n, a: variant_mixed_precision(n, a, "float16"),
        }
        for variant in VARIANTS:
            if variant not in args.variants:
                continue
            if variant == "xla" and args.no_xla:
                print("  XLA: skipped (--no-xla)")
                continue
            variants[variant](name, args)
            keras.backend.clear_session()

    if "resnet50" in results:
        ours, reference, ratio, best = results["resnet50"]["train"]
        print(
            f"\nResNet-50 bs{args.batch_size}@{args.image_size} train step (median): ours "
            f"{ours:.2f} s, keras.applications {reference:.2f} s (ratio {ratio:.2f}, "
            f"best-of-{args.repeats} ratio {best:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
