"""Axis-aligned boxes as ``(n, 4)`` float arrays ``(x1, y1, x2, y2)`` in pixels of the image
they belong to (PASCAL VOC's xmin, ymin, xmax, ymax read as given).

Areas are continuous, ``(x2 - x1) * (y2 - y1)`` (no VOC-devkit "+1"), so a box is valid when
``x2 > x1`` and ``y2 > y1``. The intersection-over-union of Everingham et al. (PASCAL VOC) is

    IoU(a, b) = |a ∩ b| / (|a| + |b| - |a ∩ b|).
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_boxes", "check_boxes", "area", "intersection", "iou", "clip_boxes", "centers"]


def as_boxes(boxes, *, name: str = "boxes") -> np.ndarray:
    """``boxes`` as a float32 ``(n, 4)`` array (an empty sequence gives ``(0, 4)``); a
    ValueError naming ``name`` when the shape is not ``(n, 4)``."""
    array = np.asarray(boxes, dtype=np.float32)
    if array.size == 0:
        return np.zeros((0, 4), np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(
            f"`{name}` must have shape (n, 4) = (x1, y1, x2, y2) per row, got shape "
            f"{array.shape}."
        )
    return array


def check_boxes(boxes, *, image_size=None, name: str = "boxes", tolerance: float = 1.0):
    """``boxes`` as float32 ``(n, 4)``, checked: every coordinate finite, ``x2 > x1`` and
    ``y2 > y1``, and with ``image_size = (height, width)`` inside ``[0, width] x [0, height]``
    up to ``tolerance`` pixels. A ValueError names the first bad row, its values and the
    rule it breaks."""
    array = as_boxes(boxes, name=name)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"`{name}` row {row} {array[row].tolist()} is not finite.")
    for axis, (lo, hi) in enumerate(((0, 2), (1, 3))):
        bad = array[:, hi] <= array[:, lo]
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            x = "xy"[axis]
            raise ValueError(
                f"`{name}` row {row} {array[row].tolist()} has {x}2 <= {x}1; boxes are "
                f"(x1, y1, x2, y2) with x2 > x1 and y2 > y1."
            )
    if image_size is not None:
        height, width = (float(v) for v in image_size)
        limits = np.array([width, height, width, height], np.float32)
        outside = ((array < -tolerance) | (array > limits + tolerance)).any(axis=1)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"`{name}` row {row} {array[row].tolist()} lies outside the {height:g}x{width:g} "
                f"(height x width) image by more than {tolerance:g} pixel(s); allowed "
                f"0 <= x <= {width:g}, 0 <= y <= {height:g}."
            )
    return array


def area(boxes) -> np.ndarray:
    """``(n,)`` areas ``(x2 - x1) * (y2 - y1)`` (0 for empty or inverted boxes)."""
    b = as_boxes(boxes)
    return np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)


def intersection(a, b) -> np.ndarray:
    """``(n, m)`` areas of the pairwise intersections of ``a`` (n, 4) and ``b`` (m, 4)."""
    a, b = as_boxes(a, name="a"), as_boxes(b, name="b")
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.maximum(width, 0) * np.maximum(height, 0)


def iou(a, b) -> np.ndarray:
    """``(n, m)`` pairwise intersection over union; 0 where the union is empty."""
    a, b = as_boxes(a, name="a"), as_boxes(b, name="b")
    inter = intersection(a, b)
    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)


def clip_boxes(boxes, height, width) -> np.ndarray:
    """``boxes`` with x clipped to ``[0, width]`` and y to ``[0, height]`` (a box wholly
    outside becomes empty: check ``area`` before using it)."""
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, height)
    return b


def centers(boxes) -> np.ndarray:
    """``(n, 2)`` box centres ``((x1 + x2) / 2, (y1 + y2) / 2)``."""
    b = as_boxes(boxes)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
