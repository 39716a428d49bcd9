"""The OverFeat networks (Sermanet, Eigen, Zhang, Mathieu, Fergus, LeCun, "OverFeat: Integrated
Recognition, Localization and Detection using Convolutional Networks", ICLR 2014), Tables 1
and 3:

    fast, 231x231:     conv1 96 11x11/4 -> pool1 2x2/2 -> conv2 256 5x5 -> pool2 2x2/2
                       -> conv3 512 3x3 -> conv4 1024 3x3 -> conv5 1024 3x3 -> pool5 2x2/2 (6x6)
                       -> fc6 3072 -> fc7 4096 -> fc8 classes          145,920,872 parameters
    accurate, 221x221: conv1 96 7x7/2 -> pool1 3x3/3 -> conv2 256 7x7 -> pool2 2x2/2
                       -> conv3 512 3x3 -> conv4 512 3x3 -> conv5 1024 3x3 -> conv6 1024 3x3
                       -> pool6 3x3/3 (5x5) -> fc7 4096 -> fc8 4096 -> fc9 classes
                                                                        144,656,488 parameters

(the paper: 145M and 144M; 2.80 G and 5.36 G multiply-adds per image, Table 4: 2810M and
5369M). ReLU after every convolution and hidden FC layer, dropout 0.5 on
the hidden FC layers, no contrast normalisation. conv1 and conv2 are unpadded, the 3x3
convolutions zero-padded to keep their size, the poolings non-overlapping (floor: trailing
rows that do not fill a window are dropped). The first FC layer reads the whole last pooled
map, so as a convolution its kernel is 6x6 (fast) / 5x5 (accurate) and the dense output of
an input of side H has ``((H-11)/4 + 1)/8 - 6`` (fast) / ``((H-7)/2 + 1)/18 - 5`` (accurate)
positions (:func:`keras_apps.overfeat.dense.output_size`).

Layer names: ``conv1``.., ``pool1``, ``pool2``, the last pooling ``pool5`` (fast) / ``pool6``
(accurate), ``flatten``, the hidden FC layers with the paper's numbers (fast ``fc6``,
``fc7``; accurate ``fc7``, ``fc8``; dropout ``drop6``..), the classifier (the paper's fc8 /
fc9) ``predictions`` producing the logits and ``predictions_activation`` the softmax, as in
every family of the suite. The last pooling is the registry's feature layer ``"features"``
(:data:`FEATURE_LAYER`), the input of the localization and detection heads.

``overfeat_fast_small`` and ``overfeat_accurate_small`` have the same layers, kernel sizes,
strides, input sizes and output-size formulas with every width divided by 8 (convolutions
12-32-64-128-128 and 12-32-64-64-128-128, FC 384-512 and 512-512): for tests and CPU
experiments.

Differences from the authors' release: no released Keras weights (``weights`` is None or a
local file of weights trained here); the authors' Lua/C release pads its 3x3 layers the same
way. ``input_shape`` other than the default changes the size of the first FC layer (it reads
the whole map); for larger images run the network densely
(:func:`keras_apps.overfeat.dense.to_dense`).
"""

from __future__ import annotations

import keras

from keras_apps.models import _common
from keras_apps.registry import register_model

PAPER = (
    "Sermanet, Eigen, Zhang, Mathieu, Fergus, LeCun, OverFeat: Integrated Recognition, "
    "Localization and Detection using Convolutional Networks, ICLR 2014"
)

#: The paper's layer tables. Convolutions: ``(name, filters, kernel, strides, padding)``;
#: poolings: ``(name, size)`` (stride = size) after the convolution they follow; FC widths.
_FAST = {
    "input_shape": (231, 231, 3),
    "convs": [
        ("conv1", 96, 11, 4, "valid"),
        ("conv2", 256, 5, 1, "valid"),
        ("conv3", 512, 3, 1, "same"),
        ("conv4", 1024, 3, 1, "same"),
        ("conv5", 1024, 3, 1, "same"),
    ],
    "pools": {"conv1": ("pool1", 2), "conv2": ("pool2", 2), "conv5": ("pool5", 2)},
    "fc": (("fc6", 3072), ("fc7", 4096)),
    "min_size": 71,
}
_ACCURATE = {
    "input_shape": (221, 221, 3),
    "convs": [
        ("conv1", 96, 7, 2, "valid"),
        ("conv2", 256, 7, 1, "valid"),
        ("conv3", 512, 3, 1, "same"),
        ("conv4", 512, 3, 1, "same"),
        ("conv5", 1024, 3, 1, "same"),
        ("conv6", 1024, 3, 1, "same"),
    ],
    "pools": {"conv1": ("pool1", 3), "conv2": ("pool2", 2), "conv6": ("pool6", 3)},
    "fc": (("fc7", 4096), ("fc8", 4096)),
    "min_size": 77,
}

#: Registry name -> the layer whose output is the feature map the heads read.
FEATURE_LAYER = {
    "overfeat_fast": "pool5",
    "overfeat_fast_small": "pool5",
    "overfeat_accurate": "pool6",
    "overfeat_accurate_small": "pool6",
}


def _stages(table) -> dict:
    """``stage -> layer`` for the registry: each convolution's output (its pooling where it
    has one), the last pooling as ``"features"``."""
    stages = {}
    for name, *_ in table["convs"][:-1]:
        stages[name] = table["pools"].get(name, (name,))[0]
    stages["features"] = table["pools"][table["convs"][-1][0]][0]
    return stages


def _overfeat(
    model_name, table, width_divisor, *, include_top, weights, input_shape, input_tensor, pooling,
    classes, classifier_activation, dropout, name,
):
    if isinstance(weights, str) and weights == "imagenet":
        raise ValueError(
            f"{model_name} has no released Keras weights: `weights` must be None or a local "
            f".keras / .weights.h5 file, got 'imagenet'."
        )
    input_shape = _common.validate_builder_args(
        model_name=model_name,
        include_top=include_top,
        weights=weights,
        input_shape=input_shape,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        default_input_shape=table["input_shape"],
        min_size=table["min_size"],
        fixed_size_top=True,
    )
    _common.check_rate("dropout", dropout)
    inputs, x = _common.image_input(input_shape, input_tensor)

    for conv_name, filters, kernel, strides, padding in table["convs"]:
        x = keras.layers.Conv2D(
            filters // width_divisor, kernel, strides=strides, padding=padding, activation="relu",
            name=conv_name,
        )(x)
        if conv_name in table["pools"]:
            pool_name, size = table["pools"][conv_name]
            x = keras.layers.MaxPooling2D(size, strides=size, name=pool_name)(x)

    if include_top:
        names = [fc_name for fc_name, _ in table["fc"]]
        x = _common.fully_connected_head(
            x,
            units=[units // width_divisor for _, units in table["fc"]],
            names=names,
            dropout=dropout,
            dropout_names=[fc_name.replace("fc", "drop") for fc_name in names],
            classes=classes,
            classifier_activation=classifier_activation,
        )
    else:
        x = _common.global_pool(x, pooling)
    return _common.finish(inputs, x, model_name=model_name, name=name, weights=weights)


def _register(model_name, table, width_divisor, params, summary):
    @register_model(
        model_name,
        family="overfeat",
        paper=PAPER,
        input_shape=table["input_shape"],
        classes=1000,
        params=params,
        feature_layers=_stages(table),
        min_size=table["min_size"],
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
        dropout=0.5,
        name=None,
    ):
        return _overfeat(
            model_name, table, width_divisor, include_top=include_top, weights=weights,
            input_shape=input_shape, input_tensor=input_tensor, pooling=pooling, classes=classes,
            classifier_activation=classifier_activation, dropout=dropout, name=name,
        )

    builder.__name__ = builder.__qualname__ = model_name
    builder.__doc__ = (
        f"{summary} (see the module docstring). ``dropout`` is the paper's 0.5 on the hidden FC "
        f"layers; ``min_size`` {table['min_size']} is the smallest input whose last pooling "
        "keeps one position; ``weights``: None or a local weights file (no released weights)."
    )
    return builder


overfeat_fast = _register(
    "overfeat_fast", _FAST, 1, 145_920_872, "OverFeat fast model, 231x231 input (Table 1)"
)
overfeat_accurate = _register(
    "overfeat_accurate", _ACCURATE, 1, 144_656_488, "OverFeat accurate model, 221x221 input (Table 3)"
)
overfeat_fast_small = _register(
    "overfeat_fast_small", _FAST, 8, 2_733_912, "The fast model with every width divided by 8"
)
overfeat_accurate_small = _register(
    "overfeat_accurate_small", _ACCURATE, 8, 2_712_056, "The accurate model with every width divided by 8"
)
