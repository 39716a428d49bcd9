"""The three layers of HD-CNN (Yan et al., "HD-CNN: Hierarchical Deep Convolutional Neural
Networks for Large Scale Visual Recognition", ICCV 2015) that join its components:

- :class:`FineToCoarse`: the fine-to-coarse aggregation, C fine probabilities -> K coarse
  probabilities ``B_k = sum_{j in S_k} b_j`` over disjoint or overlapping sets, optionally
  renormalised over the K sets (the authors' release);
- :class:`FineScatter`: the K fine components' compact softmaxes (``|S_k|`` outputs each)
  scattered back into C-vectors with zeros outside ``S_k``, stacked to ``(N, K, C)``;
- :class:`ProbabilisticAveraging`: ``p = sum_k B_k p_k / sum_k B_k`` (the paper) or
  ``sum_k B_k p_k`` (the release), the model's class probabilities.

All three are fixed linear maps of their inputs (no weights); the sets are part of the
config, so a ``.keras`` file carries its hierarchy.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = ["FineScatter", "FineToCoarse", "ProbabilisticAveraging", "check_coarse_sets"]


def check_coarse_sets(coarse_sets, num_classes: int) -> list[list[int]]:
    """Validates K >= 2 non-empty sets of fine ids in ``0..num_classes-1`` that together
    cover every fine class; returns them as sorted lists of ints."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}.")
    try:
        sets = [sorted(int(j) for j in members) for members in coarse_sets]
    except (TypeError, ValueError):
        raise ValueError(
            f"`coarse_sets` must be a list of lists of fine class ids, got {coarse_sets!r}."
        ) from None
    if len(sets) < 2 or len(sets) > num_classes:
        raise ValueError(
            f"HD-CNN needs 2 <= K <= C coarse sets; got K={len(sets)} for C={num_classes}."
        )
    for k, members in enumerate(sets):
        if not members:
            raise ValueError(f"Coarse set {k} is empty; every coarse category needs a fine class.")
        bad = [j for j in members if not 0 <= j < num_classes]
        if bad:
            raise ValueError(
                f"Coarse set {k} names fine classes {bad}, outside 0..{num_classes - 1} (C={num_classes})."
            )
        if len(set(members)) != len(members):
            raise ValueError(f"Coarse set {k} lists a fine class twice: {members}.")
    covered = set().union(*map(set, sets))
    missing = sorted(set(range(num_classes)) - covered)
    if missing:
        raise ValueError(f"Fine classes {missing} belong to no coarse set; every class must be covered.")
    return sets


def _membership(coarse_sets, num_classes) -> np.ndarray:
    """(C, K) 0/1 matrix: column k marks the fine classes of set k."""
    matrix = np.zeros((num_classes, len(coarse_sets)), np.float32)
    for k, members in enumerate(coarse_sets):
        matrix[members, k] = 1.0
    return matrix


@keras.saving.register_keras_serializable(package="keras_apps")
class FineToCoarse(keras.layers.Layer):
    """Coarse probabilities from fine ones: ``B_k = sum_{j in S_k} b_j`` (shape (N, C) ->
    (N, K)).

    Args:
        coarse_sets: K lists of fine class ids (disjoint: the paper's aggregation with
            P^d; overlapping: the authors' release).
        num_classes: C.
        normalize: divide by ``sum_k B_k`` (the release renormalises the overlapping sums
            over the K sets; with disjoint sets the sum already is ``sum_j b_j``).
        epsilon: floor of that sum.
    """

    def __init__(self, coarse_sets, num_classes, normalize=False, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.coarse_sets = check_coarse_sets(coarse_sets, num_classes)
        self.num_classes = int(num_classes)
        self.normalize = bool(normalize)
        self.epsilon = float(epsilon)
        self._matrix = _membership(self.coarse_sets, self.num_classes)

    @property
    def produces_probabilities(self) -> bool:
        return True

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.num_classes:
            raise ValueError(
                f"{self.name} aggregates {self.num_classes} fine probabilities; its input has "
                f"{input_shape[-1]} ({tuple(input_shape)})."
            )

    def call(self, fine_probabilities):
        matrix = ops.convert_to_tensor(self._matrix, dtype=fine_probabilities.dtype)
        coarse = ops.matmul(fine_probabilities, matrix)
        if self.normalize:
            total = ops.sum(coarse, axis=-1, keepdims=True)
            coarse = coarse / ops.maximum(total, ops.cast(self.epsilon, coarse.dtype))
        return coarse

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.coarse_sets))

    def count_macs(self, input_shape, output_shape):
        """Per image, as computed: a (C, K) matrix product (:mod:`keras_apps.analysis.flops`)."""
        return self.num_classes * len(self.coarse_sets)

    def get_config(self):
        return {
            **super().get_config(),
            "coarse_sets": self.coarse_sets,
            "num_classes": self.num_classes,
            "normalize": self.normalize,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package="keras_apps")
class FineScatter(keras.layers.Layer):
    """Scatters K compact fine predictions into C classes: called on a list of K tensors
    ``(N, |S_k|)`` (fine component k's softmax over its sorted set ``S_k``), returns
    ``(N, K, C)`` with ``P[:, k, S_k[i]] = p_k[:, i]`` and zeros elsewhere.
    ``fine_to_coarse`` (optional, the disjoint assignment P^d) is only kept in the config, so
    that a saved model carries its whole hierarchy.

    :meth:`scatter` does it for one component (conditional execution runs the components
    on different samples)."""

    def __init__(self, coarse_sets, num_classes, fine_to_coarse=None, **kwargs):
        super().__init__(**kwargs)
        self.coarse_sets = check_coarse_sets(coarse_sets, num_classes)
        self.num_classes = int(num_classes)
        self.fine_to_coarse = None if fine_to_coarse is None else [int(k) for k in fine_to_coarse]
        if self.fine_to_coarse is not None and len(self.fine_to_coarse) != self.num_classes:
            raise ValueError(
                f"`fine_to_coarse` must give one coarse id per fine class ({self.num_classes}), "
                f"got {len(self.fine_to_coarse)}."
            )
        self._matrices = [
            np.eye(self.num_classes, dtype=np.float32)[members] for members in self.coarse_sets
        ]

    def build(self, input_shape):
        shapes = list(input_shape) if isinstance(input_shape, (list, tuple)) and input_shape \
            and isinstance(input_shape[0], (list, tuple)) else None
        if shapes is None or len(shapes) != len(self.coarse_sets):
            raise ValueError(
                f"{self.name} takes a list of {len(self.coarse_sets)} compact predictions, got "
                f"input shape {input_shape}."
            )
        for k, (shape, members) in enumerate(zip(shapes, self.coarse_sets)):
            if shape[-1] is not None and shape[-1] != len(members):
                raise ValueError(
                    f"Fine component {k} of {self.name} must give {len(members)} outputs (|S_{k}|), "
                    f"got shape {tuple(shape)}."
                )

    def scatter(self, k: int, compact):
        """Fine component ``k``'s compact prediction (N, |S_k|) as a C-vector (N, C)."""
        matrix = ops.convert_to_tensor(self._matrices[k], dtype=compact.dtype)
        return ops.matmul(compact, matrix)

    def call(self, compact_predictions):
        return ops.stack(
            [self.scatter(k, p) for k, p in enumerate(compact_predictions)], axis=1
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], len(self.coarse_sets), self.num_classes)

    def count_macs(self, input_shape, output_shape):
        """Per image: one (|S_k|, C) matrix product per fine component."""
        return sum(len(members) for members in self.coarse_sets) * self.num_classes

    def get_config(self):
        return {
            **super().get_config(),
            "coarse_sets": self.coarse_sets,
            "num_classes": self.num_classes,
            "fine_to_coarse": self.fine_to_coarse,
        }


@keras.saving.register_keras_serializable(package="keras_apps")
class ProbabilisticAveraging(keras.layers.Layer):
    """HD-CNN's probabilistic averaging, called as ``layer([B, P])`` with B (N, K) coarse
    probabilities and P (N, K, C) scattered fine predictions.

    ``renormalize=True`` (the paper, Eq. 1): ``p = sum_k B_k P_k / sum_k B_k``; the
    denominator is floored at ``epsilon``, so a row of B that sums to ~0 gives ~0, never
    NaN. ``renormalize=False`` (the authors' release): ``p = sum_k B_k P_k``.
    """

    def __init__(self, renormalize=True, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(renormalize, bool):
            raise ValueError(f"`renormalize` must be True or False, got {renormalize!r}.")
        if not (isinstance(epsilon, (int, float)) and epsilon > 0):
            raise ValueError(f"`epsilon` must be a positive number, got {epsilon!r}.")
        self.renormalize = renormalize
        self.epsilon = float(epsilon)

    @property
    def produces_probabilities(self) -> bool:
        return True

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"{self.name} is called on [B, P]; got input shape {input_shape}.")
        coarse, fine = input_shape
        if len(coarse) != 2 or len(fine) != 3:
            raise ValueError(
                f"{self.name} takes B of shape (N, K) and P of shape (N, K, C); got {tuple(coarse)} "
                f"and {tuple(fine)}."
            )
        if coarse[-1] is not None and fine[1] is not None and coarse[-1] != fine[1]:
            raise ValueError(
                f"{self.name}: B has K={coarse[-1]} coarse probabilities but P has {fine[1]} "
                "fine components."
            )

    def call(self, inputs):
        coarse, fine = inputs
        coarse = ops.cast(coarse, fine.dtype)
        averaged = ops.sum(coarse[:, :, None] * fine, axis=1)
        if self.renormalize:
            total = ops.sum(coarse, axis=-1, keepdims=True)
            averaged = averaged / ops.maximum(total, ops.cast(self.epsilon, averaged.dtype))
        return averaged

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], input_shape[1][2])

    def count_macs(self, input_shape, output_shape):
        """Per image: K x C products ``B_k p_k(c)``."""
        return int(input_shape[1][1]) * int(input_shape[1][2])

    def get_config(self):
        return {**super().get_config(), "renormalize": self.renormalize, "epsilon": self.epsilon}
