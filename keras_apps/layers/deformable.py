"""Deformable convolution layer (Dai et al., "Deformable Convolutional Networks", ICCV 2017)
and its modulated form (Zhu et al., "Deformable ConvNets v2", CVPR 2019)."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_apps.ops import deform_conv as _dc


@keras.saving.register_keras_serializable(package="keras_apps")
class DeformableConv2D(keras.layers.Layer):
    """2D convolution whose kernel samples are shifted by learned offsets (Dai et al. eq. 2).

    ``y(p0) = sum_pn w(pn) x(p0 + pn + delta_pn)`` with bilinear sampling (eq. 3-4; points
    outside the input read zero). The offsets ``delta`` - one (dy, dx) per kernel tap and
    offset group - come from a parallel convolution over the same input with the same kernel
    size, strides, padding and dilation, initialised to zero (Sec. 2.1), so a fresh layer
    computes exactly ``keras.layers.Conv2D`` with the same ``kernel`` and ``bias``.

    With ``modulated=True`` (DCNv2, Zhu et al. eq. 3) the parallel convolution also predicts
    a mask ``m = sigmoid(.)`` in [0, 1] per tap and offset group: ``y = sum m w x(.)``. As in
    DCNv2 the mask branch starts at zero, i.e. ``m = 0.5``: a fresh modulated layer computes
    ``0.5 * (x * kernel) + bias``.

    With ``external_offsets=True`` there is no offset branch: the layer is called on
    ``[inputs, offsets]`` (or ``[inputs, offsets, mask]`` when ``modulated``, the mask used as
    given) like torchvision's ``DeformConv2d``.

    Args:
        filters: output channels.
        kernel_size, strides, dilation_rate: int or pair.
        padding: ``"valid"``, ``"same"`` (as ``Conv2D``) or a non-negative int (or pair).
        offset_groups: G; the input channels are split into G groups with their own offsets.
        modulated: DCNv2 modulation mask.
        external_offsets: take offsets (and mask) as inputs instead of predicting them.
        activation, use_bias, kernel_*/bias_*: as ``keras.layers.Conv2D``.

    Weights: ``kernel`` ``[kh, kw, Cin, filters]`` (``Conv2D`` layout), ``bias``,
    ``offset_kernel`` ``[kh, kw, Cin, (2 or 3) * G * kh * kw]`` and ``offset_bias`` (offsets
    first, in :func:`keras_apps.ops.deform_conv2d` order, then the mask logits).
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        dilation_rate=1,
        offset_groups=1,
        modulated=False,
        external_offsets=False,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"`filters` must be a positive integer, got {filters!r}.")
        if isinstance(offset_groups, bool) or not isinstance(offset_groups, int) or offset_groups < 1:
            raise ValueError(f"`offset_groups` must be a positive integer, got {offset_groups!r}.")
        self.filters = filters
        self.kernel_size = _dc._pair(kernel_size, "kernel_size")
        self.strides = _dc._pair(strides, "strides")
        self.dilation_rate = _dc._pair(dilation_rate, "dilation_rate")
        self.padding = _dc.normalize_padding(padding)
        self.offset_groups = offset_groups
        self.modulated = bool(modulated)
        self.external_offsets = bool(external_offsets)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        taps = self.kernel_size[0] * self.kernel_size[1]
        self._offset_channels = 2 * offset_groups * taps
        self._mask_channels = offset_groups * taps if self.modulated else 0

    # -- shapes -------------------------------------------------------------------------
    def _split_inputs(self, inputs):
        if not self.external_offsets:
            if isinstance(inputs, (list, tuple)):
                raise ValueError(
                    f"{self.name}: this DeformableConv2D predicts its own offsets and takes one "
                    f"input tensor, got {len(inputs)}; use `external_offsets=True` to pass "
                    "[inputs, offsets(, mask)]."
                )
            return inputs, None, None
        if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
            raise ValueError(
                f"{self.name}: with `external_offsets=True` call the layer on [inputs, offsets] "
                "or [inputs, offsets, mask]."
            )
        if len(inputs) == 3 and not self.modulated:
            raise ValueError(
                f"{self.name}: a mask was given but the layer has `modulated=False`; build it "
                "with `modulated=True` (DCNv2) to use a modulation mask."
            )
        if len(inputs) == 2 and self.modulated:
            raise ValueError(
                f"{self.name}: `modulated=True` with `external_offsets=True` needs "
                "[inputs, offsets, mask]."
            )
        return inputs[0], inputs[1], inputs[2] if len(inputs) == 3 else None

    def _split_shapes(self, input_shape):
        nested = len(input_shape) > 0 and isinstance(input_shape[0], (list, tuple))
        if not nested and not self.external_offsets:
            return tuple(input_shape), None, None
        return self._split_inputs(list(input_shape) if nested else None)

    def _output_hw(self, height, width):
        sizes = []
        for size, k, s, d, p in zip(
            (height, width),
            self.kernel_size,
            self.strides,
            self.dilation_rate,
            (self.padding, self.padding) if isinstance(self.padding, str) else self.padding,
        ):
            sizes.append(None if size is None else _dc.deform_conv_output_size(size, k, s, d, p))
        return tuple(sizes)

    def build(self, input_shape):
        input_shape, offsets_shape, mask_shape = self._split_shapes(input_shape)
        if len(input_shape) != 4:
            raise ValueError(f"{self.name}: expected inputs [B, H, W, C], got shape {input_shape}.")
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel count of the inputs must be known.")
        if channels % self.offset_groups:
            raise ValueError(
                f"{self.name}: `offset_groups`={self.offset_groups} must divide the "
                f"{channels} input channels."
            )
        out_h, out_w = self._output_hw(input_shape[1], input_shape[2])
        if (out_h is not None and out_h < 1) or (out_w is not None and out_w < 1):
            raise ValueError(
                f"{self.name}: the kernel {self.kernel_size} (dilation {self.dilation_rate}) is "
                f"larger than the padded input {tuple(input_shape[1:3])} (padding "
                f"{self.padding!r})."
            )
        if offsets_shape is not None and offsets_shape[-1] != self._offset_channels:
            raise ValueError(
                f"{self.name}: offsets need 2 * offset_groups * kh * kw = {self._offset_channels} "
                f"channels, got shape {tuple(offsets_shape)}."
            )
        if mask_shape is not None and mask_shape[-1] != self._mask_channels:
            raise ValueError(
                f"{self.name}: the mask needs offset_groups * kh * kw = {self._mask_channels} "
                f"channels, got shape {tuple(mask_shape)}."
            )
        kh, kw = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel",
            shape=(kh, kw, channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        if not self.external_offsets:
            branch = self._offset_channels + self._mask_channels
            self.offset_kernel = self.add_weight(
                name="offset_kernel", shape=(kh, kw, channels, branch), initializer="zeros"
            )
            self.offset_bias = self.add_weight(name="offset_bias", shape=(branch,), initializer="zeros")
        self.built = True

    def compute_output_shape(self, input_shape):
        input_shape = self._split_shapes(input_shape)[0]
        return (input_shape[0], *self._output_hw(input_shape[1], input_shape[2]), self.filters)

    # -- forward --------------------------------------------------------------------------
    def predict_offsets(self, inputs):
        """``(offsets, mask)`` of the parallel offset branch (mask None unless modulated)."""
        x = tf.convert_to_tensor(inputs)
        kernel = tf.cast(self.offset_kernel, x.dtype)
        if self.dilation_rate == (1, 1):
            if isinstance(self.padding, str):
                conv_padding = self.padding.upper()
            else:
                (pr, pc) = self.padding
                x = tf.pad(x, [[0, 0], [pr, pr], [pc, pc], [0, 0]])
                conv_padding = "VALID"
            out = tf.nn.conv2d(x, kernel, self.strides, conv_padding)
        else:
            # tf.nn.conv2d with dilations > 1 has no CPU gradient (Conv2DBackpropInput);
            # tf.nn.convolution (space-to-batch) has, at stride 1: pad explicitly, convolve at
            # stride 1 and keep every stride-th output.
            _, height, width, _ = _dc._dims(x)
            pads = [
                _dc.deform_conv_padding(size, k, s, d, p)
                for size, k, s, d, p in zip(
                    (height, width), self.kernel_size, self.strides, self.dilation_rate,
                    (self.padding, self.padding) if isinstance(self.padding, str) else self.padding,
                )
            ]
            x = tf.pad(x, [[0, 0], list(pads[0]), list(pads[1]), [0, 0]])
            out = tf.nn.convolution(x, kernel, padding="VALID", dilations=self.dilation_rate)
            out = out[:, :: self.strides[0], :: self.strides[1], :]
        out = tf.nn.bias_add(out, tf.cast(self.offset_bias, x.dtype))
        if not self.modulated:
            return out, None
        return out[..., : self._offset_channels], tf.sigmoid(out[..., self._offset_channels :])

    def call(self, inputs):
        x, offsets, mask = self._split_inputs(inputs)
        if not self.external_offsets:
            offsets, mask = self.predict_offsets(x)
        y = _dc.deform_conv2d(
            x,
            offsets,
            self.kernel,
            self.bias,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            mask=mask,
        )
        return self.activation(y) if self.activation is not None else y

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "dilation_rate": self.dilation_rate,
                "offset_groups": self.offset_groups,
                "modulated": self.modulated,
                "external_offsets": self.external_offsets,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            }
        )
        return config
