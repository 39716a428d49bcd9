"""Multiply-accumulates (MACs) per image, counted layer by layer from the graph's shapes.

Counting rule (the "operations" of Canziani et al. 2016 and the "FLOPs" of He et al. 2016,
Table 1, which are multiply-adds): one MAC is one multiplication of a weight by an input
value accumulated into an output. Counted, per image (batch dimension excluded):

- ``Conv1D/2D/3D``: ``prod(out spatial) * filters * prod(kernel_size) * in_channels / groups``;
  strides and dilation act through the output size; padding contributes (zeros are
  multiplied like any value).
- ``Conv*Transpose``: ``prod(in spatial) * in_channels * prod(kernel_size) * filters``
  (every input value is scattered through the kernel).
- ``DepthwiseConv1D/2D``: ``prod(out spatial) * in_channels * depth_multiplier * prod(kernel_size)``.
- ``SeparableConv1D/2D``: the depthwise part plus the pointwise part
  ``prod(out spatial) * in_channels * depth_multiplier * filters``.
- ``Dense``: ``prod(output shape) * input_features`` (a Dense on a rank-3 input counts
  every position).
- ``Dot`` and the ``keras.ops.matmul`` operation: ``prod(output shape) * contracted size``.

The suite's own layers: ``SqueezeExcitation`` counts its two fully connected layers
``2 * C * C/r``; ``DeformableConv2D`` counts its convolution, its offset-branch convolution
and 4 MACs per bilinear sample (``out positions * kh * kw * in_channels`` samples).

Not counted (0 MACs; known layers, so not reported as uncounted): biases,
``BatchNormalization`` (folded into the preceding convolution at inference:
``w' = w * gamma / sigma``), other normalisations (``LocalResponseNormalization`` included:
no weights), activations, pooling (comparisons and sums), ``Add``/``Multiply``/
``Concatenate`` and other elementwise merges (SE's channel re-scaling included), padding,
cropping, reshapes, dropout, resizing, the zero-padding shortcut and the ``keras.ops``
elementwise operations. FLOPs in the two-per-MAC convention
(one multiply plus one add) are ``2 * MACs`` (:attr:`FlopReport.flops`); fvcore and
torchvision's "GFLOPS" count one per MAC, like this module's MACs.

Published figures for ResNet-50 at 224x224, to place this rule: He et al. 2016 Table 1,
"3.8 x 10^9 FLOPs" (multiply-adds); this rule on the keras.applications layout (stride on
the first 1x1 conv of a bottleneck, as in the paper): 3.86 G; torchvision's ResNet-50
(stride on the 3x3 conv, "v1.5"): 4.09 G in its documentation; 7.7 GFLOPs when one MAC is
two FLOPs.

Layers outside this list: a layer may define ``count_macs(input_shape, output_shape) -> int``
(shapes as in ``build``: a tuple for one tensor, a list of tuples for several, batch
dimension ``None``; return MACs per image), or a counter may be registered for its class
with :func:`register_mac_counter`. A layer with neither contributes 0 MACs and is listed in
:attr:`FlopReport.uncounted`; :func:`count_flops` warns naming it, never silently.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable

import keras

from keras_apps.analysis._graph import trace

__all__ = [
    "FlopReport",
    "count_flops",
    "flop_report",
    "register_mac_counter",
]

#: ``class -> counter(layer, input_shapes, output_shapes) -> MACs per image``; shapes are
#: lists of tuples with the batch dimension ``None``. Looked up along the class's MRO.
_COUNTERS: dict[type, Callable] = {}


def register_mac_counter(cls: type):
    """Decorator registering ``counter(layer, input_shapes, output_shapes) -> int`` for
    ``cls`` and its subclasses; registering a class twice is an error.

    Example::

        @register_mac_counter(MyAttention)
        def _attention_macs(layer, input_shapes, output_shapes):
            (batch, n, d), = input_shapes
            return 2 * n * n * d
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_mac_counter expects a layer class, got {cls!r}.")

    def decorator(counter: Callable) -> Callable:
        if cls in _COUNTERS:
            raise ValueError(f"A MAC counter for {cls.__module__}.{cls.__qualname__} is already registered.")
        _COUNTERS[cls] = counter
        return counter

    return decorator


def _prod(values) -> int:
    return math.prod(int(v) for v in values)


def _split_channels(shape, data_format):
    """``(spatial dims, channels)`` of a batched shape."""
    if data_format == "channels_first":
        return shape[2:], shape[1]
    return shape[1:-1], shape[-1]


def _conv_macs(layer, input_shapes, output_shapes):
    (in_shape,), (out_shape,) = input_shapes, output_shapes
    _, in_channels = _split_channels(in_shape, layer.data_format)
    out_spatial, _ = _split_channels(out_shape, layer.data_format)
    groups = getattr(layer, "groups", 1) or 1
    return _prod(out_spatial) * layer.filters * _prod(layer.kernel_size) * (in_channels // groups)


def _conv_transpose_macs(layer, input_shapes, output_shapes):
    (in_shape,) = input_shapes
    in_spatial, in_channels = _split_channels(in_shape, layer.data_format)
    return _prod(in_spatial) * in_channels * _prod(layer.kernel_size) * layer.filters


def _depthwise_macs(layer, input_shapes, output_shapes):
    (in_shape,), (out_shape,) = input_shapes, output_shapes
    _, in_channels = _split_channels(in_shape, layer.data_format)
    out_spatial, _ = _split_channels(out_shape, layer.data_format)
    return _prod(out_spatial) * in_channels * layer.depth_multiplier * _prod(layer.kernel_size)


def _separable_macs(layer, input_shapes, output_shapes):
    (in_shape,), (out_shape,) = input_shapes, output_shapes
    _, in_channels = _split_channels(in_shape, layer.data_format)
    out_spatial, _ = _split_channels(out_shape, layer.data_format)
    expanded = in_channels * layer.depth_multiplier
    return _prod(out_spatial) * expanded * (_prod(layer.kernel_size) + layer.filters)


def _dense_macs(layer, input_shapes, output_shapes):
    (in_shape,), (out_shape,) = input_shapes, output_shapes
    return _prod(out_shape[1:]) * in_shape[-1]


def _dot_macs(layer, input_shapes, output_shapes):
    first = input_shapes[0]
    axes = layer.axes if isinstance(layer.axes, (list, tuple)) else (layer.axes, layer.axes)
    axis = axes[0] % len(first)
    return _prod(output_shapes[0][1:]) * first[axis]


def _matmul_macs(operation, input_shapes, output_shapes):
    return _prod(output_shapes[0][1:]) * input_shapes[0][-1]


def _zero_macs(layer, input_shapes, output_shapes):
    return 0


for _name, _counter in (
    ("Conv1D", _conv_macs),
    ("Conv2D", _conv_macs),
    ("Conv3D", _conv_macs),
    ("Conv1DTranspose", _conv_transpose_macs),
    ("Conv2DTranspose", _conv_transpose_macs),
    ("Conv3DTranspose", _conv_transpose_macs),
    ("DepthwiseConv1D", _depthwise_macs),
    ("DepthwiseConv2D", _depthwise_macs),
    ("SeparableConv1D", _separable_macs),
    ("SeparableConv2D", _separable_macs),
    ("Dense", _dense_macs),
    ("Dot", _dot_macs),
):
    register_mac_counter(getattr(keras.layers, _name))(_counter)

#: keras.layers classes that perform no multiply-accumulate (see the module docstring).
_ZERO_MAC_LAYERS = (
    "InputLayer", "BatchNormalization", "LayerNormalization", "GroupNormalization",
    "UnitNormalization", "RMSNormalization", "Normalization", "Rescaling",
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
    "GaussianDropout", "GaussianNoise", "ActivityRegularization", "Identity", "Masking",
    "Flatten", "Reshape", "Permute", "RepeatVector",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D",
    "AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D",
    "Resizing", "CenterCrop", "RandomFlip", "RandomCrop", "RandomRotation", "RandomZoom",
    "RandomTranslation", "RandomContrast", "RandomBrightness",
)
for _name in _ZERO_MAC_LAYERS:
    _cls = getattr(keras.layers, _name, None)
    if _cls is not None:
        register_mac_counter(_cls)(_zero_macs)


def _squeeze_excitation_macs(layer, input_shapes, output_shapes):
    """Hu et al. (2018) Eq. 3: two fully connected layers C -> C/r -> C on the squeezed
    vector; the squeeze (a mean) and the re-scaling (Eq. 4, elementwise) count 0."""
    channels = input_shapes[0][-1]
    units = max(1, channels // layer.reduction)
    return 2 * channels * units


def _deformable_conv_macs(layer, input_shapes, output_shapes):
    """Dai et al. (2017) Eq. 2-3: the convolution over the sampled values (as ``Conv2D``),
    the offset (and DCNv2 mask) branch convolution unless offsets are given, and 4 MACs per
    bilinearly interpolated input value (``out positions * kh * kw * in_channels`` samples);
    the modulation by the mask is elementwise (0)."""
    in_shape, out_shape = input_shapes[0], output_shapes[0]
    positions = _prod(out_shape[1:-1])
    taps = _prod(layer.kernel_size)
    in_channels = in_shape[-1]
    macs = positions * layer.filters * taps * in_channels + 4 * positions * taps * in_channels
    if not layer.external_offsets:
        branch = (3 if layer.modulated else 2) * layer.offset_groups * taps
        macs += positions * branch * taps * in_channels
    return macs


def _register_suite_layers():
    """Counters for the custom layers of ``keras_apps.layers`` that exist."""
    from keras_apps import layers as suite_layers

    for name, counter in (
        ("ZeroPaddingShortcut", _zero_macs),
        ("LocalResponseNormalization", _zero_macs),
        ("SqueezeExcitation", _squeeze_excitation_macs),
        ("DeformableConv2D", _deformable_conv_macs),
    ):
        cls = getattr(suite_layers, name, None)
        if cls is not None:
            register_mac_counter(cls)(counter)


_register_suite_layers()

#: ``keras.ops`` operations (graph nodes that are not layers) that multiply-accumulate; any
#: other ``keras.ops`` operation is elementwise or moves data (0 MACs).
_KERAS_OPS_COUNTERS = {"Matmul": _matmul_macs}
_KERAS_OPS_WITH_MACS = {"Einsum", "Tensordot", "Dot", "Inner", "Conv", "ConvTranspose",
                        "DepthwiseConv", "SeparableConv", "Correlate"}


@dataclasses.dataclass(frozen=True)
class FlopReport:
    """MACs of one model at one input shape.

    Attributes:
        macs: multiply-accumulates per image (the module's counting rule).
        per_layer: ``(path, class name, MACs)`` for every operation, in execution order.
        uncounted: ``"path (ClassName)"`` of each operation no rule covers (counted as 0).
        input_shape: the per-example input shape(s) counted.
    """

    macs: int
    per_layer: tuple
    uncounted: tuple
    input_shape: tuple

    @property
    def flops(self) -> int:
        """``2 * macs``: one multiply and one add per MAC."""
        return 2 * self.macs


def _shape_arg(shapes):
    return shapes[0] if len(shapes) == 1 else list(shapes)


def _lookup(operation):
    for cls in type(operation).__mro__:
        if cls in _COUNTERS:
            return _COUNTERS[cls]
    return None


def _operation_macs(operation, input_shapes, output_shapes):
    """MACs of one operation, or ``None`` when no rule covers it."""
    own = getattr(operation, "count_macs", None)
    if callable(own):
        return int(own(_shape_arg(input_shapes), _shape_arg(output_shapes)))
    counter = _lookup(operation)
    if counter is not None:
        return int(counter(operation, input_shapes, output_shapes))
    if not isinstance(operation, keras.layers.Layer) and type(operation).__module__.startswith(
        "keras.src.ops."
    ):
        name = type(operation).__name__
        if name in _KERAS_OPS_COUNTERS:
            return int(_KERAS_OPS_COUNTERS[name](operation, input_shapes, output_shapes))
        if name not in _KERAS_OPS_WITH_MACS:
            return 0
    return None


def flop_report(model: keras.Model, *, input_shape=None) -> FlopReport:
    """Counts the MACs of every operation of ``model`` (nested models walked inline).

    Args:
        model: a functional or built ``Sequential`` ``keras.Model``.
        input_shape: per-example input shape to count at (``(224, 224, 3)``); default the
            model's own input shape, which must then be fully defined.
    """
    walked = trace(model, input_shape)
    per_layer, uncounted, total = [], [], 0
    for step in walked.steps:
        in_shapes = [tuple(t.shape) for t in step.inputs]
        out_shapes = [tuple(t.shape) for t in step.outputs]
        try:
            macs = _operation_macs(step.operation, in_shapes, out_shapes)
        except Exception as err:
            raise ValueError(
                f"Counting MACs of {step.path!r} ({type(step.operation).__name__}) with input "
                f"shape(s) {in_shapes} and output shape(s) {out_shapes} failed: {err}"
            ) from err
        if macs is None:
            uncounted.append(f"{step.path} ({type(step.operation).__name__})")
            macs = 0
        elif macs < 0:
            raise ValueError(f"MAC counter of {step.path!r} returned a negative count {macs}.")
        per_layer.append((step.path, type(step.operation).__name__, macs))
        total += macs
    shapes = tuple(tuple(t.shape[1:]) for t in walked.inputs)
    return FlopReport(
        macs=total,
        per_layer=tuple(per_layer),
        uncounted=tuple(uncounted),
        input_shape=shapes[0] if len(shapes) == 1 else shapes,
    )


def count_flops(model: keras.Model, *, input_shape=None) -> int:
    """Multiply-accumulates per image of ``model`` (see the module docstring for the rule).

    This is the "FLOPs" figure of He et al. (2016) and the "operations" axis of Canziani
    et al. (2016): one MAC per weight-input product. For two FLOPs per MAC use
    ``flop_report(model).flops``. Operations no rule covers count 0 and raise a
    ``UserWarning`` naming them (:func:`flop_report` lists them in ``uncounted``).
    """
    report = flop_report(model, input_shape=input_shape)
    if report.uncounted:
        warnings.warn(
            f"count_flops({model.name!r}): no MAC rule for {len(report.uncounted)} "
            f"operation(s), counted as 0: {', '.join(report.uncounted)}. Give the layer a "
            "`count_macs(input_shape, output_shape)` method or register a counter with "
            "keras_apps.analysis.register_mac_counter.",
            UserWarning,
            stacklevel=2,
        )
    return report.macs
