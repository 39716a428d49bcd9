"""Layer-name patterns, and freezing a model by them (``trainable="fc7*|fc8*"``).

A pattern is one or more ``fnmatch`` patterns (``*``, ``?``, ``[seq]``; case-sensitive)
separated by ``|``; a name matches when any alternative matches it. Every alternative must
match at least one layer, so a typo fails loudly instead of silently training nothing.
"""

from __future__ import annotations

import difflib
import fnmatch

import keras


def split_pattern(pattern) -> tuple[str, ...]:
    """The ``|``-separated alternatives of ``pattern`` (a non-empty string)."""
    if not isinstance(pattern, str):
        raise TypeError(
            f"A layer-name pattern must be a string such as 'fc7*|fc8*', got {pattern!r}."
        )
    alternatives = tuple(part.strip() for part in pattern.split("|"))
    if not all(alternatives):
        raise ValueError(
            f"Layer-name pattern {pattern!r} has an empty alternative; write e.g. 'fc7*|fc8*'."
        )
    return alternatives


def matches(alternatives, name: str) -> bool:
    """Whether ``name`` matches any of the fnmatch ``alternatives``."""
    return any(fnmatch.fnmatchcase(name, alternative) for alternative in alternatives)


def check_all_match(pattern: str, names, what: str = "layer") -> None:
    """Raises ValueError naming each alternative of ``pattern`` that matches none of
    ``names``, with the closest of those names."""
    names = list(dict.fromkeys(names))
    missing = [alt for alt in split_pattern(pattern) if not any(matches((alt,), n) for n in names)]
    if not missing:
        return
    details = []
    for alternative in missing:
        literal = alternative.strip("*?")
        close = difflib.get_close_matches(literal, names, n=5, cutoff=0.5)
        close += [n for n in names if literal and literal in n and n not in close]
        details.append(
            f"{alternative!r} (closest: {', '.join(close[:5])})" if close else repr(alternative)
        )
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    raise ValueError(
        f"Pattern {pattern!r}: {'; '.join(details)} matches no {what}; the {what} names are: "
        f"{shown or 'none'}."
    )


def _sublayers(layer) -> list:
    return [
        child
        for child in layer._flatten_layers(include_self=False, recursive=False)
        if not isinstance(child, keras.layers.InputLayer)
    ]


def layer_names(model) -> list[str]:
    """Names of every layer inside ``model``, nested ones included, in model order."""
    names = []
    for child in _sublayers(model):
        names.append(child.name)
        names.extend(layer_names(child))
    return names


def set_trainable(model: keras.Model, pattern: str) -> list[str]:
    """Trains only the layers whose names match ``pattern`` (e.g. ``"fc7*|fc8*"``).

    A matching layer trains with all its sub-layers; every other layer is frozen
    (``trainable = False``). A layer that only contains matching layers (a nested model)
    stays trainable with its other sub-layers and its own weights frozen. Frozen
    ``BatchNormalization`` layers run in inference mode (Keras 3: moving statistics are
    used and not updated). Call it before ``compile``. Returns the names of the matching
    layers in model order; an alternative that matches no layer is a ValueError naming the
    closest layer names.
    """
    alternatives = split_pattern(pattern)
    check_all_match(pattern, layer_names(model))
    # Reset every layer; on TensorFlow `x.trainable = True` is skipped when x.trainable is
    # already True (KerasAutoTrackable short-cuts `self.a = self.a`), hence the False first.
    model.trainable = False
    model.trainable = True
    trainable = []

    def freeze_all_but_matches(layer) -> bool:
        keep = False
        for child in _sublayers(layer):
            if matches(alternatives, child.name):
                trainable.append(child.name)
                keep = True
            elif freeze_all_but_matches(child):
                for variable in child._trainable_variables:
                    variable.trainable = False
                keep = True
            else:
                child.trainable = False
        return keep

    freeze_all_but_matches(model)
    return trainable
