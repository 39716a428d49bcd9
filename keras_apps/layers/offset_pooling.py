"""Offset max pooling (Sermanet et al., OverFeat, ICLR 2014, Sec. 3.3 and Fig. 3)."""

from __future__ import annotations

import keras
from keras import ops


def _pair(value, argument: str) -> tuple:
    if isinstance(value, bool):
        raise ValueError(f"`{argument}` must be a positive integer or a pair of them, got {value!r}.")
    if isinstance(value, int):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"`{argument}` must be a positive integer or a pair of them, got {value!r}.")
    return pair


@keras.saving.register_keras_serializable(package="keras_apps")
class OffsetMaxPooling2D(keras.layers.Layer):
    """Max pooling at every offset, interleaved: OverFeat's dense pooling (Sec. 3.3).

    The paper applies the last max pooling (``pool_size`` k, stride s) once for every
    offset ``(dy, dx)`` in ``{0, ..., s-1}^2`` and keeps the s^2 pooled maps, so that the
    classifier that follows sees every alignment and the output stride falls by s (36 -> 12
    pixels for the accurate model). This layer returns those maps interleaved into one map::

        out[:, i*s + dy, j*s + dx, :] = maxpool(x[:, dy:, dx:, :], k, s)[:, i, j, :]

    which is exactly a stride-1 "valid" max pooling with window k; it is computed that way.
    Output size ``H - k + 1`` (per axis, channels_last). When ``H - dy - k`` is not a multiple
    of s the offsets have different numbers of pooled rows (``floor((H - dy - k) / s) + 1``);
    the stride-1 map holds each row of each offset once, none missing and none extra, so
    no cropping is needed.

    A classifier that read the s-strided pooling with a kernel of K positions reads the
    offset map with the same kernel at ``dilation_rate=s``; its output at ``(i*s + dy,
    j*s + dx)`` is its output on offset ``(dy, dx)``'s pooled map at ``(i, j)``
    (:func:`keras_apps.overfeat.dense.to_dense` with ``offset_pooling=True``).

    Args:
        pool_size: the pooling window k (an int or a pair ``(kh, kw)``).
        strides: the stride s of the pooling this one replaces (default ``pool_size``,
            OverFeat's non-overlapping pooling); it sets the offsets ``{0..s-1}`` and is
            kept in the config, the computation itself being stride-1.
    """

    def __init__(self, pool_size=3, strides=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _pair(strides, "strides")
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def offsets(self) -> tuple:
        """The offsets ``(dy, dx)`` whose poolings the output interleaves."""
        return tuple((dy, dx) for dy in range(self.strides[0]) for dx in range(self.strides[1]))

    def build(self, input_shape):
        for axis, size, window in zip(("height", "width"), input_shape[1:3], self.pool_size):
            if size is not None and size < window:
                raise ValueError(
                    f"OffsetMaxPooling2D {self.name!r}: input {axis} {size} is smaller than the "
                    f"pooling window {window} (input shape {tuple(input_shape)})."
                )
        self.built = True

    def call(self, inputs):
        return ops.max_pool(inputs, self.pool_size, strides=1, padding="valid")

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        kh, kw = self.pool_size
        height = None if height is None else height - kh + 1
        width = None if width is None else width - kw + 1
        return (batch, height, width, channels)

    def count_macs(self, input_shape, output_shape):
        """Pooling multiplies nothing: 0 MACs, like MaxPooling2D."""
        return 0

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": list(self.pool_size), "strides": list(self.strides)})
        return config
