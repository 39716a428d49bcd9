"""AlexNet (Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NIPS 2012).

The paper's network (Sec. 3.5, Fig. 2) as a single tower: the two GPU halves are merged, so
every convolution sees all channels of the layer below (the paper's conv2, conv4 and conv5
only saw the half on their own GPU). Layer widths are the paper's:

    conv1 96 11x11/4 -> LRN -> maxpool 3/2 -> conv2 256 5x5 -> LRN -> maxpool 3/2
    -> conv3 384 3x3 -> conv4 384 3x3 -> conv5 256 3x3 -> maxpool 3/2
    -> FC 4096 -> dropout 0.5 -> FC 4096 -> dropout 0.5 -> FC classes

with ReLU after every hidden layer, local response normalisation (Sec. 3.3: k=2, n=5,
alpha=1e-4, beta=0.75) and overlapping pooling (Sec. 3.4). The input is 227x227 (the size
for which conv1 yields the paper's 55x55 maps; the text's "224" does not divide).
62,378,344 parameters; merging the towers adds 1.4M to the paper's 61M ("60 million").
It is not the torchvision variant (64-192-384-256-256, from "One weird trick", no LRN).
"""

from __future__ import annotations

import keras

from keras_apps.layers import LocalResponseNormalization
from keras_apps.models import _common
from keras_apps.registry import register_model

PAPER = "Krizhevsky, Sutskever, Hinton, ImageNet Classification with Deep Convolutional Neural Networks, NIPS 2012"

#: Sec. 3.3: k=2, n=5, alpha=1e-4, beta=0.75.
LRN_ARGS = {"size": 5, "k": 2.0, "alpha": 1e-4, "beta": 0.75}


def _conv(filters, kernel_size, name, strides=1, padding="same"):
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, activation="relu", name=name
    )


@register_model(
    "alexnet",
    family="alexnet",
    paper=PAPER,
    input_shape=(227, 227, 3),
    classes=1000,
    params=62_378_344,
    feature_layers={
        "conv1": "pool1",
        "conv2": "pool2",
        "conv5": "pool5",
    },
    min_size=67,
    classifier_layer="predictions",
    logits_layer="predictions",
)
def alexnet(
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=0.5,
    name=None,
):
    """AlexNet, single tower (see the module docstring). ``dropout`` is the paper's 0.5 on
    FC-6 and FC-7 (Sec. 4.2); ``min_size`` 67 is the smallest input that survives the three
    3x3/2 poolings."""
    input_shape = _common.validate_builder_args(
        model_name="alexnet",
        include_top=include_top,
        weights=weights,
        input_shape=input_shape,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        default_input_shape=(227, 227, 3),
        min_size=67,
        fixed_size_top=True,
    )
    _common.check_rate("dropout", dropout)
    inputs, x = _common.image_input(input_shape, input_tensor)

    x = _conv(96, 11, "conv1", strides=4, padding="valid")(x)
    x = LocalResponseNormalization(**LRN_ARGS, name="norm1")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = _conv(256, 5, "conv2")(x)
    x = LocalResponseNormalization(**LRN_ARGS, name="norm2")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = _conv(384, 3, "conv3")(x)
    x = _conv(384, 3, "conv4")(x)
    x = _conv(256, 3, "conv5")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool5")(x)

    if include_top:
        x = _common.fully_connected_head(
            x, units=(4096, 4096), names=("fc6", "fc7"), dropout=dropout,
            dropout_names=("drop6", "drop7"), classes=classes,
            classifier_activation=classifier_activation,
        )
    else:
        x = _common.global_pool(x, pooling)
    return _common.finish(inputs, x, model_name="alexnet", name=name, weights=weights)
