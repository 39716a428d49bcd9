"""Weight memory and an estimate of peak activation memory at inference.

Weights: the bytes of every distinct variable of the model (trainable and non-trainable,
so BatchNormalization's moving statistics are included), ``size * itemsize(dtype)``.

Activations (a liveness estimate over the graph, Canziani et al. 2016 measure the same
quantity on a device): the operations run one at a time in Keras' execution order (see
``keras_apps.analysis._graph``). A tensor's buffer is allocated by its producer and freed
after its last consumer; model inputs live from the start, model outputs to the end. While
an operation runs, its inputs and outputs are live together. The peak is the largest sum
of live buffer sizes over all operations, ``batch_size * prod(per-example shape) *
itemsize(dtype)`` per buffer. Outputs of ``Reshape``, ``Flatten``, ``Identity`` and
dropout/noise layers (identities at inference) alias their input buffer. Not included:
weights, optimizer state, gradients, backend workspace (e.g. im2col buffers) and allocator
fragmentation, so a measured figure is higher.
"""

from __future__ import annotations

import dataclasses
import math
import re

import keras
import numpy as np

from keras_apps.analysis._graph import trace

__all__ = ["ActivationMemory", "activation_memory", "peak_activation_memory", "weight_memory_bytes"]

_ALIASING_LAYERS = tuple(
    cls
    for cls in (
        getattr(keras.layers, name, None)
        for name in (
            "Reshape", "Flatten", "Identity", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
            "SpatialDropout3D", "AlphaDropout", "GaussianDropout", "GaussianNoise",
            "ActivityRegularization",
        )
    )
    if cls is not None
)


def dtype_bytes(dtype) -> int:
    """Bytes per element of a Keras dtype name (``"float32"`` -> 4, ``"bfloat16"`` -> 2)."""
    name = keras.backend.standardize_dtype(dtype)
    if name == "bool":
        return 1
    try:
        return np.dtype(name).itemsize
    except TypeError:
        match = re.search(r"(\d+)", name)
        if match is None:
            raise ValueError(f"Cannot tell the element size of dtype {dtype!r}.") from None
        return max(1, int(match.group(1)) // 8)


def weight_memory_bytes(model: keras.Model) -> int:
    """Bytes of all distinct variables of ``model`` (trainable and non-trainable)."""
    seen, total = set(), 0
    for variable in model.weights:
        key = id(variable)
        if key in seen:
            continue
        seen.add(key)
        total += math.prod(int(d) for d in variable.shape) * dtype_bytes(variable.dtype)
    return total


@dataclasses.dataclass(frozen=True)
class ActivationMemory:
    """Result of the liveness estimate.

    Attributes:
        peak_bytes: peak of the sum of live activation buffers.
        peak_at: path of the operation during which the peak occurs (``"<inputs>"`` when
            only the model inputs are live).
        batch_size: batch size of the estimate.
        per_step: ``(path, live bytes)`` for every operation, in execution order.
    """

    peak_bytes: int
    peak_at: str
    batch_size: int
    per_step: tuple


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    return int(batch_size)


def activation_memory(model: keras.Model, batch_size: int = 1, *, input_shape=None) -> ActivationMemory:
    """Liveness estimate of the activation memory of one inference (module docstring).

    Args:
        model: a functional or built ``Sequential`` ``keras.Model``.
        batch_size: images per batch (every buffer scales linearly with it).
        input_shape: per-example input shape; default the model's own.
    """
    batch_size = _check_batch_size(batch_size)
    walked = trace(model, input_shape)
    buffer_of: dict[int, int] = {}  # id(tensor) -> buffer index
    sizes: list[int] = []
    born: list[int] = []
    last_use: list[int] = []

    def new_buffer(tensor, step_index, path):
        dims = tensor.shape[1:]
        if any(d is None for d in dims):
            raise ValueError(
                f"Output of {path!r} has the undefined shape {tuple(tensor.shape)}; the "
                "activation estimate needs every per-example dimension."
            )
        buffer_of[id(tensor)] = len(sizes)
        sizes.append(math.prod(int(d) for d in dims) * dtype_bytes(tensor.dtype) * batch_size)
        born.append(step_index)
        last_use.append(step_index)

    for tensor in walked.inputs:
        new_buffer(tensor, -1, "<inputs>")
    for index, step in enumerate(walked.steps):
        for tensor in step.inputs:
            buffer = buffer_of[id(tensor)]
            last_use[buffer] = max(last_use[buffer], index)
        aliases = (
            isinstance(step.operation, _ALIASING_LAYERS)
            and len(step.inputs) == 1
            and len(step.outputs) == 1
        )
        for tensor in step.outputs:
            if aliases:
                buffer = buffer_of[id(step.inputs[0])]
                buffer_of[id(tensor)] = buffer
            else:
                new_buffer(tensor, index, step.path)
    end = len(walked.steps)
    for tensor in walked.outputs:
        buffer = buffer_of[id(tensor)]
        last_use[buffer] = max(last_use[buffer], end - 1)

    # Slot 0: before the first operation (inputs only); slot i + 1: while step i runs. A
    # buffer occupies the slots from its producer's to its last consumer's.
    delta = [0] * (end + 2)
    for size, start, stop in zip(sizes, born, last_use):
        delta[start + 1] += size
        delta[stop + 2] -= size
    live = delta[0]
    peak, peak_at = live, "<inputs>"
    per_step = []
    for index, step in enumerate(walked.steps):
        live += delta[index + 1]
        per_step.append((step.path, live))
        if live > peak:
            peak, peak_at = live, step.path
    return ActivationMemory(peak_bytes=peak, peak_at=peak_at, batch_size=batch_size, per_step=tuple(per_step))


def peak_activation_memory(model: keras.Model, batch_size: int = 1, *, input_shape=None) -> int:
    """Peak bytes of live activations during one inference of ``batch_size`` images.

    The liveness estimate of the module docstring: each tensor lives from its producer to
    its last consumer; the peak of the sum of live tensor sizes over the operations.
    """
    return activation_memory(model, batch_size, input_shape=input_shape).peak_bytes
