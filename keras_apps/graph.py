"""Utilities on functional graphs: named intermediate features, splitting and re-applying.

The methods of later papers read a network by its layer names: HD-CNN splits a backbone at a
named layer into shared and rear parts and clones the rear part K times; NIWT differentiates
a class score with respect to a named layer; growth rewires the layers after one; OverFeat
re-runs a fully convolutional network on larger images. They are built from a few pieces:
:func:`feature_extractor` (named intermediate outputs), :func:`apply_layers` (re-run the part
of a graph downstream of named layers on new tensors, sharing, cloning or replacing its
layers), :func:`split_model` (front and rear models at a layer), :func:`logits_model` (the
pre-softmax class scores) and :func:`with_input_shape` (the same network and weights on a
new input shape).

Every function reads the graph of the model it is given through that model's own nodes, so a
layer that is also used elsewhere (a shared rear, an earlier split) is no obstacle, and none
of them changes the given model's graph.
"""

from __future__ import annotations

import difflib
from typing import Callable, Mapping, Sequence

import keras

from keras_apps import registry

__all__ = [
    "apply_layers",
    "feature_extractor",
    "get_layer",
    "logits_model",
    "split_model",
    "with_input_shape",
]

#: ``clone_function(layer) -> layer | None``: a replacement for ``layer`` (None: the default).
CloneFunction = Callable[[keras.layers.Layer], "keras.layers.Layer | None"]


def _resolve_model(model, *, function: str, build_kwargs: dict, defaults: Mapping | None = None):
    """A functional model from a model or a registry name (built with ``build_kwargs``)."""
    if isinstance(model, str):
        kwargs = {**(defaults or {}), **build_kwargs}
        model = registry.build(model, **kwargs)
    elif build_kwargs:
        raise TypeError(
            f"Build arguments {sorted(build_kwargs)} of {function}() are only accepted with a "
            "registry name, not with a built model."
        )
    if isinstance(model, keras.Sequential) and getattr(model, "_functional", None) is not None:
        # the graph of a built Sequential model: same layers, same name, no new calls
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    if not isinstance(model, keras.Model) or getattr(model, "_nodes_by_depth", None) is None:
        raise TypeError(
            f"`model` of {function}() must be a functional keras.Model or a registry name "
            f"(str), got {type(model).__name__}: {model!r}."
        )
    return model


def get_layer(model: keras.Model, layer_name: str) -> keras.layers.Layer:
    """``model.get_layer`` with an error that lists the closest layer names."""
    if not isinstance(layer_name, str):
        raise TypeError(
            f"Layer names must be strings, got {type(layer_name).__name__}: {layer_name!r}."
        )
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        close = difflib.get_close_matches(layer_name, names, n=5, cutoff=0.5)
        hint = f" Closest layer names: {', '.join(close)}." if close else ""
        raise ValueError(f"Model {model.name!r} has no layer {layer_name!r}.{hint}")
    return model.get_layer(layer_name)


def _own_node(model: keras.Model, layer):
    """The node of ``layer`` in ``model``'s graph (layers shared with other models have more)."""
    own = {id(node) for nodes in model._nodes_by_depth.values() for node in nodes}
    nodes = [node for node in layer._inbound_nodes if id(node) in own]
    if len(nodes) != 1:
        raise ValueError(
            f"Layer {layer.name!r} is called {len(nodes)} times in {model.name!r}; use a layer "
            "with a single call."
        )
    return nodes[0]


def _layer_output(model: keras.Model, layer_name: str):
    return _own_node(model, get_layer(model, layer_name)).outputs[0]


def _model_inputs(model):
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def _pack_outputs(model, outputs):
    structure = getattr(model, "_outputs_struct", None)
    if structure is None:
        return outputs[0] if len(outputs) == 1 else outputs
    return keras.tree.pack_sequence_as(structure, outputs)


def feature_extractor(
    model: keras.Model | str,
    layers: Sequence[str] | Mapping[str, str] | None = None,
    *,
    name: str | None = None,
    **build_kwargs,
) -> keras.Model:
    """A model with the same inputs returning a dict of named intermediate outputs.

    Args:
        model: a functional ``keras.Model``, or a registry name (then built with
            ``include_top=False`` unless ``build_kwargs`` say otherwise).
        layers: which outputs. ``None``: the registered stages of the model (``model_info(
            name)["feature_layers"]``: ``{"stem": ..., "stage1": ..., ...}``); a list of
            layer names (keys are the layer names); or a mapping ``key -> layer name``.
        name: name of the returned model (default ``<model>_features``).

    The returned model shares its layers (and so its weights) with ``model``.
    """
    model = _resolve_model(
        model, function="feature_extractor", build_kwargs=build_kwargs, defaults={"include_top": False}
    )
    if layers is None:
        try:
            spec = registry.get_spec(model.name)
        except ValueError:
            raise ValueError(
                f"Model {model.name!r} is not a registry name, so its stages are unknown: pass "
                "`layers` (a list of layer names or a mapping key -> layer name)."
            ) from None
        layers = dict(spec.feature_layers)
    elif isinstance(layers, str):
        layers = {layers: layers}
    elif not isinstance(layers, Mapping):
        layers = {layer_name: layer_name for layer_name in layers}
    if not layers:
        raise ValueError("`layers` must name at least one layer.")
    outputs = {key: _layer_output(model, layer_name) for key, layer_name in layers.items()}
    return keras.Model(_model_inputs(model), outputs, name=name or f"{model.name}_features")


def _clone_layer(layer: keras.layers.Layer, suffix: str) -> keras.layers.Layer:
    config = layer.get_config()
    config["name"] = f"{layer.name}{suffix}"
    return layer.__class__.from_config(config)


def _replay(model, inputs: Mapping[str, object], operation, *, check=None, describe_failure=None):
    """Runs the nodes of ``model`` downstream of the named layers (a cut of the graph) on
    the tensors of ``inputs``, calling ``operation(layer)`` instead of each layer; returns
    the model's outputs as a flat list. ``check(layer, args)`` may reject a call before it
    runs; ``describe_failure(layer, args, err)`` turns a failing call into a ValueError."""
    tensors = {}
    for layer_name, tensor in inputs.items():
        node = _own_node(model, get_layer(model, layer_name))
        tensors[id(node.outputs[0])] = tensor

    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            if any(id(x) in tensors for x in node.outputs):
                continue  # a replaced output: upstream of the cut
            known = [id(x) in tensors for x in node.input_tensors]
            if not any(known):
                continue  # entirely upstream of the cut
            if not all(known):
                raise ValueError(
                    f"Layer {node.operation.name!r} also takes a tensor from upstream of "
                    f"{sorted(inputs)}: those layers do not cut the graph of {model.name!r}."
                )
            args, kwargs = node.arguments.fill_in(tensors)
            if check is not None:
                check(node.operation, args)
            layer = operation(node.operation)
            try:
                outputs = layer(*args, **kwargs)
            except Exception as err:
                if describe_failure is None:
                    raise
                raise ValueError(describe_failure(node.operation, args, err)) from err
            for x, y in zip(node.outputs, keras.tree.flatten(outputs)):
                tensors[id(x)] = y

    missing = [x.name for x in model.outputs if id(x) not in tensors]
    if missing:
        raise ValueError(f"Outputs {missing} of {model.name!r} do not depend on {sorted(inputs)}.")
    return [tensors[id(x)] for x in model.outputs]


def apply_layers(
    model: keras.Model,
    inputs: Mapping[str, object],
    *,
    clone: bool = False,
    suffix: str = "",
    clone_function: CloneFunction | None = None,
):
    """Re-applies the part of ``model`` downstream of named layers to new tensors.

    Args:
        model: a functional model.
        inputs: ``{layer name: tensor}``; each tensor replaces that layer's output. Every
            path from the model's inputs to its outputs must pass through one of them (the
            named layers form a cut of the graph), else a clear error names the layer that
            needs a tensor from upstream of the cut.
        clone: ``False`` re-uses the model's layers (shared weights, e.g. a second head on
            the same backbone); ``True`` creates a fresh copy of every re-applied layer from
            its config, named ``<name><suffix>``, with the trained weights copied in (e.g.
            HD-CNN's K fine components, each initialised from the building block).
        suffix: appended to cloned layer names (required with ``clone=True`` so that
            several copies can live in one model).
        clone_function: ``clone_function(layer) -> layer | None`` picks a replacement for a
            re-applied layer (e.g. HD-CNN's last layer with |S_k| outputs); the replacement
            is used as it is, without a weight copy; ``None`` keeps the default (the shared
            layer, or its clone with ``clone=True``).

    Returns:
        The model's outputs (the structure of ``model.output``) computed from ``inputs``.
        The model's layers that are re-used get a new call (node); the model's own graph
        is not changed.
    """
    if clone and not suffix:
        raise ValueError("`suffix` is required with `clone=True` (cloned layer names must be unique).")
    if clone_function is not None and not callable(clone_function):
        raise TypeError(
            f"`clone_function` must be a callable layer -> layer | None, got {clone_function!r}."
        )
    chosen, cloned = {}, {}

    def operation(layer):
        if id(layer) not in chosen:
            replacement = clone_function(layer) if clone_function is not None else None
            if replacement is not None and not isinstance(replacement, keras.layers.Layer):
                raise TypeError(
                    f"`clone_function` must return a keras layer or None; for {layer.name!r} it "
                    f"returned {type(replacement).__name__}: {replacement!r}."
                )
            if replacement is None and clone:
                replacement = cloned[id(layer)] = _clone_layer(layer, suffix)
            chosen[id(layer)] = layer if replacement is None else replacement
        return chosen[id(layer)]

    outputs = _replay(model, inputs, operation)
    for original in model.layers:
        copy = cloned.get(id(original))
        if copy is not None:
            copy.set_weights(original.get_weights())
    return _pack_outputs(model, outputs)


def split_model(
    model: keras.Model | str,
    layer_name: str,
    *,
    clone: bool = False,
    suffix: str = "_rear",
    clone_function: CloneFunction | None = None,
    **build_kwargs,
) -> tuple[keras.Model, keras.Model]:
    """Splits ``model`` at the output of ``layer_name`` into ``(front, rear)``.

    ``front`` maps the model's inputs to that layer's output; ``rear`` maps a new input of
    that shape to the model's outputs, so ``rear(front(x)) == model(x)``. The front shares
    the model's layers; the rear shares them too unless ``clone=True`` (fresh layers with
    copied weights); ``clone_function`` replaces chosen rear layers (:func:`apply_layers`).
    The layer must cut the graph (no skip connection across it). ``model`` may be a
    registry name, built with ``build_kwargs``. The given model is left as it was: it can be
    split again, at the same or another layer.
    """
    model = _resolve_model(model, function="split_model", build_kwargs=build_kwargs)
    cut = _layer_output(model, layer_name)
    front = keras.Model(_model_inputs(model), cut, name=f"{model.name}_front")
    rear_input = keras.Input(shape=tuple(cut.shape[1:]), name=f"{layer_name}_features")
    outputs = apply_layers(
        model, {layer_name: rear_input}, clone=clone, suffix=suffix, clone_function=clone_function
    )
    rear = keras.Model(rear_input, outputs, name=f"{model.name}_rear")
    return front, rear


def _is_activation_layer(layer) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    if not isinstance(layer, keras.layers.Activation):
        return False
    return keras.activations.serialize(layer.activation) != "linear"


def _fused_activation(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    if activation is None or isinstance(layer, keras.layers.Activation):
        return None
    name = keras.activations.serialize(activation)
    return None if name == "linear" else str(name)


def logits_model(model: keras.Model | str, *, name: str | None = None, **build_kwargs) -> keras.Model:
    """The model with the same inputs whose outputs are the pre-activation class scores.

    Each output produced by a separate activation layer (``predictions_activation``, every
    registered model's classifier activation) is replaced by that layer's input; outputs
    that already are logits (``classifier_activation=None``) stay. The layers (and so the
    weights) are shared with ``model``. ``model`` may be a registry name (built with
    ``build_kwargs``). A classifier with a fused activation (``Dense(activation="softmax")``)
    has no logits tensor and is an error naming the layer.
    """
    model = _resolve_model(model, function="logits_model", build_kwargs=build_kwargs)
    logits = []
    for tensor in model.outputs:
        layer = tensor._keras_history.operation
        if _is_activation_layer(layer):
            logits.append(_own_node(model, layer).input_tensors[0])
            continue
        fused = _fused_activation(layer)
        if fused is not None:
            raise ValueError(
                f"The output layer {layer.name!r} ({type(layer).__name__}) of {model.name!r} applies "
                f"{fused!r} itself, so its logits are not a tensor of the graph: build the "
                "classifier without activation, followed by an Activation layer."
            )
        logits.append(tensor)
    return keras.Model(_model_inputs(model), _pack_outputs(model, logits), name=name or f"{model.name}_logits")


def with_input_shape(model: keras.Model, input_shape, *, name: str | None = None) -> keras.Model:
    """The same network with the same weights on a new input shape, e.g. ``(None, None, 3)``.

    Every layer is re-created from its config (same names) on a new input and gets a copy of
    the model's weights, so a fully convolutional network runs on images of any size
    (OverFeat's dense evaluation). A layer that needs the old spatial size (``Flatten`` or a
    ``Dense`` on spatial maps) is an error naming it.
    """
    model = _resolve_model(model, function="with_input_shape", build_kwargs={})
    if len(model.inputs) != 1:
        raise ValueError(f"with_input_shape() takes single-input models; {model.name!r} has {len(model.inputs)}.")
    try:
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"`input_shape` must be a tuple such as (None, None, 3), got {input_shape!r}.") from None
    old_input = model.inputs[0]
    if len(input_shape) != len(old_input.shape) - 1:
        raise ValueError(
            f"`input_shape` {input_shape} must have {len(old_input.shape) - 1} entries like the "
            f"input of {model.name!r}, {tuple(old_input.shape[1:])}."
        )
    input_layer = old_input._keras_history.operation
    new_input = keras.Input(shape=input_shape, name=input_layer.name, dtype=old_input.dtype)

    def describe_failure(layer, args, err):
        shapes = [tuple(x.shape) for x in keras.tree.flatten(args) if hasattr(x, "shape")]
        return (
            f"{model.name!r} cannot run on input shape {input_shape}: layer {layer.name!r} "
            f"({type(layer).__name__}) fails on inputs {shapes}: {err}"
        )

    copies = {}

    def operation(layer):
        if id(layer) not in copies:
            copies[id(layer)] = layer.__class__.from_config(layer.get_config())
        return copies[id(layer)]

    def check(layer, args):
        if isinstance(layer, keras.layers.Flatten):
            shape = tuple(args[0].shape[1:])
            if None in shape:
                raise ValueError(
                    f"{model.name!r} cannot run on input shape {input_shape}: layer {layer.name!r} "
                    f"(Flatten) would flatten a feature map of unknown size {shape}. Only fully "
                    "convolutional models (no Flatten/Dense on spatial maps) take a variable size."
                )

    outputs = _replay(
        model, {input_layer.name: new_input}, operation, check=check, describe_failure=describe_failure
    )
    for original in model.layers:
        copy = copies.get(id(original))
        if copy is None:
            continue
        old = [tuple(w.shape) for w in original.weights]
        new = [tuple(w.shape) for w in copy.weights]
        if old != new:
            raise ValueError(
                f"{model.name!r} cannot run on input shape {input_shape}: layer {original.name!r} "
                f"({type(original).__name__}) would need weights of shapes {new} instead of its "
                f"{old}; only layers that do not depend on the spatial size (no Flatten/Dense on "
                "spatial maps) can take a new input shape."
            )
        copy.set_weights(original.get_weights())
    return keras.Model(new_input, _pack_outputs(model, outputs), name=name or model.name)
