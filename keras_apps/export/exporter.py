"""``export_model``: writes one format atomically, reloads it independently and verifies it.

See the package docstring (:mod:`keras_apps.export`) for the formats, layouts, signature
names and tolerances.

A registry model may declare a ``serving`` hint (:attr:`keras_apps.registry.ModelSpec.serving`,
e.g. HD-CNN's conditional execution): its ``"saved_model"`` and ``"serving"`` exports are then
the hint's ``tf.Module`` and signatures (:func:`save_serving_module`), not ``model.export``.
Such a signature may take scalar inputs beside the image (HD-CNN's ``beta``) and give outputs
the Keras model lacks (``components_run``): verification feeds the recorded defaults and
compares the outputs the Keras model has. TFLite always converts the plain Keras model.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re

import keras
import numpy as np
import tensorflow as tf

from keras_apps import registry
from keras_apps.export._atomic import Staging
from keras_apps.export.loading import SERVING_DEFAULTS, ExportedModel, load_exported, named_outputs
from keras_apps.export.representative import as_tflite_dataset, calibration_images

__all__ = [
    "FORMATS",
    "FLOAT_TOLERANCE",
    "INT8_TOLERANCE",
    "INT8_MIN_AGREEMENT",
    "INT8_DECISIVE_MARGIN",
    "ExportError",
    "ExportVerificationError",
    "ExportResult",
    "check_target",
    "export_model",
    "save_serving_module",
    "verify_export",
]

FORMATS = ("keras", "saved_model", "tflite", "tflite_int8", "serving")

#: Float formats: max |exported - keras| <= FLOAT_TOLERANCE * max(1, max |keras output|).
FLOAT_TOLERANCE = 1e-4
#: int8 TFLite: mean |exported - keras| <= INT8_TOLERANCE * max(1, max |keras output|) (a
#: single int8 probability can legitimately move by ~0.5 when rounding flips a near-tie, so
#: the max is reported but not bounded) ...
INT8_TOLERANCE = 0.02
#: ... and top-1 agreement >= INT8_MIN_AGREEMENT on the samples whose float top-1 beats the
#: runner-up by at least INT8_DECISIVE_MARGIN * max(1, max |keras output|).
INT8_MIN_AGREEMENT = 0.9
INT8_DECISIVE_MARGIN = 0.1

#: Images used to calibrate int8 ranges (TFLite recommends 100-500) and to verify int8
#: exports when no ``sample`` is given; float exports are checked on a fixed uniform sample.
CALIBRATION_IMAGES = 200
INT8_VERIFY_IMAGES = 64
FLOAT_VERIFY_IMAGES = 8

_SUFFIX = {"keras": ".keras", "tflite": ".tflite", "tflite_int8": ".tflite"}
_FILE_SUFFIXES = (".keras", ".tflite", ".h5", ".pb", ".zip")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


class ExportError(RuntimeError):
    """Writing or converting an export failed; nothing was left at the target."""


class ExportVerificationError(ExportError):
    """The reloaded export disagrees with the Keras model beyond the stated tolerance."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes:
        format: one of :data:`FORMATS`.
        path: the ``.keras``/``.tflite`` file or the SavedModel directory.
        size_bytes: size of the file, or total size of the directory tree.
        max_abs_diff: max |exported - keras| over all outputs of the verification sample
            (None with ``verify=False``, as are all the verification fields).
        mean_abs_diff: mean |exported - keras| (the largest of the outputs' means).
        tolerance: the bound checked, already scaled by ``max(1, max |keras output|)``.
        criterion: what ``tolerance`` bounds: ``"max_abs_diff"`` (float formats) or
            ``"mean_abs_diff"`` (``tflite_int8``, which also needs top-1 agreement >=
            :data:`INT8_MIN_AGREEMENT` on the decisive samples).
        agreement: top-1 agreement of exported and Keras predictions over the whole sample
            (outputs of shape (batch, classes>1) only; None otherwise).
        signature: ``{"signature_key", "inputs", "outputs"}``, each input and output name
            mapped to ``{"shape", "dtype"}`` (+ ``"quantization"`` for int8 TFLite tensors).
    """

    format: str
    path: pathlib.Path
    size_bytes: int
    max_abs_diff: float | None
    mean_abs_diff: float | None
    tolerance: float | None
    criterion: str | None
    agreement: float | None
    signature: dict


@dataclasses.dataclass(frozen=True)
class _Comparison:
    max_abs_diff: float
    mean_abs_diff: float
    tolerance: float
    agreement: float | None
    decisive_agreement: float | None
    decisive_count: int
    quantized: bool

    @property
    def criterion(self) -> str:
        return "mean_abs_diff" if self.quantized else "max_abs_diff"

    @property
    def passed(self) -> bool:
        if not getattr(self, self.criterion) <= self.tolerance:
            return False
        return not (
            self.quantized
            and self.decisive_agreement is not None
            and self.decisive_agreement < INT8_MIN_AGREEMENT
        )

    def describe(self) -> str:
        if not self.quantized:
            diff, tolerance = self.max_abs_diff, self.tolerance
            return f"max |exported - keras| = {diff:.3g} (tolerance {tolerance:.3g})"
        text = (
            f"mean |exported - keras| = {self.mean_abs_diff:.3g} (tolerance "
            f"{self.tolerance:.3g}; max {self.max_abs_diff:.3g})"
        )
        if self.decisive_agreement is not None:
            text += (
                f", top-1 agreement {self.decisive_agreement:.3f} on {self.decisive_count} "
                f"decisive samples (minimum {INT8_MIN_AGREEMENT})"
            )
        return text


def export_model(
    model: keras.Model,
    format: str,
    *,
    output=None,
    root="saved_models",
    version: int | None = None,
    representative_data=None,
    verify: bool = True,
    sample=None,
    overwrite: bool = False,
    serving=None,
) -> ExportResult:
    """Exports ``model`` in ``format`` atomically and (by default) verifies the result.

    Args:
        model: a functional or Sequential ``keras.Model`` with one input.
        format: one of :data:`FORMATS`.
        output: target path; default ``<root>/<model.name>.keras``,
            ``<root>/<model.name>_saved_model``, ``<root>/<model.name>.tflite`` or
            ``<root>/<model.name>_int8.tflite``. For ``"serving"`` it is the model base
            directory (default ``<root>/<model.name>``) that receives ``<version>/``.
        root: folder of the default paths.
        version: ``"serving"`` only: positive integer; default one more than the highest
            existing version (1 for the first).
        representative_data: ``"tflite_int8"`` only and required there: calibration images
            (see :func:`keras_apps.export.representative.calibration_images`).
        verify: reload the export with its own loader and compare it with ``model``.
        sample: images to verify on; default the first :data:`INT8_VERIFY_IMAGES`
            calibration images for int8, a fixed uniform [0, 1) sample otherwise.
        overwrite: replace an existing export (only once the new one has verified).
        serving: for "saved_model" / "serving": a callable ``model -> (tf.Module,
            signatures, defaults)`` to save instead of ``model.export``; default the
            registry's ``serving`` hint of ``model.name``
            (:attr:`keras_apps.registry.ModelSpec.serving`), if any.

    Raises:
        ExportVerificationError: beyond tolerance; nothing is written, an existing export
            is untouched.
        FileExistsError: the target (or the serving version) exists and ``overwrite`` is
            False.
    """
    input_shape = _check_model(model)
    if format not in FORMATS:
        raise ValueError(
            f"Unknown export format {format!r}; allowed formats: {', '.join(FORMATS)}."
        )
    if version is not None and format != "serving":
        raise ValueError(f"`version` only applies to format 'serving', not {format!r}.")
    if representative_data is not None and format != "tflite_int8":
        raise ValueError(
            f"`representative_data` only applies to format 'tflite_int8', not {format!r}."
        )
    target = check_target(model.name, format, output=output, root=root, version=version,
                          overwrite=overwrite)
    calibration = None
    if format == "tflite_int8":
        calibration = calibration_images(representative_data, input_shape, limit=CALIBRATION_IMAGES)
    if verify:
        sample = _verification_sample(sample, input_shape, calibration)

    comparison = None
    existed = os.path.lexists(target)
    with Staging(target) as stage:
        try:
            _write(model, format, stage, calibration, serving)
            loaded = load_exported(stage.staged)
        except Exception as err:
            raise ExportError(
                f"Writing or reloading the {format!r} export of model {model.name!r} for "
                f"{target} failed: {type(err).__name__}: {err}"
            ) from err
        signature = loaded.signature
        if verify:
            comparison = _compare(model, loaded, sample)
            if not comparison.passed:
                kept = "the existing export is unchanged" if existed else "nothing was written"
                raise ExportVerificationError(
                    f"The {format!r} export of model {model.name!r} failed verification on "
                    f"{len(sample)} images: {comparison.describe()}; {kept} at {target} "
                    "(export_model(..., verify=False) keeps an unverified export)."
                )
        del loaded  # closes the TFLite file before it is renamed (required on Windows)
        stage.commit(overwrite=overwrite)
    return ExportResult(
        format=format,
        path=target,
        size_bytes=_size(target),
        max_abs_diff=None if comparison is None else comparison.max_abs_diff,
        mean_abs_diff=None if comparison is None else comparison.mean_abs_diff,
        tolerance=None if comparison is None else comparison.tolerance,
        criterion=None if comparison is None else comparison.criterion,
        agreement=None if comparison is None else comparison.agreement,
        signature=signature,
    )


def verify_export(model: keras.Model, path, sample) -> float:
    """Max |exported - keras| of the export at ``path`` on ``sample``; raises
    :class:`ExportVerificationError` beyond the tolerance of its format (float or int8).
    Never modifies or removes ``path``."""
    input_shape = _check_model(model)
    sample = _verification_sample(sample, input_shape, None)
    comparison = _compare(model, load_exported(path), sample)
    if not comparison.passed:
        raise ExportVerificationError(
            f"Export {path} of model {model.name!r} failed verification on {len(sample)} "
            f"images: {comparison.describe()}."
        )
    return comparison.max_abs_diff


def _check_model(model) -> tuple:
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model (e.g. keras_apps.build(name)), got "
            f"{type(model).__name__}: {model!r:.80}."
        )
    try:
        inputs = model.inputs
    except AttributeError:
        inputs = None
    if not inputs:
        raise ValueError(
            f"Model {model.name!r} has no defined inputs: export needs a functional or "
            "Sequential model built on a keras.Input."
        )
    if len(inputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(inputs)} inputs {[t.name for t in inputs]}; export "
            "supports single-input (image) models."
        )
    return tuple(inputs[0].shape[1:])


def check_target(
    name: str,
    format: str,
    *,
    output=None,
    root="saved_models",
    version: int | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """The path :func:`export_model` writes ``format`` of a model named ``name`` to (same
    arguments); raises now what it would raise there, so a caller can check before training.

    Raises:
        ValueError: unknown format, an ``output`` of the wrong kind (a ``.tflite`` name for a
            SavedModel, an existing folder where a file goes or the reverse) or under a file.
        FileExistsError: the target (or the serving version) exists and ``overwrite`` is
            False.
    """
    if format not in FORMATS:
        raise ValueError(
            f"Unknown export format {format!r}; allowed formats: {', '.join(FORMATS)}."
        )
    if output is None:
        _check_name(name)
        root = pathlib.Path(root)
        output = {
            "keras": root / f"{name}.keras",
            "saved_model": root / f"{name}_saved_model",
            "tflite": root / f"{name}.tflite",
            "tflite_int8": root / f"{name}_int8.tflite",
            "serving": root / name,
        }[format]
    output = pathlib.Path(output)
    if format in _SUFFIX and output.suffix != _SUFFIX[format]:
        raise ValueError(
            f"Format {format!r} writes a {_SUFFIX[format]} file; `output` {str(output)!r} has "
            f"suffix {output.suffix!r}."
        )
    if format in ("saved_model", "serving") and output.suffix in _FILE_SUFFIXES:
        raise ValueError(
            f"Format {format!r} writes a directory; `output` {str(output)!r} looks like a "
            f"{output.suffix} file."
        )
    _check_parents(output)
    if format == "serving":
        if output.exists() and not output.is_dir():
            raise ValueError(f"TF Serving model directory {output} exists and is not a directory.")
        if version is None:
            names = [p.name for p in output.iterdir()] if output.exists() else []
            existing = [int(name) for name in names if name.isdigit()]
            version = max(existing, default=0) + 1
        elif isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
            raise ValueError(f"`version` must be a positive integer, got {version!r}.")
        output = output / str(int(version))
    _check_existing(output, format, overwrite)
    return output


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise ValueError(
            f"Model name {name!r} is not usable as a file name (letters, digits, '_', '.', "
            "'-'); pass `output`."
        )


def _check_parents(target: pathlib.Path) -> None:
    for parent in target.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise ValueError(
                    f"Cannot write the export {target}: {parent} is a file, not a folder."
                )
            return


def _check_existing(target: pathlib.Path, format: str, overwrite: bool) -> None:
    if not os.path.lexists(target):
        return
    wants_dir = format in ("saved_model", "serving")
    if wants_dir and not target.is_dir():
        raise ValueError(
            f"{target} is a file; format {format!r} writes a SavedModel folder there. Choose "
            "another path."
        )
    if not wants_dir and target.is_dir():
        raise ValueError(
            f"{target} is a folder; format {format!r} writes a file there. Choose another path."
        )
    if not overwrite:
        what = f"Version {target.name} of {target.parent}" if format == "serving" else str(target)
        raise FileExistsError(
            f"{what} already exists; pass overwrite=True (CLI: --overwrite) to replace it (it "
            "is replaced only after the new export has verified)."
        )
    if wants_dir and not (target / "saved_model.pb").is_file():
        raise FileExistsError(
            f"{target} exists and is not a SavedModel directory; refusing to replace it."
        )


def _verification_sample(sample, input_shape, calibration) -> np.ndarray:
    if sample is None:
        if calibration is not None:
            return calibration[:INT8_VERIFY_IMAGES]
        if any(d is None for d in input_shape):
            raise ValueError(
                f"The model input shape {input_shape} is not fully known; pass `sample` images "
                "to verify the export."
            )
        rng = np.random.default_rng(0)
        return rng.uniform(0.0, 1.0, (FLOAT_VERIFY_IMAGES, *input_shape)).astype(np.float32)
    sample = np.asarray(sample, dtype=np.float32)
    if sample.ndim == len(input_shape):
        sample = sample[None]
    if sample.ndim != len(input_shape) + 1 or any(
        want is not None and got != want for got, want in zip(sample.shape[1:], input_shape)
    ):
        raise ValueError(
            f"`sample` has shape {sample.shape}; expected (N, {', '.join(map(str, input_shape))})."
        )
    return sample


def save_serving_module(module: tf.Module, path, signatures: dict, defaults: dict) -> None:
    """``tf.saved_model.save(module, path, signatures)``, recording ``defaults`` (scalar
    signature input -> the value under which the signature computes the Keras model) as
    the no-argument function ``module.serving_defaults`` that :func:`load_exported` reads.

    This writes a registry model's ``serving`` hint (:attr:`keras_apps.registry.ModelSpec.
    serving`); the caller stages and verifies (writes are not atomic here)."""
    if "serving_default" not in signatures:
        raise ValueError(f"`signatures` must include 'serving_default', got {sorted(signatures)}.")
    args, kwargs = signatures["serving_default"].structured_input_signature
    inputs = {**{spec.name: spec for spec in tf.nest.flatten(args)}, **kwargs}
    unknown = sorted(set(defaults) - set(inputs))
    scalar = {k: v for k, v in defaults.items() if k in inputs and inputs[k].shape.rank == 0}
    if unknown or len(scalar) != len(defaults):
        raise ValueError(
            f"`defaults` {sorted(defaults)} must name scalar inputs of the serving_default "
            f"signature (its inputs: {sorted(inputs)})."
        )
    constants = {k: tf.constant(v, dtype=inputs[k].dtype) for k, v in defaults.items()}
    setattr(module, SERVING_DEFAULTS, tf.function(lambda: dict(constants), input_signature=[]))
    tf.saved_model.save(module, str(path), signatures=signatures)


def _write(model: keras.Model, format: str, stage: Staging, calibration, serving=None) -> None:
    if format in ("saved_model", "serving"):
        serving = serving or registry.serving_hint(model)
    else:
        serving = None
    if format == "keras":
        model.save(stage.staged)
    elif serving is not None:
        module, signatures, defaults = serving(model)
        save_serving_module(module, stage.staged, signatures, defaults)
    elif format in ("saved_model", "serving"):
        model.export(str(stage.staged), format="tf_saved_model", verbose=False)
    else:
        saved_model = stage.tmp / "saved_model"
        model.export(str(saved_model), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        if format == "tflite_int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = as_tflite_dataset(calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        stage.staged.write_bytes(converter.convert())


def _compare(model: keras.Model, loaded: ExportedModel, sample: np.ndarray) -> _Comparison:
    reference = named_outputs(model, model.predict(sample, verbose=0))
    exported = loaded.run(sample)
    if not set(reference) <= set(exported):
        raise ExportVerificationError(
            f"Export {loaded.path} has outputs {sorted(exported)}; model {model.name!r} has "
            f"{sorted(reference)}."
        )
    scale = max(1.0, max(float(np.max(np.abs(v))) for v in reference.values()))
    quantized = loaded.format == "tflite_int8"
    max_diff = mean_diff = 0.0
    agreements, decisive = [], []
    for key, ref in reference.items():
        got = exported[key]
        if got.shape != ref.shape:
            raise ExportVerificationError(
                f"Output {key!r} of export {loaded.path} has shape {got.shape}; the model "
                f"gives {ref.shape}."
            )
        diff = np.abs(got.astype(np.float64) - ref)
        max_diff = max(max_diff, float(np.max(diff)))
        mean_diff = max(mean_diff, float(np.mean(diff)))
        if ref.ndim == 2 and ref.shape[1] > 1:
            agree = np.argmax(got, axis=1) == np.argmax(ref, axis=1)
            top2 = np.sort(ref, axis=1)[:, -2:]
            agreements.append(agree)
            decisive.append(agree[(top2[:, 1] - top2[:, 0]) >= INT8_DECISIVE_MARGIN * scale])
    decisive_all = np.concatenate(decisive) if decisive else np.zeros(0, bool)
    return _Comparison(
        max_abs_diff=max_diff,
        mean_abs_diff=mean_diff,
        tolerance=(INT8_TOLERANCE if quantized else FLOAT_TOLERANCE) * scale,
        agreement=float(np.mean(np.concatenate(agreements))) if agreements else None,
        decisive_agreement=float(np.mean(decisive_all)) if decisive_all.size else None,
        decisive_count=int(decisive_all.size),
        quantized=quantized,
    )


def _size(path: pathlib.Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
