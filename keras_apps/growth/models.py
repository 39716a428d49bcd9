"""The developmental networks of "Growing a Brain" (Wang, Ramanan, Hebert, CVPR 2017) as
registered models, at the paper's sizes (Sec. 5.1), over AlexNet and VGG-16:

- ``alexnet_da`` / ``vgg16_da`` (DA-CNN): a new top layer FC_a of 4096 ReLU units;
- ``alexnet_wa`` / ``vgg16_wa`` (WA-CNN): FC7 widened by 1024 new units FC7+;
- ``alexnet_dwa`` / ``vgg16_dwa`` (DWA-CNN): FC7+ of 1024 units, then FC_a of 4096;
- ``alexnet_wwa`` / ``vgg16_wwa`` (WWA-CNN): FC7+ of 1024 and FC6+ of 512 (S6 = S7 / 2).

VGG-16's FC6 and FC7 are the layers keras.applications names ``fc1`` and ``fc2``. Each
builder builds its base network (``keras_apps.build("alexnet" | "vgg16")``) with
``base_weights`` ("each starting from its base network's weights": ``"imagenet"`` for VGG-16
or a ``.keras`` / ``.weights.h5`` file of the base) and ``source_classes`` classes, then grows
it with :func:`keras_apps.growth.grow` to a ``classes``-way classifier. With ``keep_source``
(the default) the model's outputs are ``{"predictions": target task, "task0": source task}``;
the source head is frozen (it does not train on the target task, so every trainable weight
of the built model gets a gradient from the target loss; :func:`~keras_apps.growth.retrain_source`
trains it on source data).

``include_top=False`` returns the grown representation module without any classifier: the
concatenation of old and new units (``fc7 ⊕ fc7+``; in depth modes the scaled FC_a), a
vector per image, so ``pooling`` must be None. The convolutional stages (``feature_layers``)
are the base network's.
"""

from __future__ import annotations

import os

import keras

from keras_apps import graph, registry
from keras_apps.growth import core
from keras_apps.growth.finetune import task_heads
from keras_apps.models import _common

PAPER = "Wang, Ramanan, Hebert, Growing a Brain: Fine-Tuning by Increasing Model Capacity, CVPR 2017"

#: Training hints by name: the loss and the metrics are on the target task's head.
TRAINING = {"loss_weights": {"predictions": 1.0}, "evaluation_output": "predictions"}

#: The base networks: registry name -> (default input shape, min size, preprocessing of
#: its weight sources).
BASES = {
    "alexnet": ((227, 227, 3), 67, {"none": "dataset"}),
    "vgg16": ((224, 224, 3), 32, {"none": "dataset", "imagenet": "caffe"}),
}
#: Sec. 5.1: variant -> (growth mode, ``units``, ``depth_units``).
VARIANTS = {
    "da": ("depth", 4096, None),
    "wa": ("width", 1024, None),
    "dwa": ("depth_width", 1024, 4096),
    "wwa": ("recursive_width", 1024, None),
}


def _check_weights(model_name: str, weights):
    if weights is None:
        return None
    if isinstance(weights, str) and weights == "imagenet":
        raise ValueError(
            f"`weights`='imagenet': {model_name} has no ImageNet weights of its own; its base "
            "network's come through `base_weights`='imagenet' (`weights` is a .keras or "
            ".weights.h5 file of the grown model)."
        )
    return os.fspath(weights) if isinstance(weights, os.PathLike) else weights


def _representation(model: keras.Model):
    """The tensor the new classifier reads, before any dropout: the grown representation."""
    layer = model.get_layer("predictions")
    tensor = core._node(model, layer).input_tensors[0]
    while isinstance(core._producer(tensor), keras.layers.Dropout):
        tensor = core._node(model, core._producer(tensor)).input_tensors[0]
    return tensor


def build_grown(
    base: str,
    variant: str,
    *,
    include_top=True,
    weights=None,
    base_weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    source_classes=1000,
    classifier_activation="softmax",
    units=None,
    depth_units=None,
    normalize=True,
    scale_init=10.0,
    keep_source=True,
    name=None,
) -> keras.Model:
    """``<base>_<variant>`` (module docstring); ``units`` / ``depth_units`` default to the
    paper's sizes of :data:`VARIANTS`."""
    if base not in BASES:
        raise ValueError(f"Unknown base network {base!r}; choose one of {', '.join(BASES)}.")
    if variant not in VARIANTS:
        raise ValueError(f"Unknown growth variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
    model_name = f"{base}_{variant}"
    mode, default_units, default_depth_units = VARIANTS[variant]
    default_shape, min_size = BASES[base][:2]
    weights = _check_weights(model_name, weights)
    if not isinstance(keep_source, bool):
        raise TypeError(f"`keep_source` must be True or False, got {keep_source!r}.")
    input_shape = _common.validate_builder_args(
        model_name=model_name, include_top=True, weights=weights, input_shape=input_shape,
        input_tensor=input_tensor, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, default_input_shape=default_shape,
        min_size=min_size, fixed_size_top=True,
    )
    if isinstance(source_classes, bool) or not isinstance(source_classes, int) or source_classes < 1:
        raise ValueError(f"`source_classes` must be a positive integer, got {source_classes!r}.")
    if not include_top and pooling is not None:
        raise ValueError(
            f"`pooling`={pooling!r} does not apply to {model_name} with include_top=False: its "
            "representation is the vector of old and new FC units, not a feature map; pass "
            "pooling=None."
        )

    source = registry.build(
        base, input_shape=input_shape, classes=source_classes, weights=base_weights,
        classifier_activation=classifier_activation,
    )
    grown = core.grow(
        source, mode, units=default_units if units is None else units,
        depth_units=default_depth_units if depth_units is None and mode == "depth_width" else depth_units,
        classes=classes, normalize=normalize, scale_init=scale_init, keep_source=keep_source,
        name=name or model_name,
    )
    for layers in task_heads(grown).values():
        for layer_name in layers:
            grown.get_layer(layer_name).trainable = False
    if weights is not None:
        _common.load_weights(grown, weights)
    if input_tensor is not None:  # the grown graph, replayed on the caller's tensor
        outputs = graph.apply_layers(grown, {grown.inputs[0]._keras_history.operation.name: input_tensor})
        sources = keras.utils.get_source_inputs(input_tensor)
        grown = keras.Model(sources[0] if len(sources) == 1 else sources, outputs, name=grown.name)
    if include_top:
        return grown
    return keras.Model(grown.inputs[0], _representation(grown), name=grown.name)


def _register(base: str, variant: str, params: int, description: str):
    mode, default_units, default_depth_units = VARIANTS[variant]
    default_shape, min_size, preprocessing = BASES[base]
    base_spec = registry.get_spec(base)
    registered_name = f"{base}_{variant}"

    @registry.register_model(
        registered_name,
        family="growth",
        paper=PAPER,
        input_shape=default_shape,
        classes=1000,
        params=params,
        feature_layers=dict(base_spec.feature_layers),
        min_size=min_size,
        classifier_layer="predictions",
        logits_layer="predictions",
        preprocessing=preprocessing,
        training=TRAINING,
    )
    def builder(
        include_top=True,
        weights=None,
        base_weights=None,
        input_shape=None,
        input_tensor=None,
        pooling=None,
        classes=1000,
        source_classes=1000,
        classifier_activation="softmax",
        units=default_units,
        depth_units=default_depth_units,
        normalize=True,
        scale_init=10.0,
        keep_source=True,
        name=None,
    ):
        return build_grown(
            base, variant, include_top=include_top, weights=weights, base_weights=base_weights,
            input_shape=input_shape, input_tensor=input_tensor, pooling=pooling, classes=classes,
            source_classes=source_classes, classifier_activation=classifier_activation,
            units=units, depth_units=depth_units, normalize=normalize, scale_init=scale_init,
            keep_source=keep_source, name=name,
        )

    builder.__name__ = registered_name
    builder.__qualname__ = registered_name
    builder.__doc__ = (
        f"{description}\n\nGrown from ``{base}`` (``base_weights``: 'imagenet' or a file of "
        f"{base}; ``source_classes`` its classes) by :func:`keras_apps.growth.grow` with mode "
        f"{mode!r}; ``weights`` is a .keras or .weights.h5 file of this grown model (as built "
        "with include_top=True and the same classes, source_classes and keep_source; "
        "include_top=False then keeps its representation). See :mod:`keras_apps.growth.models`."
    )
    return builder


alexnet_da = _register("alexnet", "da", 83_260_752, "DA-CNN on AlexNet: FC_a of 4096 units after FC7.")
alexnet_wa = _register("alexnet", "wa", 72_723_792, "WA-CNN on AlexNet: FC7 widened by 1024 units (FC7+).")
alexnet_dwa = _register("alexnet", "dwa", 92_679_504, "DWA-CNN on AlexNet: FC7+ of 1024 units, then FC_a of 4096.")
alexnet_wwa = _register("alexnet", "wwa", 80_068_944, "WWA-CNN on AlexNet: FC7+ of 1024 units and FC6+ of 512.")
vgg16_da = _register("vgg16", "da", 159_239_952, "DA-CNN on VGG-16: FC_a of 4096 units after FC7 (fc2).")
vgg16_wa = _register("vgg16", "wa", 148_702_992, "WA-CNN on VGG-16: FC7 (fc2) widened by 1024 units.")
vgg16_dwa = _register("vgg16", "dwa", 168_658_704, "DWA-CNN on VGG-16: FC7+ of 1024 units, then FC_a of 4096.")
vgg16_wwa = _register("vgg16", "wwa", 164_174_608, "WWA-CNN on VGG-16: FC7+ (fc2) of 1024 units and FC6+ (fc1) of 512.")

__all__ = ["BASES", "PAPER", "TRAINING", "VARIANTS", "build_grown"]
