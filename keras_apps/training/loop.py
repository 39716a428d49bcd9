"""Training and evaluation of any registered model on any keras_apps dataset.

``fit`` builds the model inside the ``tf.distribute`` strategy's scope, trains it with SGD +
momentum (the papers' optimiser) and writes, under ``output_dir``:

- ``logs/``: TensorBoard logs;
- ``backup/``: ``BackupAndRestore`` state, so re-running the same command after an
  interruption resumes from the last finished epoch;
- ``checkpoints/last.keras``: the model after every epoch (written atomically);
- ``history.csv``: per-epoch metrics (appended across resumptions);
- ``model.keras``: the final (inference) model; ``metrics.json``: its evaluation.

Training models with auxiliary classifiers (``build("googlenet", aux_logits=True)``) get
the loss on every output with the paper's weights; the saved model is the inference model
without them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Callable

import keras
import tensorflow as tf

from keras_apps import data as kdata
from keras_apps._atomic import atomic_file
from keras_apps import registry
from keras_apps.training.strategy import get_strategy

LR_SCHEDULES = ("constant", "step", "cosine")


@dataclasses.dataclass
class TrainResult:
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


def learning_rate_schedule(name: str, learning_rate: float, total_steps: int):
    """``constant``; ``step`` (divide by 10 at 50% and 75% of training, the papers' "step"
    policy); ``cosine`` (cosine decay to 0 over training)."""
    if name not in LR_SCHEDULES:
        raise ValueError(f"Unknown lr_schedule {name!r}; choose one of {', '.join(LR_SCHEDULES)}.")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
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
        if split in info.splits:
            return split
    raise ValueError(f"Dataset {info.name!r} has no test or validation split ({info.splits}).")


def _metrics(num_classes: int):
    k = min(5, num_classes)
    return [
        keras.metrics.SparseCategoricalAccuracy(name="top1"),
        keras.metrics.SparseTopKCategoricalAccuracy(k=k, name="top5"),
    ]


def compile_for_classification(
    model: keras.Model,
    *,
    num_classes: int,
    learning_rate=0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    lr_schedule: str = "cosine",
    total_steps: int = 1,
    from_logits: bool = False,
    jit_compile="auto",
    loss_weights: dict | None = None,
) -> keras.Model:
    """SGD with momentum and (decoupled) weight decay, sparse cross-entropy, top-1/top-5.

    ``loss_weights`` (for models with a dict of outputs, e.g. GoogLeNet's training model
    ``{"main", "aux1", "aux2"}``) puts the loss on every output with these weights and the
    top-1/top-5 metrics on ``"main"``.
    """
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate_schedule(lr_schedule, learning_rate, total_steps),
        momentum=momentum,
        weight_decay=weight_decay or None,
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    metrics = _metrics(num_classes)
    if loss_weights:
        loss = {key: loss for key in loss_weights}
        metrics = {"main": metrics}
    model.compile(
        optimizer=optimizer,
        loss=loss,
        loss_weights=loss_weights,
        metrics=metrics,
        jit_compile=jit_compile,
    )
    return model


def _auxiliary_loss_weights(model: keras.Model) -> dict | None:
    """Loss weights of a training model with auxiliary classifiers, None for plain models."""
    if not isinstance(model.output, dict):
        return None
    from keras_apps.models import googlenet

    if set(model.output) != set(googlenet.LOSS_WEIGHTS):
        raise ValueError(
            f"Model {model.name!r} has outputs {sorted(model.output)}; fit() trains single-output "
            f"classifiers and training models with outputs {sorted(googlenet.LOSS_WEIGHTS)}."
        )
    return dict(googlenet.LOSS_WEIGHTS)


def fit(
    model: str | Callable[[], keras.Model],
    data: str = "digits",
    *,
    epochs: int = 10,
    batch_size: int = 64,
    strategy: str | tf.distribute.Strategy = "auto",
    output_dir=None,
    learning_rate: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    lr_schedule: str = "cosine",
    data_dir=None,
    image_size=None,
    limit: int | None = None,
    seed: int = 0,
    build_kwargs: dict | None = None,
    jit_compile="auto",
    callbacks=(),
    verbose="auto",
) -> TrainResult:
    """Trains ``model`` (a registry name, or a function returning a new ``keras.Model``,
    called inside the strategy's scope) on dataset ``data`` and evaluates it on the test
    split. ``fit`` compiles the model (:func:`compile_for_classification`).

    The model is built inside ``strategy.scope()`` with the dataset's image shape and class
    count (``build_kwargs`` override them). Re-running with the same ``output_dir`` after
    an interruption resumes from the last finished epoch (``BackupAndRestore``); a run
    that finished starts afresh.

    Returns a :class:`TrainResult` with the model, the history of this call, the final
    metrics (``loss``, ``top1_error``, ``top5_error``, ...) and the output directory.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer, got {epochs!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    name = model if isinstance(model, str) else getattr(model, "__name__", "model")
    if isinstance(model, str):
        registry.get_spec(model)  # unknown names fail before any data is read
    elif not callable(model):
        raise TypeError(
            f"`model` must be a registry name or a function returning a keras.Model, got {model!r}."
        )
    if isinstance(strategy, str):
        strategy = get_strategy(strategy)
    output_dir = pathlib.Path(output_dir or pathlib.Path("runs") / name)
    output_dir.mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(seed)
    # The global batch is split across replicas by tf.distribute.
    train_ds, info = kdata.load(
        data, "train", data_dir=data_dir, batch_size=batch_size, image_size=image_size,
        seed=seed, limit=limit,
    )
    eval_split = _eval_split(info)
    eval_ds, _ = kdata.load(
        data, eval_split, data_dir=data_dir, batch_size=batch_size, image_size=image_size,
        seed=seed, limit=limit,
    )
    steps_per_epoch = int(train_ds.cardinality())
    if steps_per_epoch <= 0:
        raise ValueError(f"The training split of {data!r} is empty or of unknown length.")

    with strategy.scope():
        if isinstance(model, str):
            kwargs = {"input_shape": tuple(info.image_shape), "classes": info.num_classes}
            kwargs.update(build_kwargs or {})
            net = registry.build(model, **kwargs)
        else:
            net = model()
        loss_weights = _auxiliary_loss_weights(net)
        compile_for_classification(
            net,
            num_classes=info.num_classes,
            learning_rate=learning_rate,
            momentum=momentum,
            weight_decay=weight_decay,
            lr_schedule=lr_schedule,
            total_steps=steps_per_epoch * epochs,
            jit_compile=jit_compile,
            loss_weights=loss_weights,
        )
    if loss_weights:
        # Every output of the training model learns the same labels (GoogLeNet, Sec. 5).
        def to_targets(images, labels):
            return images, {key: labels for key in loss_weights}

        train_ds = train_ds.map(to_targets)
        eval_ds = eval_ds.map(to_targets)

    config = {
        "model": name,
        "data": data,
        "epochs": epochs,
        "batch_size": batch_size,
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "learning_rate": learning_rate,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "lr_schedule": lr_schedule,
        "image_shape": list(info.image_shape),
        "classes": info.num_classes,
        "seed": seed,
        "limit": limit,
        "build_kwargs": build_kwargs or {},
    }
    atomic_write_text(output_dir / "config.json", json.dumps(config, indent=2) + "\n")

    all_callbacks = [
        keras.callbacks.BackupAndRestore(str(output_dir / "backup")),
        keras.callbacks.TensorBoard(str(output_dir / "logs")),
        keras.callbacks.CSVLogger(str(output_dir / "history.csv"), append=True),
        AtomicCheckpoint(output_dir / "checkpoints" / "last.keras"),
        *callbacks,
    ]
    history = net.fit(
        train_ds,
        epochs=epochs,
        validation_data=eval_ds,
        callbacks=all_callbacks,
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=verbose,
    )
    if loss_weights:
        from keras_apps.models import googlenet

        net = googlenet.strip_auxiliary(net)  # the inference model shares the trained weights
    metrics = evaluate(net, data, split=eval_split, batch_size=batch_size, data_dir=data_dir,
                       image_size=image_size, limit=limit, verbose=0)
    metrics["epochs"] = epochs
    atomic_save_model(net, output_dir / "model.keras")
    atomic_write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return TrainResult(net, dict(history.history), metrics, output_dir)


def load_model(path) -> keras.Model:
    """Loads a ``.keras`` file with ``safe_mode=True`` (keras_apps layers registered)."""
    import keras_apps.layers  # noqa: F401  (registers the custom layers)

    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"Expected a .keras file, got {path!r}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Model file {path!r} does not exist.")
    return keras.saving.load_model(path, safe_mode=True)


def evaluate(
    model: keras.Model | str,
    data: str = "digits",
    *,
    split: str | None = None,
    batch_size: int = 64,
    data_dir=None,
    image_size=None,
    limit: int | None = None,
    verbose="auto",
) -> dict:
    """Top-1 and top-5 error of ``model`` (or a ``.keras`` path) on a split of ``data``.

    Returns ``{"loss", "top1_accuracy", "top5_accuracy", "top1_error", "top5_error",
    "examples", "split", "data"}``; top-5 is top-min(5, classes).
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    info = kdata.dataset_info(data, data_dir=data_dir)
    split = split or _eval_split(info)
    ds, info = kdata.load(data, split, data_dir=data_dir, batch_size=batch_size,
                          image_size=image_size, limit=limit, augment=False, shuffle=False)
    expected = tuple(model.inputs[0].shape[1:])
    if None not in expected and tuple(info.image_shape) != expected:
        raise ValueError(
            f"Model {model.name!r} expects images of shape {expected}, but {data!r} delivers "
            f"{tuple(info.image_shape)}; pass `image_size` to resize."
        )
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    top1 = keras.metrics.SparseCategoricalAccuracy()
    top5 = keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, info.num_classes))
    total_loss, examples = 0.0, 0
    for images, labels in ds:
        probabilities = model(images, training=False)
        if isinstance(probabilities, (dict, list, tuple)):
            raise ValueError(f"Model {model.name!r} has several outputs; evaluate its inference model.")
        n = int(labels.shape[0])
        total_loss += float(loss_fn(labels, probabilities)) * n
        top1.update_state(labels, probabilities)
        top5.update_state(labels, probabilities)
        examples += n
    if examples == 0:
        raise ValueError(f"Split {split!r} of {data!r} is empty.")
    acc1, acc5 = float(top1.result()), float(top5.result())
    result = {
        "data": data,
        "split": split,
        "examples": examples,
        "loss": total_loss / examples,
        "top1_accuracy": acc1,
        "top5_accuracy": acc5,
        "top1_error": 1.0 - acc1,
        "top5_error": 1.0 - acc5,
    }
    if verbose:
        print(
            f"{model.name} on {data}/{result['split']} ({examples} images): "
            f"top-1 error {result['top1_error']:.4f}, top-5 error {result['top5_error']:.4f}, "
            f"loss {result['loss']:.4f}"
        )
    return result
