"""Benchmark: DeformableConv2D vs Conv2D with the same shapes, forward and forward+backward.

For each shape it times ``keras.layers.Conv2D`` and ``keras_apps.layers.DeformableConv2D``
(offset branch included, offsets non-zero and fractional) in three execution modes - eager
(op by op), graph (``tf.function``, what ``model.fit`` uses on a CPU) and XLA
(``tf.function(jit_compile=True)``) - and prints the times, the extra peak memory of one call
(TensorFlow's CPU allocator, ``tf.config.experimental.get_memory_info``) and the ratios
DCN / Conv2D. The two layers are timed alternately and the best of ``--repeats`` runs is kept,
which damps the noise of a shared machine. Forward+backward takes the gradients with respect
to the input and every trainable weight.

    python tools/bench_deformable.py                      # B=8: 56x56x64->64 and 14x14x256->256
    python tools/bench_deformable.py --modes graph jit --repeats 10 --modulated
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_apps.layers import DeformableConv2D  # noqa: E402

SHAPES = {"56x56x64": (56, 64, 64), "14x14x256": (14, 256, 256)}


def _layers(filters, kernel_size, modulated, offset_groups):
    conv = keras.layers.Conv2D(filters, kernel_size, padding="same")
    dcn = DeformableConv2D(
        filters, kernel_size, padding="same", modulated=modulated, offset_groups=offset_groups
    )
    return conv, dcn


def _step(layer, mode, backward):
    def forward(x):
        return layer(x)

    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y) * 0.5
        return tape.gradient(loss, [x] + layer.trainable_weights)

    fn = forward_backward if backward else forward
    if mode == "eager":
        return fn
    return tf.function(fn, jit_compile=(mode == "jit"), reduce_retracing=True)


def _run(fn, x):
    out = fn(x)
    tf.nest.map_structure(lambda t: t.numpy(), out)  # wait for the result


def _peak_bytes(fn, x):
    device = "CPU:0"
    _run(fn, x)
    tf.config.experimental.reset_memory_stats(device)
    base = tf.config.experimental.get_memory_info(device)["current"]
    _run(fn, x)
    return tf.config.experimental.get_memory_info(device)["peak"] - base


def bench_shape(name, batch, repeats, modes, kernel_size, modulated, offset_groups, rng):
    size, channels, filters = SHAPES[name]
    x = tf.constant(rng.standard_normal((batch, size, size, channels)), tf.float32)
    conv, dcn = _layers(filters, kernel_size, modulated, offset_groups)
    conv.build(x.shape)
    dcn.build(x.shape)
    # Non-trivial fractional offsets (about +-1 pixel), the same kernel for both layers.
    dcn.offset_kernel.assign(
        rng.standard_normal(dcn.offset_kernel.shape).astype("float32")
        / np.sqrt(np.prod(dcn.offset_kernel.shape[:3]))
    )
    dcn.kernel.assign(conv.kernel)
    rows = []
    for mode in modes:
        for backward in (False, True):
            fns = [_step(conv, mode, backward), _step(dcn, mode, backward)]
            for fn in fns:  # trace / compile, warm up
                _run(fn, x)
                _run(fn, x)
            best = [float("inf"), float("inf")]
            for _ in range(repeats):
                for i, fn in enumerate(fns):
                    start = time.perf_counter()
                    _run(fn, x)
                    best[i] = min(best[i], time.perf_counter() - start)
            peaks = [_peak_bytes(fn, x) for fn in fns]
            rows.append((name, mode, "fwd+bwd" if backward else "fwd", best, peaks))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--modes", nargs="+", default=["eager", "graph", "jit"],
                        choices=["eager", "graph", "jit"])
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--modulated", action="store_true", help="DCNv2 (mask branch)")
    parser.add_argument("--offset-groups", type=int, default=1)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores visible; batch {args.batch}, {args.kernel_size}x{args.kernel_size} "
        f"'same', {'DCNv2' if args.modulated else 'DCNv1'}, offset groups {args.offset_groups}; "
        f"best of {args.repeats}"
    )
    header = (
        f"{'shape':<10} {'mode':<6} {'pass':<8} {'Conv2D ms':>10} {'DCN ms':>9} {'ratio':>6} "
        f"{'Conv2D MB':>10} {'DCN MB':>8} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for name in args.shapes:
        rows = bench_shape(
            name, args.batch, args.repeats, args.modes, args.kernel_size, args.modulated,
            args.offset_groups, rng,
        )
        for shape, mode, kind, (t_conv, t_dcn), (m_conv, m_dcn) in rows:
            print(
                f"{shape:<10} {mode:<6} {kind:<8} {t_conv * 1e3:>10.1f} {t_dcn * 1e3:>9.1f} "
                f"{t_dcn / t_conv:>6.2f} {m_conv / 2**20:>10.1f} {m_dcn / 2**20:>8.1f} "
                f"{m_dcn / max(m_conv, 1):>6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
