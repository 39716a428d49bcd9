"""Parameter-free identity shortcut with zero-padded channels (He et al. 2016, option A)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_apps")
class ZeroPaddingShortcut(keras.layers.Layer):
    """Identity shortcut for a residual block that changes shape, without parameters.

    He et al. (2016), Sec. 3.3 option (A): "the shortcut still performs identity mapping,
    with extra zero entries padded for increasing dimensions"; with stride 2 the identity
    takes every second pixel (``x[:, ::2, ::2, :]``). Used by the CIFAR ResNets (Sec. 4.2).

    Args:
        filters: channels of the output; must be >= the input channels.
        strides: spatial subsampling of the identity (1 or 2).
    """

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"`filters` must be a positive integer, got {filters!r}.")
        if int(strides) < 1:
            raise ValueError(f"`strides` must be a positive integer, got {strides!r}.")
        self.filters = int(filters)
        self.strides = int(strides)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels > self.filters:
            raise ValueError(
                f"ZeroPaddingShortcut pads channels up to `filters`={self.filters}, but the "
                f"input has {channels} channels."
            )
        self.built = True

    def call(self, inputs):
        x = inputs[:, :: self.strides, :: self.strides, :]
        extra = self.filters - inputs.shape[-1]
        if extra:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
        return x

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        s = self.strides
        height = None if height is None else (height + s - 1) // s
        width = None if width is None else (width + s - 1) // s
        return (batch, height, width, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "strides": self.strides})
        return config
