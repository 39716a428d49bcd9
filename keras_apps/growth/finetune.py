"""Fine-tuning a grown network the paper's way (Sec. 5, "Implementation details").

- Scenarios (Table 1): ``"new"`` trains only the new layers (the added units and the new
  classifier; pretrained layers frozen), ``"fc7-new"`` / ``"fc6-new"`` train from that
  layer up plus the new layers, ``"all"`` the whole network. ``"<layer>-new"`` works for any
  layer name (``"conv5_block3_out-new"``); ``fc7``/``fc6`` are AlexNet's and VGG's.
- New layers learn at 10x the base learning rate (per-layer learning-rate multipliers of
  :func:`keras_apps.training.with_lr_multipliers`); SGD with momentum 0.9, weight decay
  5e-4 and the "step" policy (divide by 10, :func:`keras_apps.training.learning_rate_schedule`)
  are the defaults; any Keras optimizer is accepted.
- The task heads of earlier tasks (``task0``: the source classifier) never train on the
  target: the loss is on ``predictions`` only, so they get no gradient (and no weight decay).
  :func:`retrain_source` re-trains the augmented layers with the source head on source data
  (learning without forgetting, Table 4).
"""

from __future__ import annotations

import re

import keras

from keras_apps import registry
from keras_apps import training
from keras_apps.growth import core

DEFAULT_LEARNING_RATE = 0.001
NEW_LR_MULTIPLIER = 10.0
_TASK_LAYER = re.compile(r"task\d+_")


def _literal(name: str) -> str:
    """``name`` as an fnmatch pattern matching only itself."""
    return "".join(f"[{c}]" if c in "*?[]|" else c for c in name)


def _pattern(names) -> str:
    return "|".join(_literal(name) for name in names)


def task_heads(model) -> dict[str, list[str]]:
    """``{"task0": [layer names], ...}``: the heads of earlier tasks a grown model keeps."""
    if not isinstance(model.output, dict):
        return {}
    heads = {}
    for key, tensor in model.output.items():
        if core._TASK.fullmatch(key):
            heads[key] = [layer.name for layer in core._head(model, tensor)]
    return heads


def _head_layers(model) -> set[str]:
    return {name for names in task_heads(model).values() for name in names}


def new_layers(model, *, with_weights: bool = False) -> list[str]:
    """Names of the layers the most recent :func:`~keras_apps.growth.grow` (or
    :func:`~keras_apps.growth.transfer`) added: its new units, scale layers and
    concatenations (suffix ``_g<n>``) and the new classifier head, in model order.
    ``with_weights`` keeps only layers with weights (what learning-rate multipliers can
    match once they train)."""
    g = core.generation(model)
    if g == 0:
        raise ValueError(
            f"{model.name!r} was never grown: grow it (keras_apps.grow) or give it a new "
            "classifier (keras_apps.growth.transfer) first."
        )
    head = {layer.name for layer in core._head(model, core._output_tensors(model)["predictions"])}
    suffix = f"_g{g}"
    names = [
        layer.name
        for layer in model.layers
        if layer.name in head or layer.name.endswith(suffix)
    ]
    if with_weights:
        names = [name for name in names if model.get_layer(name).weights]
    return names


def _downstream(model, start) -> list[str]:
    seen, frontier = {start.name}, [start]
    while frontier:
        layer = frontier.pop()
        for consumer in core._consumers(model, layer):
            if consumer.name not in seen:
                seen.add(consumer.name)
                frontier.append(consumer)
    return [layer.name for layer in model.layers if layer.name in seen]


def scenario_layers(model, scenario: str) -> list[str]:
    """Names of the layers that train in ``scenario`` (``"new"``, ``"<layer>-new"`` such as
    ``"fc7-new"``, or ``"all"``), task heads of earlier tasks excluded."""
    if not isinstance(scenario, str):
        raise TypeError(f"`scenario` must be a string such as 'fc7-new', got {scenario!r}.")
    heads = _head_layers(model)
    everything = [
        layer.name for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer) and layer.name not in heads
    ]
    key = scenario.lower()
    if key == "all":
        return everything
    if key == "new":
        return new_layers(model)
    if not key.endswith("-new") or len(key) == len("-new"):
        raise ValueError(
            f"Unknown fine-tuning scenario {scenario!r}; choose 'new', '<layer>-new' (the "
            f"paper's {', '.join(map(repr, core.SCENARIOS[1:3]))}) or 'all'."
        )
    wanted = scenario[: -len("-new")]
    names = {layer.name: layer for layer in model.layers}
    match = names.get(wanted) or next(
        (layer for name, layer in names.items() if name.lower() == wanted.lower()), None
    )
    if match is None:
        from difflib import get_close_matches

        close = get_close_matches(wanted, list(names), n=5, cutoff=0.5)
        hint = f" Closest layer names: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Scenario {scenario!r} names layer {wanted!r}, which {model.name!r} does not have.{hint}"
        )
    chosen = set(_downstream(model, match)) | set(new_layers(model))
    return [name for name in everything if name in chosen]


def finetune(
    model: keras.Model,
    data="digits",
    *,
    scenario: str = "all",
    learning_rate: float = DEFAULT_LEARNING_RATE,
    new_lr_multiplier: float = NEW_LR_MULTIPLIER,
    lr_schedule: str = "step",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    optimizer=None,
    **fit_kwargs,
) -> training.TrainResult:
    """Fine-tunes a grown (or :func:`~keras_apps.growth.transfer`-red) model on the target
    ``data`` with :func:`keras_apps.training.fit`: the layers of ``scenario`` train, the new
    layers at ``new_lr_multiplier`` times ``learning_rate``; the loss and the reported
    metrics are those of the ``predictions`` head. ``fit_kwargs`` go to ``fit`` (epochs,
    batch_size, output_dir, classes, limit, ...)."""
    trainable = scenario_layers(model, scenario)
    if not any(model.get_layer(name).weights for name in trainable):
        raise ValueError(f"Scenario {scenario!r} trains no layer with weights in {model.name!r}.")
    multiplied = new_layers(model, with_weights=True)
    lr_multipliers = {_pattern(multiplied): float(new_lr_multiplier)} if multiplied and new_lr_multiplier != 1 else None
    loss_weights = {"predictions": 1.0} if isinstance(model.output, dict) else None
    return training.fit(
        model, data, trainable=_pattern(trainable), lr_multipliers=lr_multipliers,
        learning_rate=learning_rate, lr_schedule=lr_schedule, momentum=momentum,
        weight_decay=weight_decay, optimizer=optimizer, loss_weights=loss_weights,
        evaluation_output="predictions" if loss_weights else None, **fit_kwargs,
    )


def retrain_source(
    model: keras.Model,
    data,
    *,
    task: str = "task0",
    learning_rate: float = DEFAULT_LEARNING_RATE,
    new_lr_multiplier: float = NEW_LR_MULTIPLIER,
    lr_schedule: str = "step",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    optimizer=None,
    **fit_kwargs,
) -> training.TrainResult:
    """Learning without forgetting (Table 4): re-trains the augmented layers (the new units
    of the latest growth) and the head ``task`` on that task's ``data`` (the source task
    for ``task0``), every other layer frozen; the metrics are those of ``task``."""
    heads = task_heads(model)
    if task not in heads:
        raise ValueError(
            f"{model.name!r} has no task head {task!r}; its task heads: {sorted(heads) or 'none'} "
            "(grow with keep_source=True)."
        )
    head = set(core._head(model, core._output_tensors(model)["predictions"]))
    augmented = [name for name in new_layers(model) if model.get_layer(name) not in head]
    trainable = [name for name in augmented + heads[task] if model.get_layer(name).weights]
    multiplied = [name for name in augmented if model.get_layer(name).weights]
    return training.fit(
        model, data, trainable=_pattern(trainable),
        lr_multipliers={_pattern(multiplied): float(new_lr_multiplier)} if multiplied else None,
        learning_rate=learning_rate, lr_schedule=lr_schedule, momentum=momentum,
        weight_decay=weight_decay, optimizer=optimizer, loss_weights={task: 1.0},
        evaluation_output=task, **fit_kwargs,
    )


@registry.register_training_hints
def grown_model_hints(model) -> dict | None:
    """Training hints of a grown model with task heads: the loss and the metrics on the
    ``predictions`` head (the current task); the heads of earlier tasks do not train."""
    outputs = getattr(model, "output", None)
    if not isinstance(outputs, dict) or "predictions" not in outputs:
        return None
    if not all(key == "predictions" or core._TASK.fullmatch(key) for key in outputs):
        return None
    return {"loss_weights": {"predictions": 1.0}, "evaluation_output": "predictions"}
