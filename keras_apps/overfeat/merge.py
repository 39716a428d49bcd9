"""OverFeat's greedy merge of predicted boxes (Sermanet et al., 2014, Sec. 4.3).

The paper's loop: with ``B`` the union over scales of the boxes predicted for the top-k
classes at every location,

    repeat:
        (b1, b2) = argmin_{b1 != b2 in B} match_score(b1, b2)
        if match_score(b1, b2) > t: stop
        B = B \\ {b1, b2} ∪ {box_merge(b1, b2)}

``match_score`` is "the sum of the distance between centers of the two bounding boxes and
the intersection area of the boxes" and ``box_merge`` "the average of the bounding boxes'
coordinates". The paper gives no normalisation, so here (a dissimilarity that is 0 for
identical boxes and grows as they part)::

    match_score(b1, b2) = ||c1 - c2|| / s  +  (1 - |b1 ∩ b2| / min(|b1|, |b2|)),
    s = (sqrt|b1| + sqrt|b2|) / 2,

``c`` the box centres, ``|.|`` areas. The first term is the centre distance in units of the
boxes' mean side (scale free, so the same threshold serves every scale); the second is 0
when the smaller box lies inside the larger and 1 when they are disjoint, so disjoint boxes
score > 1 and never merge at the default ``t = 0.5``. Two equal squares shifted by a
quarter of their side score 0.25 + 0.25 = 0.5 (IoU 0.6); by a half, 0.5 + 0.5 = 1.

Only boxes of the same class merge. A merged box stands for the original boxes merged into
it: its coordinates are the mean of theirs (the paper's average for two originals; merging
a merged box with a third keeps every original's weight equal) and its score is the sum of
their scores (the paper's "summed confidence"), so a location predicted by many windows
and scales outranks a lone detection.
"""

from __future__ import annotations

import numbers

import numpy as np

from keras_apps.overfeat.boxes import as_boxes

__all__ = ["match_score", "pairwise_match_scores", "greedy_merge"]


def pairwise_match_scores(a, b) -> np.ndarray:
    """``(n, m)`` :func:`match_score` of every box of ``a`` (n, 4) with every box of ``b``
    (m, 4), float64."""
    a = np.asarray(as_boxes(a, name="a"), np.float64)
    b = np.asarray(as_boxes(b, name="b"), np.float64)
    return _pairwise(a, b)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    dx = (a[:, None, 0] + a[:, None, 2] - b[None, :, 0] - b[None, :, 2]) / 2
    dy = (a[:, None, 1] + a[:, None, 3] - b[None, :, 1] - b[None, :, 3]) / 2
    side = (np.sqrt(area_a)[:, None] + np.sqrt(area_b)[None, :]) / 2
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(width, 0) * np.maximum(height, 0)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.hypot(dx, dy) / side + (1 - inter / smaller)


def match_score(b1, b2) -> float:
    """The dissimilarity of two boxes ``(x1, y1, x2, y2)`` (module docstring):
    ``||c1 - c2|| / ((sqrt|b1| + sqrt|b2|) / 2) + 1 - |b1 ∩ b2| / min(|b1|, |b2|)``; 0 for
    identical boxes, > 1 for disjoint ones."""
    pair = np.stack([as_boxes([b1], name="b1")[0], as_boxes([b2], name="b2")[0]])
    _check_valid(pair, "boxes")
    return float(_pairwise(pair[:1].astype(np.float64), pair[1:].astype(np.float64))[0, 0])


def _check_valid(boxes: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"`{name}` row {row} {boxes[row].tolist()} is not a valid box; boxes are finite "
            f"(x1, y1, x2, y2) with x2 > x1 and y2 > y1."
        )


def _merge_class(boxes: np.ndarray, scores: np.ndarray, threshold: float):
    """The greedy loop on one class's boxes (float64): merged boxes and summed scores.

    The pairwise matrix ``M`` is kept with each row's minimum and its column; a merge of
    ``a < b`` writes the merged box into slot ``a``, retires slot ``b``, recomputes row and
    column ``a`` and only the rows whose minimum sat in column ``a`` or ``b`` (every other
    row's minimum can only fall to the new ``M[k, a]``): O(n^2) memory, O(n) per merge in
    the usual case. Ties go to the lowest index (``np.argmin``)."""
    n = len(boxes)
    if n < 2:
        return boxes, scores
    sums = boxes.copy()
    counts = np.ones(n)
    total = scores.copy()
    current = boxes.copy()
    active = np.ones(n, bool)
    matrix = _pairwise(current, current)
    np.fill_diagonal(matrix, np.inf)
    row_min = matrix.min(axis=1)
    row_arg = matrix.argmin(axis=1)
    # per-slot columns for the O(n) row update (retired slots hold inf-producing values
    # and are masked anyway)
    x1, y1, x2, y2 = (current[:, k].copy() for k in range(4))
    box_area = (x2 - x1) * (y2 - y1)
    root = np.sqrt(box_area)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    while True:
        i = int(np.argmin(row_min))
        if not row_min[i] <= threshold:
            break
        a, b = sorted((i, int(row_arg[i])))
        sums[a] += sums[b]
        counts[a] += counts[b]
        total[a] += total[b]
        current[a] = sums[a] / counts[a]
        active[b] = False
        x1[a], y1[a], x2[a], y2[a] = current[a]
        box_area[a] = (x2[a] - x1[a]) * (y2[a] - y1[a])
        root[a] = np.sqrt(box_area[a])
        cx[a], cy[a] = (x1[a] + x2[a]) / 2, (y1[a] + y2[a]) / 2
        stale = np.flatnonzero((row_arg == a) | (row_arg == b))
        matrix[b, :] = np.inf
        matrix[:, b] = np.inf
        inter = np.maximum(np.minimum(x2, x2[a]) - np.maximum(x1, x1[a]), 0) * np.maximum(
            np.minimum(y2, y2[a]) - np.maximum(y1, y1[a]), 0
        )
        new = np.hypot(cx - cx[a], cy - cy[a]) / ((root + root[a]) / 2) + (
            1 - inter / np.minimum(box_area, box_area[a])
        )
        new[~active] = np.inf
        new[a] = np.inf
        matrix[a, :] = new
        matrix[:, a] = new
        better = new < row_min
        row_min[better] = new[better]
        row_arg[better] = a
        stale = stale[active[stale]]
        if stale.size:
            row_min[stale] = matrix[stale].min(axis=1)
            row_arg[stale] = matrix[stale].argmin(axis=1)
        row_min[a] = new.min()
        row_arg[a] = new.argmin()
        row_min[b] = np.inf
    return current[active], total[active]


def greedy_merge(
    boxes,
    scores,
    classes=None,
    *,
    threshold: float = 0.5,
    min_score: float | None = None,
    max_boxes: int | None = None,
):
    """Merges ``boxes`` (n, 4) with ``scores`` (n,) and ``classes`` (n,) int (``None``: one
    class) by OverFeat's greedy loop (module docstring): while the most similar pair of
    boxes of one class has :func:`match_score` <= ``threshold``, replace the pair by their
    merge (the mean of the original boxes both stand for, carrying the sum of their
    scores).

    Args:
        threshold: the paper's ``t``; merging stops when every same-class pair scores more.
        min_score: drop boxes scoring below it before merging (``None``: keep all).
        max_boxes: keep only the ``max_boxes`` best-scoring boxes before merging (ties:
            the earlier box), bounding the O(n^2) pair matrix (``None``: all).

    Returns:
        ``(boxes float32 (m, 4), scores float32 (m,), classes int32 (m,))`` sorted by score,
        highest first (ties: lower class, then the order of first appearance). With
        ``classes=None`` the classes are all 0.
    """
    boxes = as_boxes(boxes)
    _check_valid(boxes, "boxes")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"`scores` holds {scores.shape[0]} values for {boxes.shape[0]} boxes; one per box."
        )
    if not np.isfinite(scores).all():
        raise ValueError("`scores` must be finite.")
    if classes is None:
        classes = np.zeros(len(boxes), np.int64)
    else:
        classes = np.asarray(classes).reshape(-1)
        if classes.shape[0] != boxes.shape[0] or (
            classes.size and not np.issubdtype(classes.dtype, np.integer)
        ):
            raise ValueError(
                f"`classes` must hold one integer class id per box ({boxes.shape[0]}), got "
                f"{classes.shape[0]} values of dtype {classes.dtype}."
            )
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not np.isfinite(threshold):
        raise ValueError(f"`threshold` must be a finite number, got {threshold!r}.")
    keep = np.arange(len(boxes))
    if min_score is not None:
        keep = keep[scores[keep] >= min_score]
    if max_boxes is not None:
        if isinstance(max_boxes, bool) or not isinstance(max_boxes, numbers.Integral) or max_boxes < 1:
            raise ValueError(f"`max_boxes` must be a positive integer or None, got {max_boxes!r}.")
        keep = np.sort(keep[np.argsort(-scores[keep], kind="stable")[:max_boxes]])
    boxes64 = boxes[keep].astype(np.float64)
    scores, classes = scores[keep], classes[keep]
    out_boxes, out_scores, out_classes = [], [], []
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        merged, total = _merge_class(boxes64[members], scores[members], float(threshold))
        out_boxes.append(merged)
        out_scores.append(total)
        out_classes.append(np.full(len(total), c, np.int64))
    if not out_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
    out_boxes = np.concatenate(out_boxes)
    out_scores = np.concatenate(out_scores)
    out_classes = np.concatenate(out_classes)
    order = np.argsort(-out_scores, kind="stable")
    return (
        out_boxes[order].astype(np.float32),
        out_scores[order].astype(np.float32),
        out_classes[order].astype(np.int32),
    )
