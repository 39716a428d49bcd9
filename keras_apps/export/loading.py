"""Runs any exported artefact: ``.keras``, SavedModel or TF Serving directory, ``.tflite``.

Every loader names outputs the way ``model.export`` does: the keys of a dict-output model,
``output_0, output_1, ...`` for a single or list output. :func:`named_outputs` applies the
same convention to a Keras model's predictions, so artefacts and models compare key by key.

A SavedModel written from a registry ``serving`` hint may take scalar signature inputs
beside the image (HD-CNN's ``beta``); it records their defaults as the function
``serving_defaults`` (:data:`SERVING_DEFAULTS`), and :meth:`ExportedModel.run` feeds those
unless the caller passes them as keywords (``exported.run(images, beta=4.0)``).
"""

from __future__ import annotations

import os
import pathlib
from typing import Callable

import keras
import numpy as np

__all__ = ["ExportedModel", "SERVING_DEFAULTS", "load_exported", "named_outputs"]

SIGNATURE_KEY = "serving_default"
#: Name of a SavedModel's no-argument function giving the defaults of its scalar inputs.
SERVING_DEFAULTS = "serving_defaults"


class ExportedModel:
    """A loaded export. ``exported(images)`` returns the output array (a dict of arrays,
    keyed as in :attr:`signature`, for multi-output models).

    Attributes:
        path: the artefact that was loaded.
        format: "keras", "saved_model", "tflite" or "tflite_int8" (a ``.tflite`` holding
            int8 tensors).
        signature: ``{"signature_key", "inputs", "outputs"}``; inputs and outputs map each
            name to ``{"shape", "dtype"}`` (plus ``"quantization": {"scale",
            "zero_point"}`` for quantised TFLite tensors).
        defaults: the signature's inputs other than the image, each with the value fed when
            the caller passes none (``{}`` for plain image models).
    """

    def __init__(self, path: pathlib.Path, format: str, signature: dict, run: Callable, owner,
                 defaults: dict | None = None):
        self.path = path
        self.format = format
        self.signature = signature
        self.defaults = dict(defaults or {})
        self._run = run
        self._owner = owner  # keeps the loaded SavedModel / interpreter alive

    def run(self, images, **inputs) -> dict[str, np.ndarray]:
        """All outputs as a dict ``name -> array`` for a batch of images; keywords feed the
        signature's other inputs (:attr:`defaults` for those not given)."""
        unknown = sorted(set(inputs) - set(self.defaults))
        if unknown:
            takes = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(
                f"{self.path} has no input(s) {unknown}; besides the images it takes: {takes}."
            )
        images = np.asarray(images, dtype=np.float32)
        feeds = {**self.defaults, **inputs}
        return {name: np.asarray(value) for name, value in self._run(images, feeds).items()}

    def __call__(self, images, **inputs):
        outputs = self.run(images, **inputs)
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        return outputs

    def __repr__(self) -> str:
        return f"ExportedModel(format={self.format!r}, path={str(self.path)!r})"


def load_exported(path: os.PathLike | str) -> ExportedModel:
    """Loads an export as a callable ``f(images: np.ndarray) -> np.ndarray``.

    ``path`` is a ``.keras`` file (``keras.saving.load_model(safe_mode=True)``), a SavedModel
    directory (signature ``serving_default`` of ``tf.saved_model.load``), a TF Serving model
    directory ``<name>/`` (its highest numbered version is loaded) or a ``.tflite`` file
    (``ai_edge_litert`` interpreter; int8 inputs are quantised and int8 outputs dequantised
    with the tensors' scale and zero point, so callers always pass and get floats).
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No exported model at {path}.")
    if path.is_file() and path.suffix == ".keras":
        return _load_keras(path)
    if path.is_file() and path.suffix == ".tflite":
        return _load_tflite(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return _load_saved_model(path)
    if path.is_dir():
        versions = [
            p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()
        ]
        if versions:
            return _load_saved_model(max(versions, key=lambda p: int(p.name)))
    raise ValueError(
        f"{path} is not an exported model: expected a .keras file, a .tflite file, a SavedModel "
        "directory (with saved_model.pb) or a TF Serving model directory of numbered versions."
    )


def named_outputs(model: keras.Model, outputs) -> dict[str, np.ndarray]:
    """Keras predictions keyed like the exported signature (dict keys or ``output_<i>``)."""
    if isinstance(outputs, dict):
        return {str(key): np.asarray(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return {f"output_{i}": np.asarray(value) for i, value in enumerate(outputs)}
    return {"output_0": np.asarray(outputs)}


def _unreadable(path: pathlib.Path, kind: str, err: Exception) -> ValueError:
    reason = " ".join(str(err).split())[:200] or type(err).__name__
    return ValueError(f"{path} is not a readable {kind} ({type(err).__name__}: {reason}).")


def _spec(shape, dtype) -> dict:
    return {"shape": [None if d is None or d < 0 else int(d) for d in shape], "dtype": str(dtype)}


def _single_input(names, path) -> str:
    if len(names) != 1:
        raise ValueError(
            f"{path} has {len(names)} inputs {sorted(names)}; only single-input models are "
            "supported."
        )
    return next(iter(names))


def _load_keras(path: pathlib.Path) -> ExportedModel:
    from keras_apps.training import load_model

    model = load_model(path)
    input_name = _single_input([t.name for t in model.inputs], path)
    outputs = model.output
    if isinstance(outputs, dict):
        output_specs = {str(k): _spec(v.shape, v.dtype) for k, v in outputs.items()}
    else:
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        output_specs = {f"output_{i}": _spec(t.shape, t.dtype) for i, t in enumerate(outputs)}
    signature = {
        "signature_key": None,
        "inputs": {input_name: _spec(model.inputs[0].shape, model.inputs[0].dtype)},
        "outputs": output_specs,
    }

    def run(images, feeds):
        return named_outputs(model, model.predict(images, verbose=0))

    return ExportedModel(path, "keras", signature, run, model)


def _load_saved_model(path: pathlib.Path) -> ExportedModel:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as err:
        raise _unreadable(path, "SavedModel", err) from err
    if SIGNATURE_KEY not in loaded.signatures:
        raise ValueError(
            f"SavedModel {path} has no {SIGNATURE_KEY!r} signature (it has "
            f"{sorted(loaded.signatures)})."
        )
    function = loaded.signatures[SIGNATURE_KEY]
    input_specs = function.structured_input_signature[1]
    defaults = {}
    if hasattr(loaded, SERVING_DEFAULTS):
        defaults = {k: v.numpy().item() for k, v in getattr(loaded, SERVING_DEFAULTS)().items()}
    input_name = _single_input([k for k in input_specs if k not in defaults], path)
    input_dtype = input_specs[input_name].dtype
    signature = {
        "signature_key": SIGNATURE_KEY,
        "inputs": {k: _spec(s.shape, s.dtype.name) for k, s in input_specs.items()},
        "outputs": {
            k: _spec(s.shape, s.dtype.name) for k, s in sorted(function.structured_outputs.items())
        },
    }

    def run(images, feeds):
        extra = {k: tf.constant(v, dtype=input_specs[k].dtype) for k, v in feeds.items()}
        outputs = function(**{input_name: tf.constant(images, dtype=input_dtype)}, **extra)
        return {k: v.numpy() for k, v in outputs.items()}

    return ExportedModel(path, "saved_model", signature, run, loaded, defaults)


def _quantization(details: dict) -> dict | None:
    scale, zero_point = details["quantization"]
    if scale == 0.0:
        return None
    return {"scale": float(scale), "zero_point": int(zero_point)}


def _load_tflite(path: pathlib.Path) -> ExportedModel:
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path))
    except Exception as err:
        raise _unreadable(path, "TFLite model", err) from err
    keys = list(interpreter.get_signature_list())
    if SIGNATURE_KEY in keys:
        key = SIGNATURE_KEY
    elif len(keys) == 1:
        key = keys[0]
    else:
        raise ValueError(
            f"{path} has signatures {keys}; expected {SIGNATURE_KEY!r} or exactly one."
        )
    runner = interpreter.get_signature_runner(key)
    input_details = runner.get_input_details()
    output_details = runner.get_output_details()
    input_name = _single_input(input_details, path)

    def describe(details: dict) -> dict:
        spec = _spec(details["shape_signature"], np.dtype(details["dtype"]).name)
        quantization = _quantization(details)
        if quantization is not None:
            spec["quantization"] = quantization
        return spec

    signature = {
        "signature_key": key,
        "inputs": {k: describe(d) for k, d in input_details.items()},
        "outputs": {k: describe(d) for k, d in sorted(output_details.items())},
    }
    quantized = any(
        np.dtype(t["dtype"]) in (np.dtype("int8"), np.dtype("uint8"))
        for t in interpreter.get_tensor_details()
    )
    in_detail = input_details[input_name]

    def run(images, feeds):
        feed = _quantize(images, in_detail)
        outputs = runner(**{input_name: feed})
        return {k: _dequantize(v, output_details[k]) for k, v in outputs.items()}

    kind = "tflite_int8" if quantized else "tflite"
    return ExportedModel(path, kind, signature, run, interpreter)


def _quantize(values: np.ndarray, details: dict) -> np.ndarray:
    dtype = np.dtype(details["dtype"])
    quantization = _quantization(details)
    if quantization is None or not np.issubdtype(dtype, np.integer):
        return values.astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(values / quantization["scale"] + quantization["zero_point"])
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, details: dict) -> np.ndarray:
    quantization = _quantization(details)
    if quantization is None or not np.issubdtype(values.dtype, np.integer):
        return values.astype(np.float32)
    values = values.astype(np.float32) - quantization["zero_point"]
    return (values * quantization["scale"]).astype(np.float32)
