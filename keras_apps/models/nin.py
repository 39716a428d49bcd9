"""Network in Network (Lin, Chen, Yan, "Network In Network", ICLR 2014).

An mlpconv block is a spatial convolution followed by two 1x1 convolutions ("cccp" layers in
the authors' Caffe files), each with ReLU: a small multilayer perceptron slid over the image.
The classifier is a last 1x1 convolution with one channel per class followed by global
average pooling, no fully connected layer.

- ``nin_cifar``: 3 mlpconv blocks (the CIFAR network, and HD-CNN's building block with the
  layer names of HD-CNN's Caffe release: conv1, cccp1, cccp2, pool1, drop1, ...).
- ``nin_imagenet``: 4 mlpconv blocks (the ImageNet network of the NIN model zoo, 7.6M
  parameters).

Pooling uses ``padding="same"`` on CIFAR (32 -> 16 -> 8) and ``"valid"`` on ImageNet
(224 -> 54 -> 26 -> 12 -> 5); Caffe's ceil-mode pooling differs by at most one pixel and
does not change the parameter count.
"""

from __future__ import annotations

import keras

from keras_apps.models import _common
from keras_apps.registry import register_model

PAPER = "Lin, Chen, Yan, Network In Network, ICLR 2014"


def mlpconv(x, filters, kernel_size, *, strides=1, padding="same", names, last_activation="relu"):
    """Spatial conv + two 1x1 convs (``names`` = (conv, cccp_a, cccp_b)), ReLU after each."""
    spatial, cccp_a, cccp_b = names
    x = keras.layers.Conv2D(
        filters[0], kernel_size, strides=strides, padding=padding, activation="relu", name=spatial
    )(x)
    x = keras.layers.Conv2D(filters[1], 1, activation="relu", name=cccp_a)(x)
    return keras.layers.Conv2D(filters[2], 1, activation=last_activation, name=cccp_b)(x)


def _scaled(width, *filters):
    return [max(1, int(round(f * width))) for f in filters]


def _check_common(width, dropout):
    if not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"`width` must be a positive number (1.0 = the paper's widths), got {width!r}.")
    _common.check_rate("dropout", dropout)


def _nin_top(x, *, include_top, pooling, classes, classifier_activation, names):
    """Last mlpconv block: with the top, its final 1x1 conv has ``classes`` channels and is
    averaged globally (the NIN classifier); without it, the block stops before that conv."""
    if include_top:
        x = keras.layers.Conv2D(classes, 1, name=names[-1])(x)
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return keras.layers.Activation(
            classifier_activation if classifier_activation is not None else "linear",
            name="predictions",
        )(x)
    return _common.global_pool(x, pooling)


@register_model(
    "nin_cifar",
    family="nin",
    paper=PAPER,
    input_shape=(32, 32, 3),
    classes=10,
    params=966_986,
    feature_layers={"block1": "pool1", "block2": "pool2", "block3": "cccp5"},
    min_size=4,
)
def nin_cifar(
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    width=1.0,
    dropout=0.5,
    name=None,
):
    """NIN for CIFAR: 3 mlpconv blocks 192-160-96 (5x5), 192-192-192 (5x5), 192-192-C (3x3).

    Args:
        width: multiplier of every hidden width (0.25 trains 7x faster on a CPU).
        dropout: rate of the dropout after the first two pooling layers (paper: 0.5).
    """
    _check_common(width, dropout)
    input_shape = _common.validate_builder_args(
        model_name="nin_cifar",
        include_top=include_top,
        weights=weights,
        input_shape=input_shape,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        default_input_shape=(32, 32, 3),
        min_size=4,
    )
    inputs, x = _common.image_input(input_shape, input_tensor)
    x = mlpconv(x, _scaled(width, 192, 160, 96), 5, names=("conv1", "cccp1", "cccp2"))
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = keras.layers.Dropout(dropout, name="drop1")(x)
    x = mlpconv(x, _scaled(width, 192, 192, 192), 5, names=("conv2", "cccp3", "cccp4"))
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    x = keras.layers.Dropout(dropout, name="drop2")(x)
    f3, f5 = _scaled(width, 192, 192)
    x = keras.layers.Conv2D(f3, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.Conv2D(f5, 1, activation="relu", name="cccp5")(x)
    x = _nin_top(
        x,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        names=("conv3", "cccp5", "cccp6"),
    )
    return _common.finish(inputs, x, model_name="nin_cifar", name=name, weights=weights)


@register_model(
    "nin_imagenet",
    family="nin",
    paper=PAPER,
    input_shape=(224, 224, 3),
    classes=1000,
    params=7_595_176,
    feature_layers={"block1": "pool1", "block2": "pool2", "block3": "pool3", "block4": "cccp7"},
    min_size=67,
)
def nin_imagenet(
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    width=1.0,
    dropout=0.5,
    name=None,
):
    """NIN for ImageNet: mlpconv 96-96-96 (11x11/4), 256-256-256 (5x5), 384-384-384 (3x3),
    1024-1024-C (3x3), max pooling 3/2 between blocks, dropout before the last block."""
    _check_common(width, dropout)
    input_shape = _common.validate_builder_args(
        model_name="nin_imagenet",
        include_top=include_top,
        weights=weights,
        input_shape=input_shape,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        default_input_shape=(224, 224, 3),
        min_size=67,
    )
    inputs, x = _common.image_input(input_shape, input_tensor)
    x = mlpconv(x, _scaled(width, 96, 96, 96), 11, strides=4, padding="valid",
                names=("conv1", "cccp1", "cccp2"))
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = mlpconv(x, _scaled(width, 256, 256, 256), 5, names=("conv2", "cccp3", "cccp4"))
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = mlpconv(x, _scaled(width, 384, 384, 384), 3, names=("conv3", "cccp5", "cccp6"))
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool3")(x)
    x = keras.layers.Dropout(dropout, name="drop3")(x)
    f4, f7 = _scaled(width, 1024, 1024)
    x = keras.layers.Conv2D(f4, 3, padding="same", activation="relu", name="conv4")(x)
    x = keras.layers.Conv2D(f7, 1, activation="relu", name="cccp7")(x)
    x = _nin_top(
        x,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        names=("conv4", "cccp7", "cccp8"),
    )
    return _common.finish(inputs, x, model_name="nin_imagenet", name=name, weights=weights)
