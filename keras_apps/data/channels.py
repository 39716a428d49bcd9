"""Delivering a set with another channel count (``load(..., channels=1 | 3)``).

- 1 -> 3: the grey channel is repeated, RGB = (g, g, g).
- 3 -> 1: the ITU-R BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B, in float32 (no rounding;
  ``tf.image.rgb_to_grayscale`` uses 0.2989 for R and rounds integer images).

The conversion is applied to the raw [0, 255] pixels, before augmentation and
preprocessing. The "dataset" statistics follow it (:func:`converted_statistics`): a grey
mean m and std s become (m, m, m) and (s, s, s), exact. For 3 -> 1 the mean is the luma of
the per-channel means, w . mean (exact, the luma is linear), and the std is that of the
luma pixels, sqrt(w^T Sigma w) with Sigma_ij = rho_ij std_i std_j, where rho is the
channel correlation of the training pixels: measured where it is known (CIFAR-10,
:data:`keras_apps.data._base.CIFAR10_CHANNEL_CORRELATION`), else rho = 1, which gives
w . std, the largest value the per-channel stds allow (exact for perfectly correlated
channels; 3.3% above the measured luma std on CIFAR-10).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import tensorflow as tf

__all__ = ["CHANNEL_CHOICES", "LUMA_WEIGHTS", "check_channels", "convert_channels",
           "converted_statistics"]

#: The ``channels`` values ``load`` accepts besides ``None`` (the dataset's own).
CHANNEL_CHOICES = (1, 3)
#: ITU-R BT.601 luma weights of R, G, B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def check_channels(channels) -> int | None:
    """``channels`` if it is ``None``, 1 or 3; a ValueError naming it otherwise."""
    if channels is None:
        return None
    if (
        isinstance(channels, (bool, np.bool_))
        or not isinstance(channels, numbers.Integral)
        or int(channels) not in CHANNEL_CHOICES
    ):
        raise ValueError(
            f"`channels` must be None (the dataset's own), 1 (grayscale: the BT.601 luma of "
            f"RGB images) or 3 (RGB: the grey channel repeated), got {channels!r}."
        )
    return int(channels)


def convert_channels(pixels, channels: int):
    """``pixels`` (channels last, numpy or tf, any leading dims) with ``channels`` channels:
    the grey channel repeated (1 -> 3) or the BT.601 luma (3 -> 1); float32 of the same
    kind (numpy in, numpy out). Same count: the pixels as float32."""
    channels = check_channels(channels)
    if channels is None:
        raise ValueError("`channels` must be 1 or 3 for convert_channels, got None.")
    numpy = isinstance(pixels, np.ndarray)
    x = pixels.astype(np.float32) if numpy else tf.cast(pixels, tf.float32)
    have = x.shape[-1]
    if have not in CHANNEL_CHOICES:
        raise ValueError(
            f"convert_channels needs 1- or 3-channel images (channels last), got {have} "
            f"channel(s) in shape {tuple(x.shape)}."
        )
    if have == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=-1) if numpy else tf.repeat(x, 3, axis=-1)
    weights = np.asarray(LUMA_WEIGHTS, np.float32)
    if numpy:
        return (x @ weights)[..., None].astype(np.float32)
    return tf.tensordot(x, weights, [[-1], [0]])[..., None]


def converted_statistics(mean, std, channels: int, correlation=None) -> tuple[tuple, tuple]:
    """``(mean, std)`` per channel of the converted pixels, given the per-channel ``mean``
    and ``std`` of the stored ones (the module docstring has the equations);
    ``correlation`` is the 3 x 3 channel correlation of RGB pixels (``None``: all ones)."""
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) == channels:
        return mean, std
    if channels == 3:
        return mean * 3, std * 3
    rho = np.ones((3, 3)) if correlation is None else np.asarray(correlation, np.float64)
    w, sigma = np.asarray(LUMA_WEIGHTS), np.asarray(std)
    variance = float(w @ (rho * np.outer(sigma, sigma)) @ w)
    return (float(w @ np.asarray(mean)),), (math.sqrt(variance),)
