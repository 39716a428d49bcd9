"""Pruning, quantization-aware training and int8 TFLite through tensorflow-model-optimization,
with the measurements that compare them (size, sparsity, accuracy, latency).

    >>> from keras_apps.compression import optimize
    >>> report = optimize.optimize_model("resnet20_cifar", "digits", prune=0.5, qat=True,
    ...                                  int8=True, epochs=2, output_dir="runs/optimize/resnet20")
    >>> print(report["table"])

tfmot 0.8.1 only takes tf_keras models, so each step goes through the bridge
(:mod:`keras_apps.compression.tfmot_bridge`, outputs checked equal):

* :func:`prune_model`: ``prune_low_magnitude`` on every Conv2D / DepthwiseConv2D / Dense of the
  tf_keras twin with ``PolynomialDecay(0 -> sparsity, begin_step=0, end_step=2/3 of the
  fine-tuning steps, frequency=1)`` (it must act every step in a short run), fine-tuned with
  the ``UpdatePruningStep`` callback, then ``strip_pruning``; the weights go back into a Keras
  3 model of the original architecture (a normal ``.keras`` model that exports).
* :func:`quantization_aware`: ``quantize_model`` on the twin, fine-tuned; :func:`qat_tflite`
  converts it with ``TFLiteConverter.from_keras_model`` (fake-quant layers exist only in
  tf_keras) to full-integer TFLite with int8 input and output, like ``export``'s
  ``tflite_int8``.
* post-training int8 is :func:`keras_apps.export.export_model` format ``"tflite_int8"``,
  calibrated on training images (:func:`keras_apps.export.calibration_images`).

Measured per variant (:func:`optimize_model`): the file's bytes and its bytes zipped
(``zipfile`` deflate of the one file, as tfmot's guides measure), the sparsity of the
prunable kernels, top-1 accuracy on the test split, and the latency per image of the
Keras model (``model.predict`` on a batch) or of the LiteRT interpreter (``ai_edge_litert``,
one image per ``invoke``) on the same batch: the median of alternated repeats, also given
as a ratio to the float Keras model measured in the same run.

Importing tfmot sets ``TF_USE_LEGACY_KERAS=1`` for the process; :func:`import_tfmot` imports
it with ``tf.keras`` already resolved and restores the variable, so the rest of the package
(and anything else in the process) keeps Keras 3.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import shutil
import statistics
import tempfile
import time
import warnings
import zipfile

import keras
import numpy as np
import tensorflow as tf
import tf_keras

from keras_apps import data as kdata
from keras_apps import export as kexport
from keras_apps import registry, training
from keras_apps._atomic import atomic_file
from keras_apps.compression import tfmot_bridge
from keras_apps.export.exporter import CALIBRATION_IMAGES
from keras_apps.export.representative import as_tflite_dataset

__all__ = [
    "PRUNABLE_LAYERS",
    "RESULT_FILES",
    "VARIANTS",
    "check_sparsity_target",
    "import_tfmot",
    "kernel_sparsity",
    "measure_latency",
    "optimize_model",
    "prune_model",
    "qat_tflite",
    "quantization_aware",
    "table_markdown",
    "zipped_size",
]

#: Layer classes whose kernels are pruned (tfmot's prunable kernels of the suite's CNNs).
PRUNABLE_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")
#: Rows of the table, in order (each present when its step runs).
VARIANTS = ("baseline", "baseline_tflite", "ptq_int8", "pruned", "pruned_tflite", "pruned_int8",
            "qat_int8")
#: The table files :func:`optimize_model` writes under ``output_dir``.
RESULT_FILES = ("optimize.json", "optimize.md")
#: Share of the pruning fine-tune steps over which sparsity ramps up (the rest keep the mask).
PRUNE_RAMP = 2 / 3


# ----------------------------------------------------------------------------------- tfmot


@functools.lru_cache(maxsize=None)
def import_tfmot():
    """``tensorflow_model_optimization``, imported without leaving ``TF_USE_LEGACY_KERAS``
    set: ``tf.keras`` is resolved first (to what it would be anyway), the variable is
    restored afterwards."""
    getattr(tf.keras, "__name__", None)  # resolves TF's lazy tf.keras under the current setting
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import tensorflow_model_optimization as tfmot
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before
    return tfmot


@functools.lru_cache(maxsize=None)
def _passthrough_quantize_config():
    """A tfmot QuantizeConfig for weightless twins (the ResNet shortcut): no weights or
    activations to quantise, and its output keeps its input's range (slice + zero pad), so
    no fake-quant is added after it."""
    tfmot = import_tfmot()

    plain = tf.autograph.experimental.do_not_convert  # measured: AutoGraph's converted-
    # function cache once mixed up these one-line methods (set_quantize_weights ran as
    # get_activations_and_quantizers) in a long run; called unconverted, they cannot be

    @tf_keras.saving.register_keras_serializable(package="keras_apps_tf_keras")
    class PassThroughQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        @plain
        def get_weights_and_quantizers(self, layer):
            return []

        @plain
        def get_activations_and_quantizers(self, layer):
            return []

        @plain
        def set_quantize_weights(self, layer, quantize_weights):
            if quantize_weights:
                raise ValueError(f"{layer.name} has no weights to quantize.")

        @plain
        def set_quantize_activations(self, layer, quantize_activations):
            if quantize_activations:
                raise ValueError(f"{layer.name} has no activations to quantize.")

        @plain
        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    return PassThroughQuantizeConfig


# ---------------------------------------------------------------------------------- checks


def _check_sparsity(sparsity) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 < sparsity < 1:
        raise ValueError(
            f"`prune` (the target sparsity) must be a fraction in (0, 1), e.g. 0.5, got {sparsity!r}."
        )
    return float(sparsity)


def _check_single_output(model: keras.Model) -> None:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; optimisation supports single-input, single-output classifiers."
        )


def _compile_twin(twin, keras_model: keras.Model, learning_rate: float) -> None:
    from_logits = not training.outputs_probabilities(keras_model)
    twin.compile(
        optimizer=tf_keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
    )


def _steps(train_ds, steps_per_epoch) -> int:
    steps = int(steps_per_epoch or train_ds.cardinality())
    if steps <= 0:
        raise ValueError("The training dataset is infinite or empty: pass `steps_per_epoch`.")
    return steps


# ----------------------------------------------------------------------------------- prune


def prune_model(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    *,
    sparsity: float = 0.5,
    epochs: int = 2,
    learning_rate: float = 0.01,
    steps_per_epoch: int | None = None,
    validation_data=None,
    sample=None,
    verbose=0,
) -> keras.Model:
    """Magnitude pruning of ``model``'s Conv2D/DepthwiseConv2D/Dense kernels to
    ``sparsity`` while fine-tuning on ``train_ds`` ((images, labels) batches), through tfmot.

    Sparsity ramps by ``PolynomialDecay(0 -> sparsity, frequency=1)`` over the first
    :data:`PRUNE_RAMP` of the ``epochs * steps`` fine-tuning steps; the rest fine-tune with
    the final mask. Returns a Keras 3 model of ``model``'s architecture holding the stripped
    weights (checked against the tf_keras model on ``sample``); ``model`` is unchanged.
    """
    tfmot = import_tfmot()
    sparsity = _check_sparsity(sparsity)
    _check_single_output(model)
    steps = _steps(train_ds, steps_per_epoch)
    total = steps * int(epochs)
    if total < 2:
        raise ValueError(
            f"Pruning needs at least 2 fine-tuning steps to reach its target (got {epochs} "
            f"epoch(s) of {steps} step(s)); raise `epochs` or the amount of data."
        )
    twin = tfmot_bridge.to_tf_keras(model, sample=sample)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
        end_step=max(1, int(round((total - 1) * PRUNE_RAMP))), frequency=1,
    )

    def wrap(layer):
        if type(layer).__name__ in PRUNABLE_LAYERS:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    # clone_model keeps a layer the clone function returns as is, so the wrappers and the
    # untouched layers share the twin's weights
    pruning = tf_keras.models.clone_model(twin, clone_function=wrap)
    _compile_twin(pruning, model, learning_rate)
    pruning.fit(train_ds, epochs=int(epochs), steps_per_epoch=steps, validation_data=validation_data,
                callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], verbose=verbose)
    stripped = tfmot.sparsity.keras.strip_pruning(pruning)
    return tfmot_bridge.to_keras(stripped, like=model, sample=sample)


def kernel_sparsity(model) -> dict:
    """Fraction of exact zeros in each prunable kernel (:data:`PRUNABLE_LAYERS`) of a Keras 3
    or tf_keras model: ``{"layers": {name: fraction}, "overall": zeros / weights}``."""
    layers, zeros, total = {}, 0, 0
    for layer in model.layers:
        if type(layer).__name__ not in PRUNABLE_LAYERS:
            continue
        kernel = np.asarray(layer.get_weights()[0])
        layers[layer.name] = float(np.mean(kernel == 0))
        zeros += int(np.sum(kernel == 0))
        total += kernel.size
    return {"layers": layers, "overall": zeros / total if total else 0.0}


def check_sparsity_target(model, target: float) -> dict:
    """:func:`kernel_sparsity`, raising ValueError when a kernel's sparsity misses ``target``
    by more than the granularity of its size (one weight, plus ties at the threshold)."""
    measured = kernel_sparsity(model)
    sizes = {layer.name: np.asarray(layer.get_weights()[0]).size for layer in model.layers
             if layer.name in measured["layers"]}
    off = {name: value for name, value in measured["layers"].items()
           if abs(value - target) > 1.0 / sizes[name] + 1e-9}
    if off:
        raise ValueError(f"Kernels missing the target sparsity {target}: {off}.")
    return measured


# ------------------------------------------------------------------------------------- QAT


def quantization_aware(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    *,
    epochs: int = 2,
    learning_rate: float = 0.01,
    steps_per_epoch: int | None = None,
    validation_data=None,
    sample=None,
    verbose=0,
):
    """Quantization-aware fine-tuning (tfmot ``quantize_model``: 8-bit fake-quant weights and
    activations, BatchNormalization folded into the preceding convolution) of ``model``'s
    tf_keras twin on ``train_ds``. Returns the fine-tuned tf_keras QAT model (convert it with
    :func:`qat_tflite`); ``model`` is unchanged."""
    tfmot = import_tfmot()
    _check_single_output(model)
    steps = _steps(train_ds, steps_per_epoch)
    twin = tfmot_bridge.to_tf_keras(model, sample=sample)
    quant = tfmot.quantization.keras
    passthrough = _passthrough_quantize_config()

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.InputLayer):
            return layer
        if isinstance(layer, tfmot_bridge.NO_QAT_TWINS):
            raise tfmot_bridge.UnsupportedLayerError(
                f"Quantization-aware training has no scheme for layer {layer.name!r} "
                f"({type(layer).__name__}, a keras_apps layer) of {model.name!r}; prune it "
                "(--prune) or convert it with post-training int8 (--int8) instead."
            )
        if isinstance(layer, tfmot_bridge.TFKerasZeroPaddingShortcut):
            return quant.quantize_annotate_layer(layer, quantize_config=passthrough())
        return quant.quantize_annotate_layer(layer)  # tfmot's default 8-bit scheme

    annotated = tf_keras.models.clone_model(twin, clone_function=annotate)
    with quant.quantize_scope({"PassThroughQuantizeConfig": passthrough,
                               "TFKerasZeroPaddingShortcut": tfmot_bridge.TFKerasZeroPaddingShortcut}):
        qat = quant.quantize_apply(annotated)
    _compile_twin(qat, model, learning_rate)
    qat.fit(train_ds, epochs=int(epochs), steps_per_epoch=steps, validation_data=validation_data,
            verbose=verbose)
    return qat


def qat_tflite(qat_model, path, *, representative_data, overwrite: bool = False) -> pathlib.Path:
    """Converts a tfmot QAT tf_keras model to full-integer TFLite (int8 weights, activations,
    input and output) at ``path`` (atomic; an existing file only with ``overwrite``).

    The ranges come from the fake-quant layers; the converter still requires
    ``representative_data`` (real images, as for :func:`keras_apps.export.export_model`) for
    full-integer output and calibrates on it the tensors without a fake-quant range (the
    input: measured, the same scale and zero point as post-training int8)."""
    path = pathlib.Path(path)
    if path.suffix != ".tflite":
        raise ValueError(f"`path` {str(path)!r} must end in .tflite.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite).")
    images = kexport.calibration_images(representative_data, tuple(qat_model.inputs[0].shape[1:]),
                                        limit=CALIBRATION_IMAGES)
    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = as_tflite_dataset(images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # the input tensor has no fake-quant statistics of its own; its range is calibrated
        # on `representative_data` (the same scale and zero point as post-training int8)
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        flatbuffer = converter.convert()
    with atomic_file(path, suffix=".tflite") as tmp:
        tmp.write_bytes(flatbuffer)
    return path


# ---------------------------------------------------------------------------- measurements


def zipped_size(path) -> int:
    """Bytes of ``path`` zipped (deflate, level 9) into a temporary archive, as tfmot's
    guides measure compressibility (pruned zeros compress; dense float weights hardly do).
    A folder is zipped with all its files."""
    path = pathlib.Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        archive = pathlib.Path(tmp) / "size.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for file in files:
                zf.write(file, arcname=file.name if file == path else str(file.relative_to(path)))
        return archive.stat().st_size


def _size(path: pathlib.Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class _LiteRTRunner:
    """One image per ``invoke`` (quantising int8 input, as deployed)."""

    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path))
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def _feed(self, image):
        detail = self.input
        if detail["dtype"] == np.int8:
            scale, zero = detail["quantization"]
            image = np.clip(np.round(image / scale + zero), -128, 127).astype(np.int8)
        return image[None].astype(detail["dtype"])

    def predict(self, images) -> np.ndarray:
        outputs = []
        for image in images:
            self.interpreter.set_tensor(self.input["index"], self._feed(image))
            self.interpreter.invoke()
            out = self.interpreter.get_tensor(self.output["index"])[0]
            if self.output["dtype"] == np.int8:
                scale, zero = self.output["quantization"]
                out = (out.astype(np.float32) - zero) * scale
            outputs.append(out)
        return np.stack(outputs)


def measure_latency(runners: dict, batch: np.ndarray, *, repeats: int = 5) -> dict:
    """Median seconds per image of each ``runners[name](batch)`` over ``repeats`` rounds
    that alternate the runners (one warm-up call each first)."""
    for run in runners.values():
        run(batch)
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run(batch)
            times[name].append((time.perf_counter() - start) / len(batch))
    return {name: statistics.median(values) for name, values in times.items()}


def _keras_runner(model: keras.Model):
    return lambda images: model.predict(images, batch_size=len(images), verbose=0)


# ---------------------------------------------------------------------------------- driver


def _load_model(model):
    if isinstance(model, keras.Model):
        return model, None
    text = str(model)
    if text.endswith(".keras") or os.path.sep in text or os.path.isfile(text):
        return training.load_model(text), pathlib.Path(text)
    registry.get_spec(text)  # unknown names fail here, with the closest names
    return None, None


def _run_config(path: pathlib.Path | None) -> dict:
    if path is None or not (path.parent / "config.json").is_file():
        return {}
    try:
        return json.loads((path.parent / "config.json").read_text())
    except ValueError:
        return {}


def _arrays(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(np.asarray(x))
        labels.append(np.asarray(y))
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def _check_bridgeable(model: keras.Model) -> None:
    _check_single_output(model)
    tfmot_bridge.check_supported(model)


def _uncompiled(model: keras.Model) -> keras.Model:
    """A copy without optimizer state, so that saved sizes and predict timings compare."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _check_output_dir(output_dir: pathlib.Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"`output_dir` {output_dir} is a file; it names a folder.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{output_dir} already holds results; pass overwrite=True (CLI: --overwrite) to "
            "replace them, or choose another output folder."
        )


def optimize_model(
    model,
    data="digits",
    *,
    prune: float | None = 0.5,
    qat: bool = True,
    int8: bool = True,
    epochs: int = 2,
    train_epochs: int = 5,
    batch_size: int = 64,
    learning_rate: float = 0.01,
    train_learning_rate: float = 0.05,
    validation_fraction: float = 0.1,
    limit: int | None = None,
    data_dir=None,
    image_size=None,
    channels: int | None = None,
    download: bool = False,
    build_kwargs: dict | None = None,
    latency_images: int = 32,
    latency_repeats: int = 5,
    seed: int = 0,
    output_dir="runs/optimize",
    overwrite: bool = False,
    progress=None,
) -> dict:
    """Optimises a classifier and measures every variant; writes the artefacts and the
    table (``optimize.json``, ``optimize.md``) under ``output_dir``.

    Args:
        model: a registry name (first trained with :func:`keras_apps.training.fit` for
            ``train_epochs`` into ``output_dir/train``), a ``.keras`` file or a
            ``keras.Model`` (taken as trained).
        data: the dataset (:func:`keras_apps.data.load`); fine-tuning uses its training split
            minus the held-out ``validation_fraction``, accuracies its test split.
        prune: target sparsity in (0, 1) of the prunable kernels, or None (no pruning).
        qat: quantization-aware training + int8 TFLite.
        int8: post-training int8 TFLite of the baseline (and of the pruned model).
        epochs: fine-tuning epochs of pruning and of QAT.
        limit: use only the first N images per split.
        latency_images, latency_repeats: the timed batch and the alternated rounds.
        overwrite: replace the results of an earlier run in ``output_dir``.
        progress: a callable given one line per finished step (e.g. ``print``).

    Returns:
        ``{"model", "data", "settings", "rows": [{variant, file, bytes, zipped_bytes,
        sparsity, top1_accuracy, seconds_per_image, runtime, latency_vs_keras,
        agreement_with_baseline}], "table": markdown, "paths"}``.
    """
    say = progress or (lambda line: None)
    if prune is not None:
        prune = _check_sparsity(prune)
    for label, value in (("epochs", epochs), ("train_epochs", train_epochs),
                         ("batch_size", batch_size), ("latency_images", latency_images),
                         ("latency_repeats", latency_repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{label}` must be a positive integer, got {value!r}.")
    if prune is None and not qat and not int8:
        raise ValueError("Nothing to do: pass `prune`, `qat` or `int8`.")
    output_dir = pathlib.Path(output_dir)
    _check_output_dir(output_dir, overwrite)
    loaded, source = _load_model(model)
    if loaded is not None and build_kwargs:
        raise TypeError("`build_kwargs` apply to a registry name, not to a built or saved model.")
    if loaded is None:
        registry.check_arguments(model, dict(build_kwargs or {}))
    config = _run_config(source)
    preprocessing = config.get("preprocessing") or (
        registry.preprocessing_for(model, (build_kwargs or {}).get("weights"))
        if loaded is None else "dataset")
    if channels is None:
        channels = config.get("channels")
    if loaded is not None:
        _check_bridgeable(loaded)  # before any data is read
        if image_size is None:
            image_size = tuple(loaded.inputs[0].shape[1:3])
    # Everything is written into a hidden staging sibling and renamed into place at the end:
    # a failure leaves an earlier run's results as they were.
    stage = output_dir.parent / f".{output_dir.name}.staging-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:

        loader = dict(data_dir=data_dir, image_size=image_size, preprocessing=preprocessing,
                      download=download, channels=channels, batch_size=batch_size)
        info = kdata.dataset_info(data, data_dir=data_dir, download=download, channels=channels)
        carve = dict(validation_fraction=validation_fraction) if validation_fraction else {}
        train_ds, train_info = kdata.load(data, info.train_split, seed=seed, limit=limit,
                                          subset="training" if carve else None, **carve, **loader)
        val_ds = None
        if carve:
            val_ds, _ = kdata.load(data, info.train_split, subset="validation", limit=limit,
                                   augment=False, shuffle=False, **carve, **loader)
        if loaded is None:  # the architecture must bridge before it is trained
            probe = registry.build(model, **{"input_shape": tuple(train_info.image_shape),
                                             "classes": info.num_classes, **(build_kwargs or {})})
            _check_bridgeable(probe)
            del probe
        test_split = next(s for s in ("test", "validation", "val") if s in info.splits
                          and s != info.train_split)
        test_ds, _ = kdata.load(data, test_split, limit=limit, augment=False, shuffle=False, **loader)
        test_x, test_y = _arrays(test_ds)
        calibration_ds, _ = kdata.load(data, info.train_split, limit=limit, augment=False,
                                       shuffle=False, **{**loader, "batch_size": 32})
        sample = test_x[:8]

        if loaded is None:
            say(f"training {model} for {train_epochs} epoch(s) on {data}")
            result = training.fit(
                model, data, epochs=train_epochs, batch_size=batch_size,
                output_dir=stage / "train", learning_rate=train_learning_rate,
                validation_fraction=validation_fraction or None, data_dir=data_dir,
                image_size=image_size, channels=channels, limit=limit, download=download, seed=seed,
                build_kwargs=build_kwargs, verbose=0, overwrite=overwrite,
            )
            baseline = _uncompiled(result.model)
        else:
            baseline = _uncompiled(loaded)
        name = baseline.name
        artefacts = {}  # variant -> (file, the Keras model it runs in, or None: LiteRT)
        path = stage / "baseline.keras"
        training.atomic_save_model(baseline, path)
        artefacts["baseline"] = (path, baseline)
        artefacts["baseline_tflite"] = (
            kexport.export_model(baseline, "tflite", output=stage / "baseline.tflite",
                                 sample=sample).path, None)
        if int8:
            artefacts["ptq_int8"] = (
                kexport.export_model(baseline, "tflite_int8", output=stage / "baseline_int8.tflite",
                                     representative_data=calibration_ds, sample=test_x[:64]).path,
                None)
            say("post-training int8: baseline_int8.tflite")

        pruned = None
        if prune is not None:
            say(f"pruning to sparsity {prune} for {epochs} epoch(s)")
            pruned = prune_model(baseline, train_ds, sparsity=prune, epochs=epochs,
                                 learning_rate=learning_rate, validation_data=val_ds,
                                 sample=sample)
            check_sparsity_target(pruned, prune)
            path = stage / "pruned.keras"
            training.atomic_save_model(pruned, path)
            artefacts["pruned"] = (path, pruned)
            artefacts["pruned_tflite"] = (
                kexport.export_model(pruned, "tflite", output=stage / "pruned.tflite",
                                     sample=sample).path, None)
            if int8:
                artefacts["pruned_int8"] = (
                    kexport.export_model(pruned, "tflite_int8", output=stage / "pruned_int8.tflite",
                                         representative_data=calibration_ds, sample=test_x[:64]).path,
                    None)
        if qat:
            say(f"quantization-aware training for {epochs} epoch(s)")
            qat_model = quantization_aware(baseline, train_ds, epochs=epochs, learning_rate=learning_rate,
                                           validation_data=val_ds, sample=sample)
            artefacts["qat_int8"] = (qat_tflite(qat_model, stage / "qat_int8.tflite",
                                                representative_data=calibration_ds), None)

        batch = test_x[:latency_images]
        runners, predictors = {}, {}
        for variant, (path, keras_model) in artefacts.items():
            if keras_model is not None:
                runners[variant] = _keras_runner(keras_model)
                predictors[variant] = runners[variant]
            else:
                runner = _LiteRTRunner(path)
                runners[variant] = runner.predict
                predictors[variant] = runner.predict
        say(f"timing {len(runners)} variants on {len(batch)} images x {latency_repeats} rounds")
        latency = measure_latency(runners, batch, repeats=latency_repeats)
        baseline_pred = np.argmax(predictors["baseline"](test_x), axis=1)
        rows = []
        for variant in VARIANTS:
            if variant not in artefacts:
                continue
            path, keras_model = artefacts[variant]
            predicted = np.argmax(predictors[variant](test_x), axis=1)
            if keras_model is not None:
                measured = kernel_sparsity(keras_model)["overall"]
            else:
                measured = kernel_sparsity(pruned)["overall"] if variant.startswith("pruned") \
                    else kernel_sparsity(baseline)["overall"]
            rows.append({
                "variant": variant,
                "file": path.name,
                "runtime": "keras" if keras_model is not None else "litert",
                "bytes": _size(path),
                "zipped_bytes": zipped_size(path),
                "sparsity": measured,
                "top1_accuracy": float(np.mean(predicted == test_y)),
                "agreement_with_baseline": float(np.mean(predicted == baseline_pred)),
                "seconds_per_image": latency[variant],
                "latency_vs_keras": latency[variant] / latency["baseline"],
            })
        report = {
            "model": name,
            "source": str(source) if source else (model if isinstance(model, str) else name),
            "data": data,
            "settings": {"prune": prune, "qat": qat, "int8": int8, "epochs": epochs,
                         "train_epochs": train_epochs if loaded is None else None,
                         "batch_size": batch_size, "learning_rate": learning_rate, "limit": limit,
                         "test_examples": int(len(test_y)), "latency_images": int(len(batch)),
                         "latency_repeats": latency_repeats, "seed": seed,
                         "image_shape": list(train_info.image_shape)},
            "rows": rows,
        }
        report["table"] = table_markdown(report)
        (stage / "optimize.md").write_text(report["table"], encoding="utf-8")
        (stage / "optimize.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _replace_folder(stage, output_dir)
    report["paths"] = {"json": str(output_dir / "optimize.json"),
                       "markdown": str(output_dir / "optimize.md")}
    return report


def _replace_folder(stage: pathlib.Path, target: pathlib.Path) -> None:
    """Renames ``stage`` to ``target``; an existing ``target`` (overwrite) is moved aside
    first and removed once the new one is in place."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    os.replace(stage, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def table_markdown(report: dict) -> str:
    """The report's rows as a Markdown table (sizes in bytes, latency in ms per image)."""
    settings = report["settings"]
    lines = [
        f"{report['model']} on {report['data']} ({settings['test_examples']} test images; "
        f"prune {settings['prune']}, {settings['epochs']} fine-tuning epoch(s); latency: median "
        f"of {settings['latency_repeats']} alternated rounds on {settings['latency_images']} "
        "images)",
        "",
        "| variant | file | runtime | bytes | zipped bytes | sparsity | top-1 | agreement | "
        "ms/image | vs Keras |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['variant']} | {row['file']} | {row['runtime']} | {row['bytes']:,} | "
            f"{row['zipped_bytes']:,} | {row['sparsity']:.3f} | {row['top1_accuracy']:.3f} | "
            f"{row['agreement_with_baseline']:.3f} | {row['seconds_per_image'] * 1e3:.3f} | "
            f"{row['latency_vs_keras']:.2f}x |"
        )
    return "\n".join(lines) + "\n"
