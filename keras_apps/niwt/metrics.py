"""Generalised zero-shot learning (GZSL) measures, as in Xian et al.'s benchmark (TPAMI
2018, the xlsa17 protocol) and NIWT (Selvaraju et al., ECCV 2018).

A GZSL classifier predicts over the *joint* label space (seen + unseen classes). Its test
set holds instances of seen classes (``test_seen``) and of unseen classes
(``test_unseen``):

- ``acc_s``: the mean over seen classes of each class's top-1 accuracy, computed on the
  test instances whose true class is seen (a prediction of any other class of the joint
  space, seen or unseen, is an error);
- ``acc_u``: the same over unseen classes, on the unseen test instances;
- ``H = 2 acc_s acc_u / (acc_s + acc_u)``, their harmonic mean (0 when both are 0).

Per-class means (not per-instance) keep large classes from dominating.
"""

from __future__ import annotations

import numpy as np

__all__ = ["per_class_accuracy", "gzsl_metrics"]


def _class_ids(name: str, values) -> np.ndarray:
    """A 1-D int64 array of class ids (>= 0) from ``values``; one ValueError otherwise."""
    array = np.asarray(values)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D sequence of class ids, got shape {array.shape}.")
    if array.size == 0:
        return array.astype(np.int64)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer)
        or (np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array)) and np.all(array == np.round(array)))
    ):
        raise ValueError(f"`{name}` must hold integer class ids, got dtype {array.dtype}: {array[:5]!r}...")
    array = array.astype(np.int64)
    if array.min() < 0:
        raise ValueError(f"`{name}` must hold class ids >= 0, got {sorted(set(array[array < 0].tolist()))}.")
    return array


def _predicted_ids(y_pred, n: int) -> tuple[np.ndarray, int | None]:
    """``y_pred`` as (n,) predicted ids and the number of score columns (None for ids)."""
    array = np.asarray(y_pred)
    if array.ndim == 2:
        if array.shape[0] != n:
            raise ValueError(f"`y_pred` has {array.shape[0]} rows of scores for {n} values of `y_true`.")
        if array.shape[1] == 0:
            raise ValueError("`y_pred` scores have 0 columns (classes).")
        if not np.issubdtype(array.dtype, np.number) or array.dtype == bool:
            raise ValueError(f"`y_pred` scores must be numbers, got dtype {array.dtype}.")
        return np.argmax(array, axis=1).astype(np.int64), int(array.shape[1])
    if array.ndim != 1:
        raise ValueError(
            f"`y_pred` must be (n,) predicted class ids or (n, C) scores, got shape {array.shape}."
        )
    ids = _class_ids("y_pred", array)
    if ids.shape[0] != n:
        raise ValueError(f"`y_pred` holds {ids.shape[0]} predictions for {n} values of `y_true`.")
    return ids, None


def per_class_accuracy(y_true, y_pred, classes) -> np.ndarray:
    """Top-1 accuracy of the instances of each class of ``classes``.

    Args:
        y_true: (n,) true class ids.
        y_pred: (n,) predicted class ids, or (n, C) scores (the prediction is the argmax
            over all C columns).
        classes: the class ids to report, in the order wanted.

    Returns:
        (len(classes),) float64: entry k is the share of the instances with true class
        ``classes[k]`` that are predicted as ``classes[k]``.

    Raises:
        ValueError: a class of ``classes`` without instances in ``y_true`` (named), repeated
            classes, ``classes`` empty, lengths that differ, ids that are not ints >= 0, or ids
            out of the range of the score columns.
    """
    y_true = _class_ids("y_true", y_true)
    predicted, columns = _predicted_ids(y_pred, y_true.shape[0])
    classes = _class_ids("classes", classes)
    if classes.size == 0:
        raise ValueError("`classes` is empty: name at least one class id.")
    unique, counts = np.unique(classes, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"`classes` repeats the ids {unique[counts > 1].tolist()}.")
    if columns is not None:
        for name, ids in (("y_true", y_true), ("classes", classes)):
            if ids.size and ids.max() >= columns:
                raise ValueError(
                    f"`{name}` holds class ids {sorted(set(ids[ids >= columns].tolist()))} out of the "
                    f"range 0..{columns - 1} of the {columns} score columns of `y_pred`."
                )
    missing = [int(c) for c in classes if not np.any(y_true == c)]
    if missing:
        raise ValueError(f"classes {missing} have no instances in `y_true`: their accuracy is undefined.")
    return np.array([np.mean(predicted[y_true == c] == c) for c in classes], dtype=np.float64)


def gzsl_metrics(y_true, y_pred, seen, unseen) -> dict:
    """GZSL seen/unseen per-class accuracy and their harmonic mean (module docstring).

    Args:
        y_true: (n,) true class ids in the joint label space; every id must be in ``seen``
            or in ``unseen``, and every class of ``seen`` and ``unseen`` must have test
            instances (else its accuracy is undefined).
        y_pred: (n,) predicted ids or (n, C) scores over the joint space (argmax over all C
            columns, seen and unseen alike).
        seen: the seen class ids. unseen: the unseen class ids (disjoint from ``seen``).

    Returns:
        ``{"acc_s": float, "acc_u": float, "H": float}``, each in [0, 1].

    Raises:
        ValueError: overlapping ``seen``/``unseen`` (the shared ids are named), an empty
            ``y_true``/``seen``/``unseen``, lengths that differ, true ids outside
            ``seen`` and ``unseen``, ids out of the range of the score columns, a class
            without test instances.
    """
    y_true = _class_ids("y_true", y_true)
    if y_true.size == 0:
        raise ValueError("`y_true` is empty: there are no test instances to score.")
    predicted, columns = _predicted_ids(y_pred, y_true.shape[0])
    seen = _class_ids("seen", seen)
    unseen = _class_ids("unseen", unseen)
    for name, ids in (("seen", seen), ("unseen", unseen)):
        if ids.size == 0:
            raise ValueError(f"`{name}` is empty: GZSL needs at least one {name} class.")
    overlap = sorted(set(seen.tolist()) & set(unseen.tolist()))
    if overlap:
        raise ValueError(f"`seen` and `unseen` must be disjoint; both hold the class ids {overlap}.")
    if columns is not None:
        for name, ids in (("seen", seen), ("unseen", unseen), ("y_true", y_true)):
            if ids.max() >= columns:
                raise ValueError(
                    f"`{name}` holds class ids {sorted(set(ids[ids >= columns].tolist()))} out of the "
                    f"range 0..{columns - 1} of the {columns} score columns of `y_pred`."
                )
    stray = sorted(set(y_true.tolist()) - set(seen.tolist()) - set(unseen.tolist()))
    if stray:
        raise ValueError(f"`y_true` holds class ids {stray} that are in neither `seen` nor `unseen`.")
    is_seen = np.isin(y_true, seen)
    acc_s = float(np.mean(per_class_accuracy(y_true[is_seen], predicted[is_seen], seen)))
    acc_u = float(np.mean(per_class_accuracy(y_true[~is_seen], predicted[~is_seen], unseen)))
    harmonic = 0.0 if acc_s + acc_u == 0 else 2.0 * acc_s * acc_u / (acc_s + acc_u)
    return {"acc_s": acc_s, "acc_u": acc_u, "H": float(harmonic)}
