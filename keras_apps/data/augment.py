"""Per-example preprocessing: normalisation and the papers' training augmentation.

Small fixed-size sets (CIFAR, Fashion-MNIST, digits) use the CIFAR recipe of He et al.
(2016, sec. 4.2) and Lin et al. (NIN): zero-pad by ``pad`` pixels, take a random crop of the
original size, flip horizontally with probability 1/2. ImageNet-style sets use the
Krizhevsky/Simonyan/He recipe: resize the shorter side to ``size / 0.875`` (256 for 224),
take a random ``size`` crop and flip; evaluation takes the centre crop. A ``channels``
conversion (:mod:`keras_apps.data.channels`) comes first, on the raw pixels.

Random ops are stateless (``tf.random.stateless_*``) keyed on a per-example seed, so the
output depends only on the image and its seed, never on thread scheduling. Images are in
[0, 255] pixel units until :func:`normalize` (the modes of
:mod:`keras_apps.data.preprocessing`).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_apps.data._base import CROP_FRACTION, DatasetInfo
from keras_apps.data.channels import convert_channels
from keras_apps.data.preprocessing import denormalize, preprocess_images

__all__ = [
    "normalize",
    "denormalize",
    "pad_crop_flip",
    "random_pad_crop_flip",
    "resize_shorter_side",
    "center_crop",
    "random_crop_flip",
    "make_preprocess",
]


def normalize(images, info_or_mean, std=None):
    """``images`` (in [0, 255] pixel units, numpy or tf) as ``load`` delivers them: with a
    :class:`DatasetInfo`, preprocessed by its ``preprocessing`` mode (default
    ``(images - info.mean) / info.std`` per channel); with ``mean, std``, ``(images - mean)
    / std``."""
    if isinstance(info_or_mean, DatasetInfo):
        return preprocess_images(images, info_or_mean.preprocessing, info_or_mean)
    if std is None:
        raise TypeError("Pass a DatasetInfo, or both `mean` and `std`.")
    mean, std = np.float32(info_or_mean), np.float32(std)
    if isinstance(images, np.ndarray):
        return ((images.astype(np.float32) - mean) / std).astype(np.float32)
    return (tf.cast(images, tf.float32) - mean) / std


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def pad_crop_flip(image, offset, flip, pad):
    """Zero-pads ``image`` [H, W, C] by ``pad`` (int or (pad_h, pad_w)) on every side, takes
    the H x W window whose top-left corner is ``offset`` = (y, x) in the padded image
    (0 <= y <= 2 pad_h), and mirrors it left-right when ``flip``."""
    pad_h, pad_w = _pair(pad)
    shape = tf.shape(image)
    padded = tf.pad(image, [[pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    offset = tf.cast(offset, tf.int32)
    window = tf.slice(padded, tf.stack([offset[0], offset[1], 0]), shape)
    return tf.cond(tf.cast(flip, tf.bool), lambda: tf.reverse(window, axis=[1]), lambda: window)


def random_pad_crop_flip(image, seed, pad, flip=True):
    """:func:`pad_crop_flip` with offsets uniform in [0, 2 pad] and a flip with probability
    1/2 (if ``flip``), drawn statelessly from ``seed`` (shape [2] int)."""
    pad_h, pad_w = _pair(pad)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    offset_y = tf.random.stateless_uniform([], crop_seed, 0, 2 * pad_h + 1, dtype=tf.int32)
    offset_x = tf.random.stateless_uniform(
        [], tf.random.experimental.stateless_fold_in(crop_seed, 1), 0, 2 * pad_w + 1, dtype=tf.int32
    )
    do_flip = tf.random.stateless_uniform([], flip_seed) < 0.5 if flip else False
    return pad_crop_flip(image, tf.stack([offset_y, offset_x]), do_flip, (pad_h, pad_w))


def resize_shorter_side(image, size, crop_fraction: float = CROP_FRACTION):
    """Resizes [H, W, C] (bilinear, antialiased) keeping the aspect ratio so that a
    ``size`` = (h, w) crop covers ``crop_fraction`` of it: the scale is
    ``max(h / H, w / W) / crop_fraction`` (shorter side 256 for a 224 crop)."""
    target_h, target_w = _pair(size)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.maximum(target_h / shape[0], target_w / shape[1]) / crop_fraction
    new_h = tf.maximum(tf.cast(tf.math.ceil(shape[0] * scale), tf.int32), target_h)
    new_w = tf.maximum(tf.cast(tf.math.ceil(shape[1] * scale), tf.int32), target_w)
    return tf.image.resize(tf.cast(image, tf.float32), tf.stack([new_h, new_w]), antialias=True)


def center_crop(image, size):
    """The central ``size`` = (h, w) window of [H, W, C] (H >= h, W >= w)."""
    target_h, target_w = _pair(size)
    shape = tf.shape(image)
    top = (shape[0] - target_h) // 2
    left = (shape[1] - target_w) // 2
    return tf.slice(image, tf.stack([top, left, 0]), tf.stack([target_h, target_w, shape[2]]))


def random_crop_flip(image, size, seed):
    """A ``size`` window at a uniform position, mirrored with probability 1/2, both drawn
    statelessly from ``seed``."""
    target_h, target_w = _pair(size)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = tf.shape(image)
    window = tf.image.stateless_random_crop(
        image, tf.stack([target_h, target_w, shape[2]]), crop_seed
    )
    do_flip = tf.random.stateless_uniform([], flip_seed) < 0.5
    return tf.cond(do_flip, lambda: tf.reverse(window, axis=[1]), lambda: window)


def make_preprocess(
    info: DatasetInfo, *, native_shape, image_size, augment: bool, source_channels=None
):
    """Returns ``fn(image, label, seed)`` -> (float32 [h, w, C] preprocessed by
    ``info.preprocessing``, int32 label).

    ``info.image_shape`` is the default delivered shape (C the delivered channels),
    ``image_size`` = (h, w) the requested one, ``native_shape`` the stored shape (``None``
    if it varies), ``source_channels`` the stored channel count when it differs from C
    (the raw pixels are converted first, :func:`keras_apps.data.channels.convert_channels`).
    ``seed`` is only used when ``augment``.
    """
    target_h, target_w = image_size
    channels = info.image_shape[2]
    default_h, default_w = info.image_shape[:2]
    pad = (
        int(math.floor(info.pad * target_h / default_h + 0.5)),
        int(math.floor(info.pad * target_w / default_w + 0.5)),
    )
    flip = info.augmentation.endswith("_flip")
    needs_resize = native_shape is None or tuple(native_shape[:2]) != (target_h, target_w)
    convert = source_channels is not None and source_channels != channels

    def fn(image, label, seed=None):
        x = convert_channels(image, channels) if convert else tf.cast(image, tf.float32)
        if info.augmentation == "resize_crop_flip":
            x = resize_shorter_side(x, (target_h, target_w))
            x = (
                random_crop_flip(x, (target_h, target_w), seed)
                if augment
                else center_crop(x, (target_h, target_w))
            )
        else:
            if needs_resize:
                x = tf.image.resize(x, (target_h, target_w), antialias=True)
            if augment:
                x = random_pad_crop_flip(x, seed, pad, flip=flip)
        x = tf.ensure_shape(x, (target_h, target_w, channels))
        x = preprocess_images(x, info.preprocessing, info)
        label = tf.nest.map_structure(
            lambda t: tf.cast(t, tf.int32) if t.dtype.is_integer else t, label
        )
        return x, label

    return fn
