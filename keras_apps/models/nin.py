"""Network in Network (Lin, Chen, Yan, "Network In Network", ICLR 2014).

An mlpconv block is a spatial convolution followed by two 1x1 convolutions ("cccp" layers in
the authors' Caffe files), each with ReLU: a small multilayer perceptron slid over the image.
The classifier is a last 1x1 convolution with one channel per class followed by global
average pooling, no fully connected layer.

- ``nin_cifar``: 3 mlpconv blocks (the CIFAR network, and HD-CNN's building block with the
  layer names of HD-CNN's Caffe release: conv1, cccp1, cccp2, pool1, drop1, ...).
- ``nin_imagenet``: 4 mlpconv blocks (the ImageNet network of the NIN model zoo, 7.6M
  parameters).

Deviation from the paper: by default (``batch_norm=True``) every hidden convolution is
followed by BatchNormalization (Ioffe & Szegedy 2015) before its ReLU, and has no bias. The
paper's plain network (``batch_norm=False``) does not train with this suite's recipe (SGD
lr 0.05, momentum 0.9, cosine): with Glorot initialisation the activations shrink about 7x
from conv1 to cccp6, the initial logits are nearly constant and digits (width 0.25) stays at
chance for 6 epochs, learns briefly and collapses back to ln(10) loss within 20; with He
initialisation the initial logits are large, the first steps shrink every activation about
10x and it returns to the same plateau (chance, or 0.26 top-1 after 6 epochs, by seed);
Caffe's gaussian(0.05), LeCun, a small classifier init and lr 0.01-0.02 stay at chance too.
With BatchNormalization and the paper's dropout 0.5 it reaches 0.44 test top-1 after 4
epochs (0.71 after 6); dropout before a BN layer shifts the variance that BN normalises by
between training and inference (Li et al., "Understanding the Disharmony between Dropout
and Batch Normalization", CVPR 2019), so with ``batch_norm`` the dropout rate defaults to 0
(0.97 test top-1 after 4 epochs, like ResNet-20; 0.88 with rate 0.2). The layers drop1,
drop2 (drop3 on ImageNet) stay in the graph. The layer names (conv1, cccp1, ...) are the
paper's; each ReLU is a layer ``<name>_relu``, each BN ``<name>_bn``.

Pooling uses ``padding="same"`` on CIFAR (32 -> 16 -> 8) and ``"valid"`` on ImageNet
(224 -> 54 -> 26 -> 12 -> 5); Caffe's ceil-mode pooling differs by at most one pixel and
does not change the parameter count.
"""

from __future__ import annotations

import keras

from keras_apps.models import _common
from keras_apps.registry import register_model

PAPER = "Lin, Chen, Yan, Network In Network, ICLR 2014"


# BatchNormalization of the hidden convolutions (``batch_norm=True``, the default): moving
# averages with momentum 0.9 (as the CIFAR ResNets), so the inference statistics follow
# training within a few hundred steps.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-3


def conv_relu(x, filters, kernel_size, *, name, strides=1, padding="same", batch_norm=True):
    """Conv2D ``name`` then ReLU ``name_relu``; with ``batch_norm``, BatchNormalization
    ``name_bn`` between them and no convolution bias (BN's offset replaces it)."""
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=not batch_norm, name=name
    )(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def mlpconv(x, filters, kernel_size, *, strides=1, padding="same", names, batch_norm=True):
    """Spatial conv + two 1x1 convs (``names`` = (conv, cccp_a, cccp_b)), each a
    :func:`conv_relu`."""
    spatial, cccp_a, cccp_b = names
    x = conv_relu(x, filters[0], kernel_size, strides=strides, padding=padding, name=spatial,
                  batch_norm=batch_norm)
    x = conv_relu(x, filters[1], 1, name=cccp_a, batch_norm=batch_norm)
    return conv_relu(x, filters[2], 1, name=cccp_b, batch_norm=batch_norm)


def _scaled(width, *filters):
    return [max(1, int(round(f * width))) for f in filters]


def _check_common(width, dropout, batch_norm):
    """Validates the family's arguments; returns the dropout rate (None: 0.5 without
    batch_norm, as the paper; 0.0 with it)."""
    if not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"`width` must be a positive number (1.0 = the paper's widths), got {width!r}.")
    if not isinstance(batch_norm, bool):
        raise ValueError(f"`batch_norm` must be True or False, got {batch_norm!r}.")
    if dropout is None:
        dropout = 0.0 if batch_norm else 0.5
    _common.check_rate("dropout", dropout)
    return dropout


def _nin_top(x, *, include_top, pooling, classes, classifier_activation, names):
    """Last mlpconv block: with the top, its final 1x1 conv has ``classes`` channels and is
    averaged globally into the logits ``avg_pool`` (the NIN classifier), followed by the
    activation layer ``predictions_activation``; without it, the block stops before that conv."""
    if include_top:
        x = keras.layers.Conv2D(classes, 1, name=names[-1])(x)
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return _common.classifier_activation_layer(x, classifier_activation)
    return _common.global_pool(x, pooling)


@register_model(
    "nin_cifar",
    family="nin",
    paper=PAPER,
    input_shape=(32, 32, 3),
    classes=10,
    params=971_210,
    feature_layers={"block1": "pool1", "block2": "pool2", "block3": "cccp5_relu"},
    min_size=4,
    classifier_layer="cccp6",
    logits_layer="avg_pool",
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
    dropout=None,
    batch_norm=True,
    name=None,
):
    """NIN for CIFAR: 3 mlpconv blocks 192-160-96 (5x5), 192-192-192 (5x5), 192-192-C (3x3).

    Args:
        width: multiplier of every hidden width (0.25 trains 7x faster on a CPU).
        dropout: rate of the dropout after the first two pooling layers; None: the paper's
            0.5 without ``batch_norm``, 0.0 with it (see the module docstring).
        batch_norm: BatchNormalization between every hidden convolution and its ReLU (not
            in the paper, which trains without it; see the module docstring). False builds
            the paper's network exactly (966,986 parameters).
    """
    dropout = _check_common(width, dropout, batch_norm)
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
    x = mlpconv(x, _scaled(width, 192, 160, 96), 5, names=("conv1", "cccp1", "cccp2"), batch_norm=batch_norm)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = keras.layers.Dropout(dropout, name="drop1")(x)
    x = mlpconv(x, _scaled(width, 192, 192, 192), 5, names=("conv2", "cccp3", "cccp4"), batch_norm=batch_norm)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    x = keras.layers.Dropout(dropout, name="drop2")(x)
    f3, f5 = _scaled(width, 192, 192)
    x = conv_relu(x, f3, 3, name="conv3", batch_norm=batch_norm)
    x = conv_relu(x, f5, 1, name="cccp5", batch_norm=batch_norm)
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
    params=7_607_944,
    feature_layers={"block1": "pool1", "block2": "pool2", "block3": "pool3", "block4": "cccp7_relu"},
    min_size=67,
    classifier_layer="cccp8",
    logits_layer="avg_pool",
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
    dropout=None,
    batch_norm=True,
    name=None,
):
    """NIN for ImageNet: mlpconv 96-96-96 (11x11/4), 256-256-256 (5x5), 384-384-384 (3x3),
    1024-1024-C (3x3), max pooling 3/2 between blocks, dropout before the last block;
    ``batch_norm`` and ``dropout`` as in :func:`nin_cifar` (``batch_norm=False``: the model
    zoo's 7,595,176 parameters)."""
    dropout = _check_common(width, dropout, batch_norm)
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
                names=("conv1", "cccp1", "cccp2"), batch_norm=batch_norm)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = mlpconv(x, _scaled(width, 256, 256, 256), 5, names=("conv2", "cccp3", "cccp4"), batch_norm=batch_norm)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = mlpconv(x, _scaled(width, 384, 384, 384), 3, names=("conv3", "cccp5", "cccp6"), batch_norm=batch_norm)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool3")(x)
    x = keras.layers.Dropout(dropout, name="drop3")(x)
    f4, f7 = _scaled(width, 1024, 1024)
    x = conv_relu(x, f4, 3, name="conv4", batch_norm=batch_norm)
    x = conv_relu(x, f7, 1, name="cccp7", batch_norm=batch_norm)
    x = _nin_top(
        x,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        names=("conv4", "cccp7", "cccp8"),
    )
    return _common.finish(inputs, x, model_name="nin_imagenet", name=name, weights=weights)
