"""Choosing a ``tf.distribute`` strategy by name."""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "one-device")


def get_strategy(name: str = "auto", devices=None) -> tf.distribute.Strategy:
    """Returns the strategy ``name`` names.

    - ``"auto"``: ``MirroredStrategy`` over all GPUs when there are two or more, else
      ``OneDeviceStrategy`` on the only GPU or the CPU.
    - ``"mirrored"``: ``MirroredStrategy`` (synchronous data parallelism) over ``devices``
      (default: every GPU, else the logical CPU devices).
    - ``"one-device"``: ``OneDeviceStrategy`` on the first GPU, else the CPU.

    Multi-worker training (``MultiWorkerMirroredStrategy``) fails with Keras 3 ``fit`` on
    this stack (keras#20585) and is not offered here.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one-device"
    if name == "one-device":
        device = devices[0] if devices else (gpus[0].name if gpus else "/cpu:0")
        return tf.distribute.OneDeviceStrategy(device)
    if devices is None:
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
