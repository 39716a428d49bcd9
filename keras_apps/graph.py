"""Utilities on functional graphs: named intermediate features.

The methods of later papers read a network by its layer names: HD-CNN splits a backbone at a
named layer, NIWT differentiates a class score with respect to a named layer, growth rewires
the layers after one. They all start from :func:`feature_extractor`.
"""

from __future__ import annotations

import difflib
from typing import Mapping, Sequence

import keras

from keras_apps import registry

__all__ = ["feature_extractor", "get_layer"]


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
