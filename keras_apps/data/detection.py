"""The ``label="boxes"`` pipeline: PASCAL VOC folders (``bccd``, ``voc_folder`` or a VOC
folder path) as batches of ``(images, {"boxes", "classes", "difficult"})``.

- images: float32 [B, H, W, 3], RGB pixels mapped by ``preprocessing`` (default
  "dataset": ImageNet's mean/std, as the other large-image sets);
- ``"boxes"``: tf.RaggedTensor float32 [B, None, 4], ``(x1, y1, x2, y2)`` in pixels of the
  delivered image; ``"classes"``: RaggedTensor int32 [B, None] (ids into
  ``info.class_names``); ``"difficult"``: RaggedTensor bool [B, None]. Images without
  objects are kept (zero boxes).

Sizes: ``image_size=None`` delivers ``info.image_shape`` (the first training image's
annotated size: 480 x 640 for BCCD); every image is resized (bilinear, antialiased, no
crop, aspect ratio not kept) to the delivered size and its boxes scaled by the same
factors, ``x * W_out / W_in`` and ``y * H_out / H_in``.

Training augmentation (``augment=True``, the default for the training split): a random
crop with scale jitter and a random horizontal flip, drawn statelessly from a per-example
seed (same ``seed`` -> same batches, as the other sets). The crop keeps the aspect ratio:
side factor ``s ~ U(min_crop_scale, 1)`` (default 0.5), crop ``round(s H_in) x round(s W_in)``
at a uniform position, resized to the delivered size; each box is clipped to the crop and
dropped when less than half of its area stays inside (its class and flag with it); the
flip maps ``x -> W_out - x`` (``x1' = W_out - x2``, ``x2' = W_out - x1``).
:func:`crop_flip` is that transform for given crop and flip.
"""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

from keras_apps.data._base import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo
from keras_apps.data.preprocessing import preprocess_images
from keras_apps.data.voc import VOCFolder

__all__ = ["BOXES_AUGMENTATION", "folder_info", "crop_flip", "boxes_dataset", "MIN_KEPT_FRACTION"]

BOXES_AUGMENTATION = "crop_flip_boxes"
#: A box survives a crop when at least this share of its area stays inside.
MIN_KEPT_FRACTION = 0.5
DEFAULT_MIN_CROP_SCALE = 0.5


def folder_info(folder: VOCFolder, name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a VOC folder: its class names and splits, image counts per
    split, ImageNet statistics and the first training image's annotated size."""
    splits = folder.splits
    train_split = "train" if "train" in splits else splits[0]
    first_ids = folder.ids(train_split) or next((folder.ids(s) for s in splits if folder.ids(s)), [])
    if not first_ids:
        raise ValueError(f"VOC folder {folder.root} lists no images in its splits {splits}.")
    first = folder.annotation(first_ids[0])
    return DatasetInfo(
        name=name,
        num_classes=len(folder.class_names),
        image_shape=(first["height"], first["width"], 3),
        class_names=folder.class_names,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        splits=splits,
        source=f"PASCAL VOC folder {folder.root}",
        num_examples={s: len(folder.ids(s)) for s in splits},
        label="boxes",
        augmentation=BOXES_AUGMENTATION,
        pad=0,
        train_split=train_split,
    )


def crop_flip(image, boxes, crop, flip, out_size, *, keep=None):
    """Crops ``image`` [H, W, C] to ``crop = (top, left, height, width)``, resizes it to
    ``out_size = (H_out, W_out)`` (skipped when equal to the crop size) and mirrors it
    left-right when ``flip``; moves ``boxes`` [n, 4] with it: shift by (left, top), clip to
    the crop, scale by ``W_out / width`` and ``H_out / height``, mirror ``x -> W_out - x``.

    Returns ``(image float32 [H_out, W_out, C], boxes float32 [m, 4], kept bool [n])``:
    the boxes keeping at least :data:`MIN_KEPT_FRACTION` of their area inside the crop
    (``keep`` overrides that share), in order, and which of the ``n`` they are."""
    keep = MIN_KEPT_FRACTION if keep is None else keep
    crop = tf.cast(crop, tf.int32)
    top, left, height, width = tf.unstack(crop)
    out_h, out_w = int(out_size[0]), int(out_size[1])
    window = tf.slice(tf.cast(image, tf.float32), tf.stack([top, left, 0]), tf.stack([height, width, -1]))
    same = tf.logical_and(tf.equal(height, out_h), tf.equal(width, out_w))
    window = tf.cond(
        same,
        lambda: tf.image.resize(window, (out_h, out_w), method="nearest"),
        lambda: tf.image.resize(window, (out_h, out_w), antialias=True),
    )
    boxes = tf.reshape(tf.cast(boxes, tf.float32), (-1, 4))
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    fh, fw = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    fx, fy = tf.cast(left, tf.float32), tf.cast(top, tf.float32)
    cx1 = tf.clip_by_value(x1 - fx, 0.0, fw)
    cx2 = tf.clip_by_value(x2 - fx, 0.0, fw)
    cy1 = tf.clip_by_value(y1 - fy, 0.0, fh)
    cy2 = tf.clip_by_value(y2 - fy, 0.0, fh)
    before = (x2 - x1) * (y2 - y1)
    after = (cx2 - cx1) * (cy2 - cy1)
    kept = tf.logical_and(after > 0, after >= keep * before)
    sx, sy = out_w / fw, out_h / fh
    moved = tf.stack([cx1 * sx, cy1 * sy, cx2 * sx, cy2 * sy], axis=1)
    flip = tf.cast(flip, tf.bool)
    mirrored = tf.stack([out_w - moved[:, 2], moved[:, 1], out_w - moved[:, 0], moved[:, 3]], axis=1)
    moved = tf.where(flip, mirrored, moved)
    limits = tf.constant([out_w, out_h, out_w, out_h], tf.float32)
    moved = tf.clip_by_value(moved, 0.0, limits)  # float rounding at the edges
    window = tf.cond(flip, lambda: tf.reverse(window, axis=[1]), lambda: window)
    return window, tf.boolean_mask(moved, kept), kept


def _random_crop(seed, height, width, min_scale: float):
    """``(top, left, h, w)`` and a flip drawn statelessly from ``seed`` [2]."""
    scale_seed, y_seed, x_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    scale = tf.random.stateless_uniform([], scale_seed, min_scale, 1.0)
    fh, fw = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    h = tf.clip_by_value(tf.cast(tf.round(scale * fh), tf.int32), 1, height)
    w = tf.clip_by_value(tf.cast(tf.round(scale * fw), tf.int32), 1, width)
    top = tf.random.stateless_uniform([], y_seed, 0, height - h + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], x_seed, 0, width - w + 1, dtype=tf.int32)
    flip = tf.random.stateless_uniform([], flip_seed) < 0.5
    return tf.stack([top, left, h, w]), flip


def _check_scale(min_crop_scale) -> float:
    if (
        isinstance(min_crop_scale, bool)
        or not isinstance(min_crop_scale, numbers.Real)
        or not 0 < min_crop_scale <= 1
    ):
        raise ValueError(f"`min_crop_scale` must be a number in (0, 1], got {min_crop_scale!r}.")
    return float(min_crop_scale)


def boxes_dataset(
    folder: VOCFolder,
    info: DatasetInfo,
    split: str,
    *,
    batch_size: int,
    image_size,
    augment: bool,
    shuffle: bool,
    seed: int,
    limit: int | None = None,
    drop_remainder: bool = False,
    min_crop_scale: float = DEFAULT_MIN_CROP_SCALE,
):
    """A batched, prefetched dataset of ``(images, {"boxes", "classes", "difficult"})``
    (module docstring) over ``split`` of ``folder``, and the number of examples. ``info``
    gives the preprocessing mode and statistics; ``image_size`` = (H, W)."""
    min_crop_scale = _check_scale(min_crop_scale)
    records = folder.records(split)
    if limit is not None:
        records = records[:limit]
    count = len(records)
    out_h, out_w = image_size
    paths = tf.constant([r["image_path"] for r in records] or [""], tf.string)
    sizes = tf.constant([(r["height"], r["width"]) for r in records] or [(1, 1)], tf.int32)
    lengths = [len(r["boxes"]) for r in records]
    boxes = tf.RaggedTensor.from_row_lengths(
        np.concatenate([r["boxes"] for r in records] + [np.zeros((0, 4), np.float32)]),
        np.asarray(lengths, np.int64),
    )
    classes = tf.RaggedTensor.from_row_lengths(
        np.concatenate([r["classes"] for r in records] + [np.zeros(0, np.int32)]).astype(np.int32),
        np.asarray(lengths, np.int64),
    )
    difficult = tf.RaggedTensor.from_row_lengths(
        np.concatenate([r["difficult"] for r in records] + [np.zeros(0, bool)]),
        np.asarray(lengths, np.int64),
    )

    def example(index, example_seed):
        path = paths[index]
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.ensure_shape(image, (None, None, 3))
        shape = tf.shape(image)[:2]
        tf.debugging.assert_equal(
            shape, sizes[index],
            message="decoded image size differs from its VOC annotation's <size> (height, width)",
        )
        b, c, d = boxes[index], classes[index], difficult[index]
        if augment:
            crop, flip = _random_crop(example_seed, shape[0], shape[1], min_crop_scale)
        else:
            crop, flip = tf.stack([0, 0, shape[0], shape[1]]), tf.constant(False)
        pixels, b, kept = crop_flip(image, b, crop, flip, (out_h, out_w))
        pixels = tf.ensure_shape(pixels, (out_h, out_w, 3))
        pixels = preprocess_images(pixels, info.preprocessing, info)
        targets = {
            "boxes": tf.ensure_shape(b, (None, 4)),
            "classes": tf.boolean_mask(c, kept),
            "difficult": tf.boolean_mask(d, kept),
        }
        return pixels, targets

    indices = tf.data.Dataset.range(count)
    if shuffle and count > 1:
        indices = indices.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    seed_t = tf.constant(seed, tf.int64)
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip(indices, draws).map(
        lambda index, draw: example(index, tf.stack([draw, seed_t])),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    ds = ds.ragged_batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE), count
