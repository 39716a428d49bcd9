"""Squeeze-and-excitation block (Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_apps")
class SqueezeExcitation(keras.layers.Layer):
    """Re-scales the channels of a feature map by gates computed from the map itself.

    Hu et al. (2018), Sec. 3: squeeze ``z_c = 1/(H W) sum_{i,j} u_c(i, j)`` (Eq. 2),
    excitation ``s = sigmoid(W2 relu(W1 z))`` with ``W1`` of shape ``C x C/r`` and ``W2`` of
    shape ``C/r x C`` (Eq. 3; both fully connected layers with bias), and scaling
    ``x~_c = s_c * u_c`` (Eq. 4). The paper uses the reduction ratio ``r = 16`` (Sec. 6.1).
    It works on any ``(batch, height, width, channels)`` map, so it can be inserted into
    any family (SE-ResNet puts it on the residual branch before the addition, Fig. 3).

    Args:
        reduction: reduction ratio ``r``; the bottleneck has ``max(1, C // r)`` units.
        kernel_initializer: initializer of ``W1`` and ``W2`` (biases start at zero).
    """

    def __init__(self, reduction: int = 16, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"`reduction` must be a positive integer, got {reduction!r}.")
        self.reduction = reduction
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "SqueezeExcitation expects a (batch, height, width, channels) input with a "
                f"known channel count, got shape {tuple(input_shape)}."
            )
        channels = int(input_shape[-1])
        self.units = max(1, channels // self.reduction)
        self.reduce_kernel = self.add_weight(
            shape=(channels, self.units), initializer=self.kernel_initializer, name="reduce_kernel"
        )
        self.reduce_bias = self.add_weight(shape=(self.units,), initializer="zeros", name="reduce_bias")
        self.expand_kernel = self.add_weight(
            shape=(self.units, channels), initializer=self.kernel_initializer, name="expand_kernel"
        )
        self.expand_bias = self.add_weight(shape=(channels,), initializer="zeros", name="expand_bias")
        self.built = True

    def call(self, inputs):
        squeezed = ops.mean(inputs, axis=(1, 2))
        hidden = ops.relu(ops.matmul(squeezed, self.reduce_kernel) + self.reduce_bias)
        gates = ops.sigmoid(ops.matmul(hidden, self.expand_kernel) + self.expand_bias)
        return inputs * gates[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
