"""The CIFAR-scale NIWT backbone: a narrow VGG (3x3 convolutions, 2x2 pooling, two ReLU FC
layers and the classifier) for 32x32 images.

The paper's best results use VGG16, whose importance layer (the last convolution) is
followed by FC layers, so the importance of a class depends on the instance (through the FC
layers' ReLU gates). ``vgg_niwt_cifar`` keeps that structure at CPU size: blocks of 2
convolutions (conv -> batch norm -> ReLU) with ``widths`` filters, each followed by 2x2
max pooling, then ``fc1``/``fc2`` (ReLU, dropout) and ``predictions`` + softmax, named as in
:mod:`keras_apps.models.vgg` (the last convolution is ``block3_conv2``).
"""

from __future__ import annotations

import keras

from keras_apps.models import _common

#: The layer NIWT reads importances at in ``vgg_niwt_cifar``.
IMPORTANCE_LAYER = "block3_conv2"


def vgg_niwt_cifar(
    classes: int = 10,
    *,
    input_shape=(32, 32, 3),
    widths=(32, 64, 128),
    fc_units: int = 256,
    dropout: float = 0.5,
    classifier_activation="softmax",
    name: str = "vgg_niwt_cifar",
) -> keras.Model:
    """The narrow VGG described in the module docstring (``classes`` outputs)."""
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"`classes` must be a positive integer, got {classes!r}.")
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"`widths` must be positive integers, got {widths!r}.")
    _common.check_rate("dropout", dropout)
    inputs, x = _common.image_input(tuple(input_shape))
    for block, filters in enumerate(widths, start=1):
        for index in (1, 2):
            layer = f"block{block}_conv{index}"
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{layer}_conv")(x)
            x = keras.layers.BatchNormalization(name=f"{layer}_bn")(x)
            x = keras.layers.ReLU(name=layer)(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    x = _common.fully_connected_head(
        x, units=(fc_units, fc_units), names=("fc1", "fc2"), dropout=dropout,
        dropout_names=("fc1_dropout", "fc2_dropout"), classes=classes,
        classifier_activation=classifier_activation,
    )
    return keras.Model(inputs, x, name=name)
