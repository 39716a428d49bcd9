"""ResNet (He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016).

Residual blocks compute H(x) = F(x) + x; the shortcut is a projection (1x1 conv + BN) where
the shape changes. Each stage after the first halves the spatial size and doubles channels;
global average pooling and one fully connected layer close the network.

- ResNet-50/101/152 (bottleneck blocks) use the layer names, layer order and layout of
  ``keras.applications.ResNet50/101/152`` (convolutions with bias, BN epsilon 1.001e-5,
  stride on the first 1x1 convolution), so their weights load into these builders in order.
- ResNet-18/34 (basic blocks) follow the paper's Table 1 with torchvision's layout
  (convolutions without bias before BN): 11,689,512 / 21,797,672 trainable parameters.
- CIFAR ResNet-20/32/44/56/110 (Sec. 4.2): 3x3 stem with 16 filters, three stages of n
  basic blocks with 16/32/64 filters, depth 6n+2, parameter-free shortcuts (option A).
"""

from __future__ import annotations

import keras

from keras_apps.layers import ZeroPaddingShortcut
from keras_apps.models import _common
from keras_apps.registry import register_model

PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
BN_EPSILON = 1.001e-5
# Moving-average momentum of BatchNormalization: 0.9 (torchvision's 0.1 update), so that the
# inference statistics follow training within a few hundred steps; it changes no weight.
BN_MOMENTUM = 0.9
_KERNEL_INIT = "he_normal"  # He initialisation, as in the paper (Sec. 3.4)


def _bn(name):
    return keras.layers.BatchNormalization(
        axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name
    )


def _conv(filters, kernel_size, strides=1, padding="valid", use_bias=True, name=None):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        kernel_initializer=_KERNEL_INIT,
        name=name,
    )


def bottleneck_block(
    x, filters, strides=1, conv_shortcut=True, use_bias=True, name="block", conv3x3=None
):
    """1x1 (stride) -> 3x3 -> 1x1 (4x filters); keras.applications' ``residual_block_v1``.

    ``conv3x3(filters, use_bias=..., name=...)``, if given, makes the middle 3x3 layer (a
    deformable convolution in the deformable ResNets); the default is a plain Conv2D.
    """
    if conv_shortcut:
        shortcut = _conv(4 * filters, 1, strides, use_bias=use_bias, name=f"{name}_0_conv")(x)
        shortcut = _bn(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = _conv(filters, 1, strides, use_bias=use_bias, name=f"{name}_1_conv")(x)
    x = _bn(f"{name}_1_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    if conv3x3 is None:
        x = _conv(filters, 3, padding="same", use_bias=use_bias, name=f"{name}_2_conv")(x)
    else:
        x = conv3x3(filters, use_bias=use_bias, name=f"{name}_2_conv")(x)
    x = _bn(f"{name}_2_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = _conv(4 * filters, 1, use_bias=use_bias, name=f"{name}_3_conv")(x)
    x = _bn(f"{name}_3_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def basic_block(x, filters, strides=1, shortcut="B", use_bias=False, name="block"):
    """3x3 (stride) -> 3x3 with an identity shortcut; where the shape changes the shortcut
    is a projection (``"B"``: 1x1 conv + BN) or zero padding (``"A"``, no parameters)."""
    changes_shape = strides != 1 or x.shape[-1] != filters
    if changes_shape and shortcut == "B":
        residual = _conv(filters, 1, strides, use_bias=use_bias, name=f"{name}_0_conv")(x)
        residual = _bn(f"{name}_0_bn")(residual)
    elif changes_shape:
        residual = ZeroPaddingShortcut(filters, strides, name=f"{name}_0_pad")(x)
    else:
        residual = x
    if strides == 1:
        y = _conv(filters, 3, padding="same", use_bias=use_bias, name=f"{name}_1_conv")(x)
    else:
        # Symmetric padding 1, as in the paper's (and torchvision's) strided 3x3 conv.
        y = keras.layers.ZeroPadding2D(1, name=f"{name}_1_pad")(x)
        y = _conv(filters, 3, strides, use_bias=use_bias, name=f"{name}_1_conv")(y)
    y = _bn(f"{name}_1_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = _conv(filters, 3, padding="same", use_bias=use_bias, name=f"{name}_2_conv")(y)
    y = _bn(f"{name}_2_bn")(y)
    y = keras.layers.Add(name=f"{name}_add")([residual, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def _resnet(
    *,
    model_name,
    blocks,
    block,
    cifar=False,
    use_bias=True,
    shortcut="B",
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=None,
    classifier_activation="softmax",
    name=None,
    default_input_shape,
    default_classes,
    stage_conv3x3=None,
):
    """``stage_conv3x3``: optional ``{stage number (2-5): conv3x3 factory}`` replacing the
    3x3 convolutions of those bottleneck stages (see :func:`bottleneck_block`)."""
    classes = default_classes if classes is None else classes
    stage_conv3x3 = dict(stage_conv3x3 or {})
    if stage_conv3x3 and block != "bottleneck":
        raise ValueError("`stage_conv3x3` applies to bottleneck ResNets only.")
    if shortcut not in ("A", "B"):
        raise ValueError(f"`shortcut` must be 'A' (zero padding) or 'B' (projection), got {shortcut!r}.")
    input_shape = _common.validate_builder_args(
        model_name=model_name,
        include_top=include_top,
        weights=weights,
        input_shape=input_shape,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        default_input_shape=default_input_shape,
        min_size=4 if cifar else 32,
    )
    inputs, x = _common.image_input(input_shape, input_tensor)

    if cifar:
        x = _conv(16, 3, padding="same", use_bias=use_bias, name="conv1_conv")(x)
    else:
        x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = _conv(64, 7, strides=2, use_bias=use_bias, name="conv1_conv")(x)
    x = _bn("conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    if not cifar:
        x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    base_filters = 16 if cifar else 64
    for stage, num_blocks in enumerate(blocks):
        filters = base_filters * 2**stage
        for index in range(1, num_blocks + 1):
            strides = 2 if (index == 1 and stage > 0) else 1
            block_name = f"conv{stage + 2}_block{index}"
            if block == "bottleneck":
                x = bottleneck_block(
                    x, filters, strides, index == 1, use_bias, block_name,
                    conv3x3=stage_conv3x3.get(stage + 2),
                )
            else:
                x = basic_block(x, filters, strides, shortcut, use_bias, block_name)

    x = _common.pooled_head(
        x,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )
    return _common.finish(inputs, x, model_name=model_name, name=name, weights=weights)


def _features(blocks):
    layers = {"stem": "pool1_pool" if len(blocks) == 4 else "conv1_relu"}
    for stage, num_blocks in enumerate(blocks):
        layers[f"stage{stage + 1}"] = f"conv{stage + 2}_block{num_blocks}_out"
    return layers


_IMAGENET = {
    # name: (blocks, block, conv bias, total params incl. BN moving statistics, keras.applications)
    "resnet18": ((2, 2, 2, 2), "basic", False, 11_699_112, None),
    "resnet34": ((3, 4, 6, 3), "basic", False, 21_814_696, None),
    "resnet50": ((3, 4, 6, 3), "bottleneck", True, 25_636_712, "ResNet50"),
    "resnet101": ((3, 4, 23, 3), "bottleneck", True, 44_707_176, "ResNet101"),
    "resnet152": ((3, 8, 36, 3), "bottleneck", True, 60_419_944, "ResNet152"),
}

_CIFAR = {
    # name: (n blocks per stage, total params incl. BN moving statistics)
    "resnet20_cifar": (3, 271_098),
    "resnet32_cifar": (5, 466_426),
    "resnet44_cifar": (7, 661_754),
    "resnet56_cifar": (9, 857_082),
    "resnet110_cifar": (18, 1_736_058),
}


def _register_imagenet(model_name, blocks, block, use_bias, params, keras_name):
    @register_model(
        model_name,
        family="resnet",
        paper=PAPER,
        input_shape=(224, 224, 3),
        classes=1000,
        params=params,
        feature_layers=_features(blocks),
        min_size=32,
        keras_applications=keras_name,
        classifier_layer="predictions",
        logits_layer="predictions",
        preprocessing={"none": "dataset", **({"imagenet": "caffe"} if keras_name else {})},
    )
    def builder(
        include_top=True,
        weights=None,
        input_shape=None,
        input_tensor=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        name=None,
    ):
        return _resnet(
            model_name=model_name,
            blocks=blocks,
            block=block,
            use_bias=use_bias,
            include_top=include_top,
            weights=weights,
            input_shape=input_shape,
            input_tensor=input_tensor,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
            default_input_shape=(224, 224, 3),
            default_classes=1000,
        )

    builder.__name__ = builder.__qualname__ = model_name
    builder.__doc__ = (
        f"{model_name.replace('resnet', 'ResNet-')} ({block} blocks {blocks}); "
        "keras.applications arguments."
    )
    return builder


def _register_cifar(model_name, n, params):
    @register_model(
        model_name,
        family="resnet",
        paper=PAPER + " (Sec. 4.2, CIFAR-10)",
        input_shape=(32, 32, 3),
        classes=10,
        params=params,
        feature_layers=_features((n, n, n)),
        min_size=4,
        classifier_layer="predictions",
        logits_layer="predictions",
    )
    def builder(
        include_top=True,
        weights=None,
        input_shape=None,
        input_tensor=None,
        pooling=None,
        classes=10,
        classifier_activation="softmax",
        shortcut="A",
        name=None,
    ):
        return _resnet(
            model_name=model_name,
            blocks=(n, n, n),
            block="basic",
            cifar=True,
            use_bias=False,
            shortcut=shortcut,
            include_top=include_top,
            weights=weights,
            input_shape=input_shape,
            input_tensor=input_tensor,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
            default_input_shape=(32, 32, 3),
            default_classes=10,
        )

    builder.__name__ = builder.__qualname__ = model_name
    builder.__doc__ = (
        f"CIFAR ResNet-{6 * n + 2}: 3 stages of {n} basic blocks (16/32/64 filters); "
        "`shortcut='A'` (zero padding, the paper's CIFAR choice) or 'B' (projection)."
    )
    return builder


resnet18 = _register_imagenet("resnet18", *_IMAGENET["resnet18"])
resnet34 = _register_imagenet("resnet34", *_IMAGENET["resnet34"])
resnet50 = _register_imagenet("resnet50", *_IMAGENET["resnet50"])
resnet101 = _register_imagenet("resnet101", *_IMAGENET["resnet101"])
resnet152 = _register_imagenet("resnet152", *_IMAGENET["resnet152"])
resnet20_cifar = _register_cifar("resnet20_cifar", *_CIFAR["resnet20_cifar"])
resnet32_cifar = _register_cifar("resnet32_cifar", *_CIFAR["resnet32_cifar"])
resnet44_cifar = _register_cifar("resnet44_cifar", *_CIFAR["resnet44_cifar"])
resnet56_cifar = _register_cifar("resnet56_cifar", *_CIFAR["resnet56_cifar"])
resnet110_cifar = _register_cifar("resnet110_cifar", *_CIFAR["resnet110_cifar"])
