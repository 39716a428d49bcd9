"""The localization network (Sec. 4.2): a box regressor on the classifier's frozen features.

The paper replaces the classifier layers by a regression network that reads the same pooled
feature map (pool5 of the fast model, pool6 of the accurate one) -- two fully connected layers
of 4096 and 1024 units and a class-specific output layer of 4 box edges per class -- and trains
it with an L2 loss between the predicted and the true box, the feature extractor fixed, only on
windows whose box overlaps the window by more than 50%, at several scales.

Box parametrisation (ours; the paper does not publish one): a window of side ``F`` (the
network's field of view) centred at ``(cx, cy)`` predicts, for each class, the edges of the
box relative to its centre in units of the window side,

    t = ((x1 - cx) / F, (y1 - cy) / F, (x2 - cx) / F, (y2 - cy) / F),

so that a box filling the window is ``(-0.5, -0.5, 0.5, 0.5)``, the targets are O(1) for the
L2 loss, and a horizontal flip of the window maps ``t`` to ``(-t3, t2, -t1, t4)``
(:func:`encode_boxes`, :func:`decode_boxes`, :func:`flip_targets`).
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
from keras import ops

from keras_apps.overfeat.dense import feature_layer

__all__ = [
    "BoxRegressionLoss",
    "REGRESSOR_UNITS",
    "decode_boxes",
    "encode_boxes",
    "flip_targets",
    "regression_head",
    "regression_targets",
]

#: The paper's regression network: FC 4096 -> FC 1024 -> 4 per class.
REGRESSOR_UNITS = (4096, 1024)


def encode_boxes(boxes, windows):
    """Boxes ``(..., 4)`` as regression targets of the windows ``(..., 4)`` (both x1, y1, x2,
    y2 in the same pixels; windows square of side F): ``(box - window centre) / F``."""
    boxes = np.asarray(boxes, np.float32)
    windows = np.asarray(windows, np.float32)
    side = windows[..., 2:3] - windows[..., 0:1]
    cx = (windows[..., 0:1] + windows[..., 2:3]) / 2
    cy = (windows[..., 1:2] + windows[..., 3:4]) / 2
    centre = np.concatenate([cx, cy, cx, cy], axis=-1)
    return ((boxes - centre) / side).astype(np.float32)


def decode_boxes(targets, windows):
    """Inverse of :func:`encode_boxes`: ``targets (..., 4)`` of windows ``(..., 4)`` (windows
    broadcast against the targets' leading axes) to boxes in the windows' pixels."""
    targets = np.asarray(targets, np.float32)
    windows = np.asarray(windows, np.float32)
    side = windows[..., 2:3] - windows[..., 0:1]
    cx = (windows[..., 0:1] + windows[..., 2:3]) / 2
    cy = (windows[..., 1:2] + windows[..., 3:4]) / 2
    centre = np.concatenate([cx, cy, cx, cy], axis=-1)
    return (targets * side + centre).astype(np.float32)


def flip_targets(targets):
    """Targets of the horizontally mirrored window: ``(-t3, t2, -t1, t4)`` (works on numpy
    and tensors, last axis 4)."""
    t = targets
    return ops.stack([-t[..., 2], t[..., 1], -t[..., 0], t[..., 3]], axis=-1)


def regression_targets(class_ids, boxes, windows):
    """``(n, 5)`` float32 rows ``[class, t1, t2, t3, t4]`` that :class:`BoxRegressionLoss` reads."""
    class_ids = np.asarray(class_ids, np.float32).reshape(-1, 1)
    return np.concatenate([class_ids, encode_boxes(boxes, windows)], axis=1).astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_apps")
class BoxRegressionLoss(keras.losses.Loss):
    """L2 loss of the class-specific regressor (Sec. 4.2): ``y_true`` rows ``[class, t1..t4]``,
    ``y_pred`` ``(N, 4 * classes)`` (class c's edges at ``4c:4c+4``); the loss of a window is
    ``sum_k (y_pred[4 class + k] - t_k)^2``, only the true class's four outputs get a
    gradient."""

    def __init__(self, name="box_regression", reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        classes = ops.shape(y_pred)[-1] // 4
        predicted = ops.reshape(y_pred, (-1, classes, 4))
        chosen = ops.one_hot(ops.cast(y_true[:, 0], "int32"), classes)
        boxes = ops.sum(predicted * ops.expand_dims(chosen, -1), axis=1)
        return ops.sum(ops.square(boxes - y_true[:, 1:]), axis=-1)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}


def _default_units(classifier) -> tuple[int, int]:
    """The paper's (4096, 1024) scaled by the classifier's widest hidden FC over 4096 (the
    narrow CPU variants, FC 512, get (512, 128))."""
    dense = [layer.units for layer in classifier.layers if isinstance(layer, keras.layers.Dense)]
    hidden = dense[:-1]  # the last Dense is the classifier
    widest = max(hidden) if hidden else REGRESSOR_UNITS[0]
    factor = min(1.0, widest / REGRESSOR_UNITS[0])
    return tuple(max(1, int(round(u * factor))) for u in REGRESSOR_UNITS)


def regression_head(
    classifier: keras.Model,
    classes: int,
    *,
    units=None,
    at: str | None = None,
    name: str = "regressor",
) -> keras.Model:
    """The box regression network on ``classifier``'s feature extractor.

    Returns a functional model from the classifier's input to ``boxes`` ``(N, 4 * classes)``
    (window-normalised edges, see the module docstring): Flatten -> ``reg_fc1`` (ReLU) ->
    ``reg_fc2`` (ReLU) -> ``boxes``, reading the output of ``at`` (default: the last pooling
    before the classifier's Flatten, :func:`keras_apps.overfeat.dense.feature_layer`). The
    feature layers are the classifier's own (shared weights) and are frozen, as in the
    paper; ``units`` defaults to (4096, 1024) scaled to the classifier's FC width.
    """
    if not isinstance(classifier, keras.Model):
        raise TypeError(f"`classifier` must be a keras.Model, got {type(classifier).__name__}.")
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 1:
        raise ValueError(f"`classes` must be a positive integer, got {classes!r}.")
    units = _default_units(classifier) if units is None else tuple(units)
    if len(units) != 2 or any(
        isinstance(u, bool) or not isinstance(u, numbers.Integral) or u < 1 for u in units
    ):
        raise ValueError(f"`units` must be two positive integers (the paper: 4096, 1024), got {units!r}.")
    at = feature_layer(classifier) if at is None else at
    names = [layer.name for layer in classifier.layers]
    if at not in names:
        raise ValueError(f"Layer {at!r} is not in {classifier.name!r}; its layers: {', '.join(names)}.")
    features = classifier.get_layer(at).output
    frozen = names[: names.index(at) + 1]
    for layer_name in frozen:
        classifier.get_layer(layer_name).trainable = False
    x = keras.layers.Flatten(name="reg_flatten")(features)
    x = keras.layers.Dense(units[0], activation="relu", name="reg_fc1")(x)
    x = keras.layers.Dense(units[1], activation="relu", name="reg_fc2")(x)
    boxes = keras.layers.Dense(4 * int(classes), name="boxes", dtype="float32")(x)
    return keras.Model(classifier.inputs, boxes, name=name)
