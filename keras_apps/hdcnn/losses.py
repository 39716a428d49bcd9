"""HD-CNN's training objective (Yan et al., Sec. 4.3, Eq. 2):

    E = -(1/n) sum_i log p_{y_i}(x_i) + (lambda/2) sum_k (t_k - (1/n) sum_i B_ik)^2

The first term is the sparse cross-entropy of the ``"predictions"`` output (probabilities);
the second, the *coarse category consistency* term, keeps the mean coarse distribution of a
mini-batch at its target t_k (:meth:`Hierarchy.coarse_targets`). It does not depend on the
labels; as a Keras loss on the ``"coarse"`` output it ignores ``y_true``. Under a
``tf.distribute`` strategy with several replicas, the batch mean is that of the global batch
(:func:`keras_apps.training.engine.global_batch_mean`), as on one device.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_apps.training.engine import global_batch_mean

__all__ = ["CoarseConsistencyLoss", "coarse_consistency_loss", "hdcnn_losses"]


def _check_lam(lam):
    if isinstance(lam, bool) or not isinstance(lam, (int, float, np.floating)) or lam < 0:
        raise ValueError(f"`lam` (lambda) must be a number >= 0, got {lam!r}.")
    return float(lam)


def _check_targets(targets):
    t = np.asarray(targets, dtype=np.float64)
    if t.ndim != 1 or t.size < 2 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(
            f"`targets` must be K >= 2 non-negative coarse fractions t_k, got {targets!r}."
        )
    if not np.isclose(t.sum(), 1.0, atol=1e-4):
        raise ValueError(f"`targets` must sum to 1 (fractions over the K coarse categories), got sum {t.sum():.6f}.")
    return t


def coarse_consistency_loss(coarse_probs, targets, lam):
    """``lam/2 * sum_k (t_k - mean_i B_ik)^2`` for a batch of coarse probabilities B (N, K)."""
    lam = _check_lam(lam)
    t = _check_targets(targets)
    coarse_probs = ops.convert_to_tensor(coarse_probs)
    if coarse_probs.shape[-1] is not None and coarse_probs.shape[-1] != t.size:
        raise ValueError(
            f"`coarse_probs` has K={coarse_probs.shape[-1]} columns but {t.size} targets were given."
        )
    # the mini-batch mean: over the global batch when several replicas each hold a slice
    mean = global_batch_mean(ops.cast(coarse_probs, "float32"))
    return 0.5 * lam * ops.sum(ops.square(ops.convert_to_tensor(t, "float32") - mean))


@keras.saving.register_keras_serializable(package="keras_apps")
class CoarseConsistencyLoss(keras.losses.Loss):
    """:func:`coarse_consistency_loss` as a Keras loss for the ``"coarse"`` output; the
    labels passed with it are ignored. The batch's value is repeated for every sample, so
    Keras reduces it to that value and scales it for ``tf.distribute`` like any per-sample
    loss (Keras leaves a scalar ``call`` result unscaled, which would count the term once per
    replica)."""

    def __init__(self, targets, lam, name="coarse_consistency", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)
        self.targets = [float(v) for v in _check_targets(targets)]
        self.lam = _check_lam(lam)

    def call(self, y_true, y_pred):
        value = coarse_consistency_loss(y_pred, self.targets, self.lam)
        return ops.broadcast_to(value, ops.shape(y_pred)[:1])

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        return {**config, "targets": self.targets, "lam": self.lam}


def hdcnn_losses(model, *, lam=None, targets=None, class_counts=None):
    """The loss dict of an HD-CNN ``model``: sparse cross-entropy on its probabilities
    ``"predictions"`` and the consistency term on ``"coarse"``. ``lam`` and ``targets``
    default to the model's convention (:mod:`keras_apps.hdcnn.model`); ``class_counts``
    (training images per fine class) enter the paper's t_k."""
    from keras_apps.hdcnn.model import convention_of, hierarchy_of

    convention = convention_of(model)
    if targets is None:
        targets = hierarchy_of(model).coarse_targets(convention.targets, class_counts=class_counts)
    return {
        "predictions": keras.losses.SparseCategoricalCrossentropy(from_logits=False),
        "coarse": CoarseConsistencyLoss(targets, convention.lam if lam is None else lam),
    }
