"""Per-layer learning-rate multipliers for any Keras optimizer (Caffe's ``lr_mult``).

``with_lr_multipliers(keras.optimizers.SGD(0.01, momentum=0.9), {"fc8*": 10.0})`` returns
an ``LRMultipliedSGD``: a subclass of the optimizer's own class with the same configuration,
so learning-rate schedules, callbacks that set ``learning_rate``, EMA, gradient
accumulation, ``LossScaleOptimizer`` (``mixed_float16``) and ``tf.distribute`` strategies
behave as with the plain optimizer. Variable ``w`` of a layer with factor ``f`` is updated
with learning rate ``f * lr``: both in the optimizer's update step and in its decoupled
weight decay (``w -= f * lr * wd * w``), so one step changes it by exactly ``f`` times the
change of an unmultiplied twin for SGD (with or without momentum), and by ``f`` times for
Adam-type optimizers too (their step is proportional to the learning rate).

A variable belongs to every layer named in its path: ``"fc8/kernel"`` to ``fc8``,
``"block/conv/kernel"`` (a layer nested in ``block``) to ``block`` and ``conv``. Its factor
is that of the first pattern (in the mapping's order) matching one of those names; 1.0
when none does. Patterns are ``fnmatch`` patterns with ``|`` alternatives (``"fc7*|fc8*"``);
an alternative matching no layer with trainable weights is a ValueError when the optimizer
is built (the first training step).

Saved models load in a fresh process once this module is imported (``import
keras_apps.training`` does): the subclasses of every optimizer in ``keras.optimizers`` are
registered at import (``keras_apps>LRMultiplied[SGD]``, ...); for an optimizer class of your
own call :func:`lr_multiplier_class` on it before loading.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import keras
from keras import ops

from keras_apps.training.freezing import check_all_match, matches, split_pattern

_CLASSES: dict[type, type] = {}
_WRAPPERS = (keras.optimizers.LossScaleOptimizer, keras.optimizers.MultiOptimizer)


def _normalise(multipliers) -> tuple[tuple[str, float], ...]:
    if not isinstance(multipliers, Mapping) or not multipliers:
        raise ValueError(
            "`multipliers` must be a non-empty mapping of layer-name pattern to factor, "
            f"e.g. {{'fc8*': 10.0}}; got {multipliers!r}."
        )
    items = []
    for pattern, factor in multipliers.items():
        split_pattern(pattern)
        if (
            isinstance(factor, bool)
            or not isinstance(factor, numbers.Real)
            or not math.isfinite(factor)
            or factor < 0
        ):
            raise ValueError(
                f"The learning-rate multiplier of {pattern!r} must be a finite number >= 0, "
                f"got {factor!r}."
            )
        items.append((pattern, float(factor)))
    return tuple(items)


def _layer_names(variable) -> list[str]:
    return variable.path.split("/")[:-1]


class _LRMultipliers:
    """Mixin placed before a Keras optimizer class: per-variable learning-rate factors."""

    def __init__(self, *args, lr_multipliers, **kwargs):
        super().__init__(*args, **kwargs)
        self._lr_multipliers = _normalise(lr_multipliers)
        self._lr_factors = ()
        self._decay_lr_factor = 1.0

    @property
    def lr_multipliers(self) -> dict[str, float]:
        """The ``{pattern: factor}`` mapping, in matching order."""
        return dict(self._lr_multipliers)

    def lr_factor(self, variable) -> float:
        """The learning-rate factor of ``variable`` (a model variable)."""
        names = _layer_names(variable)
        for pattern, factor in self._lr_multipliers:
            alternatives = split_pattern(pattern)
            if any(matches(alternatives, name) for name in names):
                return factor
        return 1.0

    def build(self, variables):
        names = [name for variable in variables for name in _layer_names(variable)]
        for pattern, _ in self._lr_multipliers:
            check_all_match(pattern, names, what="layer with trainable weights")
        super().build(variables)
        self._lr_factors = tuple(self.lr_factor(variable) for variable in variables)

    def _factor_of(self, variable) -> float:
        return self._lr_factors[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        factor = self._factor_of(variable)
        if factor != 1.0:
            learning_rate = ops.multiply(learning_rate, factor)
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        groups: dict[float, list] = {}
        for variable in variables:
            groups.setdefault(self._factor_of(variable), []).append(variable)
        for factor, group in groups.items():
            # The optimizer's own decay reads `self.learning_rate` while it runs (in
            # tf.distribute's merge step too, which replicas reach one group at a time).
            self._decay_lr_factor = factor
            try:
                super()._apply_weight_decay(group)
            finally:
                self._decay_lr_factor = 1.0

    def _get_current_learning_rate(self):
        learning_rate = super()._get_current_learning_rate()
        if self._decay_lr_factor == 1.0:
            return learning_rate
        return ops.multiply(learning_rate, self._decay_lr_factor)

    def get_config(self):
        return {**super().get_config(), "lr_multipliers": self.lr_multipliers}


def lr_multiplier_class(optimizer_class: type) -> type:
    """The registered ``LRMultiplied<Name>`` subclass of a Keras optimizer class."""
    is_class = isinstance(optimizer_class, type)
    if not (is_class and issubclass(optimizer_class, keras.optimizers.Optimizer)):
        raise TypeError(f"Expected a keras.optimizers.Optimizer subclass, got {optimizer_class!r}.")
    if issubclass(optimizer_class, _LRMultipliers):
        return optimizer_class
    if issubclass(optimizer_class, _WRAPPERS) or optimizer_class is keras.optimizers.Optimizer:
        raise TypeError(
            f"{optimizer_class.__name__} has no update rule of its own; give the optimizer it "
            "wraps learning-rate multipliers (a LossScaleOptimizer instance is handled by "
            "with_lr_multipliers)."
        )
    if optimizer_class not in _CLASSES:
        base_name = keras.saving.get_registered_name(optimizer_class)
        if keras.saving.get_registered_object(f"keras_apps>LRMultiplied[{base_name}]"):
            base_name = f"{optimizer_class.__module__}.{optimizer_class.__qualname__}"
        name = f"LRMultiplied{optimizer_class.__name__}"
        cls = type(
            name,
            (_LRMultipliers, optimizer_class),
            {
                "__module__": __name__,
                "__qualname__": name,
                "__doc__": f"``{base_name}`` with per-layer learning-rate multipliers.",
            },
        )
        keras.saving.register_keras_serializable("keras_apps", f"LRMultiplied[{base_name}]")(cls)
        _CLASSES[optimizer_class] = cls
    return _CLASSES[optimizer_class]


def with_lr_multipliers(optimizer, multipliers: Mapping[str, float]):
    """A new optimizer like ``optimizer`` (an unbuilt Keras optimizer or its name, e.g.
    ``"adam"``) whose per-variable learning rate is ``factor * lr`` for the layers matching
    a pattern of ``multipliers`` (``{"fc7*|fc8*": 10.0}``); see the module docstring.

    A ``LossScaleOptimizer`` comes back as a ``LossScaleOptimizer`` around the multiplied
    inner optimizer. Multipliers given to an optimizer that already has some replace them.
    """
    lr_multipliers = dict(_normalise(multipliers))
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(
            with_lr_multipliers(optimizer.inner_optimizer, lr_multipliers),
            initial_scale=optimizer.initial_scale,
            dynamic_growth_steps=optimizer.dynamic_growth_steps,
            name=optimizer.name,
        )
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            "`optimizer` must be a keras.optimizers.Optimizer or an optimizer name, "
            f"got {optimizer!r}."
        )
    if optimizer.built:
        raise ValueError(
            f"Optimizer {optimizer.name!r} is already built (it has state for some variables); "
            "give with_lr_multipliers a new optimizer."
        )
    config = optimizer.get_config()
    if callable(optimizer._learning_rate):
        config["learning_rate"] = optimizer._learning_rate  # the schedule itself, not a copy
    config["lr_multipliers"] = lr_multipliers
    return lr_multiplier_class(type(optimizer)).from_config(config)


for _name in dir(keras.optimizers):
    _candidate = getattr(keras.optimizers, _name)
    if (
        isinstance(_candidate, type)
        and issubclass(_candidate, keras.optimizers.Optimizer)
        and _candidate is not keras.optimizers.Optimizer
        and not issubclass(_candidate, _WRAPPERS)
    ):
        lr_multiplier_class(_candidate)
del _name, _candidate
