"""Utilities on functional graphs: named intermediate features, splitting and re-applying.

The methods of later papers read a network by its layer names: HD-CNN splits a backbone at a
named layer into shared and rear parts and clones the rear part K times; NIWT differentiates
a class score with respect to a named layer; growth rewires the layers after one. They are
built from three pieces: :func:`feature_extractor` (named intermediate outputs),
:func:`apply_layers` (re-run the part of a graph downstream of named layers on new tensors,
sharing or cloning its layers) and :func:`split_model` (front and rear models at a layer).
"""

from __future__ import annotations

import difflib
from typing import Mapping, Sequence

import keras

from keras_apps import registry

__all__ = ["apply_layers", "feature_extractor", "get_layer", "split_model"]


def get_layer(model: keras.Model, layer_name: str) -> keras.layers.Layer:
    """``model.get_layer`` with an error that lists the closest layer names."""
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        close = difflib.get_close_matches(layer_name, names, n=5, cutoff=0.5)
        hint = f" Closest layer names: {', '.join(close)}." if close else ""
        raise ValueError(f"Model {model.name!r} has no layer {layer_name!r}.{hint}")
    return model.get_layer(layer_name)


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
    if isinstance(model, str):
        build_kwargs.setdefault("include_top", False)
        model = registry.build(model, **build_kwargs)
    elif build_kwargs:
        raise TypeError(
            f"Build arguments {sorted(build_kwargs)} are only accepted with a registry name, "
            "not with a built model."
        )
    if not isinstance(model, keras.Model) or not hasattr(model, "inputs") or model.inputs is None:
        raise TypeError(f"`model` must be a functional keras.Model or a registry name, got {model!r}.")
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
    outputs = {key: get_layer(model, layer_name).output for key, layer_name in layers.items()}
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, outputs, name=name or f"{model.name}_features")


def _clone_layer(layer: keras.layers.Layer, suffix: str) -> keras.layers.Layer:
    config = layer.get_config()
    config["name"] = f"{layer.name}{suffix}"
    return layer.__class__.from_config(config)


def apply_layers(
    model: keras.Model,
    inputs: Mapping[str, object],
    *,
    clone: bool = False,
    suffix: str = "",
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

    Returns:
        The model's outputs (same structure as ``model.outputs``) computed from ``inputs``.
    """
    if clone and not suffix:
        raise ValueError("`suffix` is required with `clone=True` (cloned layer names must be unique).")
    tensors = {}
    for layer_name, tensor in inputs.items():
        layer = get_layer(model, layer_name)
        if len(layer._inbound_nodes) != 1:
            raise ValueError(f"Layer {layer_name!r} is called {len(layer._inbound_nodes)} times; "
                             "split at a layer with a single call.")
        tensors[id(layer.output)] = tensor

    clones = {}

    def operation(layer):
        if not clone:
            return layer
        if id(layer) not in clones:
            clones[id(layer)] = _clone_layer(layer, suffix)
        return clones[id(layer)]

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
            outputs = operation(node.operation)(*args, **kwargs)
            for x, y in zip(node.outputs, _flatten(outputs)):
                tensors[id(x)] = y

    missing = [x.name for x in model.outputs if id(x) not in tensors]
    if missing:
        raise ValueError(f"Outputs {missing} of {model.name!r} do not depend on {sorted(inputs)}.")
    if clone:
        for original in model.layers:
            copy = clones.get(id(original))
            if copy is not None:
                copy.set_weights(original.get_weights())
    outputs = [tensors[id(x)] for x in model.outputs]
    return outputs[0] if len(outputs) == 1 else outputs


def _flatten(structure):
    return keras.tree.flatten(structure)


def split_model(
    model: keras.Model,
    layer_name: str,
    *,
    clone: bool = False,
    suffix: str = "_rear",
) -> tuple[keras.Model, keras.Model]:
    """Splits ``model`` at the output of ``layer_name`` into ``(front, rear)``.

    ``front`` maps the model's inputs to that layer's output; ``rear`` maps a new input of
    that shape to the model's outputs, so ``rear(front(x)) == model(x)``. The front shares
    the model's layers; the rear shares them too unless ``clone=True`` (fresh layers with
    copied weights). The layer must cut the graph (no skip connection across it).
    """
    layer = get_layer(model, layer_name)
    front_inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    front = keras.Model(front_inputs, layer.output, name=f"{model.name}_front")
    rear_input = keras.Input(shape=tuple(layer.output.shape[1:]), name=f"{layer_name}_features")
    outputs = apply_layers(model, {layer_name: rear_input}, clone=clone, suffix=suffix)
    rear = keras.Model(rear_input, outputs, name=f"{model.name}_rear")
    return front, rear
