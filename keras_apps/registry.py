"""The model registry: every architecture is a builder registered by name.

Anchors: timm ``_registry.py`` and torchvision ``models/_api.py``. Registering a name twice
is an error (torchvision), unknown names fail with the closest known names in the message.

    >>> import keras_apps
    >>> keras_apps.list_models("resnet*")[:3]
    ['resnet101', 'resnet110_cifar', 'resnet152']
    >>> model = keras_apps.build("resnet20_cifar", classes=10)
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from typing import Callable, Mapping

__all__ = [
    "ModelSpec",
    "register_model",
    "build",
    "list_models",
    "model_info",
    "get_spec",
]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one registered builder.

    Attributes:
        name: registry name (also the default ``keras.Model`` name).
        builder: callable returning a ``keras.Model``; takes the keras.applications
            arguments (``include_top``, ``weights``, ``input_shape``, ...) as keywords.
        family: architecture family ("resnet", "vgg", ...).
        paper: citation of the paper that defines the network.
        input_shape: default input shape (H, W, C).
        classes: default number of classes.
        params: total parameter count (``model.count_params()``, trainable and
            non-trainable) of ``build(name)`` at the defaults; declared here and checked
            against the built model by the test suite.
        feature_layers: ordered mapping ``stage name -> layer name`` of the named
            intermediate features (the output of each stage), used by
            :func:`keras_apps.feature_extractor`.
        min_size: smallest input height/width the network accepts.
        keras_applications: name of the identical ``keras.applications`` network, if any.
    """

    name: str
    builder: Callable
    family: str
    paper: str
    input_shape: tuple
    classes: int
    params: int
    feature_layers: Mapping[str, str]
    min_size: int
    keras_applications: str | None = None

    def info(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "paper": self.paper,
            "input_shape": tuple(self.input_shape),
            "classes": self.classes,
            "params": self.params,
            "feature_layers": dict(self.feature_layers),
            "min_size": self.min_size,
            "keras_applications": self.keras_applications,
        }


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    family: str,
    paper: str,
    input_shape: tuple,
    classes: int,
    params: int,
    feature_layers: Mapping[str, str],
    min_size: int,
    keras_applications: str | None = None,
):
    """Decorator registering ``builder`` under ``name``; a second registration is an error."""

    def decorator(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(
                f"Model name {name!r} is already registered (by "
                f"{_REGISTRY[name].builder.__module__}.{_REGISTRY[name].builder.__name__}); "
                "names must be unique."
            )
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=builder,
            family=family,
            paper=paper,
            input_shape=tuple(input_shape),
            classes=int(classes),
            params=int(params),
            feature_layers=dict(feature_layers),
            min_size=int(min_size),
            keras_applications=keras_applications,
        )
        return builder

    return decorator


def _ensure_loaded() -> None:
    # Importing the model package registers every family.
    from keras_apps import models  # noqa: F401


def get_spec(name: str) -> ModelSpec:
    """Returns the :class:`ModelSpec` of ``name``; unknown names list the closest ones."""
    _ensure_loaded()
    if not isinstance(name, str):
        raise TypeError(f"Model name must be a string, got {type(name).__name__}: {name!r}")
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.4)
        hint = f" Closest names: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown model {name!r}.{hint} `keras_apps.list_models()` lists all "
            f"{len(_REGISTRY)} registered names."
        ) from None


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by an fnmatch pattern (``"resnet*"``)."""
    _ensure_loaded()
    names = sorted(_REGISTRY)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def model_info(name: str) -> dict:
    """Family, paper, default input shape, classes and parameter count of ``name``."""
    return get_spec(name).info()


def build(name: str, /, **overrides):
    """Builds the registered model ``name``; keywords override the builder defaults.

    Example: ``keras_apps.build("resnet50", classes=10, input_shape=(64, 64, 3))``.
    """
    spec = get_spec(name)
    return spec.builder(**overrides)
