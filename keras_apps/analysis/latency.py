"""Measured inference latency and throughput on the current device.

Each batch size is timed with ``model.predict_on_batch`` (Keras' compiled predict function,
the path ``model.predict`` takes) on random inputs: ``warmup`` untimed calls (tracing and
first-call allocation), then ``repeats`` timed calls; the median is reported. On a shared
or loaded machine single timings vary by +-10% (docs: stack-facts), so compare models by
ratios over alternated repeats (``tools/bench_throughput.py``), not by one table.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import keras
import numpy as np

__all__ = ["describe_device", "measure_latency"]


def _check_positive_ints(name, values) -> tuple:
    try:
        values = tuple(values)
    except TypeError:
        values = (values,)
    if not values:
        raise ValueError(f"`{name}` must name at least one batch size, got {values!r}.")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be positive integers, got {value!r} in {values!r}.")
    return tuple(int(v) for v in values)


def _random_inputs(model, batch_size, input_shape, rng):
    shapes = [tuple(x.shape[1:]) for x in model.inputs]
    if input_shape is not None:
        given = [input_shape] if not isinstance(input_shape[0], (tuple, list)) else input_shape
        shapes = [tuple(s) for s in given]
    arrays = []
    for x, shape in zip(model.inputs, shapes):
        if any(d is None for d in shape):
            raise ValueError(
                f"Input {x.name!r} of model {model.name!r} has the undefined shape "
                f"{tuple(x.shape)}: pass `input_shape` (without the batch dimension)."
            )
        dtype = keras.backend.standardize_dtype(x.dtype)
        if dtype.startswith("int") or dtype.startswith("uint"):
            arrays.append(rng.integers(0, 2, size=(batch_size,) + shape).astype(dtype))
        else:
            arrays.append(rng.uniform(0.0, 1.0, size=(batch_size,) + shape).astype("float32"))
    return arrays[0] if len(arrays) == 1 else arrays


def _gpu_peak_bytes():
    """Peak device memory of GPU:0 since the last reset (TensorFlow backend), else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if not tf.config.list_logical_devices("GPU"):
        return None
    return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


def _reset_gpu_peak():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")


def measure_latency(
    model: keras.Model,
    batch_sizes=(1, 8, 32),
    *,
    warmup: int = 1,
    repeats: int = 5,
    input_shape=None,
    seed: int = 0,
) -> dict:
    """Median inference time per batch for each batch size.

    Args:
        model: any ``keras.Model`` (its inputs' shapes must be known, or ``input_shape``).
        batch_sizes: batch sizes to time.
        warmup: untimed calls per batch size before timing.
        repeats: timed calls per batch size; the median is reported.
        input_shape: per-example input shape (a list of shapes for several inputs).

    Returns:
        ``{batch_size: {"latency_s": median seconds per batch, "per_image_s":
        latency / batch size, "throughput": images per second, "times_s": all timings,
        "device_peak_bytes": peak GPU memory during the timed calls, None on CPU}}``.
    """
    batch_sizes = _check_positive_ints("batch_sizes", batch_sizes)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"`warmup` must be a non-negative integer, got {warmup!r}.")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"`repeats` must be a positive integer, got {repeats!r}.")
    rng = np.random.default_rng(seed)
    results = {}
    for batch_size in batch_sizes:
        inputs = _random_inputs(model, batch_size, input_shape, rng)
        for _ in range(warmup):
            model.predict_on_batch(inputs)
        _reset_gpu_peak()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.predict_on_batch(inputs)
            times.append(time.perf_counter() - start)
        latency = statistics.median(times)
        results[batch_size] = {
            "latency_s": latency,
            "per_image_s": latency / batch_size,
            "throughput": batch_size / latency,
            "times_s": times,
            "device_peak_bytes": _gpu_peak_bytes(),
        }
    return results


def describe_device() -> str:
    """One line naming the device the measurements ran on and the software versions."""
    parts = []
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            parts.append(f"GPU {details.get('device_name', gpus[0].name)}")
        versions = f"TensorFlow {tf.__version__}, Keras {keras.__version__}"
    else:
        versions = f"Keras {keras.__version__} ({keras.backend.backend()} backend)"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    parts.append(f"CPU {cpu} ({os.cpu_count()} logical cores)")
    return "; ".join(parts) + f"; {versions}"
