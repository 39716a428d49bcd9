"""Dense evaluation (OverFeat, Sec. 3.5): a classifier's FC layers as convolutions, run on
images of any size, with offset max pooling (Sec. 3.3), and the geometry of its windows.

    >>> dense = to_dense(model)                         # (N, H, W, 3) -> (N, h, w, classes)
    >>> dense = to_dense(model, offset_pooling=True)    # output stride / s (36 -> 12 px)
    >>> boxes = window_boxes(dense, 281, 317)           # (h, w, 4) windows, (x1, y1, x2, y2)

:func:`to_dense` rebuilds the graph of a functional model layer by layer on an input of
unknown height and width, keeping every layer name and copying the weights exactly: the
first Dense after a Flatten becomes a Conv2D whose kernel covers the flattened map, the
Dense layers after it 1x1 Conv2D layers. :func:`dense_geometry` and :func:`window_boxes`
walk the convolutions and poolings of the dense model to place each output in the input;
:func:`output_size` is the authors' formula for the OverFeat networks and :data:`SCALES`
the paper's multi-scale input sizes (Table 5).
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np

from keras_apps import graph
from keras_apps.layers import (
    L2NormalizeScale,
    LocalResponseNormalization,
    OffsetMaxPooling2D,
    SqueezeExcitation,
)

__all__ = [
    "DenseGeometry",
    "SCALES",
    "dense_geometry",
    "feature_layer",
    "output_size",
    "to_dense",
    "window_boxes",
]

#: Multi-scale evaluation input sizes ``(H, W)``. Accurate model: the paper's Table 5 (6
#: scales, 245x245 to 461x569; classifier maps 1x1 .. 7x10 before offset pooling). Fast
#: model (the paper gives no table for it): the sizes at which the fast network gives the
#: same classifier maps with both offsets of its 2x2 last pooling complete (``H = 231 +
#: 32 (m - 1) + 16`` for an m-position map, as Table 5's sizes are ``221 + 36 (m - 1) +
#: 24``). The small variants have the same formulas, hence the same scales.
SCALES = {
    "overfeat_accurate": ((245, 245), (281, 317), (317, 389), (389, 461), (425, 497), (461, 569)),
    "overfeat_fast": ((247, 247), (279, 311), (311, 375), (375, 439), (407, 471), (439, 535)),
}
SCALES["overfeat_accurate_small"] = SCALES["overfeat_accurate"]
SCALES["overfeat_fast_small"] = SCALES["overfeat_fast"]

#: The authors' dense output size formulas ``h = ((H-k)/s + 1)/P - c``: kind -> (conv1
#: kernel k, conv1 stride s, pooling factor P, c, training size); floor arithmetic, which is
#: what the layers compute (the floors of the successive poolings nest into one).
_FORMULAS = {"fast": (11, 4, 8, 6, 231), "accurate": (7, 2, 18, 5, 221)}
_KINDS = {
    "overfeat_fast": "fast",
    "overfeat_accurate": "accurate",
    "overfeat_fast_small": "fast",
    "overfeat_accurate_small": "accurate",
}
_LAST_POOL = {"fast": 2, "accurate": 3}
_FC_KERNEL = {"fast": 6, "accurate": 5}

#: Layers that keep the spatial grid and act per position / on the channel axis.
_POINTWISE = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.Identity,
    keras.layers.Rescaling,
    LocalResponseNormalization,
    L2NormalizeScale,
)
#: Layers that merge several tensors of the same grid.
_MERGES = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Concatenate,
)
_POOLINGS = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, OffsetMaxPooling2D)
_WINDOWED = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
)


# ------------------------------------------------------------------------------ graph reading


def _nodes(model):
    """The model's own nodes in topological order (inputs first)."""
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            yield node


def _producer(model, tensor):
    """The (layer, node) producing ``tensor`` in ``model``'s graph."""
    layer = tensor._keras_history.operation
    return layer, graph._own_node(model, layer)


def _consumers(model):
    """``id(tensor) -> [layers of model's nodes taking it]``."""
    users = {}
    for node in _nodes(model):
        if node.is_input or not node.operation:
            continue
        for x in node.input_tensors:
            users.setdefault(id(x), []).append(node.operation)
    return users


def _pooling_before(model, flatten) -> keras.layers.Layer:
    """The pooling layer whose map ``flatten`` reads, walking back through pointwise layers."""
    layer = flatten
    node = graph._own_node(model, flatten)
    while True:
        if len(node.input_tensors) != 1:
            break
        layer, node = _producer(model, node.input_tensors[0])
        if isinstance(layer, _POOLINGS):
            return layer
        if not isinstance(layer, _POINTWISE):
            break
    raise ValueError(
        f"No pooling layer before {flatten.name!r} in {model.name!r}: the map it flattens comes "
        f"from {layer.name!r} ({type(layer).__name__}); offset pooling and the feature layer need "
        "a MaxPooling2D followed only by pointwise layers (activations, dropout, normalisation)."
    )


def feature_layer(model: keras.Model) -> str:
    """The name of the last pooling layer before the classifier's Flatten: the feature map the
    OverFeat heads (classification, box regression) read, ``pool5`` of the fast model and
    ``pool6`` of the accurate one. Any conv + FC classifier works; when several heads have
    their own Flatten they must read the same pooling. A model without Flatten (a headless
    or dense model) gives its last pooling layer."""
    model = graph._resolve_model(model, function="feature_layer", build_kwargs={})
    flattens = [layer for layer in model.layers if isinstance(layer, keras.layers.Flatten)]
    if flattens:
        pools = {_pooling_before(model, flatten).name for flatten in flattens}
        if len(pools) > 1:
            raise ValueError(
                f"The Flatten layers of {model.name!r} read different poolings {sorted(pools)}: "
                "there is no single feature layer."
            )
        return pools.pop()
    pools = [layer.name for layer in model.layers if isinstance(layer, _POOLINGS)]
    if not pools:
        raise ValueError(f"{model.name!r} has no pooling layer (MaxPooling2D/AveragePooling2D).")
    return pools[-1]


# ---------------------------------------------------------------------------------- to_dense


def _fc_axis(layer, config):
    """Channel-axis arguments of a layer applied to FC activations (rank 2: axis 1 or -1)
    rewritten for the rank-4 maps (axis -1)."""
    axis = config.get("axis")
    if axis is None:
        return config
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    if any(a not in (1, -1) for a in axes):
        raise ValueError(
            f"to_dense: layer {layer.name!r} ({type(layer).__name__}) acts on axis {axis!r} of the FC "
            "activations; only the feature axis (1 or -1) carries over to the dense maps."
        )
    return {**config, "axis": -1 if not isinstance(axis, (list, tuple)) else [-1]}


def _dense_as_conv(dense, kernel_size, dilation):
    config = dense.get_config()
    if config.get("quantization_config") or getattr(dense, "lora_enabled", False):
        raise ValueError(f"to_dense: Dense layer {dense.name!r} is quantized or has LoRA weights.")
    conv_config = {
        key: config[key]
        for key in (
            "name", "trainable", "dtype", "activation", "use_bias", "kernel_initializer",
            "bias_initializer", "kernel_regularizer", "bias_regularizer", "kernel_constraint",
            "bias_constraint",
        )
        if key in config
    }
    conv_config.update(
        filters=config["units"], kernel_size=tuple(kernel_size), strides=(1, 1), padding="valid",
        dilation_rate=tuple(dilation), data_format="channels_last",
    )
    return keras.layers.Conv2D.from_config(conv_config)


def to_dense(model: keras.Model, offset_pooling: bool = False, *, name: str | None = None) -> keras.Model:
    """The same network and weights as a fully convolutional model on inputs ``(None, None, C)``.

    OverFeat Sec. 3.5: "at test time, these fully connected layers are replaced by
    convolution operations with 1x1 spatial extent". Every layer is rebuilt from its config
    under its own name (weights can be matched by name; ``trainable`` flags are kept, so a
    frozen feature extractor stays frozen):

    - a Flatten of an ``(h, w, C)`` map disappears, and the first Dense after it (its
      ``(h*w*C, units)`` kernel read in Flatten's (h, w, c) order) becomes a
      ``Conv2D(units, (h, w), padding="valid")`` with kernel ``(h, w, C, units)``;
    - the later Dense layers become 1x1 Conv2D layers; Dropout, activations (softmax acts on
      the channel axis, i.e. per position) and normalisations on the feature axis are kept;
    - each output becomes a map ``(N, h', w', units)``; several outputs (heads sharing one
      Flatten, or each with its own Flatten of one feature map: a classifier and a box
      regressor) keep their names and the model's output structure (list or dict keys).

    With ``offset_pooling=True`` the pooling layer before each Flatten (a "valid"
    MaxPooling2D with stride s) becomes :class:`~keras_apps.layers.OffsetMaxPooling2D` and the
    first FC convolution gets ``dilation_rate=s``: output ``(i*s + dy, j*s + dx)`` is the
    classifier on offset ``(dy, dx)``'s pooled map at ``(i, j)`` (Sec. 3.3, Fig. 3); the output
    stride falls by s.

    What the dense output equals. At the training input size it is the classifier's output
    (a 1x1 map). For a network whose layers are all unpadded ("valid"), output ``(i, j)`` on
    a larger image is the classifier run on the window :func:`window_boxes` gives, cropped
    out. OverFeat's conv3..conv5 (conv6) are zero-padded: there output ``(i, j)`` is the FC
    head applied to the corresponding ``(h, w)`` window of the last pooled map of the whole
    image, which differs from the classifier run on the cropped window near the window's
    borders (the crop is padded with zeros where the dense run sees real neighbours).

    Args:
        model: a functional model whose classifier is a chain of Dense layers after a
            Flatten of a conv/pool feature map (or a fully convolutional model). Global
            poolings, reshapes and nested models are errors naming the layer.
        offset_pooling: replace the last pooling by offset max pooling (see above).
        name: name of the dense model (default: the model's own name).
    """
    model = graph._resolve_model(model, function="to_dense", build_kwargs={})
    if not isinstance(offset_pooling, bool):
        raise TypeError(f"`offset_pooling` must be True or False, got {offset_pooling!r}.")

    offset_pools = {}
    if offset_pooling:
        for layer in model.layers:
            if isinstance(layer, keras.layers.Flatten):
                pool = _pooling_before(model, layer)
                if not isinstance(pool, keras.layers.MaxPooling2D) or pool.padding != "valid":
                    raise ValueError(
                        f"offset_pooling needs a 'valid' MaxPooling2D before the Flatten; "
                        f"{pool.name!r} is a {type(pool).__name__} with padding {pool.padding!r}."
                    )
                offset_pools[id(pool)] = pool
        if not offset_pools:
            raise ValueError(f"offset_pooling=True needs a Flatten after a pooling; {model.name!r} has none.")

    tensors = {}   # id(original tensor) -> new tensor
    flat = {}      # id(original tensor) -> (h, w, dilation): a flattened map awaiting its Dense
    fc = set()     # ids of original rank-2 tensors now carried as rank-4 maps
    offset = {}    # id(original tensor) -> stride s of the offset pooling that produced it
    copies = []    # (original layer, new layer, weight transform)
    made = {}      # id(original layer) -> (its new layer, how a Dense was converted)

    new_inputs = []
    for x in model.inputs:
        input_layer = x._keras_history.operation
        shape = tuple(x.shape[1:])
        if len(shape) == 3:
            shape = (None, None, shape[-1])
        new = keras.Input(shape=shape, name=input_layer.name, dtype=x.dtype)
        tensors[id(x)] = new
        new_inputs.append(new)

    def fail(layer, why):
        raise ValueError(
            f"to_dense: layer {layer.name!r} ({type(layer).__name__}) of {model.name!r} {why}"
        )

    for node in _nodes(model):
        layer = node.operation
        if node.is_input or not layer:
            continue
        ins = list(node.input_tensors)
        if any(id(x) not in tensors for x in ins):
            fail(layer, "takes a tensor that is not computed from the model's inputs.")
        out = node.outputs[0]
        if len(node.outputs) != 1:
            fail(layer, "has several outputs; to_dense rebuilds single-output layers only.")
        is_fc = any(id(x) in fc or id(x) in flat for x in ins)
        is_offset = [offset.get(id(x)) for x in ins if id(x) in offset]

        if isinstance(layer, keras.layers.Flatten):
            (x,) = ins
            shape = tuple(x.shape[1:])
            if len(shape) != 3 or None in shape:
                fail(layer, f"flattens a tensor of shape {shape}; to_dense needs a known (h, w, C) map.")
            if is_fc:
                fail(layer, "flattens FC activations.")
            dilation = is_offset[0] if is_offset else (1, 1)
            tensors[id(out)] = tensors[id(x)]
            flat[id(out)] = (shape[0], shape[1], dilation)
            continue

        if is_offset and not isinstance(layer, _POINTWISE):
            fail(layer, "reads the offset-pooled map; only pointwise layers and the Flatten may.")

        if isinstance(layer, keras.layers.Dense):
            (x,) = ins
            if id(x) in flat:
                h, w, dilation = flat[id(x)]
                kind = ("conv", h, w, dilation)
            elif id(x) in fc:
                kind = ("conv", 1, 1, (1, 1))
            elif len(x.shape) == 4:
                kind = ("same",)
            else:
                fail(layer, f"takes a rank-{len(x.shape)} tensor that is no flattened map.")
            if id(layer) not in made:
                if kind[0] == "conv":
                    _, h, w, dilation = kind
                    new_layer = _dense_as_conv(layer, (h, w), dilation)
                    channels = layer.kernel.shape[0] // (h * w)
                    copies.append((layer, new_layer, lambda k, h=h, w=w, c=channels: k.reshape(h, w, c, -1)))
                else:
                    new_layer = layer.__class__.from_config(layer.get_config())
                    copies.append((layer, new_layer, None))
                made[id(layer)] = (new_layer, kind)
            new_layer, made_kind = made[id(layer)]
            if made_kind != kind:
                fail(layer, "is called on inputs that need different convolutions (shared Dense layer).")
            tensors[id(out)] = new_layer(tensors[id(x)])
            fc.add(id(out))
            continue

        if isinstance(layer, keras.Model):
            fail(layer, "is a nested model; flatten it into one functional graph first.")
        if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)):
            fail(layer, "pools globally; dense evaluation needs a Flatten -> Dense classifier.")

        config = layer.get_config()
        if is_fc:
            if not isinstance(layer, _POINTWISE + _MERGES):
                fail(layer, "acts on FC activations in a way that does not carry over to maps; "
                            "allowed after Flatten: Dense, activations, dropout, normalisations, merges.")
            if any(id(x) in flat for x in ins):
                fail(layer, "sits between Flatten and the first Dense; put it before the Flatten.")
            if config.get("noise_shape") is not None:
                fail(layer, f"has noise_shape {config['noise_shape']!r}, which is for rank-2 inputs.")
            config = _fc_axis(layer, config)
        if id(layer) in made:
            new_layer = made[id(layer)][0]  # a shared layer stays shared
        elif id(layer) in offset_pools:
            new_layer = OffsetMaxPooling2D(
                layer.pool_size, layer.strides, name=layer.name, trainable=layer.trainable,
                dtype=layer.dtype_policy,
            )
        else:
            new_layer = layer.__class__.from_config(config)
            copies.append((layer, new_layer, None))
        made[id(layer)] = (new_layer, None)
        args, kwargs = node.arguments.fill_in(tensors)
        tensors[id(out)] = new_layer(*args, **kwargs)
        if is_fc:
            fc.add(id(out))
        if id(layer) in offset_pools:
            offset[id(out)] = tuple(layer.strides)
        elif is_offset:
            offset[id(out)] = is_offset[0]

    for original, new_layer, transform in copies:
        weights = original.get_weights()
        if transform is not None and weights:
            weights = [transform(weights[0]), *weights[1:]]
        new_layer.set_weights(weights)

    outputs = [tensors[id(x)] for x in model.outputs]
    inputs = new_inputs[0] if len(new_inputs) == 1 else new_inputs
    return keras.Model(inputs, graph._pack_outputs(model, outputs), name=name or model.name)


# ---------------------------------------------------------------------------------- geometry


class DenseGeometry(NamedTuple):
    """Where a dense model's outputs lie in its input, per axis ``(y, x)`` in pixels: output
    ``(i, j)`` covers rows ``i*stride[0] + offset[0]`` to that ``+ field_of_view[0]``
    (exclusive) and the columns alike."""

    field_of_view: tuple
    stride: tuple
    offset: tuple


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _walk(model, image_size=None):
    """Per output: ``(field_of_view, jump, offset, size)`` per axis (size when ``image_size``
    is given), walking the windowed layers; see :func:`dense_geometry` for the rules."""
    model = graph._resolve_model(model, function="dense_geometry", build_kwargs={})
    state = {}
    for x in model.inputs:
        size = tuple(image_size) if image_size is not None else (None, None)
        state[id(x)] = ((1, 1), (1, 1), (0, 0), size)

    for node in _nodes(model):
        layer = node.operation
        if node.is_input or not layer:
            continue
        ins = [state[id(x)] for x in node.input_tensors if id(x) in state]
        if not ins:
            continue
        if len(set(ins)) != 1:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) of {model.name!r} merges maps with "
                f"different windows {ins}: no single geometry."
            )
        fov, jump, off, size = ins[0]

        if isinstance(layer, (keras.layers.Flatten, keras.layers.GlobalAveragePooling2D,
                              keras.layers.GlobalMaxPooling2D, keras.layers.Reshape)):
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) of {model.name!r} removes the "
                "spatial grid: pass the dense model (to_dense(model))."
            )
        if isinstance(layer, (OffsetMaxPooling2D, *_WINDOWED)):
            if isinstance(layer, OffsetMaxPooling2D):
                kernel, strides, dilation, padding = layer.pool_size, (1, 1), (1, 1), "valid"
            elif isinstance(layer, _POOLINGS):
                kernel, strides, dilation, padding = layer.pool_size, layer.strides, (1, 1), layer.padding
            else:
                kernel, strides = layer.kernel_size, layer.strides
                dilation, padding = _pair(layer.dilation_rate), layer.padding
            if getattr(layer, "data_format", "channels_last") != "channels_last":
                raise ValueError(f"Layer {layer.name!r} is channels_first; the geometry reads channels_last.")
            new = [[], [], [], []]
            for axis in range(2):
                k_eff = dilation[axis] * (kernel[axis] - 1) + 1
                n = size[axis]
                if padding == "valid":
                    new[0].append(fov[axis] + (k_eff - 1) * jump[axis])
                    new[2].append(off[axis])
                    new[3].append(None if n is None else (n - k_eff) // strides[axis] + 1)
                elif strides[axis] == 1:
                    new[0].append(fov[axis])  # zero-padded to keep the size: the grid stays
                    new[2].append(off[axis])
                    new[3].append(n)
                else:
                    raise ValueError(
                        f"Layer {layer.name!r} ({type(layer).__name__}) has padding 'same' with "
                        f"stride {strides[axis]}: where its outputs lie depends on the input size; "
                        "dense geometry takes 'valid' layers and stride-1 'same' layers."
                    )
                new[1].append(jump[axis] * strides[axis])
            fov, jump, off, size = (tuple(v) for v in new)
        elif isinstance(layer, keras.layers.ZeroPadding2D):
            (top, bottom), (left, right) = layer.padding
            off = (off[0] - top * jump[0], off[1] - left * jump[1])
            size = tuple(None if n is None else n + a + b for n, a, b in zip(size, (top, left), (bottom, right)))
        elif isinstance(layer, keras.layers.Cropping2D):
            (top, bottom), (left, right) = layer.cropping
            off = (off[0] + top * jump[0], off[1] + left * jump[1])
            size = tuple(None if n is None else n - a - b for n, a, b in zip(size, (top, left), (bottom, right)))
        elif not isinstance(layer, _POINTWISE + _MERGES + (keras.layers.Dense, SqueezeExcitation,
                                                           keras.layers.SpatialDropout2D)):
            raise ValueError(
                f"dense_geometry does not know how layer {layer.name!r} ({type(layer).__name__}) "
                "moves the spatial grid (known: convolutions, poolings, padding, cropping, "
                "pointwise layers)."
            )
        for x in node.outputs:
            state[id(x)] = (fov, jump, off, size)

    results = {state[id(x)] for x in model.outputs}
    if len(results) != 1:
        raise ValueError(f"The outputs of {model.name!r} lie on different grids: {sorted(results)}.")
    return results.pop()


def dense_geometry(model: keras.Model) -> DenseGeometry:
    """``(field_of_view, stride, offset)`` of a dense model's outputs in input pixels, each a
    ``(y, x)`` pair (a :class:`DenseGeometry`), from its convolutions and poolings.

    Walking from the input, an unpadded ("valid") layer of kernel k, dilation d and stride s
    widens the window by ``(d (k-1)) * jump`` and multiplies the jump (stride) by s; a
    zero-padded stride-1 layer ("same", OverFeat's 3x3 convolutions) keeps the grid: output
    p stands for input position p, so it neither widens nor moves the window. The window is
    then the crop a classifier at the training size reads (231x231 at stride 32 for the
    fast model, 221x221 at stride 36 for the accurate one; with offset pooling the stride is
    16 and 12), not the zero-padded layers' theoretical receptive field. ZeroPadding2D and
    Cropping2D move the offset. All outputs must share one grid (heads after one feature map).
    """
    fov, jump, off, _ = _walk(model)
    return DenseGeometry(fov, jump, off)


def window_boxes(model: keras.Model, image_height: int, image_width: int) -> np.ndarray:
    """The windows of a dense model's outputs on an ``image_height x image_width`` input:
    float32 ``(h, w, 4)``, ``[i, j] = (x1, y1, x2, y2)`` in input pixels (continuous
    coordinates, ``x2 - x1`` = the field of view). OverFeat's unpadded conv1/conv2 and floor
    poolings keep every window inside the image; a network with ZeroPadding2D can have
    windows past its border. An input too small for one output is a ValueError."""
    for label, value in (("image_height", image_height), ("image_width", image_width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{label}` must be a positive integer, got {value!r}.")
    fov, jump, off, (h, w) = _walk(model, (int(image_height), int(image_width)))
    if h < 1 or w < 1:
        raise ValueError(
            f"An input of {image_height}x{image_width} is too small for {model.name!r}: its outputs "
            f"need at least {fov[0]}x{fov[1]} pixels (the field of view)."
        )
    y1 = (np.arange(h) * jump[0] + off[0]).astype("float32")
    x1 = (np.arange(w) * jump[1] + off[1]).astype("float32")
    boxes = np.empty((h, w, 4), "float32")
    boxes[..., 0] = x1[None, :]
    boxes[..., 1] = y1[:, None]
    boxes[..., 2] = x1[None, :] + fov[1]
    boxes[..., 3] = y1[:, None] + fov[0]
    return boxes


def output_size(name: str, size: int, *, offset_pooling: bool = False) -> int:
    """The dense output size of an OverFeat network on an input side ``size`` (the authors'
    formulas): fast ``((H-11)/4 + 1)/8 - 6``, accurate ``((H-7)/2 + 1)/18 - 5``, in floor
    arithmetic (each pooling drops the rows that do not fill a window, which nests into one
    floor). With ``offset_pooling`` the last pooling (window = stride = s: 2 fast, 3
    accurate) runs at stride 1 and the FC kernel (K = 6, 5) is dilated by s: ``M - s + 1 -
    s (K - 1)`` positions, M the side of the map before the last pooling.

    ``name``: a registered OverFeat name (``overfeat_fast``, ``overfeat_accurate`` or their
    ``_small`` variants: same formulas). An input smaller than the training size (231, 221)
    is a ValueError.
    """
    kind = _KINDS.get(name)
    if kind is None:
        raise ValueError(f"`name` must be one of {', '.join(_KINDS)}, got {name!r}.")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"`size` must be an integer number of pixels, got {size!r}.")
    kernel, stride, factor, constant, training = _FORMULAS[kind]
    conv1 = (int(size) - kernel) // stride + 1
    if conv1 < 1:
        out = 0
    elif not offset_pooling:
        out = conv1 // factor - constant
    else:
        s, fc_kernel = _LAST_POOL[kind], _FC_KERNEL[kind]
        if kind == "fast":  # pool1 2/2, conv2 5x5 valid, pool2 2/2
            before_last = (conv1 // 2 - 4) // 2
        else:  # accurate: pool1 3/3, conv2 7x7 valid, pool2 2/2
            before_last = (conv1 // 3 - 6) // 2
        out = before_last - s + 1 - s * (fc_kernel - 1)
    if out < 1:
        raise ValueError(
            f"An input side of {size} is too small for {name}: the dense output needs at least "
            f"{training} pixels (the training size)."
        )
    return out
