"""Training and evaluation of any model on any keras_apps dataset or tf.data pipeline.

``fit`` takes a registry name, a built ``keras.Model`` or a function returning one, and
either a dataset name (``keras_apps.data``) or a ``(train, validation)`` pair of
``tf.data.Dataset``. Model selection never sees the test split: with a dataset name, a
stratified, seeded ``validation_fraction`` of the training split is held out and drives the
validation metrics (and any callback that watches them); the test split is evaluated once,
at the end. Under ``output_dir`` it writes:

- ``config.json``: the run's settings (a resumed run must match them);
- ``backup/``: the resume state after every finished epoch (weights, optimizer, random
  generator states, epoch and history), written to a new file and then pointed to, so a kill
  at any moment leaves the last good state; re-running the same call resumes from it, with
  the same data order as an uninterrupted run;
- ``logs/``: TensorBoard logs; ``history.csv``: one row per finished epoch;
- ``checkpoints/last.keras``: the model after every epoch;
- ``model.keras``: the final (inference, float32) model and ``metrics.json`` with its
  ``validation`` and ``test`` metrics. A finished run is kept: running into the same folder
  again raises ``FileExistsError`` unless ``overwrite=True``.

Family training hints come from the registry (``registry.training_hints``): a model whose
outputs are a dict with the keys of the hint's ``loss_weights`` (GoogLeNet's training model
``{"main", "aux1", "aux2"}``) gets the loss on every output with those weights, and the
saved model is the hint's ``inference_model``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import pathlib
import shutil
import zipfile
from typing import Callable, Mapping

import keras
import numpy as np
import tensorflow as tf

from keras_apps import data as kdata
from keras_apps import registry
from keras_apps._atomic import atomic_file
from keras_apps.training import engine
from keras_apps.training.freezing import set_trainable
from keras_apps.training.metrics import TopKAccuracy, top_k_accuracy
from keras_apps.training.multipliers import with_lr_multipliers
from keras_apps.training.precision import PRECISIONS, policy_name, precision_policy
from keras_apps.training.strategy import get_strategy

LR_SCHEDULES = ("constant", "step", "cosine")
#: Settings that may differ between an interrupted run and its resumption.
RESUMABLE_CHANGES = ("strategy", "replicas")


@dataclasses.dataclass
class TrainResult:
    """What :func:`fit` returns: the trained (inference) model, the history of this call,
    the final metrics (``{"validation": {...}, "test": {...}, "epochs": N}``) and where
    the run's files are."""

    model: keras.Model
    history: dict
    metrics: dict
    output_dir: pathlib.Path


def atomic_write_text(path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary sibling file and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def atomic_save_model(model: keras.Model, path) -> None:
    """``model.save(path)`` through a temporary sibling ``.keras`` file and a rename."""
    with atomic_file(path, suffix=".keras") as tmp:
        model.save(tmp)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the model to ``path`` at the end of every epoch, atomically."""

    def __init__(self, path):
        super().__init__()
        self.path = pathlib.Path(path)

    def on_epoch_end(self, epoch, logs=None):
        atomic_save_model(self.model, self.path)


def _seed_variables(model: keras.Model) -> list:
    """The random generator states (dropout, ...), in graph order; ``save_weights`` does not
    keep them, and their paths (``seed_generator_<n>``) depend on what else the process
    built, so they are matched by position."""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def _seed_states(model: keras.Model) -> list:
    return [np.asarray(v.numpy()).tolist() for v in _seed_variables(model)]


class ResumeState(keras.callbacks.Callback):
    """Keeps what a resumed run needs, after every finished epoch, in ``folder``.

    ``state-<epoch>.weights.h5`` (model and optimizer variables) is written through a
    temporary file and a rename; then ``state.json`` (epoch, history rows, random generator
    states, the weights file's name) is replaced atomically, and only then is the previous
    weights file removed. A kill at any point leaves a ``state.json`` that names a complete
    weights file. ``history.csv`` is rewritten (atomically) from the same rows.
    """

    def __init__(self, folder, history_csv, rows=()):
        super().__init__()
        self.folder = pathlib.Path(folder)
        self.history_csv = pathlib.Path(history_csv)
        self.rows = list(rows)

    @staticmethod
    def read(folder) -> dict | None:
        path = pathlib.Path(folder) / "state.json"
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        if not (pathlib.Path(folder) / state["weights"]).is_file():
            raise ValueError(
                f"Resume state {path} names {state['weights']!r}, which is missing; remove "
                f"{folder} (or pass overwrite=True, CLI: --overwrite) to start afresh."
            )
        return state

    @staticmethod
    def restore(model: keras.Model, folder, state: dict) -> None:
        model.load_weights(pathlib.Path(folder) / state["weights"])
        variables = _seed_variables(model)
        values = state.get("seed_states", [])
        if len(values) != len(variables):
            raise ValueError(
                f"Resume state in {folder} has {len(values)} random generator states; the model "
                f"has {len(variables)}: it is not the model of that run."
            )
        for variable, value in zip(variables, values):
            variable.assign(np.asarray(value, dtype=variable.dtype))

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.rows.append(row)
        name = f"state-{epoch + 1}.weights.h5"
        with atomic_file(self.folder / name, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)
        previous = self.read(self.folder)
        state = {
            "epoch": epoch + 1,
            "weights": name,
            "history": self.rows,
            "seed_states": _seed_states(self.model),
        }
        atomic_write_text(self.folder / "state.json", json.dumps(state) + "\n")
        if previous and previous["weights"] != name:
            (self.folder / previous["weights"]).unlink(missing_ok=True)
        _write_history(self.history_csv, self.rows)


def _write_history(path: pathlib.Path, rows: list) -> None:
    keys = ["epoch"] + sorted({k for row in rows for k in row if k != "epoch"})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())


def learning_rate_schedule(name: str, learning_rate: float, total_steps: int):
    """``constant``; ``step`` (divide by 10 at 50% and 75% of training, the papers' "step"
    policy); ``cosine`` (cosine decay to 0 over training)."""
    if name not in LR_SCHEDULES:
        raise ValueError(f"Unknown lr_schedule {name!r}; choose one of {', '.join(LR_SCHEDULES)}.")
    if isinstance(learning_rate, bool) or not (
        isinstance(learning_rate, (int, float)) and learning_rate > 0
    ):
        raise ValueError(f"`learning_rate` must be a positive number, got {learning_rate!r}.")
    total_steps = max(int(total_steps), 1)
    if name == "constant":
        return float(learning_rate)
    if name == "step":
        # PiecewiseConstantDecay switches after a boundary: step b+1 gets the next value.
        boundaries = sorted({max(0, total_steps // 2 - 1), max(1, (3 * total_steps) // 4 - 1)})
        values = [learning_rate * 0.1**i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return keras.optimizers.schedules.CosineDecay(learning_rate, total_steps)


def _eval_split(info) -> str:
    for split in ("test", "validation", "val"):
        if split in info.splits and split != info.train_split:
            return split
    raise ValueError(f"Dataset {info.name!r} has no test or validation split ({info.splits}).")


def classification_metrics(num_classes: int | None = None) -> list:
    """Top-1 accuracy and top-min(5, classes) accuracy (ties count against)."""
    k = 5 if num_classes is None else min(5, num_classes)
    return [keras.metrics.SparseCategoricalAccuracy(name="top1"), TopKAccuracy(k, name="top5")]


def _output_layer(tensor):
    return tensor._keras_history[0]


def outputs_probabilities(model: keras.Model):
    """For each output (same structure as ``model.output``): True when it ends in a softmax
    or in a layer whose ``produces_probabilities`` is True (a probability distribution),
    False when it is unnormalised scores (logits)."""

    def is_softmax(tensor):
        layer = _output_layer(tensor)
        while isinstance(layer, keras.Model) and len(layer.outputs) == 1:
            layer = _output_layer(layer.outputs[0])  # a nested model: its own output layer
        if getattr(layer, "produces_probabilities", False):
            return True  # e.g. HD-CNN's probabilistic averaging
        activation = getattr(layer, "activation", None)
        return activation is keras.activations.softmax or getattr(
            activation, "__name__", ""
        ) == "softmax"

    return keras.tree.map_structure(is_softmax, model.output)


def _default_loss(model: keras.Model):
    return keras.tree.map_structure(
        lambda p: keras.losses.SparseCategoricalCrossentropy(from_logits=not p),
        outputs_probabilities(model),
    )


def _make_optimizer(optimizer, *, learning_rate, momentum, weight_decay, lr_schedule, total_steps):
    schedule = learning_rate_schedule(lr_schedule, learning_rate, total_steps)
    if optimizer is None or optimizer == "sgd":
        return keras.optimizers.SGD(
            learning_rate=schedule, momentum=momentum, weight_decay=weight_decay or None
        )
    if isinstance(optimizer, str):
        try:
            return keras.optimizers.get(
                {"class_name": optimizer, "config": {"learning_rate": schedule,
                                                      "weight_decay": weight_decay or None}}
            )
        except ValueError as err:
            raise ValueError(
                f"Unknown optimizer {optimizer!r}: give a Keras optimizer name ('sgd', 'adam', "
                f"'adamw', 'rmsprop', ...) or a keras.optimizers.Optimizer instance."
            ) from err
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    raise TypeError(
        f"`optimizer` must be None, a Keras optimizer name or a keras.optimizers.Optimizer, "
        f"got {type(optimizer).__name__}: {optimizer!r}."
    )


def compile_for_classification(
    model: keras.Model,
    *,
    num_classes: int | None = None,
    optimizer=None,
    loss=None,
    loss_weights: dict | None = None,
    metrics=None,
    learning_rate=0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    lr_schedule: str = "cosine",
    total_steps: int = 1,
    lr_multipliers: Mapping[str, float] | None = None,
    jit_compile="auto",
) -> keras.Model:
    """Compiles ``model`` for sparse-label classification and returns it.

    - ``optimizer``: None / "sgd" (SGD with momentum and decoupled weight decay, the papers'
      optimiser, on ``lr_schedule``), another Keras optimizer name (given the same schedule
      and weight decay) or an optimizer instance (used as it is);
    - ``lr_multipliers``: ``{layer-name pattern: factor}``, see
      :func:`keras_apps.training.with_lr_multipliers`;
    - ``loss``: default sparse cross-entropy on every output, ``from_logits`` following each
      output's activation (a softmax output gives probabilities, anything else logits);
    - ``loss_weights``: per output of a model with a dict of outputs; the loss defaults to
      every output named there and the metrics go on the first of them;
    - ``metrics``: default top-1 and top-5 accuracy (ties count against).
    """
    opt = _make_optimizer(
        optimizer, learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay,
        lr_schedule=lr_schedule, total_steps=total_steps,
    )
    if lr_multipliers:
        opt = with_lr_multipliers(opt, lr_multipliers)
    if loss is None:
        loss = _default_loss(model)
        if loss_weights and isinstance(loss, dict):
            loss = {key: loss[key] for key in loss_weights}
    if metrics is None:
        metrics = classification_metrics(num_classes)
        if isinstance(model.output, dict):
            first = next(iter(loss_weights or model.output))
            metrics = {first: metrics}
    model.compile(
        optimizer=opt, loss=loss, loss_weights=loss_weights, metrics=metrics,
        jit_compile=jit_compile,
    )
    return model


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    return precision


def model_precision(model: keras.Model) -> str:
    """"float32", "bfloat16" or "float16": the compute dtype most of ``model``'s layers use."""
    counts = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        dtype = layer.dtype_policy.compute_dtype
        counts[dtype] = counts.get(dtype, 0) + 1
    dtype = max(counts, key=counts.get) if counts else "float32"
    return {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}.get(dtype, dtype)


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """The same functional model (same weights) computing in ``precision``.

    Layers running in the model's dominant policy switch to the new one (``mixed_bfloat16``
    / ``mixed_float16`` keep float32 variables, so the weights carry over unchanged); layers
    pinned to another dtype (the float32 classifier activation) keep theirs. Returns
    ``model`` itself when it already computes in ``precision``.
    """
    precision = _check_precision(precision)
    current = model_precision(model)
    if current == precision:
        return model
    source = policy_name(current)
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            continue
        dtype = layer["config"].get("dtype")
        name = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
        if name == source:
            layer["config"].pop("dtype")
    with precision_policy(precision):
        return _rebuild(model, config)


def _rebuild(model: keras.Model, config: dict | None = None) -> keras.Model:
    """A copy of a functional model (from ``config``, default its own) with the same
    weights, built in the current scope and dtype policy."""
    clone = model.__class__.from_config(config or model.get_config())
    clone.set_weights(model.get_weights())
    return clone


def _normalise_config(config: dict) -> dict:
    def describe(obj):
        if hasattr(obj, "get_config"):
            return {"class_name": type(obj).__name__, "config": obj.get_config()}
        return getattr(obj, "__name__", repr(obj))

    return json.loads(json.dumps(config, default=describe))


def _config_differences(saved: dict, new: dict) -> list[str]:
    keys = sorted((set(saved) | set(new)) - set(RESUMABLE_CHANGES))
    return [
        f"{key}: {saved.get(key)!r} -> {new.get(key)!r}"
        for key in keys
        if saved.get(key) != new.get(key)
    ]


def _is_dataset_pair(data) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and isinstance(data[0], tf.data.Dataset)
        and (data[1] is None or isinstance(data[1], tf.data.Dataset))
    )


def _check_output_dir(output_dir: pathlib.Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(
            f"`output_dir` {str(output_dir)!r} is a file; a run needs a folder (CLI: --output DIR)."
        )
    for parent in output_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(
                f"`output_dir` {str(output_dir)!r} lies under the file {str(parent)!r}; "
                "choose a folder path (CLI: --output DIR)."
            )
    if (output_dir / "metrics.json").is_file() and not overwrite:
        raise FileExistsError(
            f"{output_dir} holds a finished run (model.keras, metrics.json); it is kept. Pass "
            f"overwrite=True (CLI: --overwrite) to train again into it, or choose another "
            f"output_dir (CLI: --output DIR)."
        )


def _remove_staging(*folders: pathlib.Path) -> None:
    """Removes the hidden staging files (``.<name>.<random><suffix>``) that a killed write
    of this run left behind; nothing else in a run folder is hidden."""
    for folder in folders:
        if folder.is_dir():
            for path in folder.glob(".*"):
                if path.is_file():
                    path.unlink()


def _clear_run(output_dir: pathlib.Path) -> None:
    for name in ("backup", "logs", "checkpoints"):
        shutil.rmtree(output_dir / name, ignore_errors=True)
    for name in ("history.csv", "metrics.json", "config.json"):
        (output_dir / name).unlink(missing_ok=True)


def _class_id_targets(ds: tf.data.Dataset) -> bool:
    """Whether a ``(inputs, targets)`` dataset's targets are integer class ids ``[B]`` (or a
    dict of them), the targets :func:`evaluate`'s classification metrics read."""
    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        return False
    targets = spec[1]
    specs = list(targets.values()) if isinstance(targets, dict) else [targets]
    return all(
        isinstance(t, tf.TensorSpec) and t.dtype.is_integer and t.shape.rank == 1 for t in specs
    )


def fit(
    model: str | keras.Model | Callable[[], keras.Model],
    data="digits",
    *,
    epochs: int = 10,
    batch_size: int = 64,
    strategy: str | tf.distribute.Strategy = "auto",
    output_dir=None,
    optimizer=None,
    loss=None,
    loss_weights: dict | None = None,
    metrics=None,
    evaluation_output: str | None = None,
    compile: bool = True,
    learning_rate: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    lr_schedule: str = "cosine",
    trainable: str | None = None,
    lr_multipliers: Mapping[str, float] | None = None,
    validation_fraction: float | None = 0.1,
    validation_seed: int = 0,
    classes=None,
    precision: str = "float32",
    preprocessing: str | None = None,
    data_dir=None,
    image_size=None,
    channels: int | None = None,
    limit: int | None = None,
    download: bool = False,
    steps_per_epoch: int | None = None,
    seed: int = 0,
    build_kwargs: dict | None = None,
    jit_compile="auto",
    callbacks=(),
    verbose="auto",
    overwrite: bool = False,
    evaluate_test: bool = True,
) -> TrainResult:
    """Trains ``model`` on ``data`` and evaluates it.

    Args:
        model: a registry name (built inside the strategy's scope with the data's image
            shape and class count; ``build_kwargs`` override them), a built ``keras.Model``
            (trained in place under the strategy it was built in when ``strategy="auto"``;
            under another strategy, or another ``precision``, a copy with its weights is
            built in that scope and trained: use ``result.model``), or a function returning
            a new ``keras.Model`` (called inside the scope).
        data: a dataset name of :func:`keras_apps.data.load` (then ``validation_fraction``
            of the training split is held out, stratified and seeded by
            ``validation_seed``; ``classes`` keeps a subset of classes, relabelled 0..k-1;
            the test split is evaluated once, at the end), or a pair ``(train,
            validation)`` of ``tf.data.Dataset`` yielding ``(inputs, targets)`` batches
            (``validation`` may be None; no test split). Its final metrics are the
            classification metrics of :func:`evaluate` when the targets are integer class
            ids, else the compiled loss and metrics (``model.evaluate``: box regression,
            any other objective).
        optimizer, loss, loss_weights, metrics, lr_multipliers, learning_rate, momentum,
            weight_decay, lr_schedule: see :func:`compile_for_classification`.
        evaluation_output: for a model with a dict of outputs, the output that the final
            validation and test metrics score (default: the ``evaluation_output`` training
            hint; the saved ``model.keras`` keeps every output).
        compile: False trains a model the caller compiled (the optimizer arguments are then
            not used).
        trainable: layer-name pattern ("fc7*|fc8*"): those layers train, the rest are frozen
            (:func:`keras_apps.training.set_trainable`).
        precision: "float32", "bfloat16" or "float16" (Keras mixed precision: float32
            variables, lower-precision compute). The saved ``model.keras`` computes in
            float32 (the same weights), so it exports like any other model.
        preprocessing: input preprocessing mode (:data:`keras_apps.data.PREPROCESSING_MODES`);
            default: what the registry says the model's ``weights`` expect.
        channels: deliver a dataset name's images with 1 or 3 channels (grey repeated to
            RGB, or the BT.601 luma of RGB; ``keras_apps.data.load(channels=)``); recorded in
            ``config.json``.
        steps_per_epoch: batches per epoch for an infinite training dataset.
        overwrite: train again into an ``output_dir`` that holds a finished run (or an
            interrupted one, starting afresh); without it a finished run is kept.
        evaluate_test: False leaves the test split unread (``metrics.json`` has no ``test``
            entry): a run that selects settings (a hyperparameter search trial) must not
            see it.

    Re-running the same call after an interruption resumes from the last finished epoch
    with the same data order (a dataset name's batches depend only on the seed and the
    epoch); different settings are refused with the keys that differ.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer, got {epochs!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    precision = _check_precision(precision)
    if validation_fraction is not None and not (
        isinstance(validation_fraction, (int, float)) and 0 <= validation_fraction < 1
    ):
        raise ValueError(
            f"`validation_fraction` must be in [0, 1) (0 or None: no validation split), "
            f"got {validation_fraction!r}."
        )
    build_kwargs = dict(build_kwargs or {})
    if isinstance(model, str):
        registry.check_arguments(model, build_kwargs)  # before any data is read
        name = model
    elif isinstance(model, keras.Model):
        name = model.name
        if build_kwargs:
            raise TypeError("`build_kwargs` are only used with a registry name.")
    elif callable(model):
        name = getattr(model, "__name__", "model")
    else:
        raise TypeError(
            f"`model` must be a registry name, a keras.Model or a function returning one, "
            f"got {type(model).__name__}: {model!r}."
        )
    if isinstance(model, keras.Model) and isinstance(strategy, str) and strategy == "auto":
        strategy = model.distribute_strategy  # a built model trains where it was built
    elif isinstance(strategy, str):
        strategy = get_strategy(strategy)
    output_dir = pathlib.Path(output_dir or pathlib.Path("runs") / name)
    _check_output_dir(output_dir, overwrite)
    if preprocessing is None:
        preprocessing = (
            registry.preprocessing_for(
                name, build_kwargs.get("weights") or build_kwargs.get("base_weights")
            )  # a model grown from pretrained weights (alexnet_wa) reads like its base
            if isinstance(model, str) else "dataset"
        )

    created = not output_dir.exists()
    backup = output_dir / "backup"
    chief = engine.is_chief(strategy)
    if chief:
        _remove_staging(output_dir, backup, output_dir / "checkpoints")
    state = None if overwrite else ResumeState.read(backup)
    start_epoch = state["epoch"] if state else 0
    keras.utils.set_random_seed(seed)

    pair = _is_dataset_pair(data)
    if pair:
        train_ds, val_ds = data
        test_split, info = None, None
        if steps_per_epoch is None:
            steps = int(train_ds.cardinality())
            if steps <= 0:
                raise ValueError(
                    "The training dataset is infinite or of unknown length: pass `steps_per_epoch`."
                )
        else:
            steps = int(steps_per_epoch)
        image_shape = tuple(train_ds.element_spec[0].shape[1:])
        num_classes = build_kwargs.get("classes")
        data_config = {"data": "tf.data", "steps_per_epoch": steps}
    else:
        if isinstance(data, tf.data.Dataset):
            raise TypeError(
                "`data` as tf.data must be a pair (train, validation); validation may be None."
            )
        loader = dict(data_dir=data_dir, batch_size=batch_size, image_size=image_size,
                      classes=classes, preprocessing=preprocessing, download=download,
                      channels=channels)
        info = kdata.dataset_info(data, data_dir=data_dir, classes=classes, download=download,
                                  channels=channels)
        carve = dict(validation_fraction=validation_fraction, validation_seed=validation_seed) \
            if validation_fraction else {}
        train_ds, info = kdata.load(
            data, info.train_split, seed=seed, limit=limit, start_epoch=start_epoch,
            subset="training" if carve else None, **carve, **loader,
        )
        steps = int(info.steps_per_epoch)
        if steps <= 0:
            raise ValueError(f"The training split of {data!r} is empty.")
        val_ds = None
        if carve:
            val_ds, _ = kdata.load(data, info.train_split, subset="validation", limit=limit,
                                   **carve, **loader)
        test_split = _eval_split(info)
        image_shape = tuple(info.image_shape)
        num_classes = info.num_classes
        data_config = {"data": data, "classes_subset": list(classes) if classes else None,
                       "validation_fraction": validation_fraction or 0,
                       "validation_seed": validation_seed, "limit": limit,
                       "image_shape": list(image_shape), "channels": channels,
                       "classes": num_classes}

    # read outside the scope: inside it, `distribute_strategy` of a model built without one
    # falls back to the scope's strategy
    built_under = model.distribute_strategy if isinstance(model, keras.Model) else None
    with strategy.scope(), precision_policy(precision):
        if isinstance(model, str):
            kwargs = {"input_shape": image_shape}
            if num_classes is not None:
                kwargs["classes"] = num_classes
            kwargs.update(build_kwargs)
            net = registry.build(model, **kwargs)
        elif isinstance(model, keras.Model):
            net = with_precision(model, precision)
            if net is model and built_under is not strategy:
                net = _rebuild(model)  # variables must live in the strategy's scope
        else:
            net = model()
            if not isinstance(net, keras.Model):
                raise TypeError(f"The model function returned {type(net).__name__}, not a keras.Model.")
        if trainable is not None:
            set_trainable(net, trainable)
        hints = registry.training_hints(net)
        if loss is None and compile and hints.get("loss") is not None:
            loss = hints["loss"](net)
        if loss_weights is None and isinstance(net.output, dict):
            hinted = hints.get("loss_weights")
            if hinted and set(hinted) <= set(net.output):
                loss_weights = dict(hinted)
        if compile:
            compile_for_classification(
                net, num_classes=num_classes, optimizer=optimizer, loss=loss,
                loss_weights=loss_weights, metrics=metrics, learning_rate=learning_rate,
                momentum=momentum, weight_decay=weight_decay, lr_schedule=lr_schedule,
                total_steps=steps * epochs, lr_multipliers=lr_multipliers,
                jit_compile=jit_compile,
            )
        elif net.optimizer is None:
            raise ValueError("compile=False needs a model the caller compiled (model.compile(...)).")

    if isinstance(net.output, dict) and not pair:
        keys = list(net.output)

        def to_targets(images, labels):  # every output learns the same labels (GoogLeNet, Sec. 5)
            return images, {key: labels for key in keys}

        train_ds = train_ds.map(to_targets)
        val_ds = val_ds.map(to_targets) if val_ds is not None else None

    config = _normalise_config({
        "model": name,
        **data_config,
        "epochs": epochs,
        "batch_size": batch_size,
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "optimizer": optimizer if compile else "compiled by the caller",
        "loss": loss,
        "loss_weights": loss_weights,
        "learning_rate": learning_rate,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "lr_schedule": lr_schedule,
        "trainable": trainable,
        "lr_multipliers": dict(lr_multipliers or {}),
        "precision": precision,
        "preprocessing": preprocessing,
        "seed": seed,
        "build_kwargs": build_kwargs,
    })
    if state is not None:
        saved = json.loads((output_dir / "config.json").read_text()) \
            if (output_dir / "config.json").is_file() else {}
        differences = _config_differences(saved, config)
        if differences:
            raise ValueError(
                f"{output_dir} holds an interrupted run with other settings ("
                + "; ".join(differences)
                + "). Re-run with the same settings to resume it, pass overwrite=True (CLI: "
                "--overwrite) to start afresh, or choose another output_dir (CLI: --output DIR)."
            )
    try:
        if chief:
            if overwrite and not created:
                _clear_run(output_dir)  # only now that the new run's data and model are ready
            output_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(output_dir / "config.json", json.dumps(config, indent=2) + "\n")
        if state is not None:
            with strategy.scope():
                net.optimizer.build(net.trainable_variables)
                ResumeState.restore(net, backup, state)
        history = keras.callbacks.History()
        history_rows = state["history"] if state else []
        # In a cluster only the chief writes the run's files (the others hold the same state).
        writers = [
            ResumeState(backup, output_dir / "history.csv", history_rows),
            keras.callbacks.TensorBoard(str(output_dir / "logs")),
            AtomicCheckpoint(output_dir / "checkpoints" / "last.keras"),
        ] if chief else []
        all_callbacks = [*writers, history, *callbacks]
        if start_epoch < epochs:
            engine.run_epochs(
                net, train_ds, val_ds, strategy=strategy, epochs=epochs,
                initial_epoch=start_epoch, steps_per_epoch=steps, callbacks=all_callbacks,
                verbose=(1 if verbose == "auto" else verbose) if chief else 0,
            )
    except BaseException:
        if chief and created and ResumeState.read(backup) is None and output_dir.exists():
            shutil.rmtree(output_dir)  # nothing finished: leave no empty run behind
        raise

    if not chief:  # a worker of a cluster: the chief evaluates and saves the run
        task_type, task_id = engine.cluster_task(strategy)
        results = {"epochs": epochs, "task": f"{task_type}:{task_id}"}
        return TrainResult(net, {k: list(v) for k, v in history.history.items()}, results,
                           output_dir)
    inference = hints.get("inference_model")
    if inference is not None and isinstance(net.output, dict) and evaluation_output is None:
        net = inference(net)  # shares the trained weights
    final = with_precision(net, "float32")
    results = {"epochs": epochs}
    eval_args = dict(batch_size=batch_size, verbose=0, output=evaluation_output)
    if not pair:
        eval_args.update(data_dir=data_dir, image_size=image_size, classes=classes,
                         preprocessing=preprocessing, download=download, channels=channels)
        if validation_fraction:
            results["validation"] = evaluate(
                final, data, split=info.train_split, subset="validation", limit=limit,
                validation_fraction=validation_fraction, validation_seed=validation_seed,
                **eval_args,
            )
        if evaluate_test:
            results["test"] = evaluate(final, data, split=test_split, limit=limit, **eval_args)
    elif val_ds is not None and not _class_id_targets(val_ds):
        # Not class ids (box targets, regression): the compiled loss and metrics are the score.
        scores = net.evaluate(val_ds, verbose=0, return_dict=True)
        results["validation"] = {key: float(value) for key, value in scores.items()}
    elif val_ds is not None and (evaluation_output is not None or not isinstance(final.output, dict)):
        results["validation"] = evaluate(final, val_ds, **eval_args)
    atomic_save_model(final, output_dir / "model.keras")
    atomic_write_text(output_dir / "metrics.json", json.dumps(results, indent=2) + "\n")
    return TrainResult(final, {k: list(v) for k, v in history.history.items()}, results, output_dir)


def load_model(path) -> keras.Model:
    """Loads a ``.keras`` file with ``safe_mode=True`` (keras_apps layers registered).

    A missing file raises ``FileNotFoundError``; a file that is not a readable Keras model
    (another zip, flipped bytes, a truncated write) raises ``ValueError`` naming the path.
    """
    import keras_apps.layers  # noqa: F401  (registers the custom layers)

    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"Expected a .keras file, got {path!r}.")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder, not a .keras model file.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Model file {path!r} does not exist.")
    if not zipfile.is_zipfile(path):  # Keras reports such a file as "File not found"
        raise ValueError(
            f"{path} is not a readable Keras model file: not a .keras (zip) archive "
            "(corrupt, truncated or another kind of file)."
        )
    try:
        with _quiet_keras_warnings():
            return keras.saving.load_model(path, safe_mode=True)
    except Exception as err:  # zipfile, h5py, json and Keras deserialisation errors alike
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path} is not a readable Keras model file ({type(err).__name__}: {reason[:200]})."
        ) from err


@contextlib.contextmanager
def _quiet_keras_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _run_config(model_path) -> dict:
    path = pathlib.Path(model_path).parent / "config.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            return {}
    return {}


def evaluate(
    model: keras.Model | str,
    data="digits",
    *,
    split: str | None = None,
    subset: str | None = None,
    validation_fraction: float | None = None,
    validation_seed: int = 0,
    batch_size: int = 64,
    data_dir=None,
    image_size=None,
    channels: int | None = None,
    limit: int | None = None,
    classes=None,
    precision: str = "float32",
    preprocessing: str | None = None,
    download: bool = False,
    output: str | None = None,
    verbose="auto",
) -> dict:
    """Top-1 and top-5 error of ``model`` (or a ``.keras`` path) on a split of ``data``.

    ``data`` is a dataset name (``split`` defaults to its test split; ``subset="validation"``
    with ``validation_fraction`` is the held-out part of the training split that :func:`fit`
    validates on) or a ``tf.data.Dataset`` of ``(images, labels)`` batches. ``preprocessing``
    defaults to the one recorded in the run's ``config.json`` beside a ``.keras`` path, else
    "dataset"; ``channels`` (1 or 3, ``keras_apps.data.load(channels=)``) likewise, else the
    dataset's own. A model with logits outputs is scored the same way (softmax applied for the
    loss). Ties count against top-k: a sample is inside the top 5 only if fewer than 5 other
    classes score at least as high as its label.

    A model with a dict of outputs is scored on ``output`` (default: its
    ``evaluation_output`` training hint, else its ``inference_model`` hint), e.g. the
    source-task head ``"task0"`` of a grown network.

    Returns ``{"loss", "top1_accuracy", "top5_accuracy", "top1_error", "top5_error",
    "examples", "split", "data"}``; top-5 is top-min(5, classes).
    """
    precision = _check_precision(precision)
    if isinstance(model, (str, os.PathLike)):
        if preprocessing is None:
            preprocessing = _run_config(model).get("preprocessing")
        if channels is None:
            channels = _run_config(model).get("channels")
        model = load_model(model)
    preprocessing = preprocessing or "dataset"
    if output is not None and not (isinstance(model.output, dict) and output in model.output):
        available = sorted(model.output) if isinstance(model.output, dict) else "one output"
        raise ValueError(
            f"`output` {output!r} is not an output of {model.name!r} (its outputs: {available})."
        )
    if isinstance(model.output, dict):
        hints = registry.training_hints(model)
        inference, key = hints.get("inference_model"), output or hints.get("evaluation_output")
        if key is not None and key in model.output:
            model = keras.Model(model.inputs, model.output[key], name=model.name)
        elif inference is not None:
            model = inference(model)
        else:
            raise ValueError(
                f"Model {model.name!r} has several outputs {sorted(model.output)}; evaluate its "
                "inference model (or register an 'evaluation_output' training hint)."
            )
    model = with_precision(model, precision)
    probabilities_out = outputs_probabilities(model)
    if isinstance(data, tf.data.Dataset):
        ds, data_name, split_name, num_classes = data, "tf.data", None, int(model.output.shape[-1])
    else:
        info = kdata.dataset_info(data, data_dir=data_dir, classes=classes, download=download,
                                  channels=channels)
        split_name = split or _eval_split(info)
        ds, info = kdata.load(
            data, split_name, data_dir=data_dir, batch_size=batch_size, image_size=image_size,
            limit=limit, augment=False, shuffle=False, classes=classes,
            preprocessing=preprocessing, download=download, subset=subset, channels=channels,
            **({"validation_fraction": validation_fraction, "validation_seed": validation_seed}
               if subset else {}),
        )
        expected = tuple(model.inputs[0].shape[1:])
        delivered = tuple(info.image_shape)
        if expected[-1] is not None and expected[-1] != delivered[-1]:
            remedy = (
                f"pass channels={expected[-1]} (CLI: --channels {expected[-1]}) to convert them"
                if expected[-1] in kdata.CHANNEL_CHOICES
                else f"evaluate it on data with {expected[-1]} channels"
            )
            raise ValueError(
                f"Model {model.name!r} takes {expected[-1]}-channel images, but {data!r} "
                f"delivers {delivered[-1]}-channel ones; {remedy} (resizing does not change "
                f"the channel count)."
            )
        if None not in expected[:2] and delivered[:2] != expected[:2]:
            raise ValueError(
                f"Model {model.name!r} expects images of size {expected[0]}x{expected[1]}, but "
                f"{data!r} delivers {delivered[0]}x{delivered[1]}; pass image_size="
                f"{expected[:2]} (CLI: --image-size {expected[0]},{expected[1]}) to resize."
            )
        data_name, num_classes = data, info.num_classes
    scores, labels = [], []
    for images, y in ds:
        out = model(images, training=False)
        scores.append(np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))))
        labels.append(np.asarray(y))
    if not scores:
        raise ValueError(f"Split {split_name!r} of {data_name!r} is empty.")
    scores, labels = np.concatenate(scores), np.concatenate(labels).astype(np.int64)
    if probabilities_out:
        probabilities = scores
    else:
        shifted = scores - scores.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    acc1 = top_k_accuracy(labels, scores, 1)
    acc5 = top_k_accuracy(labels, scores, min(5, num_classes))
    result = {
        "data": data_name if isinstance(data_name, str) else str(data_name),
        "split": split_name if subset is None else f"{split_name} ({subset})",
        "examples": int(len(labels)),
        "loss": float(-np.mean(np.log(picked))),
        "top1_accuracy": acc1,
        "top5_accuracy": acc5,
        "top1_error": 1.0 - acc1,
        "top5_error": 1.0 - acc5,
    }
    if precision != "float32":
        result["precision"] = precision
    if verbose:
        print(
            f"{model.name} on {result['data']}/{result['split']} ({result['examples']} images): "
            f"top-1 error {result['top1_error']:.4f}, top-5 error {result['top5_error']:.4f}, "
            f"loss {result['loss']:.4f}"
        )
    return result
