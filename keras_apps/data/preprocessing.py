"""Input preprocessing modes: the dataset's own statistics or the ImageNet conventions of
pretrained weights (``keras.applications.imagenet_utils.preprocess_input``).

Pixels are RGB in [0, 255], channels last, numpy or tf:

- ``"dataset"``: ``(x - info.mean) / info.std`` per channel (the dataset's statistics).
- ``"caffe"``: RGB -> BGR, then subtract the ImageNet BGR mean (103.939, 116.779, 123.68).
- ``"torch"``: ``x / 255``, then ``(x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)``.
- ``"tf"``: ``x / 127.5 - 1``.
- ``"raw"``: the pixels as float32, unchanged.

"caffe" and "torch" carry per-channel RGB constants and need 3-channel images: grayscale
images raise a ValueError naming the mode and the channel count (use "dataset", "tf" or
"raw", or load them with ``channels=3``). :func:`denormalize` inverts every mode.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_apps.data._base import DatasetInfo

__all__ = ["PREPROCESSING_MODES", "check_mode", "preprocess_images", "denormalize"]

PREPROCESSING_MODES = ("dataset", "caffe", "torch", "tf", "raw")

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
_RGB_MODES = ("caffe", "torch")


def check_mode(mode, channels: int | None = None, info: DatasetInfo | None = None) -> str:
    """``mode`` if it is one of :data:`PREPROCESSING_MODES` usable with ``channels``
    channels (and, for "dataset", with ``info``); a ValueError saying what is allowed
    otherwise."""
    if not isinstance(mode, str) or mode not in PREPROCESSING_MODES:
        raise ValueError(
            f"Unknown preprocessing {mode!r}; allowed: {', '.join(PREPROCESSING_MODES)}."
        )
    if mode in _RGB_MODES and channels is not None and channels != 3:
        raise ValueError(
            f"preprocessing={mode!r} needs 3-channel RGB images, got {channels} channel(s); "
            f"use 'dataset', 'tf' or 'raw' for these images, or deliver them as RGB with "
            f"channels=3 (CLI: --channels 3)."
        )
    if mode == "dataset" and info is None:
        raise ValueError(
            "preprocessing='dataset' needs the DatasetInfo (its mean and std): "
            "preprocess_images(pixels, 'dataset', info)."
        )
    return mode


def _channels(images) -> int | None:
    channels = images.shape[-1] if len(images.shape) else None
    return None if channels is None else int(channels)


def preprocess_images(pixels, mode: str, info: DatasetInfo | None = None):
    """``pixels`` (RGB, [0, 255], channels last, numpy or tf) preprocessed by ``mode``
    (one of :data:`PREPROCESSING_MODES`; "dataset" uses ``info.mean`` / ``info.std``).
    Returns float32 of the same kind (numpy in, numpy out)."""
    check_mode(mode, _channels(pixels), info)
    numpy = isinstance(pixels, np.ndarray)
    x = pixels.astype(np.float32) if numpy else tf.cast(pixels, tf.float32)
    if mode == "raw":
        return x
    if mode == "dataset":
        mean, std = np.float32(info.mean), np.float32(info.std)
        return ((x - mean) / std).astype(np.float32) if numpy else (x - mean) / std
    if mode == "tf":
        return x / np.float32(127.5) - np.float32(1.0)
    if mode == "torch":
        mean, std = np.float32(TORCH_MEAN), np.float32(TORCH_STD)
        return (x / np.float32(255.0) - mean) / std
    x = x[..., ::-1] if numpy else tf.reverse(x, axis=[-1])
    return x - np.float32(CAFFE_BGR_MEAN)


def denormalize(images, info_or_mean, std=None):
    """Inverse of :func:`preprocess_images`: back to RGB [0, 255] pixel units (float32),
    e.g. ``plt.imshow(denormalize(x, info)[0] / 255)``. Pass the :class:`DatasetInfo` of
    the load (its ``preprocessing`` says which mode to invert), or ``mean, std`` to invert
    ``(x - mean) / std``."""
    if isinstance(info_or_mean, DatasetInfo):
        info = info_or_mean
        mode = check_mode(info.preprocessing, info=info)
    elif std is None:
        raise TypeError("Pass a DatasetInfo, or both `mean` and `std`.")
    else:
        info, mode = None, "dataset"
    numpy = isinstance(images, np.ndarray)
    x = images.astype(np.float32) if numpy else tf.cast(images, tf.float32)
    if info is None:
        mean, std = np.float32(info_or_mean), np.float32(std)
        return (x * std + mean).astype(np.float32) if numpy else x * std + mean
    if mode == "dataset":
        mean, std = np.float32(info.mean), np.float32(info.std)
        out = x * std + mean
    elif mode == "torch":
        out = (x * np.float32(TORCH_STD) + np.float32(TORCH_MEAN)) * np.float32(255.0)
    elif mode == "tf":
        out = (x + np.float32(1.0)) * np.float32(127.5)
    elif mode == "caffe":
        out = x + np.float32(CAFFE_BGR_MEAN)
        out = out[..., ::-1] if numpy else tf.reverse(out, axis=[-1])
    else:
        out = x
    return out.astype(np.float32) if numpy else out
