"""The HD-CNN model around any registered building block (Yan et al., ICCV 2015, Sec. 3).

``keras_apps.build("hdcnn")`` builds the paper's CIFAR-100 layout on NIN: the building block
is split at a named layer (``shared_until``) into

- **shared layers** (nested model ``"shared"``): the front of the building block;
- **coarse component** (``"coarse_component"``): a copy of the rear layers, giving the
  building block's C-way fine prediction ``B^f``, summed into K coarse probabilities by the
  fine-to-coarse aggregation (``"fine_to_coarse"``, the model output ``"coarse"``);
- **K fine components** (``"fine_component_<k>"``): copies of the rear layers whose last
  classifier layer has ``|S_k|`` outputs only; their softmaxes are scattered back to C
  classes (``"fine_scatter"``, shape (N, K, C));
- **probabilistic averaging** (``"probabilistic_averaging"``, the output
  ``"predictions"``): ``p = sum_k B_k p_k / sum_k B_k``.

The model's outputs are ``{"coarse": B (N, K), "predictions": p (N, C)}``; both are
probabilities (there are no logits: HD-CNN averages probabilities).

Two conventions (:data:`CONVENTIONS`), chosen with ``convention=``:

- ``"paper"`` (default, the paper's text): disjoint aggregation with P^d, renormalised
  averaging, consistency weight lambda = 20, targets t_k from the training images of each
  (overlapping) coarse category;
- ``"release"`` (the authors' Caffe release): aggregation over the *overlapping* sets
  renormalised over K, averaging without renormalisation, lambda = 5, t_k from set sizes.

Any other registered backbone works: ``build("hdcnn", building_block="vgg16",
shared_until="block2_pool")`` (``shared_until`` must be a layer that cuts the graph; by
default the first stage of ``model_info(name)["feature_layers"]``, or the preset of
:data:`SHARED_UNTIL`). A built (e.g. trained) building block can be passed as a
``keras.Model``; every component is then initialised from its weights (training phase 3).
"""

from __future__ import annotations

import dataclasses
import difflib
import pathlib

import keras
import numpy as np

from keras_apps import graph, registry
from keras_apps.hdcnn.hierarchy import Hierarchy
from keras_apps.layers.hdcnn import FineScatter, FineToCoarse, ProbabilisticAveraging
from keras_apps.models._common import INPUT_NAME

__all__ = [
    "CONVENTIONS",
    "Convention",
    "SHARED_UNTIL",
    "HDCNNComponents",
    "build_hdcnn",
    "components",
    "hierarchy_of",
    "resolve_hierarchy",
]

PAPER = (
    "Yan, Zhang, Piramuthu, Jagadeesh, DeCoste, Di, Yu, HD-CNN: Hierarchical Deep "
    "Convolutional Neural Networks for Large Scale Visual Recognition, ICCV 2015"
)


@dataclasses.dataclass(frozen=True)
class Convention:
    """How the coarse probabilities, the averaging and the consistency loss are computed.

    Attributes:
        name: "paper" or "release".
        aggregation: "disjoint" (B_k sums the fine probabilities of P^d's group k) or
            "overlapping" (sums over the overlapping set S_k, renormalised over k).
        renormalize: the averaging divides by ``sum_k B_k``.
        lam: weight lambda of the coarse consistency term.
        targets: how t_k is computed (:meth:`Hierarchy.coarse_targets` convention).
    """

    name: str
    aggregation: str
    renormalize: bool
    lam: float
    targets: str


CONVENTIONS = {
    "paper": Convention("paper", "disjoint", True, 20.0, "paper"),
    "release": Convention("release", "overlapping", False, 5.0, "release"),
}

#: Classes of ``build("hdcnn")``: the paper's CIFAR-100.
DEFAULT_CLASSES = 100

#: Default split layer (the last shared layer) per building block; other backbones use the
#: first stage of their registered ``feature_layers``.
SHARED_UNTIL = {
    "nin_cifar": "drop1",  # the release: conv1, cccp1, cccp2, pool1, drop1
    "nin_imagenet": "drop3",  # the release: shared layers up to pool3
    "resnet20_cifar": "conv2_block3_out",  # stage 1 (32x32x16)
}


def _convention(convention) -> Convention:
    if isinstance(convention, Convention):
        return convention
    if convention not in CONVENTIONS:
        raise ValueError(
            f"Unknown HD-CNN convention {convention!r}; choose one of {', '.join(CONVENTIONS)}."
        )
    return CONVENTIONS[convention]


def resolve_hierarchy(hierarchy, num_classes: int) -> Hierarchy:
    """A :class:`Hierarchy` from None (the default one for ``num_classes``), a Hierarchy, a
    dict (``Hierarchy.from_dict``) or a path to a JSON file (ours or the authors' format)."""
    if hierarchy is None:
        return Hierarchy.default(num_classes)
    if isinstance(hierarchy, Hierarchy):
        result = hierarchy
    elif isinstance(hierarchy, dict):
        result = Hierarchy.from_dict(hierarchy)
    elif isinstance(hierarchy, (str, pathlib.Path)):
        result = Hierarchy.load(hierarchy)
    else:
        raise TypeError(
            "`hierarchy` must be None, a keras_apps.hdcnn.Hierarchy, a dict or a path to a "
            f"hierarchy JSON file, got {type(hierarchy).__name__}: {hierarchy!r}."
        )
    if result.num_fine != num_classes:
        raise ValueError(
            f"The hierarchy covers {result.num_fine} fine classes but the model has "
            f"classes={num_classes}."
        )
    return result


def _building_block(building_block, *, input_shape, classes, kwargs):
    """(model, registry name or None)."""
    if isinstance(building_block, keras.Model):
        if kwargs:
            raise TypeError("`building_block_kwargs` only apply to a registry name, not to a built model.")
        model = building_block
        if input_shape is not None and tuple(model.inputs[0].shape[1:]) != tuple(input_shape):
            raise ValueError(
                f"The building block takes input shape {tuple(model.inputs[0].shape[1:])}, not "
                f"input_shape={tuple(input_shape)}."
            )
        name = model.name if model.name in registry.list_models() else None
    elif isinstance(building_block, str):
        if building_block.startswith("hdcnn"):
            raise ValueError(f"The building block must be a plain CNN, not {building_block!r}.")
        build_kwargs = {"classes": classes, **kwargs}
        if input_shape is not None:
            build_kwargs["input_shape"] = tuple(input_shape)
        model = registry.build(building_block, **build_kwargs)
        name = building_block
    else:
        raise TypeError(
            f"`building_block` must be a registry name or a keras.Model, got "
            f"{type(building_block).__name__}: {building_block!r}."
        )
    if len(model.inputs) != 1 or isinstance(model.output, (dict, list, tuple)):
        raise ValueError(
            f"The building block {model.name!r} must have one input and one output (class "
            "probabilities); build it without auxiliary heads."
        )
    output_layer = model.outputs[0]._keras_history.operation
    activation = getattr(output_layer, "activation", None)
    if getattr(activation, "__name__", "") != "softmax":
        raise ValueError(
            f"The building block {model.name!r} must end in a softmax (HD-CNN averages "
            f"probabilities); its output layer {output_layer.name!r} does not. Build it with "
            "classifier_activation='softmax'."
        )
    if classes is not None and model.outputs[0].shape[-1] != classes:
        raise ValueError(
            f"The building block has {model.outputs[0].shape[-1]} classes, not classes={classes}."
        )
    return model, name


def _classifier_layer(model, name):
    """The last Dense/Conv2D producing the C class scores."""
    if name is not None:
        layer_name = registry.get_spec(name).classifier_layer
        if layer_name:
            return model.get_layer(layer_name)
    classes = model.outputs[0].shape[-1]
    for layer in reversed(model.layers):
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            width = layer.units if isinstance(layer, keras.layers.Dense) else layer.filters
            if width == classes:
                return layer
            break
    raise ValueError(
        f"Cannot find the classifier layer (a Dense or Conv2D with {classes} outputs) of "
        f"{model.name!r}."
    )


def _check_split(model, layer_name):
    if not isinstance(layer_name, str):
        raise TypeError(f"`shared_until` must be a layer name, got {type(layer_name).__name__}: {layer_name!r}.")
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        close = difflib.get_close_matches(layer_name, names, n=5, cutoff=0.5)
        hint = f" Closest layer names: {', '.join(close)}." if close else ""
        raise ValueError(f"`shared_until`: the building block {model.name!r} has no layer {layer_name!r}.{hint}")
    if layer_name in (model.outputs[0]._keras_history.operation.name,):
        raise ValueError(f"`shared_until` {layer_name!r} is the output layer; nothing would be left to branch.")


def _compact_classifier(layer, size: int, suffix: str):
    config = layer.get_config()
    config["name"] = f"{layer.name}{suffix}"
    config["units" if isinstance(layer, keras.layers.Dense) else "filters"] = size
    return layer.__class__.from_config(config)


def build_hdcnn(
    building_block="nin_cifar",
    hierarchy=None,
    shared_until=None,
    *,
    shared_layers: bool = True,
    convention: str = "paper",
    input_shape=None,
    classes: int | None = None,
    building_block_kwargs: dict | None = None,
    fine_classifier_init: str = "random",
    weights=None,
    name: str | None = None,
) -> keras.Model:
    """Builds HD-CNN around ``building_block`` (module docstring).

    Args:
        building_block: registry name (built with ``input_shape``, ``classes`` and
            ``building_block_kwargs``) or a built ``keras.Model`` ending in a softmax;
            every component copies its weights.
        hierarchy: None (:meth:`Hierarchy.default`: K = min(9, round(sqrt(C))) contiguous
            groups, so ``build("hdcnn")`` always works; learn one with
            :func:`keras_apps.hdcnn.learn_hierarchy` or load the authors'), a
            :class:`Hierarchy`, its dict, or a JSON path (ours or the authors' format).
        shared_until: the last shared layer (default :data:`SHARED_UNTIL` or the first
            registered stage); it must cut the graph.
        shared_layers: False builds the paper's "without shared layers" variant: every
            component is a full copy of the building block.
        convention: "paper" or "release" (:data:`CONVENTIONS`).
        fine_classifier_init: "random" (the paper: the fine components' rear layers come
            from the building block except the last layer, freshly initialised) or
            "building_block" (the last layer keeps the building block's weights of the
            classes in S_k, so the untrained fine component is the building block
            restricted to S_k).
        classes: C (default 100, CIFAR-100; a built building block brings its own).
        weights: None or a ``.weights.h5`` file of this model.
        name: model name (default "hdcnn").
    """
    conv = _convention(convention)
    if fine_classifier_init not in ("random", "building_block"):
        raise ValueError(
            f"`fine_classifier_init` must be 'random' or 'building_block', got {fine_classifier_init!r}."
        )
    if not isinstance(shared_layers, bool):
        raise ValueError(f"`shared_layers` must be True or False, got {shared_layers!r}.")
    if classes is None and not isinstance(building_block, keras.Model):
        classes = DEFAULT_CLASSES
    block, block_name = _building_block(
        building_block, input_shape=input_shape, classes=classes,
        kwargs=dict(building_block_kwargs or {}),
    )
    num_classes = int(block.outputs[0].shape[-1])
    tree = resolve_hierarchy(hierarchy, num_classes)
    input_layer = block.inputs[0]._keras_history.operation
    if shared_layers:
        if shared_until is None:
            shared_until = SHARED_UNTIL.get(block_name) if block_name else None
            if shared_until is None and block_name:
                shared_until = next(iter(registry.get_spec(block_name).feature_layers.values()))
            if shared_until is None:
                raise ValueError(
                    f"The building block {block.name!r} is not a registry model: pass "
                    "`shared_until` (the last shared layer)."
                )
        _check_split(block, shared_until)
        cut = shared_until
    else:
        if shared_until is not None:
            raise ValueError("`shared_until` does not apply with shared_layers=False.")
        cut = input_layer.name

    inputs = keras.Input(shape=tuple(block.inputs[0].shape[1:]), name=INPUT_NAME)
    if shared_layers:
        front, _ = graph.split_model(block, cut)
        shared = graph.with_input_shape(front, tuple(front.inputs[0].shape[1:]), name="shared")
        features = shared(inputs)
        feature_shape = tuple(shared.outputs[0].shape[1:])
    else:
        features = inputs
        feature_shape = tuple(inputs.shape[1:])

    def component(suffix, clone_function=None, component_name=None):
        component_input = keras.Input(shape=feature_shape, name="shared_features")
        try:
            outputs = graph.apply_layers(
                block, {cut: component_input}, clone=True, suffix=suffix, clone_function=clone_function
            )
        except ValueError as err:
            raise ValueError(f"`shared_until` {cut!r} cannot split {block.name!r}: {err}") from None
        return keras.Model(component_input, outputs, name=component_name)

    coarse_component = component("_coarse", component_name="coarse_component")
    fine_probabilities = coarse_component(features)
    if conv.aggregation == "disjoint":
        groups = [sorted(np.flatnonzero(tree.fine_to_coarse == k).tolist()) for k in range(tree.num_coarse)]
        aggregation = FineToCoarse(groups, num_classes, normalize=False, name="fine_to_coarse")
    else:
        aggregation = FineToCoarse(tree.coarse_sets, num_classes, normalize=True, name="fine_to_coarse")
    coarse = aggregation(fine_probabilities)

    classifier = _classifier_layer(block, block_name)
    compact = []
    for k, members in enumerate(tree.coarse_sets):
        suffix = f"_fine_{k}"
        replacement = {}

        def clone_function(layer, members=members, suffix=suffix, replacement=replacement):
            if layer is classifier:
                replacement["layer"] = _compact_classifier(layer, len(members), suffix)
                return replacement["layer"]
            return None

        fine = component(suffix, clone_function, component_name=f"fine_component_{k}")
        if fine_classifier_init == "building_block":
            kernel, *bias = classifier.get_weights()
            replacement["layer"].set_weights([kernel[..., members], *(b[members] for b in bias)])
        compact.append(fine(features))
    scatter = FineScatter(tree.coarse_sets, num_classes, fine_to_coarse=tree.fine_to_coarse.tolist(),
                          name="fine_scatter")
    scattered = scatter(compact)
    predictions = ProbabilisticAveraging(renormalize=conv.renormalize, name="probabilistic_averaging")(
        [coarse, scattered]
    )
    model = keras.Model(inputs, {"coarse": coarse, "predictions": predictions}, name=name or "hdcnn")
    if weights is not None:
        model.load_weights(weights)
    return model


@dataclasses.dataclass
class HDCNNComponents:
    """The parts of a built HD-CNN (for routing, training phases and analyses)."""

    shared: keras.Model | None
    coarse: keras.Model
    aggregation: FineToCoarse
    fine: list
    scatter: FineScatter
    averaging: ProbabilisticAveraging

    @property
    def num_coarse(self) -> int:
        return len(self.fine)


def components(model: keras.Model) -> HDCNNComponents:
    """The shared layers (None without them), coarse component, aggregation, fine
    components, scatter and averaging layers of an HD-CNN ``model``."""
    names = {layer.name: layer for layer in model.layers}
    required = ("coarse_component", "fine_to_coarse", "fine_scatter", "probabilistic_averaging")
    missing = [n for n in required if n not in names]
    if missing:
        raise ValueError(f"Model {model.name!r} is not an HD-CNN (no layers {missing}).")
    scatter = names["fine_scatter"]
    fine = [names[f"fine_component_{k}"] for k in range(len(scatter.coarse_sets))]
    return HDCNNComponents(
        shared=names.get("shared"),
        coarse=names["coarse_component"],
        aggregation=names["fine_to_coarse"],
        fine=fine,
        scatter=scatter,
        averaging=names["probabilistic_averaging"],
    )


def hierarchy_of(model: keras.Model) -> Hierarchy:
    """The :class:`Hierarchy` an HD-CNN model was built with (kept in its layers' config)."""
    scatter = components(model).scatter
    return Hierarchy(np.asarray(scatter.fine_to_coarse), scatter.coarse_sets)


def convention_of(model: keras.Model) -> Convention:
    """The :data:`CONVENTIONS` entry an HD-CNN model was built with."""
    return CONVENTIONS["release" if components(model).aggregation.normalize else "paper"]


def _hdcnn_training_hints() -> dict:
    from keras_apps.hdcnn.losses import hdcnn_losses

    return {
        "loss_weights": {"predictions": 1.0, "coarse": 1.0},
        "loss": hdcnn_losses,
        "evaluation_output": "predictions",
    }


def _hdcnn_serving(model):
    from keras_apps.hdcnn.conditional import serving_module

    return serving_module(model)


def _register(registered_name, building_block, *, params, classes, description):
    @registry.register_model(
        registered_name,
        family="hdcnn",
        paper=PAPER,
        input_shape=(32, 32, 3),
        classes=classes,
        params=params,
        feature_layers={"shared": "shared"},
        min_size=4,
        training=_hdcnn_training_hints(),
        serving=_hdcnn_serving,
    )
    def builder(
        hierarchy=None,
        shared_until=None,
        building_block=building_block,
        shared_layers=True,
        convention="paper",
        input_shape=None,
        classes=classes,
        building_block_kwargs=None,
        fine_classifier_init="random",
        weights=None,
        name=None,
    ):
        return build_hdcnn(
            building_block, hierarchy, shared_until, shared_layers=shared_layers,
            convention=convention, input_shape=input_shape, classes=classes,
            building_block_kwargs=building_block_kwargs,
            fine_classifier_init=fine_classifier_init, weights=weights,
            name=name or registered_name,
        )

    builder.__name__ = registered_name
    builder.__doc__ = f"{description}\n\n{build_hdcnn.__doc__}"
    return builder


hdcnn = _register(
    "hdcnn", "nin_cifar", params=9_170_952, classes=100,
    description="HD-CNN on the CIFAR NIN building block (the paper's CIFAR-100 model), shared "
    "layers conv1..drop1, the default hierarchy K=9 unless one is given.",
)
hdcnn_resnet20_cifar = _register(
    "hdcnn_resnet20_cifar", "resnet20_cifar", params=2_585_144, classes=100,
    description="HD-CNN on the CIFAR ResNet-20 building block, shared layers = stage 1.",
)
