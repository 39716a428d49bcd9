"""Growing a trained network: DA-, WA-, DWA- and WWA-CNN (Wang, Ramanan, Hebert, CVPR 2017).

A network is read as ``representation -> classifier head``. The classifier is the last layer
with weights (a ``Dense``, or NIN's 1x1 ``Conv2D``), its head the weightless layers after it
(global pooling, the softmax); the *top representation layer* ``L_K`` is the nearest
``Dense``, ``Conv2D`` or global-pooling layer below the classifier (AlexNet/VGG ``fc7``,
ResNet ``avg_pool``, NIN ``cccp5``).

:func:`grow` returns a new functional model; the given one is not changed. Every layer of
the old network is re-created from its config with its weights copied (bit-identical). A
layer whose input gains units (the classifier over a widened ``fc7``, ``fc7`` over a widened
``fc6``) keeps its old kernel rows and gets zero rows for the new inputs, so before any
training the new units do not change what the old ones compute (with ``normalize=False``
the source head reproduces the source network exactly).

- ``"depth"`` (DA-CNN, Sec. 4.1): a new top layer ``fc_a`` of ``units`` ReLU units after
  ``L_K`` (a 1x1 convolution when ``L_K`` is a feature map), ``h_a = f(W_a h_K)``, feeds the
  new classifier.
- ``"width"`` (WA-CNN, Sec. 4.2): ``at`` gets ``units`` new units ``at_plus`` reading the
  same input (for a global pooling layer: a ReLU 1x1 convolution on the map it pools, pooled
  the same way); the layer's output is the concatenation ``[old, new]``. With ``normalize``
  each block is L2-normalised and scaled per channel (:class:`L2NormalizeScale`, Eq. 1-2).
- ``"depth_width"`` (DWA-CNN): ``"width"`` at ``at`` by ``units``, then ``"depth"`` with
  ``depth_units`` (default: the width of ``at``).
- ``"recursive_width"`` (WWA-CNN): ``at`` widened by ``units`` and the representation layer
  before it by ``units // 2`` (the paper's S6 = S7 / 2).

The new layers of growth ``g`` (1 for the first, 2 for a grown network grown again) are
named with the suffix ``_g<g>`` (``fc7_plus_g1``, ``fc7_l2norm_g1``, ``fc_a_g2``); the new
classifier keeps the old classifier's names (``predictions``), and with ``keep_source`` the
old classifier head lives on as output ``task<g-1>`` (``task0``: the source task) with
layers prefixed ``task<g-1>_``. In width modes the source head reads the widened layer
(zero weights from the new units); in depth mode it stays on ``L_K`` (``fc_a`` adapts to the
target task).
"""

from __future__ import annotations

import math
import re

import keras
import numpy as np

from keras_apps import graph
from keras_apps.layers import L2NormalizeScale

MODES = ("depth", "width", "depth_width", "recursive_width")
#: The paper's names of the modes, used in model names (``alexnet_wa``).
ABBREVIATIONS = {"depth": "da", "width": "wa", "depth_width": "dwa", "recursive_width": "wwa"}
SCENARIOS = ("new", "fc7-new", "fc6-new", "all")

_UNIT_LAYERS = (keras.layers.Dense, keras.layers.Conv2D)
_GLOBAL_POOLING = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
#: Per-channel layers that belong to the block of the unit layer before them.
_BLOCK_LAYERS = (
    keras.layers.BatchNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
)
#: Layers that pass a representation on unchanged in its channel layout.
_PASS_THROUGH = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianDropout,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    *_GLOBAL_POOLING,
)
_GENERATION = re.compile(r"_g(\d+)$")
_TASK = re.compile(r"task(\d+)$")


# --------------------------------------------------------------------------- graph reading


def _node(model, layer):
    return graph._own_node(model, layer)


def _producer(tensor):
    return tensor._keras_history.operation


def _input_layer_of(model, layer):
    """The layer producing the single input of ``layer`` in ``model`` (None: several)."""
    inputs = _node(model, layer).input_tensors
    return _producer(inputs[0]) if len(inputs) == 1 else None


def _consumers(model, layer) -> list:
    out = _node(model, layer).outputs[0]
    own = {id(node) for nodes in model._nodes_by_depth.values() for node in nodes}
    return [
        candidate
        for candidate in model.layers
        for node in candidate._inbound_nodes
        if id(node) in own and any(t is out for t in node.input_tensors)
    ]


def _output_tensors(model) -> dict:
    """``{key: tensor}`` of the model's outputs (``"predictions"`` for a single output)."""
    if isinstance(model.output, dict):
        if "predictions" not in model.output:
            raise ValueError(
                f"{model.name!r} has outputs {sorted(model.output)}; growth needs a classifier "
                "output 'predictions' (and optionally the task heads of earlier growths)."
            )
        return dict(model.output)
    if len(model.outputs) != 1:
        raise ValueError(
            f"grow() takes classifiers with one output or a dict of task heads; {model.name!r} "
            f"has {len(model.outputs)} outputs."
        )
    return {"predictions": model.outputs[0]}


def _head(model, tensor) -> list:
    """The head ending in ``tensor``: ``[classifier, weightless layers...]`` (input order)."""
    chain = []
    layer = _producer(tensor)
    while not layer.weights:
        if isinstance(layer, keras.layers.InputLayer):
            raise ValueError(f"Model {model.name!r} has no classifier layer with weights.")
        chain.append(layer)
        layer = _input_layer_of(model, layer)
        if layer is None:
            raise ValueError(
                f"Cannot find the classifier of {model.name!r}: {chain[-1].name!r} merges several "
                "inputs before any layer with weights."
            )
    if not isinstance(layer, _UNIT_LAYERS):
        raise ValueError(
            f"The classifier of {model.name!r} must be a Dense or Conv2D layer, got "
            f"{layer.name!r} ({type(layer).__name__})."
        )
    return [layer, *reversed(chain)]


def _is_growth_concat(layer) -> bool:
    return isinstance(layer, keras.layers.Concatenate) and bool(re.search(r"_concat_g\d+$", layer.name))


def _old_unit_of(model, layer):
    """The unit layer whose block ends in ``layer`` (through a growth concatenation: its
    first, oldest block)."""
    while layer is not None and not isinstance(layer, keras.layers.InputLayer):
        if isinstance(layer, (*_UNIT_LAYERS, *_GLOBAL_POOLING)):
            return layer
        if _is_growth_concat(layer):
            layer = _producer(_node(model, layer).input_tensors[0])
        elif isinstance(layer, (*_BLOCK_LAYERS, L2NormalizeScale)):
            layer = _input_layer_of(model, layer)
        else:
            return None
    return None


def _representation_layers(model, classifier) -> list:
    """Unit layers (Dense, Conv2D) and global poolings below the classifier, top first,
    following single inputs through per-channel, pass-through and growth layers."""
    found = []
    layer = _input_layer_of(model, classifier)
    while layer is not None and not isinstance(layer, keras.layers.InputLayer):
        if isinstance(layer, (*_UNIT_LAYERS, *_GLOBAL_POOLING)) or _is_growth_concat(layer):
            unit = _old_unit_of(model, layer)
            if unit is None:
                break
            found.append(unit)
            layer = _input_layer_of(model, unit)
            continue
        if not isinstance(layer, (*_BLOCK_LAYERS, *_PASS_THROUGH, L2NormalizeScale)):
            break
        layer = _input_layer_of(model, layer)
    return found


def _block_chain(model, unit_layer) -> list:
    """The per-channel layers right after ``unit_layer`` (BatchNorm, activation)."""
    chain, layer = [], unit_layer
    if isinstance(unit_layer, _GLOBAL_POOLING):
        return chain
    while True:
        consumers = _consumers(model, layer)
        if len(consumers) != 1 or not isinstance(consumers[0], _BLOCK_LAYERS):
            return chain
        layer = consumers[0]
        chain.append(layer)


def _block_end(model, unit_layer):
    """Where the units of ``unit_layer``'s block are complete: after its per-channel layers,
    its scale layer and the concatenations of earlier growths of the same layer."""
    chain = _block_chain(model, unit_layer)
    end = chain[-1] if chain else unit_layer
    while True:
        consumers = _consumers(model, end)
        if len(consumers) != 1:
            return end
        nxt = consumers[0]
        if isinstance(nxt, L2NormalizeScale) or (
            _is_growth_concat(nxt) and nxt.name.startswith(f"{unit_layer.name}_concat_g")
            and _node(model, nxt).input_tensors[0] is _node(model, end).outputs[0]
        ):
            end = nxt
        else:
            return end


def _width(tensor) -> int:
    return int(tensor.shape[-1])


def generation(model) -> int:
    """How many times ``model`` was grown or transferred (0 for a network that never was)."""
    found = [int(m.group(1)) for layer in model.layers if (m := _GENERATION.search(layer.name))]
    if isinstance(model.output, dict):
        found += [int(m.group(1)) + 1 for key in model.output if (m := _TASK.fullmatch(key))]
    return max(found, default=0)


def _check_model(model) -> keras.Model:
    if isinstance(model, str):
        raise TypeError(
            f"grow() takes a built keras.Model; build the registry model first: "
            f"keras_apps.build({model!r}, weights=...)."
        )
    return graph._resolve_model(model, function="grow", build_kwargs={})


def _check_positive_int(argument, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{argument}` must be a positive integer, got {value!r}.")
    return int(value)


def top_representation_layer(model) -> str:
    """Name of the top representation layer ``L_K`` of ``model`` (what ``at`` defaults to)."""
    model = _check_model(model)
    classifier = _head(model, _output_tensors(model)["predictions"])[0]
    layers = _representation_layers(model, classifier)
    if not layers:
        raise ValueError(
            f"{model.name!r} has no Dense, Conv2D or global-pooling layer below its classifier "
            f"{classifier.name!r}."
        )
    return layers[0].name


# --------------------------------------------------------------------------- rebuilding


class _Rebuilder:
    """Replays ``model`` on a new input with fresh copies of its layers (weights copied),
    widening the blocks named in ``widen``."""

    def __init__(self, model, *, g, normalize, scale_init, seed):
        self.model = model
        self.g = g
        self.normalize = normalize
        self.scale_init = scale_init
        self.seed = seed
        self.copies = {}
        self.expanded = {}  # id(layer) -> input width of its old kernel
        self.widen = {}  # id(block end) -> (unit layer, new units)
        self.block_inputs = {}  # id(unit layer) -> its replayed input
        self.produced = {}  # id(layer) -> its replayed output
        self.rename = {}

    def initializer(self):
        if self.seed is not None:
            self.seed += 1
        return keras.initializers.GlorotUniform(seed=self.seed)

    def _copy(self, layer):
        if id(layer) not in self.copies:
            config = layer.get_config()
            if id(layer) in self.rename:
                config["name"] = self.rename[id(layer)]
            self.copies[id(layer)] = layer.__class__.from_config(config)
        return self.copies[id(layer)]

    def operation(self, layer):
        copy = self._copy(layer)
        starts = {id(unit) for unit, _ in self.widen.values()}

        def call(*args, **kwargs):
            self._note_wider_input(layer, args)
            if id(layer) in starts:
                self.block_inputs[id(layer)] = args[0]
            out = copy(*args, **kwargs)
            if id(layer) in self.widen:
                out = self._widened(layer, out)
            self.produced[id(layer)] = out
            return out

        return call

    def _note_wider_input(self, layer, args):
        tensors = [t for t in keras.tree.flatten(args) if hasattr(t, "shape")]
        old = _node(self.model, layer).input_tensors
        if len(tensors) != 1 or len(old) != 1 or _width(tensors[0]) == _width(old[0]):
            return
        if isinstance(layer, _UNIT_LAYERS):
            self.expanded[id(layer)] = _width(old[0])
        elif not isinstance(layer, (*_PASS_THROUGH, keras.layers.Activation)) and layer.weights:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) reads the widened representation "
                "but is neither Dense nor Conv2D, so its weights for the new units are undefined; "
                "grow a layer whose consumers are Dense or Conv2D layers."
            )
        elif isinstance(layer, keras.layers.Flatten):
            raise ValueError(
                f"Layer {layer.name!r} (Flatten) reads the widened map: the layer after it would "
                "see the new channels interleaved; grow a Dense or global-pooled layer."
            )

    def _widened(self, end_layer, old_out):
        unit_layer, units = self.widen[id(end_layer)]
        name = unit_layer.name
        new = self._new_block(unit_layer, units, self.block_inputs[id(unit_layer)])
        grown_before = _is_growth_concat(end_layer)
        if self.normalize:
            if not grown_before and not isinstance(end_layer, L2NormalizeScale):
                old_out = L2NormalizeScale(self.scale_init, name=f"{name}_l2norm_g{self.g}")(old_out)
            new = L2NormalizeScale(self.scale_init, name=f"{name}_plus_l2norm_g{self.g}")(new)
        return keras.layers.Concatenate(axis=-1, name=f"{name}_concat_g{self.g}")([old_out, new])

    def _new_block(self, unit_layer, units, block_input):
        """``units`` new units beside ``unit_layer`` reading its input, through fresh copies
        of the per-channel layers of its block."""
        g = self.g
        if isinstance(unit_layer, _GLOBAL_POOLING):
            x = keras.layers.Conv2D(
                units, 1, activation="relu", kernel_initializer=self.initializer(),
                name=f"{unit_layer.name}_plus_conv_g{g}",
            )(block_input)
            config = unit_layer.get_config()
            config["name"] = f"{unit_layer.name}_plus_g{g}"
            return unit_layer.__class__.from_config(config)(x)
        config = unit_layer.get_config()
        config["name"] = f"{unit_layer.name}_plus_g{g}"
        config["units" if isinstance(unit_layer, keras.layers.Dense) else "filters"] = units
        config["kernel_initializer"] = keras.initializers.serialize(self.initializer())
        x = unit_layer.__class__.from_config(config)(block_input)
        for layer in _block_chain(self.model, unit_layer):
            config = layer.get_config()
            config["name"] = f"{layer.name}_plus_g{g}"
            x = layer.__class__.from_config(config)(x)
        return x

    def copy_weights(self):
        for layer in self.model.layers:
            copy = self.copies.get(id(layer))
            if copy is None or not layer.weights:
                continue
            old_width = self.expanded.get(id(layer))
            if old_width is None:
                copy.set_weights(layer.get_weights())
                continue
            weights = []
            for old, new in zip(layer.get_weights(), copy.get_weights()):
                if old.shape == new.shape:
                    weights.append(old)
                    continue
                kernel = np.zeros(new.shape, old.dtype)  # zero weights from the new units
                kernel[..., :old_width, :] = old
                weights.append(kernel)
            copy.set_weights(weights)


def _widenable(model, name, representation):
    if name not in [layer.name for layer in representation]:
        layer = graph.get_layer(model, name)
        allowed = ", ".join(repr(layer.name) for layer in representation)
        raise ValueError(
            f"`at`={name!r} ({type(layer).__name__}) is not a representation layer of "
            f"{model.name!r} that growth can widen: it must be a Dense, Conv2D or global-pooling "
            f"layer reaching the classifier through per-channel layers only; candidates: {allowed}."
        )
    return graph.get_layer(model, name)


def grow(
    model: keras.Model,
    mode: str,
    *,
    at: str | None = None,
    units: int | None = None,
    classes: int | None = None,
    normalize: bool = True,
    scale_init: float = 10.0,
    depth_units: int | None = None,
    keep_source: bool = True,
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """A developmental network grown from ``model`` (see the module docstring).

    Args:
        model: a functional classifier (any registered family whose representation ends in
            Dense, Conv2D or global-pooled layers), or a model grown before.
        mode: ``"depth"``, ``"width"``, ``"depth_width"`` or ``"recursive_width"``.
        at: the layer to widen / to add the new layer after; default the top
            representation layer (:func:`top_representation_layer`). ``"depth"`` needs the
            top layer (its new layer feeds the classifier).
        units: new units (width: added to ``at``; depth: size of ``fc_a``). Default for
            ``"depth"``: the width of ``at``.
        classes: classes of the new classifier (the target task); default those of the old.
        normalize: L2-normalise and scale each block (old units, each growth's new units;
            in depth mode ``fc_a``) with :class:`~keras_apps.layers.L2NormalizeScale`.
        scale_init: initial per-channel scale (> 0; the paper: 10 or 20).
        depth_units: size of ``fc_a`` in ``"depth_width"`` (default: the width of ``at``).
        keep_source: keep the old classifier head as output ``task<g-1>`` (learning without
            forgetting); the model's outputs are then ``{"predictions", "task0", ...}``.
        seed: seeds the initialisers of the new layers (None: Keras' global seed).
        name: the new model's name (default ``<model>_<da|wa|dwa|wwa>``).
    """
    model = _check_model(model)
    if mode not in MODES:
        raise ValueError(f"Unknown growth mode {mode!r}; choose one of {', '.join(MODES)}.")
    if not isinstance(normalize, bool):
        raise TypeError(f"`normalize` must be True or False, got {normalize!r}.")
    if not isinstance(keep_source, bool):
        raise TypeError(f"`keep_source` must be True or False, got {keep_source!r}.")
    if (
        isinstance(scale_init, bool)
        or not isinstance(scale_init, (int, float))
        or not math.isfinite(scale_init)
        or scale_init <= 0
    ):
        raise ValueError(f"`scale_init` must be a finite number > 0 (the paper: 10 or 20), got {scale_init!r}.")
    return _grow(
        model, mode, at=at, units=units, classes=classes, normalize=normalize,
        scale_init=float(scale_init), depth_units=depth_units, keep_source=keep_source,
        seed=seed, name=name,
    )


def transfer(
    model: keras.Model,
    *,
    classes: int | None = None,
    keep_source: bool = True,
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """Classic fine-tuning's target network (Sec. 3): the same representation (weights
    copied) with a fresh classifier of ``classes``, the old head kept as ``task<g-1>``."""
    model = _check_model(model)
    return _grow(
        model, None, at=None, units=None, classes=classes, normalize=False, scale_init=10.0,
        depth_units=None, keep_source=keep_source, seed=seed, name=name,
    )


def _grow(model, mode, *, at, units, classes, normalize, scale_init, depth_units, keep_source, seed, name):
    outputs = _output_tensors(model)
    head = _head(model, outputs["predictions"])
    classifier = head[0]
    representation = _representation_layers(model, classifier)
    if not representation:
        raise ValueError(
            f"{model.name!r} has no Dense, Conv2D or global-pooling layer below its classifier "
            f"{classifier.name!r}: nothing to grow."
        )
    top = representation[0]
    if at is None:
        at_layer = top
    else:
        at_layer = _widenable(model, at, representation)
    if classes is None:
        classes = _width(outputs["predictions"])
    classes = _check_positive_int("classes", classes)
    g = generation(model) + 1
    rebuild = _Rebuilder(model, g=g, normalize=normalize, scale_init=scale_init, seed=seed)

    if mode in ("width", "depth_width", "recursive_width"):
        if units is None:
            raise ValueError(f"`units` (new units of {at_layer.name!r}) is required for mode {mode!r}.")
        units = _check_positive_int("units", units)
        rebuild.widen[id(_block_end(model, at_layer))] = (at_layer, units)
        if mode == "recursive_width":
            index = [layer.name for layer in representation].index(at_layer.name)
            if index + 1 >= len(representation):
                raise ValueError(
                    f"recursive_width widens {at_layer.name!r} and the representation layer "
                    f"before it, but {model.name!r} has none below {at_layer.name!r}."
                )
            if units // 2 < 1:
                raise ValueError(f"recursive_width needs `units` >= 2 (the layer below gets units // 2), got {units}.")
            below = representation[index + 1]
            rebuild.widen[id(_block_end(model, below))] = (below, units // 2)
    depth = None
    if mode in ("depth", "depth_width"):
        if at_layer is not top:
            raise ValueError(
                f"Depth growth adds a new top layer after the top representation layer "
                f"{top.name!r}; `at`={at_layer.name!r} is below it."
            )
        size = units if mode == "depth" else depth_units
        depth = _check_positive_int("units" if mode == "depth" else "depth_units",
                                    size if size is not None else _width(_node(model, top).outputs[0]))
    elif depth_units is not None:
        raise ValueError(f"`depth_units` is only used with mode 'depth_width', not {mode!r}.")

    # Old heads: the current classifier becomes task<g-1>; earlier task heads stay.
    kept = {}
    for key, tensor in outputs.items():
        if not keep_source:
            continue
        if key == "predictions":
            for layer in head:
                rebuild.rename[id(layer)] = f"task{g - 1}_{layer.name}"
            kept[f"task{g - 1}"] = tensor
        else:
            kept[key] = tensor
    input_layer = model.inputs[0]._keras_history.operation
    new_input = keras.Input(
        shape=tuple(model.inputs[0].shape[1:]), name=input_layer.name, dtype=model.inputs[0].dtype
    )
    replayed = graph._replay(model, {input_layer.name: new_input}, rebuild.operation)
    by_id = {id(t): y for t, y in zip(model.outputs, replayed)}
    old_outputs = {key: by_id[id(tensor)] for key, tensor in kept.items()}

    # The representation the new classifier reads: the classifier's input, as replayed.
    x = rebuild.produced[id(_producer(_node(model, classifier).input_tensors[0]))]
    if depth is not None:
        x = _depth_layer(x, depth, rebuild, g, normalize, scale_init, top)
    for index, layer in enumerate(head):
        config = layer.get_config()
        if index == 0:
            config["units" if isinstance(layer, keras.layers.Dense) else "filters"] = classes
            config["kernel_initializer"] = keras.initializers.serialize(rebuild.initializer())
            config["bias_initializer"] = "zeros"
        x = layer.__class__.from_config(config)(x)
    outputs = {"predictions": x, **old_outputs}
    grown = keras.Model(
        new_input, outputs if len(outputs) > 1 else x, name=name or _default_name(model, mode)
    )
    rebuild.copy_weights()
    return grown


def _default_name(model, mode):
    return f"{model.name}_{'ft' if mode is None else ABBREVIATIONS[mode]}"


def _depth_layer(rep, size, rebuild, g, normalize, scale_init, top):
    if len(rep.shape) == 4:
        layer = keras.layers.Conv2D(size, 1, activation="relu", kernel_initializer=rebuild.initializer(),
                                    name=f"fc_a_g{g}")
    elif len(rep.shape) == 2:
        layer = keras.layers.Dense(size, activation="relu", kernel_initializer=rebuild.initializer(),
                                   name=f"fc_a_g{g}")
    else:
        raise ValueError(f"Cannot add a layer after {top.name!r}: output of rank {len(rep.shape)}.")
    x = layer(rep)
    if normalize:
        x = L2NormalizeScale(scale_init, name=f"fc_a_l2norm_g{g}")(x)
    return x


__all__ = ["ABBREVIATIONS", "MODES", "SCENARIOS", "generation", "grow", "top_representation_layer", "transfer"]
