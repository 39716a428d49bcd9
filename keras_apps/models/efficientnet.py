"""EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019).

The baseline B0 (Table 1) is a stack of MBConv blocks (Sec. 4: inverted residual blocks of
MobileNetV2 with squeeze-and-excitation): 1x1 expansion, depthwise kxk convolution, SE
(ratio 0.25 of the block's input channels), 1x1 projection; swish activations; an identity
skip with drop-connect (stochastic depth whose rate grows linearly to 0.2 with block index)
where the shape is kept. Larger networks come from compound scaling (Sec. 3.3, Eq. 3):

    depth d = alpha^phi,  width w = beta^phi,  resolution r = gamma^phi
    s.t. alpha * beta^2 * gamma^2 ~ 2,  alpha >= 1, beta >= 1, gamma >= 1

with alpha = 1.2, beta = 1.1, gamma = 1.15 found by grid search at phi = 1, so FLOPs grow by
about 2^phi. :func:`compound_scaling` maps ``phi`` (any number >= 0) to the coefficients by
these equations, or a named variant ``"b0"``..``"b7"`` to the coefficients of the official
release, which keras.applications and every published checkpoint use. Those are *not*
alpha^phi, beta^phi, gamma^phi: they were rounded and hand-tuned per model (the released
table ``efficientnet_params``):

    variant  width  depth  resolution  dropout  |  pure rule (phi = 0..7): width depth res
    b0       1.0    1.0    224         0.2      |  1.00  1.00  224
    b1       1.0    1.1    240         0.2      |  1.10  1.20  258
    b2       1.1    1.2    260         0.3      |  1.21  1.44  296
    b3       1.2    1.4    300         0.3      |  1.33  1.73  341
    b4       1.4    1.8    380         0.4      |  1.46  2.07  392
    b5       1.6    2.2    456         0.4      |  1.61  2.49  451
    b6       1.8    2.6    528         0.5      |  1.77  2.99  518
    b7       2.0    3.1    600         0.5      |  1.95  3.58  596

Widths and depths act through :func:`round_filters` (multiples of 8, never more than 10%
down) and :func:`round_repeats` (ceil). The registered ``efficientnet_b0``..``b7`` use the
official coefficients and keras.applications' layer names, order and input preprocessing
(``Rescaling(1/255)`` and a ``Normalization`` layer whose mean/variance are weights), so
their parameter counts equal ``keras.applications.EfficientNetB0..B7`` and its weights load
in order. :func:`efficientnet` builds the network for any ``phi``.
"""

from __future__ import annotations

import dataclasses
import math

import keras

from keras_apps.models import _common
from keras_apps.registry import register_model

PAPER = "Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019"

#: Sec. 3.3, step 1: the grid-searched constants of the compound scaling rule.
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
BASE_RESOLUTION = 224
DEPTH_DIVISOR = 8
DROP_CONNECT_RATE = 0.2
#: ImageNet channel standard deviations; keras.applications' ImageNet weights need an extra
#: rescaling by 1/sqrt(std) after the Normalization layer (keras.applications' note,
#: tensorflow#49930), reproduced here with ``weights="imagenet"``.
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)

#: Table 1 (B0): kernel, repeats, input filters, output filters, expansion, stride per stage.
BASE_STAGES = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)
SE_RATIO = 0.25

#: The official release's (width, depth, resolution, dropout) per named variant.
OFFICIAL_COEFFICIENTS = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}

# keras.applications' initialisers (the official release's).
_CONV_INIT = keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="truncated_normal")
_DENSE_INIT = keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_out", distribution="uniform")


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
    """Coefficients of one EfficientNet: ``depth`` d and ``width`` w multiply the layers and
    channels of B0, ``resolution`` is the input size, ``dropout`` the rate before the
    classifier; ``variant`` is ``"b0"``..``"b7"`` for the official values, None for Eq. 3."""

    phi: float
    depth: float
    width: float
    resolution: int
    dropout: float
    variant: str | None = None


def compound_scaling(phi_or_name) -> ScalingConfig:
    """The scaling of EfficientNet ``phi`` by Eq. 3, or of a named official variant.

    Args:
        phi_or_name: a number ``phi >= 0`` (pure rule: d = 1.2^phi, w = 1.1^phi,
            r = round(224 * 1.15^phi); dropout follows the official table's pattern
            0.2 + 0.1 * floor(phi / 2), at most 0.5), or ``"b0"``..``"b7"`` (also
            ``"efficientnet_b3"``, ``"EfficientNetB3"``): the official coefficients listed in
            the module docstring, which differ from the pure rule.
    """
    if isinstance(phi_or_name, str):
        key = phi_or_name.lower().replace("efficientnet", "").strip("_- ")
        if key not in OFFICIAL_COEFFICIENTS:
            raise ValueError(
                f"Unknown EfficientNet variant {phi_or_name!r}; named variants are "
                f"{', '.join(OFFICIAL_COEFFICIENTS)}, or pass a number phi >= 0."
            )
        width, depth, resolution, dropout = OFFICIAL_COEFFICIENTS[key]
        return ScalingConfig(float(key[1:]), depth, width, resolution, dropout, variant=key)
    if isinstance(phi_or_name, bool) or not isinstance(phi_or_name, (int, float)) or not phi_or_name >= 0:
        raise ValueError(f"`phi` must be a number >= 0 or a variant name 'b0'..'b7', got {phi_or_name!r}.")
    phi = float(phi_or_name)
    return ScalingConfig(
        phi=phi,
        depth=ALPHA**phi,
        width=BETA**phi,
        resolution=int(round(BASE_RESOLUTION * GAMMA**phi)),
        dropout=round(min(0.5, 0.2 + 0.1 * math.floor(phi / 2)), 2),
    )


def round_filters(filters: int, width: float, divisor: int = DEPTH_DIVISOR) -> int:
    """``filters * width`` rounded to the nearest multiple of ``divisor``, but never more than
    10% below the exact value (the official release's rule)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """``ceil(depth * repeats)`` layers per stage."""
    return int(math.ceil(depth * repeats))


def _correct_pad(x, kernel_size):
    """Asymmetric padding of a stride-2 convolution as in keras.applications (TF 'same')."""
    height, width = x.shape[1:3]
    adjust = (1, 1) if height is None else (1 - height % 2, 1 - width % 2)
    half = kernel_size // 2
    return ((half - adjust[0], half), (half - adjust[1], half))


def _pointwise(filters, name, activation=None, use_bias=False):
    return keras.layers.Conv2D(
        filters,
        1,
        padding="same",
        activation=activation,
        use_bias=use_bias,
        kernel_initializer=_CONV_INIT,
        name=name,
    )


def mbconv_block(
    inputs, *, filters_in, filters_out, kernel_size, strides, expand_ratio, se_ratio, drop_rate, name
):
    """MBConv (keras.applications' ``block``): expand 1x1 -> depthwise kxk -> SE -> project
    1x1, swish activations; identity skip with drop-connect ``drop_rate`` where the shape is
    kept."""
    filters = filters_in * expand_ratio
    x = inputs
    if expand_ratio != 1:
        x = _pointwise(filters, f"{name}expand_conv")(x)
        x = keras.layers.BatchNormalization(axis=-1, name=f"{name}expand_bn")(x)
        x = keras.layers.Activation("swish", name=f"{name}expand_activation")(x)
    if strides == 2:
        x = keras.layers.ZeroPadding2D(_correct_pad(x, kernel_size), name=f"{name}dwconv_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    x = keras.layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        depthwise_initializer=_CONV_INIT,
        name=f"{name}dwconv",
    )(x)
    x = keras.layers.BatchNormalization(axis=-1, name=f"{name}bn")(x)
    x = keras.layers.Activation("swish", name=f"{name}activation")(x)

    # Squeeze and excitation on the expanded maps, squeezed to se_ratio of the block's input.
    filters_se = max(1, int(filters_in * se_ratio))
    se = keras.layers.GlobalAveragePooling2D(name=f"{name}se_squeeze")(x)
    se = keras.layers.Reshape((1, 1, filters), name=f"{name}se_reshape")(se)
    se = _pointwise(filters_se, f"{name}se_reduce", activation="swish", use_bias=True)(se)
    se = _pointwise(filters, f"{name}se_expand", activation="sigmoid", use_bias=True)(se)
    x = keras.layers.Multiply(name=f"{name}se_excite")([x, se])

    x = _pointwise(filters_out, f"{name}project_conv")(x)
    x = keras.layers.BatchNormalization(axis=-1, name=f"{name}project_bn")(x)
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = keras.layers.Add(name=f"{name}add")([x, inputs])
    return x


def _stage_repeats(scaling):
    return [round_repeats(stage[1], scaling.depth) for stage in BASE_STAGES]


def feature_layers(scaling: ScalingConfig) -> dict:
    """Stage outputs (strides 2, 4, 8, 16, 32) of the network built with ``scaling``."""

    def last_block(stage):
        repeats = _stage_repeats(scaling)[stage - 1]
        prefix = f"block{stage}{chr(96 + repeats)}_"
        return prefix + ("add" if repeats > 1 else "project_bn")

    return {
        "stem": last_block(1),
        "stage1": last_block(2),
        "stage2": last_block(3),
        "stage3": last_block(5),
        "stage4": "top_activation",
    }


def efficientnet(
    phi_or_name=0,
    *,
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    drop_connect_rate=DROP_CONNECT_RATE,
    include_preprocessing=True,
    name=None,
    model_name=None,
):
    """EfficientNet scaled from B0 by :func:`compound_scaling` (``phi`` or ``"b0"``..``"b7"``).

    Args:
        drop_connect_rate: drop-connect rate of the last block (linear in the block index).
        include_preprocessing: start with keras.applications' ``Rescaling(1/255)`` and
            ``Normalization`` layers (inputs are pixels in [0, 255]); needed for
            ``weights="imagenet"``.
        model_name: registry name (default ``efficientnet_<variant>`` or ``efficientnet_phi<phi>``).
    """
    scaling = phi_or_name if isinstance(phi_or_name, ScalingConfig) else compound_scaling(phi_or_name)
    if model_name is None:
        suffix = scaling.variant or f"phi{scaling.phi:g}"
        model_name = f"efficientnet_{suffix}"
    _common.check_rate("drop_connect_rate", drop_connect_rate)
    if not isinstance(include_preprocessing, bool):
        raise TypeError(f"`include_preprocessing` must be True or False, got {include_preprocessing!r}.")
    if weights == "imagenet" and not include_preprocessing:
        raise ValueError(
            "weights='imagenet' includes the input Normalization statistics: keep "
            "include_preprocessing=True."
        )
    resolution = scaling.resolution
    input_shape = _common.validate_builder_args(
        model_name=model_name,
        include_top=include_top,
        weights=weights,
        input_shape=input_shape,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        default_input_shape=(resolution, resolution, 3),
        min_size=32,
    )
    inputs, x = _common.image_input(input_shape, input_tensor)

    if include_preprocessing:
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(x)
        x = keras.layers.Normalization(axis=-1, name="normalization")(x)
        if weights == "imagenet":
            x = keras.layers.Rescaling(
                [1.0 / math.sqrt(stddev) for stddev in IMAGENET_STDDEV_RGB], name="rescaling_stddev"
            )(x)
    x = keras.layers.ZeroPadding2D(_correct_pad(x, 3), name="stem_conv_pad")(x)
    x = keras.layers.Conv2D(
        round_filters(32, scaling.width),
        3,
        strides=2,
        padding="valid",
        use_bias=False,
        kernel_initializer=_CONV_INIT,
        name="stem_conv",
    )(x)
    x = keras.layers.BatchNormalization(axis=-1, name="stem_bn")(x)
    x = keras.layers.Activation("swish", name="stem_activation")(x)

    repeats_per_stage = _stage_repeats(scaling)
    total_blocks = float(sum(repeats_per_stage))
    index = 0
    for stage, ((kernel, _, filters_in, filters_out, expand, strides), repeats) in enumerate(
        zip(BASE_STAGES, repeats_per_stage), start=1
    ):
        filters_in = round_filters(filters_in, scaling.width)
        filters_out = round_filters(filters_out, scaling.width)
        for repeat in range(repeats):
            x = mbconv_block(
                x,
                filters_in=filters_in if repeat == 0 else filters_out,
                filters_out=filters_out,
                kernel_size=kernel,
                strides=strides if repeat == 0 else 1,
                expand_ratio=expand,
                se_ratio=SE_RATIO,
                drop_rate=drop_connect_rate * index / total_blocks,
                name=f"block{stage}{chr(97 + repeat)}_",
            )
            index += 1

    x = _pointwise(round_filters(1280, scaling.width), "top_conv")(x)
    x = keras.layers.BatchNormalization(axis=-1, name="top_bn")(x)
    x = keras.layers.Activation("swish", name="top_activation")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if scaling.dropout > 0:
            x = keras.layers.Dropout(scaling.dropout, name="top_dropout")(x)
        x = _common.classifier(
            x, classes=classes, classifier_activation=classifier_activation, kernel_initializer=_DENSE_INIT
        )
    else:
        x = _common.global_pool(x, pooling)
    return _common.finish(inputs, x, model_name=model_name, name=name, weights=weights)


_PARAMS = {
    # total params (incl. BN moving statistics and the Normalization mean/variance/count),
    # equal to keras.applications.EfficientNetB0..B7
    "b0": 5_330_571,
    "b1": 7_856_239,
    "b2": 9_177_569,
    "b3": 12_320_535,
    "b4": 19_466_823,
    "b5": 30_562_527,
    "b6": 43_265_143,
    "b7": 66_658_687,
}


def _register(variant, params):
    scaling = compound_scaling(variant)
    model_name = f"efficientnet_{variant}"
    size = scaling.resolution

    @register_model(
        model_name,
        family="efficientnet",
        paper=PAPER,
        input_shape=(size, size, 3),
        classes=1000,
        params=params,
        feature_layers=feature_layers(scaling),
        min_size=32,
        keras_applications=f"EfficientNet{variant.upper()}",
        classifier_layer="predictions",
        logits_layer="predictions",
        # our model normalises 0..255 pixels itself, as keras.applications.EfficientNet
        preprocessing={"none": "dataset", "imagenet": "raw"},
    )
    def builder(
        include_top=True,
        weights=None,
        input_shape=None,
        input_tensor=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        drop_connect_rate=DROP_CONNECT_RATE,
        include_preprocessing=True,
        name=None,
    ):
        return efficientnet(
            scaling,
            include_top=include_top,
            weights=weights,
            input_shape=input_shape,
            input_tensor=input_tensor,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            drop_connect_rate=drop_connect_rate,
            include_preprocessing=include_preprocessing,
            name=name,
            model_name=model_name,
        )

    builder.__name__ = builder.__qualname__ = model_name
    builder.__doc__ = (
        f"EfficientNet-{variant.upper()} (official coefficients: width {scaling.width}, depth "
        f"{scaling.depth}, resolution {size}, dropout {scaling.dropout}); arguments as "
        ":func:`efficientnet`."
    )
    return builder


efficientnet_b0 = _register("b0", _PARAMS["b0"])
efficientnet_b1 = _register("b1", _PARAMS["b1"])
efficientnet_b2 = _register("b2", _PARAMS["b2"])
efficientnet_b3 = _register("b3", _PARAMS["b3"])
efficientnet_b4 = _register("b4", _PARAMS["b4"])
efficientnet_b5 = _register("b5", _PARAMS["b5"])
efficientnet_b6 = _register("b6", _PARAMS["b6"])
efficientnet_b7 = _register("b7", _PARAMS["b7"])
