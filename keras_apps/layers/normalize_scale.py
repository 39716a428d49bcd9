"""L2-normalise-and-scale (ParseNet's normalisation, "Growing a Brain" Eq. 1-2).

``y_i = gamma_i * x_i / ||x||_2``: each sample's activations are divided by their L2 norm
over the channel axis (at every spatial position for convolutional maps) and multiplied by a
learned per-channel scale ``gamma`` initialised to ``scale_init`` (10 or 20 in the paper;
a norm of 1 makes learning slow). Developmental networks put one on each block of a widened
layer (old units, new units) so that blocks learning at different paces are reconciled.
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_apps")
class L2NormalizeScale(keras.layers.Layer):
    """L2-normalises each sample over the channel axis and scales each channel by a learned
    factor initialised to ``scale_init``.

    Works on dense ``(N, C)`` and convolutional ``(N, H, W, C)`` inputs (channels last). The
    squared norm is clamped below by ``epsilon`` (as ``tf.math.l2_normalize``), so an
    all-zero input gives a zero output with finite gradients. Computed in float32 under
    mixed precision (the sum of squares would lose precision in 16 bits) and returned in the
    layer's compute dtype.
    """

    def __init__(self, scale_init: float = 10.0, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        if (
            isinstance(scale_init, bool)
            or not isinstance(scale_init, (int, float))
            or not math.isfinite(scale_init)
            or scale_init <= 0
        ):
            raise ValueError(
                f"`scale_init` must be a finite number > 0 (the paper uses 10 or 20), got {scale_init!r}."
            )
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"`epsilon` must be a number > 0, got {epsilon!r}.")
        self.scale_init = float(scale_init)
        self.epsilon = float(epsilon)
        self.supports_masking = True

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or len(input_shape) < 2:
            raise ValueError(
                f"L2NormalizeScale needs inputs (N, C) or (N, H, W, C) with a known channel count, "
                f"got shape {tuple(input_shape)}."
            )
        self.gamma = self.add_weight(
            name="gamma",
            shape=(int(channels),),
            initializer=keras.initializers.Constant(self.scale_init),
            trainable=True,
        )

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        squared = ops.sum(ops.square(x), axis=-1, keepdims=True)
        normalised = x * ops.rsqrt(ops.maximum(squared, self.epsilon))
        return ops.cast(normalised * ops.cast(self.gamma, "float32"), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, input_shape, output_shape):
        """Per image: a square-and-sum and a scale per activation."""
        return 2 * math.prod(int(d) for d in input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "scale_init": self.scale_init, "epsilon": self.epsilon}
