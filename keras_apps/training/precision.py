"""Numeric precision of training and inference as Keras dtype policies.

``"float32"``; ``"bfloat16"`` (``mixed_bfloat16``: bfloat16 compute, float32 variables; fast
on CPUs with AVX512-BF16/AMX and on recent GPUs/TPUs); ``"float16"`` (``mixed_float16``: a
GPU format; ``compile`` then wraps the optimizer in a ``LossScaleOptimizer``).
"""

from __future__ import annotations

import contextlib

import keras

PRECISIONS = ("float32", "bfloat16", "float16")
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def policy_name(precision: str) -> str:
    """The Keras dtype-policy name of ``precision`` (one of :data:`PRECISIONS`, or that
    policy name itself)."""
    if precision in _POLICIES:
        return _POLICIES[precision]
    if precision in _POLICIES.values():
        return precision
    raise ValueError(
        f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)} (Keras "
        f"policies {', '.join(_POLICIES.values())} are accepted too)."
    )


@contextlib.contextmanager
def precision_policy(precision: str):
    """Sets the global Keras dtype policy for ``precision`` while the block runs (build the
    model inside it) and restores the previous policy after; yields the policy."""
    name = policy_name(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield keras.config.dtype_policy()
    finally:
        keras.config.set_dtype_policy(previous)
