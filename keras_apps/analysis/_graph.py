"""Shape propagation over a functional graph: the ordered operations of a model.

Every counter of this package (MACs, activation memory) reads the same trace: the model's
functional graph walked in Keras' own execution order (``Function._run_through_graph``:
deepest nodes first), with each operation's output shapes recomputed from symbolic inputs
of the requested per-example shape (batch dimension ``None``). Nested functional and
``Sequential`` models are walked inline, so a step is always one leaf operation and its
name is a path (``"backbone/conv1_conv"``). Nothing is executed and the model's own graph
is not modified (``compute_output_spec`` only).
"""

from __future__ import annotations

import dataclasses

import keras
from keras import tree

__all__ = ["Step", "Trace", "is_graph_model", "trace"]


@dataclasses.dataclass(frozen=True)
class Step:
    """One leaf operation of the walked graph.

    Attributes:
        path: ``"outer/inner/layer"`` name of the operation.
        operation: the ``keras.layers.Layer`` (or ``keras.Operation``) that runs.
        inputs: the symbolic tensors it reads (deduplicated, in argument order).
        outputs: the symbolic tensors it produces (batch dimension ``None``).
    """

    path: str
    operation: object
    inputs: tuple
    outputs: tuple


@dataclasses.dataclass(frozen=True)
class Trace:
    """The ordered steps of a model plus its (symbolic) input and output tensors."""

    steps: tuple
    inputs: tuple
    outputs: tuple


def _graph_model(model):
    """The functional graph behind ``model`` (a built ``Sequential`` wraps one)."""
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ValueError(
                f"Sequential model {model.name!r} has no graph yet: give its first layer an "
                "`input_shape` (or `keras.Input`) or call `model.build(input_shape)` first."
            )
        return functional
    if getattr(model, "_nodes_by_depth", None) is None or not hasattr(model, "_run_through_graph"):
        raise TypeError(
            f"{type(model).__name__} {getattr(model, 'name', model)!r} is not a functional or "
            "Sequential keras.Model: a subclassed model has no layer graph to analyse. Wrap it "
            "as `keras.Model(inputs, outputs)` or give it a functional definition."
        )
    return model


def is_graph_model(operation) -> bool:
    """True for operations walked inline (functional models and built ``Sequential``)."""
    if isinstance(operation, keras.Sequential):
        return getattr(operation, "_functional", None) is not None
    return getattr(operation, "_nodes_by_depth", None) is not None and hasattr(
        operation, "_run_through_graph"
    )


def _input_shapes(model, input_shape) -> list[tuple]:
    """Per-example shapes of the model inputs, checked to be fully defined."""
    inputs = model.inputs
    if input_shape is None:
        shapes = [tuple(x.shape[1:]) for x in inputs]
    else:
        if len(inputs) == 1 and input_shape and not isinstance(input_shape[0], (tuple, list)):
            input_shape = [input_shape]
        shapes = [tuple(s) for s in input_shape]
        if len(shapes) != len(inputs):
            raise ValueError(
                f"`input_shape` gives {len(shapes)} shape(s) but model {model.name!r} has "
                f"{len(inputs)} input(s) {[tuple(x.shape) for x in inputs]}."
            )
    for x, shape in zip(inputs, shapes):
        if len(shape) != len(x.shape) - 1:
            raise ValueError(
                f"`input_shape` {shape} for input {x.name!r} of model {model.name!r} must have "
                f"{len(x.shape) - 1} entries (the shape without the batch dimension), like "
                f"{tuple(x.shape[1:])}."
            )
        if any(d is None or int(d) < 1 for d in shape):
            raise ValueError(
                f"Input {x.name!r} of model {model.name!r} has the per-example shape {shape} "
                "with undefined or non-positive dimensions: pass a full `input_shape` such as "
                "(224, 224, 3)."
            )
    return [tuple(int(d) for d in s) for s in shapes]


def trace(model, input_shape=None) -> Trace:
    """Walks ``model``'s graph for per-example ``input_shape`` (default: the model's own).

    Args:
        model: a functional or built ``Sequential`` ``keras.Model``.
        input_shape: shape without the batch dimension (``(224, 224, 3)``), or a list of
            them for a multi-input model; ``None`` uses the model's input shapes, which must
            then be fully defined.

    Raises:
        TypeError: ``model`` has no functional graph (a subclassed model).
        ValueError: an input shape is undefined, or an operation rejects the shape.
    """
    graph = _graph_model(model)
    shapes = _input_shapes(graph, input_shape)
    inputs = [
        keras.KerasTensor((None,) + shape, dtype=x.dtype, name=x.name)
        for x, shape in zip(graph.inputs, shapes)
    ]
    steps: list[Step] = []

    def walk(functional, flat_inputs, prefix):
        def call_fn(operation, *args, **kwargs):
            path = f"{prefix}{operation.name}"
            if is_graph_model(operation):
                inner = _graph_model(operation)
                nested_inputs = inner._standardize_inputs(args[0])
                outputs = walk(inner, nested_inputs, f"{path}/")
                return tree.pack_sequence_as(inner._outputs_struct, outputs)
            try:
                outputs = operation.compute_output_spec(*args, **kwargs)
            except Exception as err:
                in_shapes = [tuple(t.shape) for t in _tensors((args, kwargs))]
                raise ValueError(
                    f"Operation {path!r} ({type(operation).__name__}) rejects input shape(s) "
                    f"{in_shapes} while tracing model {model.name!r}: {err}"
                ) from err
            steps.append(
                Step(
                    path=path,
                    operation=operation,
                    inputs=tuple(_tensors((args, kwargs))),
                    outputs=tuple(_tensors(outputs)),
                )
            )
            return outputs

        result = functional._run_through_graph(flat_inputs, call_fn=call_fn)
        return tree.flatten(result)

    outputs = walk(graph, inputs, "")
    return Trace(steps=tuple(steps), inputs=tuple(inputs), outputs=tuple(outputs))


def _tensors(structure) -> list:
    """The distinct ``KerasTensor`` leaves of ``structure``, in order."""
    seen, result = set(), []
    for leaf in tree.flatten(structure):
        if isinstance(leaf, keras.KerasTensor) and id(leaf) not in seen:
            seen.add(id(leaf))
            result.append(leaf)
    return result
