"""Keras Tuner HyperModels for every registered family and for the methods.

- :class:`ModelHyperModel`: any registered builder. Its search space is the builder's own
  keyword arguments that it really has (read from its signature: NIN's ``width``
  multiplier, ``dropout``, EfficientNet's ``drop_connect_rate``, SE-ResNet's
  ``reduction``, the CIFAR ResNets' ``shortcut``, NIN's ``batch_norm``), the depth as a
  choice among ``variants`` (registered names of one family: ``resnet20_cifar`` ...
  ``resnet110_cifar``), plus the learning rate and the optimizer. Training goes through
  :func:`keras_apps.training.fit` (the tuner's callbacks passed on; Hyperband's
  ``initial_epoch`` trains the remaining epochs of a model that starts from its parent
  trial's weights).
- :class:`GrowthHyperModel`: developmental growth of a trained classifier
  (:func:`keras_apps.growth.grow`: mode, new units, scale init) fine-tuned with
  :func:`keras_apps.growth.finetune` (scenario, learning rate).
- :class:`HDCNNHyperModel`: HD-CNN's own hyperparameters (K, gamma, lambda, the split
  layer) through the method's own :func:`keras_apps.hdcnn.fit`; the model comes out of
  the pipeline, so the tuner runs the pipeline (:meth:`HDCNNHyperModel.run`) instead of
  ``build`` + ``fit``.

OverFeat's networks are registered builders (``overfeat_fast_small`` ...): the family
HyperModel tunes them (dropout, learning rate, optimizer, variants).

A default search space can be narrowed or fixed with ``space={argument: values}``: a list
or tuple is the set of choices, any other value fixes the argument.
"""

from __future__ import annotations

import inspect
import pathlib

import keras
import keras_tuner

from keras_apps import registry
from keras_apps import training

__all__ = [
    "BUILDER_SPACE",
    "TRAINING_SPACE",
    "GrowthHyperModel",
    "HDCNNHyperModel",
    "ModelHyperModel",
    "family_variants",
    "tunable_arguments",
]

#: The builder keyword arguments a family HyperModel tunes, with their default choices.
#: Only the ones a builder really takes are tuned.
BUILDER_SPACE = {
    "width": (0.25, 0.5, 0.75, 1.0),  # NIN's width multiplier
    "dropout": (0.0, 0.2, 0.4, 0.5, 0.6),
    "drop_connect_rate": (0.0, 0.1, 0.2, 0.3),  # EfficientNet's stochastic depth
    "reduction": (4, 8, 16, 32),  # squeeze-and-excitation ratio
    "shortcut": ("A", "B"),  # CIFAR ResNets: zero padding or projection
    "batch_norm": (False, True),  # NIN
}

#: Training hyperparameters every HyperModel tunes: the learning rate is sampled
#: log-uniformly between the two bounds, the optimizer among the names.
TRAINING_SPACE = {
    "learning_rate": (1e-3, 0.1),
    "optimizer": ("sgd", "adam"),
}

_MISSING = object()


def _sequence(value) -> bool:
    return isinstance(value, (list, tuple))


def _check_space(space, allowed, what) -> dict:
    space = dict(space or {})
    unknown = sorted(set(space) - set(allowed))
    if unknown:
        raise ValueError(
            f"`space` names {', '.join(map(repr, unknown))}, which {what} does not tune; it "
            f"tunes: {', '.join(sorted(allowed))}."
        )
    for key, value in space.items():
        if _sequence(value) and not value:
            raise ValueError(f"`space[{key!r}]` is an empty list of choices.")
    return space


def _choice(hp, name, values):
    """A Choice of ``values``; a single value is fixed (keras-tuner refuses a one-value
    Choice of booleans and strings in some oracles)."""
    values = list(values)
    if len(values) == 1:
        return hp.Fixed(name, values[0])
    if all(isinstance(v, bool) for v in values):
        return hp.Boolean(name)
    return hp.Choice(name, values)


def _learning_rate(hp, value):
    if _sequence(value):
        low, high = float(min(value)), float(max(value))
        if not 0 < low:
            raise ValueError(f"learning-rate bounds must be > 0, got {value!r}.")
        if low == high:
            return hp.Fixed("learning_rate", low)
        return hp.Float("learning_rate", low, high, sampling="log")
    return hp.Fixed("learning_rate", float(value))


def _training_values(hp, space) -> dict:
    """The tuned learning rate and optimizer (``space`` may fix or narrow them)."""
    lr = _learning_rate(hp, space.get("learning_rate", TRAINING_SPACE["learning_rate"]))
    optimizers = space.get("optimizer", TRAINING_SPACE["optimizer"])
    optimizer = _choice(hp, "optimizer", optimizers if _sequence(optimizers) else [optimizers])
    return {"learning_rate": lr, "optimizer": optimizer}


def tunable_arguments(name: str) -> list[str]:
    """The :data:`BUILDER_SPACE` arguments that the builder of ``name`` takes."""
    spec = registry.get_spec(name)
    parameters = inspect.signature(spec.builder).parameters
    return [key for key in BUILDER_SPACE if key in parameters]


def family_variants(name: str) -> list[str]:
    """The registered names of ``name``'s family with the same default input shape (its
    depth variants: ``resnet20_cifar`` -> the CIFAR ResNets 20 ... 110), ``name`` first."""
    spec = registry.get_spec(name)
    siblings = [
        other for other in registry.list_models()
        if other != name
        and registry.get_spec(other).family == spec.family
        and registry.get_spec(other).input_shape == spec.input_shape
        and registry.get_spec(other).builder.__module__ == spec.builder.__module__
    ]
    return [name, *siblings]


def _history(result: training.TrainResult) -> keras.callbacks.History:
    """The per-epoch logs of a :func:`keras_apps.training.fit` call as the ``History`` a
    keras-tuner ``HyperModel.fit`` returns (its best epoch is the trial's objective)."""
    history = keras.callbacks.History()
    history.history = {key: list(values) for key, values in result.history.items()}
    return history


def _remaining_epochs(epochs, initial_epoch) -> int:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer, got {epochs!r}.")
    remaining = epochs - int(initial_epoch or 0)
    if remaining < 1:
        raise ValueError(f"`initial_epoch` {initial_epoch} leaves no epoch of {epochs} to train.")
    return remaining


def _finished_run(output_dir) -> bool:
    return (pathlib.Path(output_dir) / "metrics.json").is_file()


class _TrainedHyperModel(keras_tuner.HyperModel):
    """Shared ``fit``: one :func:`keras_apps.training.fit` run per trial, in ``output_dir``."""

    def __init__(self, *, fit_kwargs=None, name=None, tunable=True):
        super().__init__(name=name, tunable=tunable)
        self.fit_kwargs = dict(fit_kwargs or {})
        reserved = sorted(set(self.fit_kwargs) & {"optimizer", "learning_rate", "callbacks",
                                                  "epochs", "output_dir", "overwrite"})
        if reserved:
            raise ValueError(
                f"`fit_kwargs` may not set {', '.join(reserved)}: the tuner and the search space "
                "set them."
            )

    def _train(self, hp, model, data, *, epochs, initial_epoch, callbacks, output_dir, verbose,
               **kwargs):
        return training.fit(
            model, data, epochs=_remaining_epochs(epochs, initial_epoch),
            optimizer=hp.get("optimizer"), learning_rate=hp.get("learning_rate"),
            callbacks=list(callbacks or ()), output_dir=output_dir, verbose=verbose,
            # a trial that trained to the end but whose result the oracle did not record
            # (a killed search) trains again; an interrupted one resumes
            overwrite=_finished_run(output_dir), **{**self.fit_kwargs, **kwargs},
        )

    def fit(self, hp, model, data, *, epochs, initial_epoch=0, callbacks=(), output_dir,
            verbose=0, **kwargs):
        """Trains ``model`` on ``data`` (a ``(train, validation)`` tf.data pair, or a dataset
        name) with :func:`keras_apps.training.fit` for ``epochs - initial_epoch`` epochs,
        with the tuned optimizer and learning rate and the tuner's ``callbacks``; returns
        the ``History`` of this run (keras-tuner takes its best epoch as the objective)."""
        return _history(self._train(hp, model, data, epochs=epochs, initial_epoch=initial_epoch,
                                    callbacks=callbacks, output_dir=output_dir, verbose=verbose,
                                    **kwargs))


class ModelHyperModel(_TrainedHyperModel):
    """A HyperModel over the registered builder ``name`` (module docstring).

    Args:
        name: a registry name.
        input_shape, classes: of the data (the builder's ``input_shape`` / ``classes``).
        variants: registry names whose choice is the ``variant`` hyperparameter (the
            depth); ``"family"``: :func:`family_variants`; default ``name`` alone. Only the
            builder arguments that every variant takes are tuned.
        space: ``{argument: choices or fixed value}`` narrowing :data:`BUILDER_SPACE` and
            :data:`TRAINING_SPACE` (``learning_rate``: ``(low, high)`` or a value).
        build_kwargs: other builder arguments, fixed.
        fit_kwargs: further :func:`keras_apps.training.fit` arguments (``batch_size``,
            ``weight_decay``, ``lr_schedule`` ...).
    """

    def __init__(self, name: str, *, input_shape, classes: int, variants=None, space=None,
                 build_kwargs=None, fit_kwargs=None):
        registry.get_spec(name)
        if variants is None:
            variants = [name]
        elif variants == "family":
            variants = family_variants(name)
        elif isinstance(variants, str) or not _sequence(variants) or not variants:
            raise ValueError(
                f"`variants` must be None, 'family' or a list of registry names, got {variants!r}."
            )
        self.variants = list(dict.fromkeys(variants))
        for variant in self.variants:
            registry.get_spec(variant)
        arguments = [key for key in tunable_arguments(self.variants[0])
                     if all(key in tunable_arguments(v) for v in self.variants[1:])]
        self.build_kwargs = dict(build_kwargs or {})
        clash = sorted(set(self.build_kwargs) & {"input_shape", "classes"})
        if clash:
            raise ValueError(
                f"`build_kwargs` may not set {', '.join(clash)}: the data sets them."
            )
        arguments = [key for key in arguments if key not in self.build_kwargs]
        self.space = _check_space(space, set(arguments) | set(TRAINING_SPACE), name)
        self.arguments = arguments
        for variant in self.variants:
            registry.check_arguments(variant, {**self.build_kwargs,
                                               **dict.fromkeys(self.arguments)})
        self.input_shape = tuple(input_shape)
        self.classes = int(classes)
        super().__init__(fit_kwargs=fit_kwargs, name=f"{name}_hypermodel")
        self.registry_name = name

    def builder_kwargs(self, hp) -> tuple[str, dict]:
        """The registry name and the builder keyword arguments that ``hp`` selects (each
        tuned argument declared in ``hp`` on first use)."""
        variant = _choice(hp, "variant", self.variants)
        kwargs = dict(self.build_kwargs)
        for key in self.arguments:
            value = self.space.get(key, BUILDER_SPACE[key])
            kwargs[key] = _choice(hp, key, value if _sequence(value) else [value])
        return variant, kwargs

    def build(self, hp) -> keras.Model:
        """The registered model with the hyperparameters of ``hp`` (uncompiled: training
        compiles it with the tuned optimizer and learning rate)."""
        variant, kwargs = self.builder_kwargs(hp)
        _training_values(hp, self.space)
        return registry.build(variant, input_shape=self.input_shape, classes=self.classes, **kwargs)


class GrowthHyperModel(_TrainedHyperModel):
    """Developmental growth of the trained classifier ``source`` (a ``.keras`` path or a
    ``keras.Model``) for a target task of ``classes``: ``mode`` (depth, width, depth_width,
    recursive_width), ``units`` (new units; default choices: a quarter, half and all of the
    top representation's width), ``scale_init`` of the L2-normalised blocks, the fine-tuning
    ``scenario`` and the learning rate. The grown network keeps no source head
    (``keep_source=False``): the target task is what the search scores."""

    SPACE = {
        "mode": ("depth", "width", "depth_width", "recursive_width"),
        "scale_init": (1.0, 10.0, 20.0),
        "scenario": ("new", "all"),
    }

    def __init__(self, source, *, classes: int, space=None, seed: int = 0, fit_kwargs=None):
        from keras_apps import growth

        self.source_path = None
        if isinstance(source, keras.Model):
            self._source = source
        else:
            self.source_path = pathlib.Path(source)
            self._source = training.load_model(self.source_path)
        width = int(self._source.get_layer(growth.top_representation_layer(self._source)).output.shape[-1])
        self.default_units = tuple(sorted({max(1, width // 4), max(1, width // 2), width}))
        self.space = _check_space(space, {"mode", "units", "scale_init", "scenario", *TRAINING_SPACE},
                                  "growth")
        bad = [m for m in self.space.get("mode", ()) if m not in growth.MODES] \
            if _sequence(self.space.get("mode")) else []
        if bad:
            raise ValueError(f"Unknown growth mode(s) {bad}; choose from {', '.join(growth.MODES)}.")
        self.classes = int(classes)
        self.seed = seed
        super().__init__(fit_kwargs=fit_kwargs, name=f"{self._source.name}_growth")

    def _value(self, hp, key, default):
        value = self.space.get(key, default)
        return _choice(hp, key, value if _sequence(value) else [value])

    def build(self, hp) -> keras.Model:
        """The source grown as ``hp`` says (its weights copied, new layers seeded)."""
        from keras_apps import growth

        mode = self._value(hp, "mode", self.SPACE["mode"])
        units = self._value(hp, "units", self.default_units)
        scale_init = self._value(hp, "scale_init", self.SPACE["scale_init"])
        self._value(hp, "scenario", self.SPACE["scenario"])
        _training_values(hp, self.space)
        return growth.grow(self._source, mode, units=int(units), scale_init=float(scale_init),
                           classes=self.classes, keep_source=False, seed=self.seed)

    def _train(self, hp, model, data, *, epochs, initial_epoch, callbacks, output_dir, verbose,
               **kwargs):
        from keras_apps import growth

        return growth.finetune(
            model, data, scenario=hp.get("scenario"), learning_rate=hp.get("learning_rate"),
            optimizer=hp.get("optimizer"), epochs=_remaining_epochs(epochs, initial_epoch),
            callbacks=list(callbacks or ()), output_dir=output_dir, verbose=verbose,
            overwrite=_finished_run(output_dir), **{**self.fit_kwargs, **kwargs},
        )


class HDCNNHyperModel(keras_tuner.HyperModel):
    """HD-CNN's hyperparameters through :func:`keras_apps.hdcnn.fit`: ``n_coarse`` (K),
    ``gamma`` (0 stands for None: disjoint coarse categories), ``lambda`` (the consistency
    weight) and ``shared_until`` (the split layer), plus the learning rate of the fine
    phases. ``building_block`` is a finished :func:`keras_apps.training.fit` run folder (or
    ``.keras`` file) trained on the same held-out split, so that phase 1 is not repeated in
    every trial; the search trains it once (:func:`keras_apps.tuning.search`).

    ``build`` declares the search space only (the network comes out of the pipeline); the
    tuner calls :meth:`run` for each trial, and the trial's model is the pipeline's
    ``model.keras``.
    """

    runs_pipeline = True
    SPACE = {
        "n_coarse": (2, 3, 4),
        "gamma": (3.0, 5.0, 10.0),
        "lambda": (1.0, 20.0),
        "learning_rate": (1e-3, 0.05),
    }

    def __init__(self, building_block="nin_cifar", *, shared_until=None, space=None,
                 building_block_kwargs=None, fit_kwargs=None):
        from keras_apps.hdcnn import SHARED_UNTIL

        self.building_block = building_block
        self.building_block_kwargs = dict(building_block_kwargs or {})
        self.space = _check_space(space, {"n_coarse", "gamma", "lambda", "shared_until",
                                          "learning_rate"}, "HD-CNN")
        if shared_until is not None:
            self.space.setdefault("shared_until", shared_until)
        name = building_block if isinstance(building_block, str) else "hdcnn"
        if "shared_until" not in self.space and name in SHARED_UNTIL:
            self.space["shared_until"] = SHARED_UNTIL[name]
        self.fit_kwargs = dict(fit_kwargs or {})
        super().__init__(name="hdcnn_hypermodel")

    def _value(self, hp, key):
        value = self.space.get(key, self.SPACE.get(key))
        return _choice(hp, key, value if _sequence(value) else [value])

    def declare(self, hp) -> dict:
        """Declares the hyperparameters in ``hp``; returns the :func:`keras_apps.hdcnn.fit`
        arguments they select."""
        lam = self.space.get("lambda", self.SPACE["lambda"])
        if _sequence(lam) and len(set(lam)) == 2 and len(lam) == 2:
            lam_value = hp.Float("lambda", float(min(lam)), float(max(lam)), sampling="log")
        else:
            lam_value = _choice(hp, "lambda", lam if _sequence(lam) else [lam])
        gamma = self._value(hp, "gamma")
        kwargs = {
            "n_coarse": int(self._value(hp, "n_coarse")),
            "gamma": float(gamma) or None,
            "lam": float(lam_value),
            "learning_rate": _learning_rate(hp, self.space.get("learning_rate",
                                                               self.SPACE["learning_rate"])),
        }
        if "shared_until" in self.space:
            kwargs["shared_until"] = self._value(hp, "shared_until")
        return kwargs

    def build(self, hp):
        """Declares the search space (see the class docstring); returns None."""
        self.declare(hp)

    def run(self, hp, data, *, epochs, output_dir, verbose=0, **kwargs) -> dict:
        """Runs :func:`keras_apps.hdcnn.fit` with the hyperparameters of ``hp`` (phases 4
        and 5 for ``epochs`` epochs each) into ``output_dir``; returns ``{"val_top1",
        "val_loss"}`` of the fine-tuned HD-CNN on the held-out validation part."""
        from keras_apps import hdcnn

        args = self.declare(hp)
        finished = (pathlib.Path(output_dir) / "metrics.json").is_file()
        result = hdcnn.fit(
            self.building_block, data, fine_epochs=epochs, finetune_epochs=epochs,
            fine_learning_rate=args["learning_rate"],
            finetune_learning_rate=args.pop("learning_rate") / 10,
            output_dir=output_dir, overwrite=finished, verbose=verbose,
            evaluate_test=False,  # a trial never reads the test split
            **args, **{**self.fit_kwargs, **kwargs},
        )
        validation = result.metrics["finetune"]["validation"]
        return {"val_top1": validation["top1_accuracy"], "val_loss": validation["loss"]}

