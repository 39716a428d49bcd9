"""Choosing a ``tf.distribute`` strategy by name."""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "one-device", "multi-worker")


def get_strategy(name: str = "auto", devices=None) -> tf.distribute.Strategy:
    """Returns the strategy ``name`` names.

    - ``"auto"``: ``MirroredStrategy`` over all GPUs when there are two or more, else
      ``OneDeviceStrategy`` on the only GPU or the CPU.
    - ``"mirrored"``: ``MirroredStrategy`` (synchronous data parallelism) over ``devices``
      (default: every GPU, else the logical CPU devices).
    - ``"one-device"``: ``OneDeviceStrategy`` on the first GPU, else the CPU.
    - ``"multi-worker"``: ``MultiWorkerMirroredStrategy`` over the cluster that the
      ``TF_CONFIG`` environment variable describes (every worker runs the same program with
      its own ``task``; README, *Training on a cluster*). It must be created before
      TensorFlow runs anything else in the process.

    Every strategy trains through the same loop (:mod:`keras_apps.training.engine`): Keras 3
    ``Model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras#20585).
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")
    if name == "multi-worker":
        return _multi_worker()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one-device"
    if name == "one-device":
        device = devices[0] if devices else (gpus[0].name if gpus else "/cpu:0")
        return tf.distribute.OneDeviceStrategy(device)
    if devices is None:
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def _multi_worker() -> tf.distribute.Strategy:
    from keras_apps.training.engine import tf_config

    config = tf_config()
    if config is None:
        raise ValueError(
            "Strategy 'multi-worker' reads the cluster from the TF_CONFIG environment variable, "
            "which is not set; set it on every worker, e.g. TF_CONFIG='{\"cluster\": {\"worker\":"
            " [\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": "
            "0}}' (index 1 on the second host)."
        )
    task = config["task"]
    members = config["cluster"].get(task.get("type"), [])
    index = task.get("index")
    if not isinstance(index, int) or not 0 <= index < len(members):
        raise ValueError(
            f"TF_CONFIG's task {task!r} is not a member of its cluster {config['cluster']!r}: "
            "'type' must be one of the cluster's job names and 'index' a position in its list."
        )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:
        raise RuntimeError(
            f"MultiWorkerMirroredStrategy could not start ({err}); it must be created before "
            "TensorFlow runs any operation in the process."
        ) from err
