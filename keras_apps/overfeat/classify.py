"""Classification by dense multi-scale evaluation (OverFeat Sec. 3.3-3.5) and the 10-view
baseline it is compared with (Krizhevsky et al.'s 4 corners + centre, with flips).

    >>> dense = to_dense(model, offset_pooling=True)
    >>> scores = multi_scale_scores(dense, images, SCALES["overfeat_accurate"])  # (N, C)
    >>> baseline = ten_view_scores(model, images)

Both take preprocessed float images ``(N, H, W, C)`` and return float32 class scores
``(N, C)`` (the model's own outputs, probabilities for a softmax classifier, averaged).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_apps.overfeat import dense as dense_lib

__all__ = ["multi_scale_scores", "ten_view_scores"]


def _check_images(images, argument="images"):
    images = np.asarray(images)
    if images.ndim != 4 or not np.issubdtype(images.dtype, np.number):
        raise ValueError(
            f"`{argument}` must be a numeric array (N, H, W, C) of preprocessed images, got shape "
            f"{images.shape} ({images.dtype})."
        )
    if images.shape[0] == 0:
        raise ValueError(f"`{argument}` holds no image (shape {images.shape}).")
    return images.astype("float32", copy=False)


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    return int(batch_size)


def _select(outputs, output, model):
    if isinstance(outputs, dict):
        if output is None or output not in outputs:
            raise ValueError(
                f"{model.name!r} has outputs {sorted(outputs)}: pass `output=` naming the class "
                f"scores, got {output!r}."
            )
        return outputs[output]
    if isinstance(outputs, (list, tuple)):
        if output is None or not isinstance(output, int) or not 0 <= output < len(outputs):
            raise ValueError(
                f"{model.name!r} has {len(outputs)} outputs: pass `output=` (an index) naming the "
                f"class scores, got {output!r}."
            )
        return outputs[output]
    return outputs


def _predict(model, batch, output):
    return keras.ops.convert_to_numpy(_select(model(batch, training=False), output, model))


def multi_scale_scores(
    dense_model: keras.Model,
    images,
    scales=None,
    flips: bool = True,
    *,
    batch_size: int = 8,
    output=None,
) -> np.ndarray:
    """Class scores ``(N, C)`` of a dense model over several scales and flips (Sec. 3.3).

    Each image is resized to each scale ``(H, W)`` (``tf.image.resize``, bilinear; the aspect
    ratio follows the scale), the dense model computes its map of class scores ``(h, w, C)``,
    each class keeps its spatial maximum, and these are averaged over the scales and, with
    ``flips``, over the horizontally flipped images too ("we take the spatial max for each
    class, at a given scale and flip; average the resulting C-dimensional vectors from
    different scales and flips").

    Args:
        dense_model: a model from :func:`~keras_apps.overfeat.dense.to_dense` (or any fully
            convolutional model producing ``(N, h, w, C)`` score maps).
        images: float ``(N, H, W, C)``, preprocessed as the model expects.
        scales: sequence of ``(H, W)``; default ``SCALES[dense_model.name]`` (the paper's
            6 scales for the registered OverFeat names).
        flips: also evaluate the mirrored images.
        batch_size: images per forward pass.
        output: for a model with several outputs, the key (dict) or index (list) of the
            class scores.
    """
    images = _check_images(images)
    batch_size = _check_batch_size(batch_size)
    if not isinstance(flips, bool):
        raise TypeError(f"`flips` must be True or False, got {flips!r}.")
    if scales is None:
        if dense_model.name not in dense_lib.SCALES:
            raise ValueError(
                f"No default scales for {dense_model.name!r} (known: {sorted(dense_lib.SCALES)}): "
                "pass `scales`, a sequence of (height, width)."
            )
        scales = dense_lib.SCALES[dense_model.name]
    try:
        scales = [(int(h), int(w)) for h, w in scales]
    except (TypeError, ValueError):
        raise ValueError(f"`scales` must be a sequence of (height, width) pairs, got {scales!r}.") from None
    if not scales or any(h < 1 or w < 1 for h, w in scales):
        raise ValueError(f"`scales` must be a non-empty sequence of positive (height, width), got {scales!r}.")
    channels = dense_model.inputs[0].shape[-1]
    if channels is not None and images.shape[-1] != channels:
        raise ValueError(
            f"`images` have {images.shape[-1]} channels, {dense_model.name!r} takes {channels}."
        )
    for height, width in scales:  # each scale must give at least one window
        try:
            dense_lib.window_boxes(dense_model, height, width)
        except ValueError as err:
            raise ValueError(f"Scale {(height, width)}: {err}") from None

    total = None
    views = 0
    for height, width in scales:
        for flip in (False, True) if flips else (False,):
            maxima = []
            for start in range(0, len(images), batch_size):
                batch = tf.image.resize(images[start : start + batch_size], (height, width), method="bilinear")
                if flip:
                    batch = tf.image.flip_left_right(batch)
                maps = _predict(dense_model, batch, output)
                if maps.ndim != 4:
                    raise ValueError(
                        f"{dense_model.name!r} gives outputs of shape {maps.shape}, not score maps "
                        "(N, h, w, C): pass the dense model (to_dense(model))."
                    )
                maxima.append(maps.max(axis=(1, 2)))
            scores = np.concatenate(maxima).astype("float64")
            total = scores if total is None else total + scores
            views += 1
    return (total / views).astype("float32")


def ten_view_scores(model: keras.Model, images, crop_size=None, *, batch_size: int = 8, output=None) -> np.ndarray:
    """Class scores ``(N, C)`` averaged over 10 views: the 4 corner crops and the centre crop
    of ``crop_size`` (default the model's input size), each also mirrored (Krizhevsky et al.
    2012, the baseline of OverFeat's Table 2). The centre crop starts at ``((H - h) // 2,
    (W - w) // 2)``. An image smaller than the crop is a ValueError naming both sizes (resize
    the images first).

    Args:
        model: a classifier ``(N, h, w, C) -> (N, classes)``.
        images: float ``(N, H, W, C)``, preprocessed, at least ``crop_size``.
        crop_size: ``(h, w)``; required when the model's input size is not fixed.
        batch_size: images per forward pass.
        output: for a model with several outputs, the key or index of the class scores.
    """
    images = _check_images(images)
    batch_size = _check_batch_size(batch_size)
    if crop_size is None:
        crop_size = tuple(model.inputs[0].shape[1:3])
        if None in crop_size:
            raise ValueError(
                f"{model.name!r} takes inputs of any size {tuple(model.inputs[0].shape[1:])}: pass "
                "`crop_size` (height, width)."
            )
    try:
        crop_h, crop_w = (int(v) for v in crop_size)
    except (TypeError, ValueError):
        raise ValueError(f"`crop_size` must be (height, width), got {crop_size!r}.") from None
    if crop_h < 1 or crop_w < 1:
        raise ValueError(f"`crop_size` must be positive, got {crop_size!r}.")
    height, width = images.shape[1:3]
    if height < crop_h or width < crop_w:
        raise ValueError(
            f"The images are {height}x{width}, smaller than the {crop_h}x{crop_w} crops of "
            f"{model.name!r}: resize them first."
        )
    origins = [
        (0, 0),
        (0, width - crop_w),
        (height - crop_h, 0),
        (height - crop_h, width - crop_w),
        ((height - crop_h) // 2, (width - crop_w) // 2),
    ]
    total = None
    for top, left in origins:
        crops = images[:, top : top + crop_h, left : left + crop_w, :]
        for view in (crops, crops[:, :, ::-1, :]):
            scores = np.concatenate([
                _predict(model, np.ascontiguousarray(view[start : start + batch_size]), output)
                for start in range(0, len(images), batch_size)
            ]).astype("float64")
            if scores.ndim != 2:
                raise ValueError(
                    f"{model.name!r} gives outputs of shape {scores.shape}, not class scores (N, C)."
                )
            total = scores if total is None else total + scores
    return (total / 10).astype("float32")
