"""DenseNet (Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017).

Inside a dense block the l-th layer receives the concatenation of all earlier feature maps,
``x_l = H_l([x_0, x_1, ..., x_{l-1}])`` (Eq. 2), where ``H_l`` is the bottleneck
BN-ReLU-Conv(1x1, 4k)-BN-ReLU-Conv(3x3, k) ("DenseNet-B", Sec. 3) and ``k`` the growth rate.
Transition layers between blocks are BN-ReLU-Conv(1x1)-AvgPool(2x2) with compression
``theta = 0.5`` ("DenseNet-C"; both together: DenseNet-BC).

- ``densenet121/169/201/264``: the ImageNet networks of Table 1 (k = 32, dense blocks of
  (6, 12, 24, 16), (6, 12, 32, 32), (6, 12, 48, 32), (6, 12, 64, 48) layers). 121/169/201
  use the layer names, order and layout of ``keras.applications.DenseNet121/169/201``
  (``conv{n}_block{i}_...`` and ``pool{n}_...``), so their weights load in order.
- ``densenet_bc100_cifar``: the CIFAR DenseNet-BC of Table 2 (L = 100, k = 12, 0.8M
  parameters): a 3x3 stem with 2k filters, three dense blocks of (L - 4) / 6 bottleneck
  layers on 32x32, 16x16 and 8x8 maps. :func:`densenet_bc_cifar` builds other (L, k).
"""

from __future__ import annotations

import keras

from keras_apps.models import _common
from keras_apps.registry import register_model

PAPER = "Huang, Liu, van der Maaten, Weinberger, Densely Connected Convolutional Networks, CVPR 2017"
BN_EPSILON = 1.001e-5
COMPRESSION = 0.5
BOTTLENECK_WIDTH = 4  # the 1x1 convolution of H_l produces 4k feature maps (Sec. 3)


def _bn(name):
    return keras.layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name=name)


def _bn_relu(x, name):
    x = _bn(f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def dense_layer(x, growth_rate, name):
    """H_l of DenseNet-B, its k new maps concatenated to its input (Eq. 2)."""
    y = _bn(f"{name}_0_bn")(x)
    y = keras.layers.Activation("relu", name=f"{name}_0_relu")(y)
    y = keras.layers.Conv2D(BOTTLENECK_WIDTH * growth_rate, 1, use_bias=False, name=f"{name}_1_conv")(y)
    y = _bn(f"{name}_1_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = keras.layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    return keras.layers.Concatenate(axis=-1, name=f"{name}_concat")([x, y])


def dense_block(x, layers, growth_rate, name):
    for index in range(1, layers + 1):
        x = dense_layer(x, growth_rate, name=f"{name}_block{index}")
    return x


def transition_layer(x, compression, name):
    """BN-ReLU-Conv(1x1, floor(theta m))-AvgPool(2x2) between dense blocks (Sec. 3)."""
    x = _bn_relu(x, name)
    filters = int(x.shape[-1] * compression)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_conv")(x)
    return keras.layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def _dense_stages(x, blocks, growth_rate, compression):
    """Dense blocks ``conv2, conv3, ...`` with transitions ``pool2, pool3, ...`` between them,
    then the final BN-ReLU (layers ``bn`` and ``relu``)."""
    for stage, layers in enumerate(blocks, start=2):
        x = dense_block(x, layers, growth_rate, name=f"conv{stage}")
        if stage < len(blocks) + 1:
            x = transition_layer(x, compression, name=f"pool{stage}")
    x = _bn("bn")(x)
    return keras.layers.Activation("relu", name="relu")(x)


def _densenet(
    *,
    model_name,
    blocks,
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
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
    )
    inputs, x = _common.image_input(input_shape, input_tensor)
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = keras.layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = _bn_relu(x, "conv1")
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = _dense_stages(x, blocks, growth_rate=32, compression=COMPRESSION)
    x = _common.pooled_head(
        x,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )
    return _common.finish(inputs, x, model_name=model_name, name=name, weights=weights)


def densenet_bc_cifar(
    depth=100,
    growth_rate=12,
    *,
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    model_name="densenet_bc100_cifar",
):
    """CIFAR DenseNet-BC with ``depth`` L and growth rate k (Sec. 4.2 / Table 2: (100, 12)
    0.8M, (250, 24) 15.3M, (190, 40) 25.6M parameters): three dense blocks of (L - 4) / 6
    bottleneck layers each."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"`depth` must be 6n + 4 with n >= 1 (e.g. 100, 190, 250), got {depth!r}.")
    if isinstance(growth_rate, bool) or not isinstance(growth_rate, int) or growth_rate < 1:
        raise ValueError(f"`growth_rate` must be a positive integer, got {growth_rate!r}.")
    input_shape = _common.validate_builder_args(
        model_name=model_name,
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
    x = keras.layers.Conv2D(2 * growth_rate, 3, padding="same", use_bias=False, name="conv1_conv")(x)
    layers = (depth - 4) // 6
    x = _dense_stages(x, (layers, layers, layers), growth_rate, COMPRESSION)
    x = _common.pooled_head(
        x,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )
    return _common.finish(inputs, x, model_name=model_name, name=name, weights=weights)


def _features(blocks):
    layers = {"stem": "pool1"}
    for stage in range(1, len(blocks)):
        layers[f"stage{stage}"] = f"pool{stage + 1}_relu"
    layers[f"stage{len(blocks)}"] = "relu"
    return layers


_IMAGENET = {
    # name: (dense block sizes, total params incl. BN moving statistics, keras.applications)
    "densenet121": ((6, 12, 24, 16), 8_062_504, "DenseNet121"),
    "densenet169": ((6, 12, 32, 32), 14_307_880, "DenseNet169"),
    "densenet201": ((6, 12, 48, 32), 20_242_984, "DenseNet201"),
    "densenet264": ((6, 12, 64, 48), 33_736_232, None),
}


def _register_imagenet(model_name, blocks, params, keras_name):
    @register_model(
        model_name,
        family="densenet",
        paper=PAPER,
        input_shape=(224, 224, 3),
        classes=1000,
        params=params,
        feature_layers=_features(blocks),
        min_size=32,
        keras_applications=keras_name,
        classifier_layer="predictions",
        logits_layer="predictions",
        preprocessing={"none": "dataset", **({"imagenet": "torch"} if keras_name else {})},
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
        return _densenet(
            model_name=model_name,
            blocks=blocks,
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
        f"DenseNet-{model_name[len('densenet'):]} (Table 1: dense blocks {blocks}, k=32); "
        "keras.applications arguments."
    )
    return builder


densenet121 = _register_imagenet("densenet121", *_IMAGENET["densenet121"])
densenet169 = _register_imagenet("densenet169", *_IMAGENET["densenet169"])
densenet201 = _register_imagenet("densenet201", *_IMAGENET["densenet201"])
densenet264 = _register_imagenet("densenet264", *_IMAGENET["densenet264"])


@register_model(
    "densenet_bc100_cifar",
    family="densenet",
    paper=PAPER + " (Table 2, DenseNet-BC L=100 k=12)",
    input_shape=(32, 32, 3),
    classes=10,
    params=793_150,
    feature_layers={"stem": "conv1_conv", "stage1": "pool2_relu", "stage2": "pool3_relu", "stage3": "relu"},
    min_size=4,
    classifier_layer="predictions",
    logits_layer="predictions",
)
def densenet_bc100_cifar(
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
):
    """CIFAR DenseNet-BC, L=100, k=12 (Table 2: 0.8M parameters; 769,162 trainable,
    793,150 with the BN moving statistics)."""
    return densenet_bc_cifar(
        100,
        12,
        include_top=include_top,
        weights=weights,
        input_shape=input_shape,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )
