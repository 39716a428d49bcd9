"""Representative images for post-training integer quantisation (TFLite calibration).

The converter runs the float model on these images to fix the int8 range of every
activation, so they must look like the images the deployed model will see (same
preprocessing, same value range). Random data gives wrong ranges; none is invented here.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import tensorflow as tf

from keras_apps.models._common import INPUT_NAME

__all__ = ["as_tflite_dataset", "calibration_images"]

_ACCEPTED = (
    "a numpy array of images (N, H, W, C), a tf.data.Dataset of images or (images, labels) "
    "(batched or not), or a callable returning an iterable of such batches"
)


def calibration_images(data, input_shape: tuple, *, limit: int) -> np.ndarray:
    """Up to ``limit`` float32 images of shape ``input_shape`` (H, W, C) taken from ``data``.

    ``data`` is a numpy array ``(N, H, W, C)`` (or a single image ``(H, W, C)``), a
    ``tf.data.Dataset`` whose elements are images, ``(images, labels)`` or
    ``{"image": images, ...}``, batched or not, or a callable returning an iterable of such
    elements (TFLite-style generators yielding ``[images]`` work too).
    """
    if data is None:
        raise ValueError(
            "`representative_data` is required for format 'tflite_int8': the int8 ranges are "
            f"calibrated on real images. Pass {_ACCEPTED}."
        )
    if isinstance(data, (np.ndarray, tf.Tensor, tuple, list, dict)):
        elements: Iterable = [data]
    elif isinstance(data, tf.data.Dataset):
        elements = data.as_numpy_iterator()
    elif callable(data):
        elements = data()
        if not isinstance(elements, Iterable):
            raise TypeError(
                f"`representative_data` callable returned {type(elements).__name__}, not an "
                "iterable of image batches."
            )
    else:
        raise TypeError(f"`representative_data` must be {_ACCEPTED}; got {type(data).__name__}.")

    batches, count = [], 0
    for element in elements:
        images = _images_of(element, input_shape)
        batches.append(images[: limit - count])
        count += len(batches[-1])
        if count >= limit:
            break
    if count == 0:
        raise ValueError("`representative_data` yielded no images.")
    images = np.concatenate(batches, axis=0)
    if not np.all(np.isfinite(images)):
        raise ValueError("`representative_data` contains NaN or infinite values.")
    return images


def _images_of(element, input_shape: tuple) -> np.ndarray:
    if isinstance(element, dict):
        if INPUT_NAME not in element:
            raise ValueError(
                f"`representative_data` yields dicts with keys {sorted(element)}; expected the "
                f"image under {INPUT_NAME!r}."
            )
        element = element[INPUT_NAME]
    elif isinstance(element, (tuple, list)):
        if not 1 <= len(element) <= 3:
            raise ValueError(
                "`representative_data` yields sequences of length "
                f"{len(element)}; expected images, [images] or (images, labels[, weights])."
            )
        element = element[0]
    images = np.asarray(element, dtype=np.float32)
    if images.ndim == len(input_shape):
        images = images[None]
    if images.ndim != len(input_shape) + 1 or any(
        want is not None and got != want for got, want in zip(images.shape[1:], input_shape)
    ):
        raise ValueError(
            f"`representative_data` images have shape {images.shape[1:]} (batch "
            f"{images.shape[:1]}); the model expects {tuple(input_shape)}."
        )
    return images


def as_tflite_dataset(images: np.ndarray) -> Callable[[], Iterable[list]]:
    """The converter's ``representative_dataset``: one single-image batch per step."""

    def generator():
        for image in images:
            yield [image[None]]

    return generator
