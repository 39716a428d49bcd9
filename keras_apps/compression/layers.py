"""Dense and Conv2D layers that run from product-quantized kernels (HD-CNN, "Parameter
compression": the compressed weights are rebuilt at test time).

Each layer stores the 8-bit codes ``Q`` (uint8, ``(m, n / s)``) and the float32 codebooks
``C`` (``(k, n)``) of :mod:`keras_apps.compression.product_quantization` as non-trainable
weights, and rebuilds its kernel from them in every call:
``W_hat[i, j*s:(j+1)*s] = C[Q[i, j], j*s:(j+1)*s]`` (a gather). The bias stays a float
vector and is trainable, as in the layer that was compressed.

The matrix ``W`` is the Keras kernel read as ``y = x W``: for ``Dense`` ``W`` is the kernel
``(input_dim, units)``; for ``Conv2D`` the kernel ``(kh, kw, c_in, filters)`` reshaped
(row-major) to ``(kh * kw * c_in, filters)``. So ``m`` is the fan-in (one row per input
feature or kernel tap), ``n`` the number of outputs, and a segment groups ``s`` consecutive
output channels; the rows of ``W``, the vectors that k-means clusters, are the weights that
one input feature sends to those ``s`` outputs.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_apps.compression.product_quantization import MAX_CODEBOOK_SIZE

__all__ = ["ProductQuantizedConv2D", "ProductQuantizedDense"]


class _ProductQuantized(keras.layers.Layer):
    """Codes, codebooks and bias of a product-quantized kernel with ``outputs`` columns."""

    def __init__(
        self,
        outputs,
        segment_length,
        codebook_size,
        activation,
        use_bias,
        codebook_initializer,
        bias_initializer,
        **kwargs,
    ):
        super().__init__(**kwargs)
        name = type(self).__name__
        if isinstance(segment_length, bool) or not isinstance(segment_length, int) or segment_length < 1 \
                or outputs % segment_length:
            raise ValueError(
                f"{name}: `segment_length` (s) must be a positive divisor of the {outputs} outputs, "
                f"got {segment_length!r}."
            )
        if isinstance(codebook_size, bool) or not isinstance(codebook_size, int) \
                or not 1 <= codebook_size <= MAX_CODEBOOK_SIZE:
            raise ValueError(
                f"{name}: `codebook_size` (k) must be an integer in [1, {MAX_CODEBOOK_SIZE}] (8-bit codes), "
                f"got {codebook_size!r}."
            )
        self.segment_length = segment_length
        self.codebook_size = codebook_size
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.codebook_initializer = keras.initializers.get(codebook_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _build_codes(self, rows, outputs):
        segments = outputs // self.segment_length
        codebook_size = self.codebook_size

        def random_codes(shape, dtype=None):
            return ops.cast(keras.random.randint(shape, 0, codebook_size), "uint8")

        self.codes = self.add_weight(
            name="codes", shape=(rows, segments), dtype="uint8", initializer=random_codes, trainable=False
        )
        self.codebooks = self.add_weight(
            name="codebooks", shape=(codebook_size, outputs), initializer=self.codebook_initializer,
            trainable=False,
        )
        self.bias = (
            self.add_weight(name="bias", shape=(outputs,), initializer=self.bias_initializer)
            if self.use_bias else None
        )

    def _matrix(self):
        """``W_hat`` ``(m, n)`` in the compute dtype, gathered from the codes and codebooks."""
        rows, segments = self.codes.shape
        k, s = self.codebook_size, self.segment_length
        # Centre c of segment j is row j*k + c of the (segments*k, s) table.
        table = ops.reshape(ops.transpose(ops.reshape(self.codebooks, (k, segments, s)), (1, 0, 2)),
                            (segments * k, s))
        index = ops.cast(self.codes, "int32") + ops.arange(segments, dtype="int32")[None, :] * k
        matrix = ops.reshape(ops.take(table, index, axis=0), (rows, segments * s))
        return ops.cast(matrix, self.compute_dtype)

    def _finish(self, outputs, channels_first=False):
        if self.use_bias:
            bias = ops.cast(self.bias, self.compute_dtype)
            outputs = outputs + (ops.reshape(bias, (1, -1, 1, 1)) if channels_first else bias)
        return self.activation(outputs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "segment_length": self.segment_length,
                "codebook_size": self.codebook_size,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "codebook_initializer": keras.initializers.serialize(self.codebook_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_apps")
class ProductQuantizedDense(_ProductQuantized):
    """``Dense`` whose kernel ``W`` (``input_dim x units``) is stored as 8-bit codes
    ``(input_dim, units / s)`` and float32 codebooks ``(k, units)`` and rebuilt in each call
    (HD-CNN, "Parameter compression"). Output: ``activation(x W_hat + b)`` over the last axis
    of ``x``, as ``Dense``.

    Args:
        units: outputs ``n``; a multiple of ``segment_length``.
        segment_length: ``s``, consecutive output columns per segment.
        codebook_size: ``k`` centres per segment, at most 256.
        activation, use_bias, bias_initializer: as ``keras.layers.Dense``.
        codebook_initializer: initializer of a fresh layer's codebooks (a fresh layer draws
            uniform random codes); :func:`keras_apps.compression.compress_model` sets both from
            a trained kernel.
    """

    def __init__(
        self,
        units,
        segment_length=2,
        codebook_size=64,
        activation=None,
        use_bias=True,
        codebook_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"ProductQuantizedDense: `units` must be a positive integer, got {units!r}.")
        super().__init__(units, segment_length, codebook_size, activation, use_bias, codebook_initializer,
                         bias_initializer, **kwargs)
        self.units = units
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(
                f"ProductQuantizedDense needs a known last input dimension, got shape {tuple(input_shape)}."
            )
        self._build_codes(int(input_shape[-1]), self.units)
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: int(input_shape[-1])})

    @property
    def kernel(self):
        """The rebuilt kernel ``(input_dim, units)``."""
        return self._matrix()

    def call(self, inputs):
        return self._finish(ops.matmul(inputs, self._matrix()))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def count_macs(self, input_shape, output_shape):
        """As ``Dense`` (:mod:`keras_apps.analysis.flops`): ``prod(output shape) * input_dim``."""
        return int(np.prod([d for d in output_shape[1:]])) * int(input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        return config


@keras.saving.register_keras_serializable(package="keras_apps")
class ProductQuantizedConv2D(_ProductQuantized):
    """``Conv2D`` (``groups=1``) whose kernel ``(kh, kw, c_in, filters)``, read as the matrix
    ``W`` ``(kh * kw * c_in, filters)``, is stored as 8-bit codes ``(kh * kw * c_in,
    filters / s)`` and float32 codebooks ``(k, filters)`` and rebuilt in each call (HD-CNN,
    "Parameter compression"). Output: ``activation(conv(x, W_hat) + b)``, as ``Conv2D``.

    Args:
        filters: outputs ``n``; a multiple of ``segment_length``.
        kernel_size, strides, padding, data_format, dilation_rate: as ``keras.layers.Conv2D``.
        segment_length, codebook_size, activation, use_bias, codebook_initializer,
        bias_initializer: as :class:`ProductQuantizedDense`.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        segment_length=2,
        codebook_size=64,
        activation=None,
        use_bias=True,
        codebook_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"ProductQuantizedConv2D: `filters` must be a positive integer, got {filters!r}.")
        super().__init__(filters, segment_length, codebook_size, activation, use_bias, codebook_initializer,
                         bias_initializer, **kwargs)
        self.filters = filters
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.dilation_rate = _pair("dilation_rate", dilation_rate)
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"ProductQuantizedConv2D: `padding` must be 'valid' or 'same', got {padding!r}.")
        self.padding = padding.lower()
        data_format = keras.config.image_data_format() if data_format is None else data_format
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                "ProductQuantizedConv2D: `data_format` must be 'channels_last' or 'channels_first', "
                f"got {data_format!r}."
            )
        self.data_format = data_format
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def build(self, input_shape):
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"ProductQuantizedConv2D needs a known channel dimension, got shape {tuple(input_shape)}."
            )
        self.input_channels = int(channels)
        kh, kw = self.kernel_size
        self._build_codes(kh * kw * self.input_channels, self.filters)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={self._channel_axis: self.input_channels})

    @property
    def kernel(self):
        """The rebuilt kernel ``(kh, kw, c_in, filters)``."""
        return ops.reshape(self._matrix(), (*self.kernel_size, self.input_channels, self.filters))

    def call(self, inputs):
        outputs = ops.conv(
            inputs, self.kernel, strides=self.strides, padding=self.padding, data_format=self.data_format,
            dilation_rate=self.dilation_rate,
        )
        return self._finish(outputs, channels_first=self.data_format == "channels_first")

    def compute_output_shape(self, input_shape):
        spatial = (input_shape[1:3] if self.data_format == "channels_last" else input_shape[2:4])
        sizes = []
        for size, kernel, stride, dilation in zip(spatial, self.kernel_size, self.strides, self.dilation_rate):
            if size is None:
                sizes.append(None)
                continue
            span = (kernel - 1) * dilation + 1
            sizes.append(-(-size // stride) if self.padding == "same" else (size - span) // stride + 1)
        if self.data_format == "channels_last":
            return (input_shape[0], *sizes, self.filters)
        return (input_shape[0], self.filters, *sizes)

    def count_macs(self, input_shape, output_shape):
        """As ``Conv2D`` (:mod:`keras_apps.analysis.flops`): ``out positions * filters * kh *
        kw * c_in``."""
        spatial = output_shape[1:3] if self.data_format == "channels_last" else output_shape[2:4]
        return int(np.prod(spatial)) * self.filters * int(np.prod(self.kernel_size)) * self.input_channels

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": list(self.kernel_size),
                "strides": list(self.strides),
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": list(self.dilation_rate),
            }
        )
        return config


def _pair(name, value):
    values = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (list, tuple)) else ()
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"ProductQuantizedConv2D: `{name}` must be a positive integer or a pair of them, "
                         f"got {value!r}.")
    return values
