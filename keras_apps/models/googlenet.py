"""GoogLeNet / Inception v1 (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015).

Table 1 of the paper, layer by layer (layer names follow the authors' Caffe release
``bvlc_googlenet`` with ``/`` written as ``_``):

    conv 7x7/2 64 -> maxpool 3x3/2 -> LRN -> conv 1x1 64 -> conv 3x3 192 -> LRN
    -> maxpool 3x3/2 -> inception 3a, 3b -> maxpool 3x3/2 -> inception 4a-4e
    -> maxpool 3x3/2 -> inception 5a, 5b -> avgpool 7x7 -> dropout 0.4 -> linear -> softmax

Every convolution has a bias and a ReLU (the paper has no batch normalisation). The two
local response normalisations of Fig. 3 are kept (Caffe's LRN: size 5, alpha 1e-4 / 5, k 1).
Max pooling uses ``padding="same"``, which gives exactly Caffe's ceil-mode windows on the even
map sizes of a 224x224 input. An inception module runs 1x1, 1x1->3x3, 1x1->5x5 and
3x3 maxpool->1x1 branches in parallel and concatenates them on channels; the 1x1 "reduce"
convolutions are the bottlenecks (Sec. 4).

Auxiliary classifiers (Sec. 5) sit on the outputs of 4a and 4d: 5x5/3 average pooling,
1x1 conv 128 + ReLU, FC 1024 + ReLU, dropout 0.7, FC ``classes``; their losses are added with
weight 0.3 during training and they are discarded at inference. ``aux_logits=True`` builds
the training model, whose outputs are the dict ``{"main", "aux1", "aux2"}``;
:func:`strip_auxiliary` returns the inference model, which shares every layer (and so every
weight) with it::

    train_model = keras_apps.build("googlenet", aux_logits=True)
    train_model.compile(optimizer="sgd", **googlenet.loss_arguments("sparse_categorical_crossentropy"))
    train_model.fit(images, googlenet.training_targets(labels))
    model = googlenet.strip_auxiliary(train_model)   # same weights, one output

With a ``tf.data`` pipeline: ``ds.map(lambda x, y: (x, googlenet.training_targets(y)))``.
"""

from __future__ import annotations

import keras

from keras_apps.layers import LocalResponseNormalization
from keras_apps.models import _common
from keras_apps.registry import register_model

PAPER = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"

#: Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) of each inception module.
INCEPTION_FILTERS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
#: Sec. 5: "their loss is added to the total loss of the network with a discount weight
#: (the losses of the auxiliary classifiers were weighted by 0.3)".
AUX_LOSS_WEIGHT = 0.3
#: ``loss_weights`` for ``compile`` of the training model (``aux_logits=True``).
LOSS_WEIGHTS = {"main": 1.0, "aux1": AUX_LOSS_WEIGHT, "aux2": AUX_LOSS_WEIGHT}
#: The inception module after which each auxiliary classifier sits.
AUX_POSITIONS = {"aux1": "4a", "aux2": "4d"}
#: Caffe's LRN in bvlc_googlenet (local_size 5, alpha 1e-4, beta 0.75, k 1; Caffe divides
#: alpha by the size).
LRN_ARGS = {"size": 5, "k": 1.0, "alpha": 1e-4 / 5, "beta": 0.75}
CLASSIFIER_NAME = "predictions"
#: Smallest input whose inception-4a map (ceil(size / 16)) fits the auxiliary 5x5 pooling.
AUX_MIN_SIZE = 65


def _conv(filters, kernel_size, name, strides=1, padding="same"):
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, activation="relu", name=name
    )


def _max_pool(name, strides=2):
    return keras.layers.MaxPooling2D(3, strides=strides, padding="same", name=name)


def inception_module(x, filters, name):
    """Fig. 2(b): the four branches concatenated; ``filters`` as in :data:`INCEPTION_FILTERS`.
    The output has ``#1x1 + #3x3 + #5x5 + pool proj`` channels."""
    n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj = filters
    branch1 = _conv(n1x1, 1, f"{name}_1x1")(x)
    branch2 = _conv(n3x3_reduce, 1, f"{name}_3x3_reduce")(x)
    branch2 = _conv(n3x3, 3, f"{name}_3x3")(branch2)
    branch3 = _conv(n5x5_reduce, 1, f"{name}_5x5_reduce")(x)
    branch3 = _conv(n5x5, 5, f"{name}_5x5")(branch3)
    branch4 = _max_pool(f"{name}_pool", strides=1)(x)
    branch4 = _conv(pool_proj, 1, f"{name}_pool_proj")(branch4)
    return keras.layers.Concatenate(axis=-1, name=f"{name}_output")(
        [branch1, branch2, branch3, branch4]
    )


def auxiliary_classifier(x, *, classes, classifier_activation, name):
    """Sec. 5: avgpool 5x5/3, conv 1x1 128 + ReLU, FC 1024 + ReLU, dropout 0.7, FC classes."""
    if x.shape[1] is None or x.shape[2] is None or min(x.shape[1], x.shape[2]) < 5:
        raise ValueError(
            f"The auxiliary classifier {name!r} needs a known feature map of at least 5x5 "
            f"(a fixed input of at least 65x65; the paper uses 224x224), got {tuple(x.shape[1:3])}."
        )
    x = keras.layers.AveragePooling2D(5, strides=3, name=f"{name}_ave_pool")(x)
    x = _conv(128, 1, f"{name}_conv")(x)
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = keras.layers.Dropout(0.7, name=f"{name}_drop_fc")(x)
    return _common.classifier(
        x, classes=classes, classifier_activation=classifier_activation, name=f"{name}_predictions"
    )


def loss_arguments(loss="sparse_categorical_crossentropy") -> dict:
    """``compile`` keywords for the training model: ``loss`` on each of the three outputs and
    ``loss_weights`` 1 (main) and 0.3 (each auxiliary classifier, Sec. 5)."""
    return {"loss": {key: loss for key in LOSS_WEIGHTS}, "loss_weights": dict(LOSS_WEIGHTS)}


def training_targets(labels) -> dict:
    """The targets of the training model: the same ``labels`` for every output."""
    return {key: labels for key in LOSS_WEIGHTS}


def strip_auxiliary(model: keras.Model, name: str | None = None) -> keras.Model:
    """The inference model of a GoogLeNet training model (``aux_logits=True``).

    It keeps the path from the input to the main classifier only, so it drops the auxiliary
    classifiers (Sec. 5: "at inference time, these auxiliary networks are discarded") and
    shares all its layers, hence its weights, with ``model``. A GoogLeNet without auxiliary
    classifiers is returned as it is.
    """
    names = [layer.name for layer in model.layers]
    if CLASSIFIER_NAME not in names:
        raise ValueError(
            f"Model {model.name!r} has no {CLASSIFIER_NAME!r} layer: strip_auxiliary expects a "
            "GoogLeNet built with include_top=True (and aux_logits=True)."
        )
    if not isinstance(model.output, dict):
        return model if name is None else keras.Model(model.input, model.output, name=name)
    return keras.Model(model.input, model.output["main"], name=name or model.name)


@register_model(
    "googlenet",
    family="googlenet",
    paper=PAPER,
    input_shape=(224, 224, 3),
    classes=1000,
    params=6_998_552,
    feature_layers={
        "stem": "conv2_norm2",
        "inception3": "inception_3b_output",
        "inception4": "inception_4e_output",
        "inception5": "inception_5b_output",
    },
    min_size=32,
    classifier_layer=CLASSIFIER_NAME,
    logits_layer=CLASSIFIER_NAME,
    training={"loss_weights": dict(LOSS_WEIGHTS), "inference_model": strip_auxiliary},
)
def googlenet(
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    aux_logits=False,
    dropout=0.4,
    name=None,
):
    """GoogLeNet (Table 1). ``aux_logits=True`` adds the two auxiliary classifiers and returns
    the training model with outputs ``{"main", "aux1", "aux2"}`` (needs ``include_top``);
    ``dropout`` is the paper's 0.4 before the last linear layer."""
    if not isinstance(aux_logits, bool):
        raise TypeError(f"`aux_logits` must be True or False, got {aux_logits!r}.")
    if aux_logits and not include_top:
        raise ValueError("`aux_logits=True` adds classifiers and needs `include_top=True`.")
    _common.check_rate("dropout", dropout)
    input_shape = _common.validate_builder_args(
        model_name="googlenet",
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
    if aux_logits and (None in input_shape[:2] or min(input_shape[:2]) < AUX_MIN_SIZE):
        raise ValueError(
            f"`aux_logits=True` flattens the 5x5/3-pooled output of inception 4a (stride 16), "
            f"which needs a fixed input of at least {AUX_MIN_SIZE}x{AUX_MIN_SIZE} (the paper: "
            f"224x224), got input_shape {input_shape}."
        )
    inputs, x = _common.image_input(input_shape, input_tensor)

    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = _conv(64, 7, "conv1_7x7_s2", strides=2, padding="valid")(x)
    x = _max_pool("pool1_3x3_s2")(x)
    x = LocalResponseNormalization(**LRN_ARGS, name="pool1_norm1")(x)
    x = _conv(64, 1, "conv2_3x3_reduce")(x)
    x = _conv(192, 3, "conv2_3x3")(x)
    x = LocalResponseNormalization(**LRN_ARGS, name="conv2_norm2")(x)
    x = _max_pool("pool2_3x3_s2")(x)

    aux_outputs = {}
    for stage, modules in (("3", "ab"), ("4", "abcde"), ("5", "ab")):
        if stage != "3":
            x = _max_pool(f"pool{int(stage) - 1}_3x3_s2")(x)
        for module in modules:
            key = stage + module
            x = inception_module(x, INCEPTION_FILTERS[key], f"inception_{key}")
            for aux_name, position in AUX_POSITIONS.items():
                if aux_logits and position == key:
                    aux_outputs[aux_name] = auxiliary_classifier(
                        x, classes=classes, classifier_activation=classifier_activation, name=aux_name
                    )

    x = _common.pooled_head(
        x,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
    )
    outputs = {"main": x, **aux_outputs} if aux_logits else x
    return _common.finish(inputs, outputs, model_name="googlenet", name=name, weights=weights)
