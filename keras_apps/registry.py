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
import inspect
from typing import Callable, Mapping

__all__ = [
    "ModelSpec",
    "register_model",
    "build",
    "list_models",
    "model_info",
    "get_spec",
    "check_arguments",
    "preprocessing_for",
    "training_hints",
    "serving_hint",
    "PREPROCESSING_MODES",
    "TRAINING_HINTS",
]

#: Input preprocessing a weight source expects: "dataset" (the dataset's own per-channel
#: mean/std, weights trained by this suite) or a ``keras.applications`` ``preprocess_input``
#: mode: "caffe" (RGB->BGR, minus the ImageNet BGR mean), "torch" (/255, ImageNet mean/std),
#: "tf" (x / 127.5 - 1), "raw" (pixels 0..255, the model normalises them itself).
PREPROCESSING_MODES = ("dataset", "caffe", "torch", "tf", "raw")

#: Keys a model's ``training`` hints may have (see :class:`ModelSpec`).
TRAINING_HINTS = ("loss_weights", "loss", "inference_model", "evaluation_output")


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
        classifier_layer: the last Dense or 1x1 convolution producing class scores
            ("predictions"; "cccp6" for NIN).
        logits_layer: the layer whose output is the pre-softmax class scores, shape
            ``(N, classes)``; the classifier activation is always a separate layer
            "predictions_activation" after it (none with ``classifier_activation=None``).
        preprocessing: ``weight source -> preprocessing mode`` (:data:`PREPROCESSING_MODES`):
            ``"none"`` (trained here) and, for models with ImageNet weights, ``"imagenet"``.
        training: family training hints (:data:`TRAINING_HINTS`), all optional:
            ``"loss_weights"`` (output key -> loss weight for models whose outputs are a
            dict with exactly those keys), ``"loss"`` (callable model -> the loss structure
            used when ``fit`` is given none, e.g. a label-free term on one output),
            ``"inference_model"`` (callable model -> the model that is saved and evaluated)
            and ``"evaluation_output"`` (the output key whose class probabilities
            ``evaluate`` scores, for models whose multi-output model is the inference model).
        serving: None (``model.export``'s SavedModel) or a callable ``model -> (tf.Module,
            signatures, defaults)`` that :func:`keras_apps.export.export_model` saves for
            the ``"saved_model"`` and ``"serving"`` formats instead, for models whose
            serving function is more than the Keras forward pass (e.g. HD-CNN's
            conditional execution). ``signatures`` maps signature keys (at least
            ``"serving_default"``) to concrete functions taking the image input plus
            optional scalar inputs; ``defaults`` gives each of those scalar inputs the value
            under which the signature computes exactly the Keras model (verification feeds
            them, and :func:`keras_apps.export.load_exported` uses them when the caller
            passes none).
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
    classifier_layer: str | None = None
    logits_layer: str | None = None
    preprocessing: Mapping[str, str] = dataclasses.field(default_factory=lambda: {"none": "dataset"})
    training: Mapping[str, object] = dataclasses.field(default_factory=dict)
    serving: Callable | None = None

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
            "classifier_layer": self.classifier_layer,
            "logits_layer": self.logits_layer,
            "preprocessing": dict(self.preprocessing),
            "training": dict(self.training),
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
    classifier_layer: str | None = None,
    logits_layer: str | None = None,
    preprocessing: Mapping[str, str] | None = None,
    training: Mapping[str, object] | None = None,
    serving: Callable | None = None,
):
    """Decorator registering ``builder`` under ``name``; a second registration is an error."""
    preprocessing = {"none": "dataset"} if preprocessing is None else dict(preprocessing)
    bad = {k: v for k, v in preprocessing.items() if v not in PREPROCESSING_MODES}
    if bad or "none" not in preprocessing:
        raise ValueError(
            f"`preprocessing` of {name!r} must map weight sources (at least 'none') to one of "
            f"{PREPROCESSING_MODES}, got {preprocessing!r}."
        )
    training = dict(training or {})
    unknown = sorted(set(training) - set(TRAINING_HINTS))
    if unknown:
        raise ValueError(
            f"`training` hints of {name!r} may be {', '.join(map(repr, TRAINING_HINTS))}, got {unknown}."
        )

    if serving is not None and not callable(serving):
        raise ValueError(
            f"`serving` of {name!r} must be None or a callable model -> (tf.Module, signatures, "
            f"defaults), got {type(serving).__name__}: {serving!r}."
        )

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
            classifier_layer=classifier_layer,
            logits_layer=logits_layer,
            preprocessing=preprocessing,
            training=training,
            serving=serving,
        )
        return builder

    return decorator


#: Packages whose import registers models: the families, then the methods that build
#: registered models around them.
MODEL_PACKAGES = ("keras_apps.models", "keras_apps.hdcnn", "keras_apps.growth", "keras_apps.overfeat")


def _ensure_loaded() -> None:
    import importlib

    for package in MODEL_PACKAGES:
        importlib.import_module(package)


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
    if pattern is not None and not isinstance(pattern, str):
        raise TypeError(
            f"`pattern` must be None or an fnmatch pattern string such as 'resnet*', got "
            f"{type(pattern).__name__}: {pattern!r}."
        )
    names = sorted(_REGISTRY)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def model_info(name: str) -> dict:
    """Family, paper, default input shape, classes, parameter count, classifier and logits
    layers, preprocessing and training hints of ``name``."""
    return get_spec(name).info()


def check_arguments(name: str, overrides: Mapping[str, object]) -> None:
    """Raises ValueError if the builder of ``name`` does not take every keyword in
    ``overrides`` (naming them and the ones it takes); builds nothing."""
    spec = get_spec(name)
    parameters = inspect.signature(spec.builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [
        p.name for p in parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = [key for key in overrides if key not in accepted]
    if unknown:
        listed = ", ".join(f"`{key}`" for key in unknown)
        raise ValueError(f"{name} does not take {listed}; it takes: {', '.join(accepted)}.")


def preprocessing_for(name: str, weights=None) -> str:
    """The input preprocessing mode (:data:`PREPROCESSING_MODES`) that ``build(name,
    weights=weights)`` expects: ``weights`` None or a local file (trained here) -> the
    ``"none"`` entry, ``"imagenet"`` -> the mode of keras.applications' ImageNet weights."""
    spec = get_spec(name)
    source = "imagenet" if weights == "imagenet" else "none"
    if source not in spec.preprocessing:
        raise ValueError(
            f"{name} has no {source!r} weights; its preprocessing is known for: "
            f"{', '.join(sorted(spec.preprocessing))}."
        )
    return spec.preprocessing[source]


#: ``provider(model) -> dict | None``: training hints of models that are recognised by their
#: structure rather than by a registry name (e.g. a grown network of any family).
_HINT_PROVIDERS: list[Callable] = []


def register_training_hints(provider: Callable) -> Callable:
    """Registers ``provider(model) -> dict | None`` giving :data:`TRAINING_HINTS` for built
    models the registry does not know by name (a method package recognising its models by
    their structure: ``keras_apps.growth`` for grown networks). Providers are asked in
    registration order, after the registry name; the first dict returned wins. Returns the
    provider (usable as a decorator)."""
    if not callable(provider):
        raise TypeError(f"A training-hint provider must be callable, got {provider!r}.")
    if provider not in _HINT_PROVIDERS:
        _HINT_PROVIDERS.append(provider)
    return provider


def training_hints(model_or_name) -> dict:
    """The family training hints (:attr:`ModelSpec.training`) of a registry name or of a
    model named after one (``model.name``); for a model the registry does not know by name,
    those of the first provider (:func:`register_training_hints`) that recognises it;
    ``{}`` otherwise."""
    name = model_or_name if isinstance(model_or_name, str) else getattr(model_or_name, "name", None)
    if not isinstance(name, str):
        raise TypeError(
            f"`model_or_name` must be a registry name or a keras.Model, got "
            f"{type(model_or_name).__name__}: {model_or_name!r}."
        )
    _ensure_loaded()
    spec = _REGISTRY.get(name)
    if spec is not None and spec.training:
        return dict(spec.training)
    if not isinstance(model_or_name, str):
        for provider in _HINT_PROVIDERS:
            hints = provider(model_or_name)
            if hints:
                unknown = sorted(set(hints) - set(TRAINING_HINTS))
                if unknown:
                    raise ValueError(
                        f"Training-hint provider {provider!r} returned unknown hints {unknown}; "
                        f"hints may be {', '.join(map(repr, TRAINING_HINTS))}."
                    )
                return dict(hints)
    return {}


def serving_hint(model_or_name) -> Callable | None:
    """The :attr:`ModelSpec.serving` callable of a registry name or of a model named after
    one (``model.name``); None when the name is unknown or registers none."""
    name = model_or_name if isinstance(model_or_name, str) else getattr(model_or_name, "name", None)
    if not isinstance(name, str):
        raise TypeError(
            f"`model_or_name` must be a registry name or a keras.Model, got "
            f"{type(model_or_name).__name__}: {model_or_name!r}."
        )
    _ensure_loaded()
    spec = _REGISTRY.get(name)
    return None if spec is None else spec.serving


def build(name: str, /, **overrides):
    """Builds the registered model ``name``; keywords override the builder defaults.

    Example: ``keras_apps.build("resnet50", classes=10, input_shape=(64, 64, 3))``.
    Keywords the builder does not take fail before anything is built
    (:func:`check_arguments`).
    """
    spec = get_spec(name)
    check_arguments(name, overrides)
    return spec.builder(**overrides)
