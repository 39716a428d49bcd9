"""SE-ResNet (Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018).

ResNets whose every residual block re-scales the channels of its residual branch with a
squeeze-and-excitation block (:class:`keras_apps.layers.SqueezeExcitation`, reduction 16)
before the addition with the shortcut (Fig. 3, "SE-ResNet module"):
``y = relu(shortcut(x) + SE(F(x)))``.

Blocks follow the authors' release: convolutions without bias before batch normalisation,
and in the bottleneck block the stride sits on the first 1x1 convolution. The stem, stage
layout and layer names are those of :mod:`keras_apps.models.resnet`; each block adds a
``conv{stage}_block{i}_se`` layer. SE-ResNet-50/101/152 have 28,088,024 / 49,326,872 /
66,821,848 trainable parameters, as the authors' release (Sec. 4 of the paper: SE-ResNet-50
needs ~2.53M parameters more than ResNet-50's ~25M); the declared totals add the BN moving
statistics. SE-ResNet-18/34 use basic blocks as ResNet-18/34.
"""

from __future__ import annotations

import keras

from keras_apps.layers import SqueezeExcitation
from keras_apps.models import _common
from keras_apps.models.resnet import _bn, _conv
from keras_apps.registry import register_model

PAPER = "Hu, Shen, Sun, Squeeze-and-Excitation Networks, CVPR 2018"
#: Sec. 6.1: the reduction ratio r of every SE block.
REDUCTION = 16


def se_basic_block(x, filters, strides=1, reduction=REDUCTION, name="block"):
    """3x3 (stride) -> 3x3 -> SE, added to the identity (projection where the shape changes)."""
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, strides, use_bias=False, name=f"{name}_0_conv")(x)
        shortcut = _bn(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    if strides == 1:
        y = _conv(filters, 3, padding="same", use_bias=False, name=f"{name}_1_conv")(x)
    else:
        y = keras.layers.ZeroPadding2D(1, name=f"{name}_1_pad")(x)
        y = _conv(filters, 3, strides, use_bias=False, name=f"{name}_1_conv")(y)
    y = _bn(f"{name}_1_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = _conv(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    y = _bn(f"{name}_2_bn")(y)
    y = SqueezeExcitation(reduction, name=f"{name}_se")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def se_bottleneck_block(x, filters, strides=1, reduction=REDUCTION, name="block"):
    """1x1 (stride) -> 3x3 -> 1x1 (4x filters) -> SE, added to the shortcut."""
    if strides != 1 or x.shape[-1] != 4 * filters:
        shortcut = _conv(4 * filters, 1, strides, use_bias=False, name=f"{name}_0_conv")(x)
        shortcut = _bn(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    y = _conv(filters, 1, strides, use_bias=False, name=f"{name}_1_conv")(x)
    y = _bn(f"{name}_1_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = _conv(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    y = _bn(f"{name}_2_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_2_relu")(y)
    y = _conv(4 * filters, 1, use_bias=False, name=f"{name}_3_conv")(y)
    y = _bn(f"{name}_3_bn")(y)
    y = SqueezeExcitation(reduction, name=f"{name}_se")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def _se_resnet(
    *,
    model_name,
    blocks,
    block,
    reduction=REDUCTION,
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
):
    if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
        raise ValueError(f"`reduction` must be a positive integer (the paper: 16), got {reduction!r}.")
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
    )
    inputs, x = _common.image_input(input_shape, input_tensor)
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = _conv(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = _bn("conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    block_fn = se_bottleneck_block if block == "bottleneck" else se_basic_block
    for stage, num_blocks in enumerate(blocks):
        for index in range(1, num_blocks + 1):
            strides = 2 if (index == 1 and stage > 0) else 1
            x = block_fn(x, 64 * 2**stage, strides, reduction, name=f"conv{stage + 2}_block{index}")

    x = _common.pooled_head(
        x,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )
    return _common.finish(inputs, x, model_name=model_name, name=name, weights=weights)


def _features(blocks):
    layers = {"stem": "pool1_pool"}
    for stage, num_blocks in enumerate(blocks):
        layers[f"stage{stage + 1}"] = f"conv{stage + 2}_block{num_blocks}_out"
    return layers


_VARIANTS = {
    # name: (blocks per stage, block, total params incl. BN moving statistics)
    "se_resnet18": ((2, 2, 2, 2), "basic", 11_788_192),
    "se_resnet34": ((3, 4, 6, 3), "basic", 21_975_892),
    "se_resnet50": ((3, 4, 6, 3), "bottleneck", 28_141_144),
    "se_resnet101": ((3, 4, 23, 3), "bottleneck", 49_432_216),
    "se_resnet152": ((3, 8, 36, 3), "bottleneck", 66_973_272),
}


def _register(model_name, blocks, block, params):
    @register_model(
        model_name,
        family="senet",
        paper=PAPER,
        input_shape=(224, 224, 3),
        classes=1000,
        params=params,
        feature_layers=_features(blocks),
        min_size=32,
        classifier_layer="predictions",
        logits_layer="predictions",
    )
    def builder(
        include_top=True,
        weights=None,
        input_shape=None,
        input_tensor=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        reduction=REDUCTION,
        name=None,
    ):
        return _se_resnet(
            model_name=model_name,
            blocks=blocks,
            block=block,
            reduction=reduction,
            include_top=include_top,
            weights=weights,
            input_shape=input_shape,
            input_tensor=input_tensor,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
        )

    builder.__name__ = builder.__qualname__ = model_name
    builder.__doc__ = (
        f"SE-ResNet-{model_name[len('se_resnet'):]} ({block} blocks {blocks}, SE reduction "
        "`reduction`, the paper's 16); keras.applications arguments."
    )
    return builder


se_resnet18 = _register("se_resnet18", *_VARIANTS["se_resnet18"])
se_resnet34 = _register("se_resnet34", *_VARIANTS["se_resnet34"])
se_resnet50 = _register("se_resnet50", *_VARIANTS["se_resnet50"])
se_resnet101 = _register("se_resnet101", *_VARIANTS["se_resnet101"])
se_resnet152 = _register("se_resnet152", *_VARIANTS["se_resnet152"])
