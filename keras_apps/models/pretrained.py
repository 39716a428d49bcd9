"""ImageNet weights for the networks that keras.applications also has.

``weights="imagenet"`` works for every registered model whose ``keras_applications`` field
names its keras.applications twin (VGG, ResNet, DenseNet, EfficientNet). The weights are
fetched by that keras.applications constructor (``weights="imagenet"``: downloaded once to
``~/.keras/models``, the only download path of the suite) and copied, weight by weight in
order, into our builder's model after every shape has been checked. This works because those
builders reproduce keras.applications' layers and their order exactly.

    >>> model = keras_apps.build("densenet121", weights="imagenet", include_top=False)
"""

from __future__ import annotations

import os
import re
import urllib.error

import keras

from keras_apps import registry

__all__ = [
    "imagenet_models",
    "check_imagenet_arguments",
    "keras_applications_model",
    "transplant_weights",
    "load_imagenet_weights",
]

#: keras.applications names its classifier "predictions"; a model with a layer of that name
#: was built with ``include_top=True``.
CLASSIFIER_NAME = "predictions"
IMAGENET_CLASSES = 1000


def imagenet_models() -> list[str]:
    """Registered names that accept ``weights="imagenet"`` (those with a keras.applications twin)."""
    return [name for name in registry.list_models() if registry.get_spec(name).keras_applications]


def _twin(model_name: str) -> str:
    try:
        twin = registry.get_spec(model_name).keras_applications
    except ValueError:
        twin = None
    if twin is None:
        raise ValueError(
            f"weights='imagenet' is not available for {model_name!r}: keras.applications has no "
            f"such network to take ImageNet weights from. Models with ImageNet weights: "
            f"{', '.join(imagenet_models())}. Use weights=None or a local .keras/.weights.h5 file."
        )
    return twin


def check_imagenet_arguments(
    *, model_name, include_top, classes, input_shape, default_input_shape, fixed_size_top
) -> None:
    """Fails early (before building) where ImageNet weights cannot fit the requested model."""
    twin = _twin(model_name)
    if input_shape[-1] != 3:
        raise ValueError(
            f"weights='imagenet' needs 3 input channels (RGB), got input_shape {input_shape}."
        )
    if include_top and classes != IMAGENET_CLASSES:
        raise ValueError(
            f"weights='imagenet' with include_top=True needs classes={IMAGENET_CLASSES} (the "
            f"ImageNet classifier of keras.applications.{twin}), got classes={classes}. For "
            "another number of classes use include_top=False and add your own head."
        )
    if include_top and fixed_size_top and tuple(input_shape[:2]) != tuple(default_input_shape[:2]):
        raise ValueError(
            f"{model_name} with weights='imagenet' and include_top=True flattens a "
            f"{default_input_shape[0]}x{default_input_shape[1]} feature map: input_shape must be "
            f"{tuple(default_input_shape)}, got {input_shape}."
        )


def keras_applications_model(model_name: str, include_top: bool) -> keras.Model:
    """The keras.applications twin of ``model_name`` with its ImageNet weights.

    With the top it is built at its default input size, without it at ``(None, None, 3)``;
    neither changes a weight shape of our models (their classifiers follow global pooling,
    and VGG's flattened size is checked up front).
    """
    twin = _twin(model_name)
    constructor = getattr(keras.applications, twin)
    try:
        return constructor(
            include_top=include_top,
            weights="imagenet",
            input_shape=None if include_top else (None, None, 3),
            classes=IMAGENET_CLASSES,
        )
    except Exception as err:  # network, cache and checksum failures all land here
        cache = os.path.join(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")), "models")
        url = re.search(r"https?://\S+?(?=: |\s|$)", str(err))
        file = f"{url.group(0).rsplit('/', 1)[-1]} (from {url.group(0)})" if url else "the weights file"
        where = (
            f"keras.applications.{twin}(weights='imagenet', include_top={include_top}) downloads "
            f"them once into {cache} (KERAS_HOME); offline, copy {file} there from a "
            "connected machine, or build with weights=None"
        )
        if _is_fetch_failure(err):
            raise FileNotFoundError(
                f"The ImageNet weights of {model_name!r} could not be fetched (no network?): "
                f"{where}. ({type(err).__name__}: {err})"
            ) from None
        raise ValueError(
            f"Could not get the ImageNet weights of {model_name!r}: {type(err).__name__}: {err}. "
            f"{where[0].upper()}{where[1:]}."
        ) from err


def _is_fetch_failure(err: Exception) -> bool:
    """keras.utils.get_file reports an unreachable URL as ``Exception("URL fetch failure ...")``."""
    return isinstance(err, (urllib.error.URLError, ConnectionError, TimeoutError)) or (
        "URL fetch failure" in str(err)
    )


def transplant_weights(source: keras.Model, target: keras.Model) -> None:
    """Copies ``source.get_weights()`` into ``target`` in order, after checking every shape."""
    source_weights, target_weights = source.weights, target.weights
    if len(source_weights) != len(target_weights):
        raise ValueError(
            f"Cannot transplant the weights of {source.name!r} into {target.name!r}: "
            f"{len(source_weights)} weight tensors there, {len(target_weights)} here."
        )
    for index, (src, dst) in enumerate(zip(source_weights, target_weights)):
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(
                f"Cannot transplant the weights of {source.name!r} into {target.name!r}: weight "
                f"{index} is {src.path} {tuple(src.shape)} there but {dst.path} "
                f"{tuple(dst.shape)} here."
            )
    target.set_weights(source.get_weights())


def load_imagenet_weights(model: keras.Model, model_name: str) -> None:
    """Fills ``model`` (built by the registered builder ``model_name``) with ImageNet weights."""
    include_top = any(layer.name == CLASSIFIER_NAME for layer in model.layers)
    reference = keras_applications_model(model_name, include_top=include_top)
    transplant_weights(reference, model)
