"""Training windows for the classifier and the box regressor (Sec. 4.2, 4.6).

The paper trains the classifier on crops at the network's input size and the regressor "only
on windows whose box overlaps the field of view by more than 50%", at several scales; the
detector adds a background class trained on negative windows. :func:`sample_windows` draws
those windows from annotated images:

* **object windows** -- for every ground-truth box and every scale ``s`` at which the box's
  longer side is within ``size_range`` of the field of view ``F`` (the network sees each
  object at the scales where it fills a sensible part of its window), ``per_box`` windows of
  side ``F`` in the scaled image (``F / s`` in the original), centred on the box centre plus a
  uniform jitter of up to half the dense stride in x and y (the dense grid always has a
  window that close). A window is kept when more than ``min_coverage`` of the box's area lies
  inside it; its label is the box's class and its regression target that box.
* **background windows** -- windows at random positions of each scale in which no box of a
  size valid at that scale is covered by more than ``background_coverage``; label
  ``num_classes`` (the background class), no regression target.

Everything is numpy and seeded; :func:`crop_windows` cuts the windows out of the images
(bilinear, ``tf.image.crop_and_resize``) at ``F x F``.
"""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

from keras_apps.overfeat.boxes import area, intersection

__all__ = ["Windows", "box_coverage", "crop_windows", "sample_windows"]


def box_coverage(boxes, windows):
    """Share of each box's area inside each window: ``(n_boxes, n_windows)``."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    windows = np.asarray(windows, np.float32).reshape(-1, 4)
    return intersection(boxes, windows) / np.maximum(area(boxes), 1e-12)[:, None]


class Windows(dict):
    """The sampled windows: a dict of aligned arrays ``image`` (int, index into the records),
    ``window`` (n, 4) float32 in the original image's pixels, ``scale`` (n,), ``label`` (n,)
    int32 (``num_classes`` = background) and ``box`` (n, 4) float32 (the regression target in
    original pixels; NaN for background). ``len()`` is the number of windows."""

    def __len__(self):
        return len(self["label"])

    def subset(self, mask) -> "Windows":
        return Windows({key: value[mask] for key, value in self.items()})


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"`{name}` must be a number > 0, got {value!r}.")
    return float(value)


def sample_windows(
    records,
    *,
    num_classes: int,
    field_of_view: int,
    stride: int,
    scales=(1.0,),
    per_box: int = 1,
    size_range=(0.25, 1.0),
    min_coverage: float = 0.5,
    max_per_class: int | None = None,
    background_per_image: int = 2,
    background_coverage: float = 0.5,
    seed: int = 0,
) -> Windows:
    """Object and background windows of ``records`` (see the module docstring).

    Args:
        records: per image a mapping with ``boxes`` (n, 4) in pixels, ``classes`` (n,) ints,
            ``width`` and ``height``.
        num_classes: object classes; the background label is ``num_classes``.
        field_of_view, stride: the network's window side ``F`` and dense stride in input
            pixels (:func:`keras_apps.overfeat.dense.dense_geometry`).
        scales: image scales; a window of side F at scale s covers F / s original pixels.
        per_box: jittered windows per box and valid scale.
        size_range: (lo, hi): a box is an object at scale s when ``lo <= s * longer side / F
            <= hi``.
        max_per_class: at most this many object windows per class, image and scale (chosen at
            random; BCCD has ~10 red cells per image and one white cell). None: all.
        background_per_image: random background windows tried per image and scale.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}.")
    fov = _check_positive("field_of_view", field_of_view)
    stride = _check_positive("stride", stride)
    scales = tuple(_check_positive("scales", s) for s in scales)
    if not scales:
        raise ValueError("`scales` must name at least one scale, got an empty list.")
    lo, hi = size_range
    if not 0 <= lo < hi:
        raise ValueError(f"`size_range` must be (lo, hi) with 0 <= lo < hi, got {size_range!r}.")
    for name, value in (("min_coverage", min_coverage), ("background_coverage", background_coverage)):
        if not 0 <= value < 1:
            raise ValueError(f"`{name}` must be in [0, 1), got {value!r}.")
    rng = np.random.default_rng(seed)
    rows = {"image": [], "window": [], "scale": [], "label": [], "box": []}

    def add(index, window, scale, label, box):
        rows["image"].append(index)
        rows["window"].append(window)
        rows["scale"].append(scale)
        rows["label"].append(label)
        rows["box"].append(box)

    for index, record in enumerate(records):
        boxes = np.asarray(record["boxes"], np.float64).reshape(-1, 4)
        classes = np.asarray(record["classes"], np.int64).reshape(-1)
        if len(boxes) != len(classes):
            raise ValueError(
                f"Record {index}: {len(boxes)} boxes but {len(classes)} class ids."
            )
        if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(
                f"Record {index}: class ids must be in [0, {num_classes}), got {sorted(set(classes.tolist()))}."
            )
        width, height = float(record["width"]), float(record["height"])
        longer = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        for scale in scales:
            side = fov / scale  # window side in original pixels
            half_jitter = stride / scale / 2
            valid = (longer * scale >= lo * fov) & (longer * scale <= hi * fov)
            for c in range(num_classes):
                members = np.flatnonzero(valid & (classes == c))
                if max_per_class is not None and len(members) > max_per_class:
                    members = rng.choice(members, max_per_class, replace=False)
                for b in members:
                    cx = (boxes[b, 0] + boxes[b, 2]) / 2
                    cy = (boxes[b, 1] + boxes[b, 3]) / 2
                    for _ in range(per_box):
                        jx, jy = rng.uniform(-half_jitter, half_jitter, 2)
                        x1, y1 = cx + jx - side / 2, cy + jy - side / 2
                        window = np.array([x1, y1, x1 + side, y1 + side])
                        if box_coverage(boxes[b], window)[0, 0] > min_coverage:
                            add(index, window, scale, c, boxes[b])
            candidates = boxes[valid]
            for _ in range(background_per_image):
                x1 = rng.uniform(0, max(width - side, 0))
                y1 = rng.uniform(0, max(height - side, 0))
                window = np.array([x1, y1, x1 + side, y1 + side])
                if len(candidates) == 0 or box_coverage(candidates, window).max() <= background_coverage:
                    add(index, window, scale, num_classes, np.full(4, np.nan))
    if not rows["label"]:
        return Windows(
            image=np.zeros(0, np.int64), window=np.zeros((0, 4), np.float32),
            scale=np.zeros(0, np.float32), label=np.zeros(0, np.int32), box=np.zeros((0, 4), np.float32),
        )
    return Windows(
        image=np.asarray(rows["image"], np.int64),
        window=np.asarray(rows["window"], np.float32),
        scale=np.asarray(rows["scale"], np.float32),
        label=np.asarray(rows["label"], np.int32),
        box=np.asarray(rows["box"], np.float32),
    )


def crop_windows(images, windows: Windows, size: int, *, batch_size: int = 256) -> np.ndarray:
    """``(n, size, size, C)`` uint8 crops of ``windows`` from ``images`` (a sequence of
    (H, W, C) uint8 arrays indexed by ``windows["image"]``), bilinear
    (``tf.image.crop_and_resize``); parts of a window outside its image are zero."""
    size = int(size)
    count = len(windows["image"])
    channels = np.asarray(images[0]).shape[-1] if len(images) else 3
    out = np.zeros((count, size, size, channels), np.uint8)
    order = np.argsort(windows["image"], kind="stable")
    start = 0
    while start < count:
        image_index = windows["image"][order[start]]
        stop = start
        while stop < count and windows["image"][order[stop]] == image_index:
            stop += 1
        image = np.asarray(images[image_index])
        h, w = image.shape[:2]
        for chunk in range(start, stop, batch_size):
            rows = order[chunk:min(stop, chunk + batch_size)]
            x1, y1, x2, y2 = windows["window"][rows].T
            # crop_and_resize samples pixel centres: box [y1, x1, y2, x2] normalised by (h - 1, w - 1)
            # maps output pixel i to input coordinate y1 + i (y2 - y1) / (size - 1).
            step_x = (x2 - x1) / size
            step_y = (y2 - y1) / size
            norm = np.stack([
                (y1 + step_y / 2 - 0.5) / max(h - 1, 1),
                (x1 + step_x / 2 - 0.5) / max(w - 1, 1),
                (y2 - step_y / 2 - 0.5) / max(h - 1, 1),
                (x2 - step_x / 2 - 0.5) / max(w - 1, 1),
            ], axis=1).astype(np.float32)
            crops = tf.image.crop_and_resize(
                tf.convert_to_tensor(image[None], tf.float32), norm,
                tf.zeros(len(rows), tf.int32), (size, size), extrapolation_value=0.0,
            )
            out[rows] = np.clip(np.round(crops.numpy()), 0, 255).astype(np.uint8)
        start = stop
    return out
