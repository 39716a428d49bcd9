"""Top-k accuracy where ties count against the model.

A sample with true class ``y`` is correct when fewer than ``k`` other classes score at
least as high as ``y``: ``#{c != y : s_c >= s_y} < k``. Keras' ``top_k`` ranking breaks
ties by class index, so a model that outputs one-hot probabilities gets top-5 error 0 on
any 5-class problem and credit on a 1000-class one whenever the label is among the first
zero-scored classes; here a tie with the true class's score is a miss. A NaN true-class
score is a miss.
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
from keras import ops


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"`k` must be a positive integer, got {k!r}.")
    return int(k)


def top_k_correct(labels, scores, k: int = 5):
    """Per-sample 1.0/0.0 (float32): whether fewer than ``k`` other classes
    score >= the true class. ``labels``: integer class ids, shape (N,) or (N, 1);
    ``scores``: (N, classes)."""
    k = _check_k(k)
    scores = ops.convert_to_tensor(scores)
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    true_score = ops.take_along_axis(scores, ops.expand_dims(labels, -1), axis=-1)
    others = ops.logical_not(ops.cast(ops.one_hot(labels, ops.shape(scores)[-1]), "bool"))
    at_least_as_high = ops.logical_and(ops.greater_equal(scores, true_score), others)
    rivals = ops.sum(ops.cast(at_least_as_high, "int32"), axis=-1)
    correct = ops.logical_and(ops.less(rivals, k), ops.logical_not(ops.isnan(true_score[:, 0])))
    return ops.cast(correct, "float32")


@keras.saving.register_keras_serializable(package="keras_apps")
class TopKAccuracy(keras.metrics.MeanMetricWrapper):
    """Mean top-``k`` accuracy for sparse integer labels; ties count against
    (:func:`top_k_correct`). Default name ``top{k}``."""

    def __init__(self, k: int = 5, name: str | None = None, dtype=None):
        k = _check_k(k)
        super().__init__(fn=top_k_correct, name=name or f"top{k}", dtype=dtype, k=k)
        self.k = k
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "k": self.k}


def top_k_accuracy(labels, scores, k: int = 5) -> float:
    """Fraction of samples whose true class has fewer than ``k`` other classes scoring
    >= it (numpy; ``labels`` (N,) or (N, 1) integer ids, ``scores`` (N, classes))."""
    k = _check_k(k)
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(f"`scores` must have shape (N, classes) with N > 0, got {scores.shape}.")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (scores.shape[0],):
        raise ValueError(
            f"`labels` must have shape ({scores.shape[0]},) to match `scores` {scores.shape}, "
            f"got {labels.shape}."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise ValueError("`labels` must be integer class ids.")
        labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(
            f"`labels` must lie in [0, {scores.shape[1]}), got values "
            f"{labels.min()}..{labels.max()}."
        )
    rows = np.arange(len(labels))
    true_score = scores[rows, labels][:, None]
    at_least_as_high = scores >= true_score
    at_least_as_high[rows, labels] = False
    correct = (at_least_as_high.sum(axis=1) < k) & ~np.isnan(true_score[:, 0])
    return float(correct.mean())
