"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015), configurations D (VGG-16) and E (VGG-19).

Stacks of 3x3 convolutions (stride 1, same padding, ReLU) separated by 2x2 max pooling, then
FC-4096, FC-4096 and the classifier. Layer names and order are those of
``keras.applications.VGG16/19``, so their weights load into these builders in order.
"""

from __future__ import annotations

import keras

from keras_apps.models import _common
from keras_apps.registry import register_model

PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015"
_FILTERS = (64, 128, 256, 512, 512)


def _vgg(
    *,
    model_name,
    convs_per_block,
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=0.0,
    name=None,
):
    input_shape = _common.validate_builder_args(
        model_name=model_name,
        include_top=include_top,
        weights=weights,
        input_shape=input_shape,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        default_input_shape=(224, 224, 3),
        min_size=32,
        fixed_size_top=True,
    )
    _common.check_rate("dropout", dropout)
    inputs, x = _common.image_input(input_shape, input_tensor)
    for block, (filters, convs) in enumerate(zip(_FILTERS, convs_per_block), start=1):
        for index in range(1, convs + 1):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", activation="relu", name=f"block{block}_conv{index}"
            )(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)

    if include_top:
        x = _common.fully_connected_head(
            x, units=(4096, 4096), names=("fc1", "fc2"), dropout=dropout,
            dropout_names=("fc1_dropout", "fc2_dropout"), classes=classes,
            classifier_activation=classifier_activation,
        )
    else:
        x = _common.global_pool(x, pooling)
    return _common.finish(inputs, x, model_name=model_name, name=name, weights=weights)


def _features(convs_per_block):
    return {f"block{b}": f"block{b}_conv{n}" for b, n in enumerate(convs_per_block, start=1)}


@register_model(
    "vgg16",
    family="vgg",
    paper=PAPER,
    input_shape=(224, 224, 3),
    classes=1000,
    params=138_357_544,
    feature_layers=_features((2, 2, 3, 3, 3)),
    min_size=32,
    keras_applications="VGG16",
    classifier_layer="predictions",
    logits_layer="predictions",
    preprocessing={"none": "dataset", "imagenet": "caffe"},
)
def vgg16(
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=0.0,
    name=None,
):
    """VGG-16 (configuration D). ``dropout`` (the paper trains with 0.5 after FC-6/FC-7)
    adds parameter-free Dropout layers; the default 0 keeps keras.applications' graph."""
    return _vgg(
        model_name="vgg16",
        convs_per_block=(2, 2, 3, 3, 3),
        include_top=include_top,
        weights=weights,
        input_shape=input_shape,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
        name=name,
    )


@register_model(
    "vgg19",
    family="vgg",
    paper=PAPER,
    input_shape=(224, 224, 3),
    classes=1000,
    params=143_667_240,
    feature_layers=_features((2, 2, 4, 4, 4)),
    min_size=32,
    keras_applications="VGG19",
    classifier_layer="predictions",
    logits_layer="predictions",
    preprocessing={"none": "dataset", "imagenet": "caffe"},
)
def vgg19(
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=0.0,
    name=None,
):
    """VGG-19 (configuration E); arguments as :func:`vgg16`."""
    return _vgg(
        model_name="vgg19",
        convs_per_block=(2, 2, 4, 4, 4),
        include_top=include_top,
        weights=weights,
        input_shape=input_shape,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
        name=name,
    )
