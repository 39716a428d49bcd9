"""``compress_model``: a copy of a model whose chosen Dense/Conv2D layers run from
product-quantized kernels (HD-CNN, "Parameter compression"; the paper's model went from 447 MB
to 286 MB with little change in error).

The copy is rebuilt from the model's serialized config (what a ``.keras`` file holds), with the
chosen layers' entries replaced by :class:`~keras_apps.compression.layers.ProductQuantizedDense`
/ :class:`~keras_apps.compression.layers.ProductQuantizedConv2D` under the same names and
inbound nodes, then every other weight is copied across. Nested functional and Sequential
sub-models (HD-CNN's ``shared``, ``coarse_component``, ``fine_component_0``, ...) are rewritten
the same way; a layer inside one is addressed by its path, ``"fine_component_0/conv2_fine_0"``
(names may repeat across sub-models, paths do not).
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import numbers

import keras
import numpy as np

from keras_apps.compression.layers import ProductQuantizedConv2D, ProductQuantizedDense
from keras_apps.compression.product_quantization import (
    MAX_CODEBOOK_SIZE,
    compression_factor,
    product_quantize,
    reconstruct,
)

__all__ = ["DEFAULT_MIN_SIZE", "compress_model", "kernel_matrix"]

#: ``layers=None`` compresses the Dense/Conv2D layers with at least this many kernel parameters.
DEFAULT_MIN_SIZE = 4096

_COMPRESSIBLE = (keras.layers.Dense, keras.layers.Conv2D)


def kernel_matrix(layer) -> np.ndarray:
    """The matrix ``W`` (``m x n``) that product quantization splits, of a ``Dense`` or
    ``Conv2D`` layer: the kernel read as ``y = x W``, i.e. ``(input_dim, units)`` for Dense
    and the kernel ``(kh, kw, c_in, filters)`` reshaped row-major to ``(kh * kw * c_in,
    filters)`` for Conv2D. Rows (what k-means clusters, segment by segment) are the weights
    one input feature / kernel tap sends to the outputs."""
    if type(layer) not in _COMPRESSIBLE:
        raise TypeError(f"kernel_matrix takes a Dense or Conv2D layer, got {type(layer).__name__} {layer.name!r}.")
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    return kernel.reshape(-1, kernel.shape[-1])


def compress_model(
    model: keras.Model,
    layers=None,
    *,
    s: int = 2,
    k: int = 64,
    seed: int = 0,
    min_size: int = DEFAULT_MIN_SIZE,
    n_init: int = 1,
):
    """Product-quantizes the chosen layers of ``model``; returns ``(compressed_model, report)``.

    ``model`` itself is not changed. The new model (uncompiled) has the same graph, layer
    names, dtype policies and all other weights; each compressed layer keeps its activation,
    bias, strides, padding, data format and dilation, and stores uint8 codes and float32
    codebooks (non-trainable) from which it rebuilds its kernel in every call (see
    :func:`kernel_matrix` for which axis is ``m``). Regularizers and constraints of the
    compressed kernels are dropped (the kernels are no longer trained).

    Args:
        model: a functional or Sequential ``keras.Model`` (nested ones inside are searched).
        layers: which Dense/Conv2D layers (only these two exact classes; Conv2D with
            ``groups=1``) to compress, by path (``"name"`` at the top level,
            ``"submodel/name"`` inside a nested model):

            - ``None``: every one whose kernel has at least ``min_size`` parameters;
            - a string: an ``fnmatch`` pattern on the paths (``"fine_component_*/conv*"``);
            - a list of paths: exactly those.

            With ``None`` or a pattern, a layer that cannot be compressed with ``s`` and ``k``
            (``s`` does not divide its outputs, fewer than ``k`` rows, ``groups > 1``, a
            compression factor <= 1) is left as it is and listed under ``report["skipped"]``
            with the reason; a listed path that cannot be compressed is a ValueError.
        s: segment width (paper's files: 2 or 3).
        k: centres per segment, at most 256 (paper's files: 64 on CIFAR).
        seed, n_init: of each segment's k-means (:func:`product_quantize`).
        min_size: kernel parameters below which ``layers=None`` leaves a layer alone.

    Returns:
        ``(compressed_model, report)``; ``report["layers"]`` maps each compressed path to
        ``{"class_name", "kernel_shape", "m", "n", "s", "k", "factor", "bytes_before",
        "bytes_after", "max_abs_error"}`` (bytes of the float32 kernel and of its codes plus
        codebooks, ``factor = bytes_before / bytes_after`` = :func:`compression_factor`,
        ``max_abs_error = max |W - W_hat|``); ``report["totals"]`` is ``{"params_before",
        "bytes_before", "bytes_after", "factor"}`` over all weights of the two models;
        ``report["skipped"]`` maps paths to reasons.

    Raises:
        TypeError: ``model`` is not a functional or Sequential model; ``layers`` is neither
            None, a string nor a list of strings.
        ValueError: bad ``s``/``k``/``seed``/``n_init``/``min_size``; a listed path that is not a
            Dense/Conv2D layer of the model (the message names it and the closest paths) or
            cannot be compressed; a pattern that matches no Dense/Conv2D layer; nothing to
            compress.
    """
    serialized = _serialized_model(model)
    _check_settings(s, k, min_size, seed, n_init)
    candidates, others = _collect(model, serialized["config"])
    chosen, skipped = _select(model, candidates, others, layers, s, k, min_size)

    replacements, quantized, layer_report = {}, {}, {}
    for path in chosen:
        layer = candidates[path]
        W = kernel_matrix(layer)
        codes, codebooks = product_quantize(W, s, k, seed=seed, n_init=n_init)
        m, n = W.shape
        replacements[path] = keras.saving.serialize_keras_object(_replacement(layer, s, k))
        quantized[path] = (codes, codebooks)
        layer_report[path] = {
            "class_name": type(layer).__name__,
            "kernel_shape": list(layer.kernel.shape),
            "m": m,
            "n": n,
            "s": s,
            "k": k,
            "factor": compression_factor(m, n, s, k),
            "bytes_before": 4 * m * n,
            "bytes_after": 4 * k * n + m * (n // s),
            "max_abs_error": float(np.max(np.abs(W - reconstruct(codes, codebooks, s)))),
        }

    _rewrite(serialized["config"], replacements, "")
    compressed = keras.saving.deserialize_keras_object(copy.deepcopy(serialized))  # it consumes its input
    _copy_weights(model, compressed, serialized["config"], quantized, "")

    bytes_before = _weight_bytes(model)
    bytes_after = _weight_bytes(compressed)
    report = {
        "layers": layer_report,
        "totals": {
            "params_before": int(model.count_params()),
            "bytes_before": bytes_before,
            "bytes_after": bytes_after,
            "factor": bytes_before / bytes_after,
        },
        "skipped": skipped,
    }
    return compressed, report


# -- choosing the layers ------------------------------------------------------------------------


def _serialized_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"compress_model takes a keras.Model, got {type(model).__name__}.")
    serialized = keras.saving.serialize_keras_object(model)
    if not isinstance(serialized.get("config"), dict) or not isinstance(serialized["config"].get("layers"), list):
        raise TypeError(
            f"compress_model rebuilds a functional or Sequential model from its config; model "
            f"{model.name!r} ({type(model).__name__}) has no layer list in its config."
        )
    serialized.pop("compile_config", None)
    return serialized


def _check_settings(s, k, min_size, seed, n_init):
    if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
        raise ValueError(f"`s` (segment width) must be a positive integer, got {s!r}.")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= MAX_CODEBOOK_SIZE:
        raise ValueError(
            f"`k` (centres per segment) must be an integer in [1, {MAX_CODEBOOK_SIZE}] (8-bit codes), got {k!r}."
        )
    if isinstance(min_size, bool) or not isinstance(min_size, numbers.Integral) or min_size < 0:
        raise ValueError(f"`min_size` must be a non-negative integer, got {min_size!r}.")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"`seed` must be an integer, got {seed!r}.")
    if isinstance(n_init, bool) or not isinstance(n_init, numbers.Integral) or n_init < 1:
        raise ValueError(f"`n_init` must be a positive integer, got {n_init!r}.")


def _entries(config):
    """The layer entries of a functional/Sequential config (input layers excluded)."""
    return [entry for entry in config["layers"] if entry.get("class_name") != "InputLayer"]


def _is_container(entry):
    config = entry.get("config")
    return isinstance(config, dict) and isinstance(config.get("layers"), list)


def _collect(model, config, prefix=""):
    """``({path: Dense/Conv2D layer}, {path: class name of every other layer})``."""
    candidates, others = {}, {}
    for entry in _entries(config):
        layer = model.get_layer(entry["config"]["name"])
        path = prefix + layer.name
        if _is_container(entry) and isinstance(layer, keras.Model):
            others[path] = type(layer).__name__
            nested_candidates, nested_others = _collect(layer, entry["config"], path + "/")
            candidates.update(nested_candidates)
            others.update(nested_others)
        elif type(layer) in _COMPRESSIBLE:
            candidates[path] = layer
        else:
            others[path] = type(layer).__name__
    return candidates, others


def _obstacle(layer, s, k, automatic):
    """Why ``layer`` cannot be compressed with ``s``, ``k`` (None if it can)."""
    if getattr(layer, "groups", 1) != 1:
        return f"groups={layer.groups} (only groups=1 convolutions are compressed)"
    if getattr(layer, "quantization_mode", None) is not None:
        return f"already quantized ({layer.quantization_mode})"
    m, n = int(np.prod(layer.kernel.shape[:-1])), int(layer.kernel.shape[-1])
    if n % s:
        return f"s={s} does not divide its n={n} outputs"
    if m < k:
        return f"k={k} centres need at least k rows, its kernel has m={m}"
    if automatic and compression_factor(m, n, s, k) <= 1:
        return f"compression factor {compression_factor(m, n, s, k):.3f} <= 1 (m={m}, n={n})"
    return None


def _select(model, candidates, others, layers, s, k, min_size):
    skipped = {}
    if layers is None or isinstance(layers, str):
        if layers is None:
            paths = [p for p, layer in candidates.items() if int(np.prod(layer.kernel.shape)) >= min_size]
            wanted = f"with at least min_size={min_size} kernel parameters"
        else:
            paths = [p for p in candidates if fnmatch.fnmatchcase(p, layers)]
            if not paths:
                raise ValueError(
                    f"The pattern {layers!r} matches no Dense/Conv2D layer of model {model.name!r}; "
                    f"closest paths: {_closest(layers, candidates)}."
                )
            wanted = f"matching {layers!r}"
        chosen = []
        for path in paths:
            reason = _obstacle(candidates[path], s, k, automatic=True)
            if reason:
                skipped[path] = reason
            else:
                chosen.append(path)
        if not chosen:
            reasons = "; ".join(f"{p}: {r}" for p, r in skipped.items()) or "none found"
            raise ValueError(
                f"No Dense/Conv2D layer of model {model.name!r} {wanted} can be compressed with "
                f"s={s}, k={k} ({reasons})."
            )
        return chosen, skipped

    if not isinstance(layers, (list, tuple)) or not all(isinstance(p, str) for p in layers):
        raise TypeError(
            "`layers` must be None, an fnmatch pattern string or a list of layer paths, got "
            f"{layers!r}."
        )
    chosen = []
    for path in layers:
        if path not in candidates:
            if path in others:
                raise ValueError(
                    f"Layer {path!r} of model {model.name!r} is a {others[path]}; only Dense and Conv2D "
                    f"layers are compressed (closest of those: {_closest(path, candidates)})."
                )
            raise ValueError(
                f"Model {model.name!r} has no Dense/Conv2D layer {path!r} (nested layers are "
                f"'submodel/name'); closest: {_closest(path, candidates)}."
            )
        reason = _obstacle(candidates[path], s, k, automatic=False)
        if reason:
            raise ValueError(f"Layer {path!r} cannot be compressed: {reason}.")
        if path not in chosen:
            chosen.append(path)
    if not chosen:
        raise ValueError("`layers` is an empty list; name at least one layer path, or pass None.")
    return chosen, skipped


def _closest(name, candidates):
    paths = list(candidates)
    tail = [p for p in paths if p.rsplit("/", 1)[-1] == name.rsplit("/", 1)[-1]]
    close = difflib.get_close_matches(name, paths, n=5, cutoff=0.3)
    found = list(dict.fromkeys(tail + close))[:5]
    return ", ".join(map(repr, found)) if found else "(none)"


# -- rebuilding ---------------------------------------------------------------------------------


def _replacement(layer, s, k):
    common = dict(
        segment_length=s,
        codebook_size=k,
        activation=layer.activation,
        use_bias=layer.use_bias,
        bias_initializer=layer.bias_initializer,
        name=layer.name,
        trainable=layer.trainable,
        dtype=layer.dtype_policy,
    )
    if isinstance(layer, keras.layers.Dense):
        return ProductQuantizedDense(layer.units, **common)
    return ProductQuantizedConv2D(
        layer.filters,
        layer.kernel_size,
        strides=layer.strides,
        padding=layer.padding,
        data_format=layer.data_format,
        dilation_rate=layer.dilation_rate,
        **common,
    )


def _rewrite(config, replacements, prefix):
    for entry in _entries(config):
        path = prefix + entry["config"]["name"]
        if path in replacements:
            new = replacements[path]
            entry.update(module=new["module"], class_name=new["class_name"],
                         registered_name=new["registered_name"], config=new["config"])
        elif _is_container(entry):
            _rewrite(entry["config"], replacements, path + "/")


def _copy_weights(source, target, config, quantized, prefix):
    for entry in _entries(config):
        name = entry["config"]["name"]
        path = prefix + name
        old, new = source.get_layer(name), target.get_layer(name)
        if path in quantized:
            codes, codebooks = quantized[path]
            new.codes.assign(codes)
            new.codebooks.assign(codebooks)
            if new.use_bias:
                new.bias.assign(keras.ops.convert_to_numpy(old.bias))
        elif _is_container(entry) and isinstance(old, keras.Model):
            _copy_weights(old, new, entry["config"], quantized, path + "/")
        else:
            new.set_weights(old.get_weights())


def _weight_bytes(model):
    return int(sum(int(np.prod(w.shape)) * np.dtype(keras.backend.standardize_dtype(w.dtype)).itemsize
                   for w in model.weights))
