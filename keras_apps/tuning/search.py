"""Keras Tuner searches whose objective is the held-out validation split, never the test split.

:func:`search` carves a stratified, seeded ``validation_fraction`` of the training split
(``keras_apps.data.load(subset=...)``, the same carve as :func:`keras_apps.training.fit`),
hands the ``(training, validation)`` pair to every trial and lets keras-tuner pick the best
trial by ``val_top1`` (or ``val_loss``). Only when the search is over is the test split
read, once, to score the best model. Under ``output_dir`` it writes:

- ``tuner/``: keras-tuner's project (oracle, ``trial_<id>/`` with ``trial.json``, the best
  epoch's weights and the trial's :func:`keras_apps.training.fit` run folder ``run/``);
  re-running an interrupted search reloads it and goes on;
- ``results.md``, ``results.csv``, ``results.json``: one row per trial (trial id, status,
  hyperparameters, objective); ``results.png``: the objective of each trial and the best so
  far;
- ``best/model.keras`` (exportable like any other model: ``keras-apps export
  best/model.keras --format ...``), ``best/metrics.json`` (hyperparameters, objective,
  validation and test metrics) and ``best/config.json`` (the preprocessing
  ``keras-apps evaluate`` reads).

A finished search (``results.json``) is kept unless ``overwrite=True``.

Distributed search is keras-tuner's own: the same call in several processes with
``KERASTUNER_TUNER_ID`` (``chief`` for the oracle, any other id for a worker),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``, all on one ``output_dir``. The
chief serves the oracle and, once every trial has ended, writes the results and the best
model; each worker runs the trials it is given and returns.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import os
import pathlib
import shutil

import keras
import keras_tuner

from keras_apps import data as kdata
from keras_apps import registry
from keras_apps import training
from keras_apps._atomic import atomic_file
from keras_apps.tuning.hypermodels import HDCNNHyperModel, ModelHyperModel

__all__ = ["OBJECTIVES", "TUNERS", "SearchResult", "make_tuner", "role", "search", "write_results"]

TUNERS = ("random", "hyperband", "bayes")
#: Objectives: the validation metrics of the held-out part of the training split.
OBJECTIVES = {"val_top1": "max", "val_loss": "min"}
PROJECT = "tuner"


@dataclasses.dataclass
class SearchResult:
    """What :func:`search` returns. On a distributed worker only ``role``, ``tuner`` and
    ``output_dir`` are set (the chief writes the results)."""

    role: str
    tuner: keras_tuner.Tuner
    output_dir: pathlib.Path
    rows: list = dataclasses.field(default_factory=list)
    best_model: keras.Model | None = None
    best_trial_id: str | None = None
    best_hyperparameters: dict | None = None
    metrics: dict | None = None
    paths: dict = dataclasses.field(default_factory=dict)


def role() -> str:
    """``"single"``, or ``"chief"`` / ``"worker"`` under keras-tuner's distributed mode
    (``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT`` and ``KERASTUNER_TUNER_ID``)."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    missing = [key for key in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if key not in os.environ]
    if missing:
        raise ValueError(
            f"KERASTUNER_ORACLE_IP is set but {' and '.join(missing)} not; a distributed search "
            "needs all three (KERASTUNER_TUNER_ID=chief for the oracle, e.g. tuner0 for a worker)."
        )
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


class _RunFolders:
    """Tuner behaviour shared by the three tuners: each trial trains into its own
    ``trial_<id>/run`` folder; a HyperModel that runs a whole pipeline
    (``runs_pipeline``) is run instead of built and fitted, and its trial's model is the
    pipeline's ``model.keras``."""

    def _pipeline(self) -> bool:
        return getattr(self.hypermodel, "runs_pipeline", False)

    def run_folder(self, trial_id) -> pathlib.Path:
        """The :func:`keras_apps.training.fit` run folder of a trial."""
        return pathlib.Path(self.get_trial_dir(trial_id)) / "run"

    def run_trial(self, trial, *args, **kwargs):
        output_dir = self.run_folder(trial.trial_id)
        if self._pipeline():
            callbacks = kwargs.pop("callbacks", None)
            if callbacks:
                raise ValueError(f"{type(self.hypermodel).__name__} trials take no callbacks.")
            return self.hypermodel.run(trial.hyperparameters, *args, output_dir=output_dir, **kwargs)
        return super().run_trial(trial, *args, output_dir=output_dir, **kwargs)

    def load_model(self, trial):
        if self._pipeline():
            return training.load_model(self.run_folder(trial.trial_id) / "model.keras")
        return super().load_model(trial)


class RandomSearch(_RunFolders, keras_tuner.RandomSearch):
    """keras-tuner's RandomSearch with keras_apps run folders."""


class Hyperband(_RunFolders, keras_tuner.Hyperband):
    """keras-tuner's Hyperband with keras_apps run folders."""


class BayesianOptimization(_RunFolders, keras_tuner.BayesianOptimization):
    """keras-tuner's BayesianOptimization with keras_apps run folders."""


def _check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return value


def _check_tuner(kind):
    if kind not in TUNERS:
        raise ValueError(f"Unknown tuner {kind!r}; choose one of {', '.join(TUNERS)}.")
    return kind


def _check_objective(objective):
    if objective not in OBJECTIVES:
        raise ValueError(
            f"Unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)} (the "
            "held-out validation split; the test split is never an objective)."
        )
    return objective


def make_tuner(kind: str, hypermodel, *, directory, max_trials: int, max_epochs: int,
               objective: str = "val_top1", seed: int = 0, overwrite: bool = False,
               max_consecutive_failed_trials: int = 3):
    """A keras-tuner tuner (``"random"``, ``"hyperband"``, ``"bayes"``) on ``hypermodel``
    whose project is ``directory/tuner``. ``max_trials`` caps Hyperband's brackets too;
    ``max_epochs`` is Hyperband's largest budget. ``overwrite=False`` reloads an existing
    project (keras-tuner's own resumption)."""
    _check_tuner(kind)
    _check_int("max_trials", max_trials)
    _check_int("max_epochs", max_epochs)
    _check_objective(objective)
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError(
            "keras-tuner needs the `tensorboard` package (without it every trial fails "
            "silently): pip install tensorboard."
        )
    if kind == "hyperband" and getattr(hypermodel, "runs_pipeline", False):
        raise ValueError(
            f"tuner 'hyperband' continues trials from their parents' weights; "
            f"{type(hypermodel).__name__} runs a whole pipeline per trial: use 'random' or 'bayes'."
        )
    common = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(objective, OBJECTIVES[objective]),
        directory=str(directory), project_name=PROJECT, seed=seed, overwrite=overwrite,
        max_consecutive_failed_trials=max_consecutive_failed_trials,
    )
    if kind == "random":
        return RandomSearch(max_trials=max_trials, **common)
    if kind == "bayes":
        return BayesianOptimization(max_trials=max_trials, **common)
    tuner = Hyperband(max_epochs=max_epochs, factor=3, hyperband_iterations=1, **common)
    tuner.oracle.max_trials = max_trials
    return tuner


def _row(trial) -> dict:
    values = {key: value for key, value in trial.hyperparameters.values.items()}
    return {
        "trial_id": trial.trial_id,
        "status": str(trial.status),
        "objective": None if trial.score is None else float(trial.score),
        "best_step": int(trial.best_step) if trial.best_step is not None else None,
        "hyperparameters": values,
        "message": trial.message,
    }


def _atomic_text(path, text):
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_results(rows: list, output_dir, objective: str) -> dict:
    """``results.json``/``.csv``/``.md`` and ``results.png`` of ``rows`` (see
    :func:`search`); returns their paths. ``results.json`` is written last: it marks a
    finished search."""
    output_dir = pathlib.Path(output_dir)
    keys = sorted({key for row in rows for key in row["hyperparameters"]})
    paths = {kind: output_dir / f"results.{kind}" for kind in ("csv", "md", "png", "json")}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial_id", "status", objective, *keys])
    for row in rows:
        writer.writerow([row["trial_id"], row["status"], _format(row["objective"]),
                         *(_format(row["hyperparameters"].get(k)) for k in keys)])
    _atomic_text(paths["csv"], out.getvalue())
    lines = [f"| trial | status | {objective} | " + " | ".join(keys) + " |",
             "|" + "---|" * (3 + len(keys))]
    for row in rows:
        cells = [row["trial_id"], row["status"], _format(row["objective"]),
                 *(_format(row["hyperparameters"].get(k)) for k in keys)]
        lines.append("| " + " | ".join(cells) + " |")
    _atomic_text(paths["md"], "\n".join(lines) + "\n")
    _plot(rows, paths["png"], objective)
    _atomic_text(paths["json"], json.dumps({"objective": objective, "trials": rows}, indent=2) + "\n")
    return paths


def _plot(rows, path, objective):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    scored = [(i, row) for i, row in enumerate(rows) if row["objective"] is not None]
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    xs = [i for i, _ in scored]
    ys = [row["objective"] for _, row in scored]
    axes.plot(xs, ys, "o", label="trial")
    better = max if OBJECTIVES[objective] == "max" else min
    best, so_far = [], None
    for y in ys:
        so_far = y if so_far is None else better(so_far, y)
        best.append(so_far)
    axes.step(xs, best, where="post", label="best so far")
    axes.set_xticks(range(len(rows)), [row["trial_id"] for row in rows], rotation=90, fontsize=7)
    axes.set_xlabel("trial")
    axes.set_ylabel(f"{objective} (held-out validation)")
    axes.legend(loc="best")
    figure.tight_layout()
    with atomic_file(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def _finished(output_dir: pathlib.Path) -> bool:
    return (output_dir / "results.json").is_file()


def search(
    model,
    data="digits",
    *,
    tuner: str = "random",
    max_trials: int = 10,
    epochs: int = 1,
    output_dir=None,
    objective: str = "val_top1",
    batch_size: int = 64,
    limit: int | None = None,
    validation_fraction: float = 0.1,
    validation_seed: int = 0,
    data_dir=None,
    image_size=None,
    channels: int | None = None,
    download: bool = False,
    seed: int = 0,
    variants=None,
    space=None,
    build_kwargs=None,
    fit_kwargs=None,
    callbacks=(),
    overwrite: bool = False,
    verbose=0,
) -> SearchResult:
    """Runs a Keras Tuner search and writes its results (module docstring).

    Args:
        model: a registry name (its :class:`~keras_apps.tuning.ModelHyperModel` with
            ``variants``, ``space``, ``build_kwargs`` and ``fit_kwargs``), or a HyperModel of
            :mod:`keras_apps.tuning.hypermodels` (e.g. ``HDCNNHyperModel``,
            ``GrowthHyperModel``).
        data: a dataset name of :func:`keras_apps.data.load`.
        tuner: ``"random"``, ``"hyperband"`` or ``"bayes"``.
        max_trials: trials in all (Hyperband: at most this many of its brackets' trials).
        epochs: epochs per trial (Hyperband: the largest budget, ``max_epochs``).
        objective: ``"val_top1"`` (maximised) or ``"val_loss"``, on the held-out
            ``validation_fraction`` of the training split.
        limit, batch_size, data_dir, image_size, channels, download: as in
            :func:`keras_apps.training.fit`.
        callbacks: Keras callbacks for every trial's training.
        overwrite: start afresh in an ``output_dir`` holding a finished (or interrupted)
            search; without it a finished search raises ``FileExistsError`` and an
            interrupted one is resumed.
    """
    _check_tuner(tuner)
    _check_int("max_trials", max_trials)
    _check_int("epochs", epochs)
    _check_objective(objective)
    if not 0 < validation_fraction < 1:
        raise ValueError(
            f"`validation_fraction` must be in (0, 1): the search needs a held-out validation "
            f"split, got {validation_fraction!r}."
        )
    where = role()
    if isinstance(model, str):
        registry.get_spec(model)
        name = model
    elif isinstance(model, keras_tuner.HyperModel):
        name = getattr(model, "registry_name", None) or model.name or type(model).__name__
        if any(v is not None for v in (variants, space, build_kwargs, fit_kwargs)):
            raise TypeError("`variants`, `space`, `build_kwargs` and `fit_kwargs` apply to a registry name.")
    else:
        raise TypeError(
            f"`model` must be a registry name or a keras_tuner.HyperModel, got "
            f"{type(model).__name__}: {model!r}."
        )
    output_dir = pathlib.Path(output_dir or pathlib.Path("tuning") / name)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"`output_dir` {str(output_dir)!r} is a file; a search needs a folder.")
    if where != "worker" and _finished(output_dir) and not overwrite:
        raise FileExistsError(
            f"{output_dir} holds a finished search (results.json, best/model.keras); it is "
            "kept. Pass overwrite=True (CLI: --overwrite) to search again into it, or choose "
            "another output_dir (CLI: --output DIR)."
        )
    preprocessing = registry.preprocessing_for(name) if isinstance(model, str) else "dataset"
    loader = dict(data_dir=data_dir, batch_size=batch_size, image_size=image_size,
                  preprocessing=preprocessing, download=download, channels=channels, limit=limit,
                  validation_fraction=validation_fraction, validation_seed=validation_seed)
    info = kdata.dataset_info(data, data_dir=data_dir, download=download, channels=channels)
    train_ds, info = kdata.load(data, info.train_split, subset="training", seed=seed, **loader)
    val_ds, _ = kdata.load(data, info.train_split, subset="validation", **loader)
    pair = (train_ds, val_ds)
    if isinstance(model, str):
        hypermodel = ModelHyperModel(
            model, input_shape=info.image_shape, classes=info.num_classes, variants=variants,
            space=space, build_kwargs=build_kwargs,
            fit_kwargs={"batch_size": batch_size, "seed": seed, **dict(fit_kwargs or {})},
        )
    else:
        hypermodel = model

    if overwrite and where != "worker" and output_dir.exists():
        for entry in ("best", PROJECT, "building_block"):
            shutil.rmtree(output_dir / entry, ignore_errors=True)
        for kind in ("json", "csv", "md", "png"):
            (output_dir / f"results.{kind}").unlink(missing_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)

    if isinstance(hypermodel, HDCNNHyperModel):
        if image_size is not None or channels is not None:
            raise ValueError("HD-CNN searches read the dataset's own images: no image_size or channels.")
        search_args = dict(data=data)
        hypermodel.fit_kwargs = {
            "batch_size": batch_size, "limit": limit, "validation_fraction": validation_fraction,
            "validation_seed": validation_seed, "data_dir": data_dir, "download": download,
            "seed": seed, **hypermodel.fit_kwargs,
        }
        if isinstance(hypermodel.building_block, str) and \
                not pathlib.Path(hypermodel.building_block).exists():
            hypermodel.building_block = str(_building_block(
                hypermodel, pair, info.num_classes, output_dir, epochs, seed, where))
    else:
        search_args = dict(data=pair, callbacks=list(callbacks))

    keras_tuner_obj = make_tuner(tuner, hypermodel, directory=output_dir, max_trials=max_trials,
                                 max_epochs=epochs, objective=objective, seed=seed,
                                 overwrite=False)
    keras_tuner_obj.search(epochs=epochs, verbose=verbose, **search_args)
    result = SearchResult(where, keras_tuner_obj, output_dir)
    if where == "worker":
        return result

    oracle = keras_tuner_obj.oracle
    rows = [_row(trial) for _, trial in sorted(oracle.trials.items())]
    result.rows = rows
    # the best score; a tie goes to the first trial (keras-tuner's own order of equal scores
    # changes when its project is reloaded)
    scored = [trial for _, trial in sorted(oracle.trials.items()) if trial.score is not None]
    sign = -1.0 if oracle.objective.direction == "max" else 1.0
    best = sorted(scored, key=lambda trial: sign * trial.score)[:1]
    if not best or best[0].score is None:
        messages = sorted({(row["message"] or "").strip().splitlines()[-1]
                           for row in rows if row["message"]})
        raise RuntimeError(
            f"No trial of the search in {output_dir} finished"
            + (f": {'; '.join(messages)}" if messages else ".")
        )
    best_trial = best[0]
    best_model = keras_tuner_obj.load_model(best_trial)
    folder = output_dir / "best"
    folder.mkdir(exist_ok=True)
    training.atomic_save_model(best_model, folder / "model.keras")
    validation = training.evaluate(best_model, data, split=info.train_split, subset="validation",
                                   validation_fraction=validation_fraction,
                                   validation_seed=validation_seed, verbose=0,
                                   **_eval_loader(loader))
    test = training.evaluate(best_model, data, verbose=0, **_eval_loader(loader))  # read once
    metrics = {
        "trial_id": best_trial.trial_id,
        "hyperparameters": dict(best_trial.hyperparameters.values),
        "objective": {"name": objective, "value": float(best_trial.score)},
        "validation": validation,
        "test": test,
    }
    config = {"model": name, "data": data, "tuner": tuner, "max_trials": max_trials,
              "epochs": epochs, "preprocessing": preprocessing, "channels": channels,
              "image_shape": list(info.image_shape), "limit": limit,
              "validation_fraction": validation_fraction, "validation_seed": validation_seed}
    _atomic_text(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    _atomic_text(folder / "config.json", json.dumps(config, indent=2) + "\n")
    result.paths = {**write_results(rows, output_dir, objective), "model": folder / "model.keras",
                    "metrics": folder / "metrics.json"}
    result.best_model = best_model
    result.best_trial_id = best_trial.trial_id
    result.best_hyperparameters = metrics["hyperparameters"]
    result.metrics = metrics
    return result


def _eval_loader(loader: dict) -> dict:
    return {key: loader[key] for key in ("data_dir", "batch_size", "image_size", "preprocessing",
                                         "download", "channels", "limit")}


def _building_block(hypermodel: HDCNNHyperModel, pair, num_classes, output_dir, epochs, seed,
                    where):
    """Trains HD-CNN's building block once on the search's training/validation pair (so the
    test split stays unread) into ``output_dir/building_block``; returns that folder. Only
    the chief (or a single process) trains it, before it serves the oracle: the workers'
    trials start once it does."""
    folder = output_dir / "building_block"
    if (folder / "metrics.json").is_file() or where == "worker":
        return folder
    shape = tuple(pair[0].element_spec[0].shape[1:])
    net = registry.build(hypermodel.building_block, input_shape=shape, classes=num_classes,
                         **hypermodel.building_block_kwargs)
    training.fit(net, pair, epochs=epochs, output_dir=folder, seed=seed, verbose=0)
    return folder
