"""Deformable convolution (Dai et al., ICCV 2017) and its modulated form (Zhu et al., CVPR 2019).

For every output position p0 and kernel tap pn (offset group g),

    y(p0) = sum_{g, pn} m_g(p0, pn) * w(pn)[C_g] . x_{C_g}(p0 * s - pad + pn * d + delta_g(p0, pn))

(Dai et al. eq. 2 with DCNv2's mask m, Zhu et al. eq. 3), where x(p) at a fractional p is
bilinear interpolation of the four integer neighbours (Dai et al. eq. 3-4), and a neighbour
outside the image contributes zero (no clamping). The offsets delta are one 2D vector per
kernel tap and offset group, shared by the group's Cin/G channels - not one per channel.

Implementation (gather-based, channels-last): the input is zero-padded by one pixel and its
2x2 neighbourhoods are stacked, so one row ``[4, Cin/G]`` of a flat table holds all four
corners of a sample point. One ``tf.gather`` fetches the rows of every sample point, the
bilinear (and mask) weights reduce them to an im2col tensor ``[B, Ho, Wo, K*Cin]``, and one
product with the kernel reshaped to ``[K*Cin, Cout]`` finishes the convolution.

- Under XLA (``jit_compile=True``) the gather, weighting and sum fuse into one loop and XLA
  differentiates them; the product is a matmul.
- Otherwise (eager, ``tf.function``, SavedModel, TFLite) the weighting is a batched matmul,
  the product a 1x1 convolution (oneDNN's conv beats its matmul here), and a hand-written
  gradient scatters into the table with one sparse-dense product.

The inference graph uses TFLite builtin ops only (GATHER, BATCH_MATMUL, CONV_2D, PACK, PAD,
FLOOR, CAST, SELECT_V2, ...): no SELECT_TF_OPS.
"""

from __future__ import annotations

import numbers
import os

import tensorflow as tf

__all__ = ["bilinear_sampling_grid", "deform_conv2d", "deform_conv_output_size", "deform_conv_padding"]


def _pair(value, name):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        value = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a positive int or a pair of them, got {value!r}.") from None
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"`{name}` must be a positive int or a pair of them, got {value!r}.")
    return value


def _is_static(*values):
    return all(isinstance(v, numbers.Integral) for v in values)


def _dims(x):
    static = x.shape.as_list()
    dynamic = None
    dims = []
    for i, d in enumerate(static):
        if d is None:
            dynamic = tf.shape(x) if dynamic is None else dynamic
            d = dynamic[i]
        dims.append(d)
    return dims


def normalize_padding(padding):
    """``"valid"``, ``"same"`` (case-insensitive), an int or a pair of ints (rows, cols)."""
    if isinstance(padding, str):
        if padding.lower() not in ("valid", "same"):
            raise ValueError(f"`padding` must be 'valid', 'same' or an int, got {padding!r}.")
        return padding.lower()
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        padding = (int(padding), int(padding))
    try:
        padding = tuple(int(p) for p in padding)
    except (TypeError, ValueError):
        raise ValueError(f"`padding` must be 'valid', 'same' or an int, got {padding!r}.") from None
    if len(padding) != 2 or min(padding) < 0:
        raise ValueError(
            f"`padding` must be 'valid', 'same' or a non-negative int (or pair), got {padding!r}."
        )
    return padding


def deform_conv_padding(size, kernel, stride, dilation, padding):
    """``(before, after)`` zero padding of one spatial axis.

    ``"same"`` is Keras/TensorFlow SAME: ``ceil(size / stride)`` outputs, the total padding
    split with the extra pixel after (asymmetric for even inputs with stride 2).
    """
    padding = normalize_padding(padding) if not isinstance(padding, int) else padding
    if padding == "valid":
        return 0, 0
    if isinstance(padding, int):
        return padding, padding
    effective = (kernel - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = (out - 1) * stride + effective - size
    total = max(total, 0) if _is_static(total) else tf.maximum(total, 0)
    return total // 2, total - total // 2


def deform_conv_output_size(size, kernel, stride, dilation, padding):
    """Output length of one spatial axis (the same as Conv2D's for "valid"/"same")."""
    before, after = deform_conv_padding(size, kernel, stride, dilation, padding)
    effective = (kernel - 1) * dilation + 1
    return (size + before + after - effective) // stride + 1


def deform_conv2d(
    inputs,
    offsets,
    kernel,
    bias=None,
    strides=1,
    padding="valid",
    dilation_rate=1,
    mask=None,
):
    """Deformable 2D convolution, channels-last (DCNv1; modulated DCNv2 when ``mask`` is given).

    Args:
        inputs: ``[B, H, W, Cin]``.
        offsets: ``[B, Ho, Wo, 2 * G * kh * kw]``; for offset group ``g`` and kernel tap
            ``t = i * kw + j`` channels ``2 * (g * kh * kw + t)`` and ``+ 1`` hold ``(dy, dx)``
            in input pixels (torchvision's ``deform_conv2d`` layout moved to channels-last).
            ``G`` is inferred from the channel count and must divide ``Cin``.
        kernel: ``[kh, kw, Cin, Cout]`` (the ``keras.layers.Conv2D`` layout).
        bias: optional ``[Cout]``.
        strides, dilation_rate: int or pair.
        padding: ``"valid"``, ``"same"`` (Keras semantics) or a non-negative int (or pair
            (rows, cols)) of symmetric zero padding.
        mask: optional ``[B, Ho, Wo, G * kh * kw]`` modulation of each kernel sample (DCNv2),
            used as given (the layer applies the sigmoid).

    Returns:
        ``[B, Ho, Wo, Cout]`` in the dtype of ``inputs``. Sample coordinates are computed
        in float32 (float64 for float64 inputs).
    """
    x = tf.convert_to_tensor(inputs)
    dtype = x.dtype
    kernel = tf.cast(tf.convert_to_tensor(kernel), dtype)
    offsets = tf.convert_to_tensor(offsets)
    if x.shape.rank != 4:
        raise ValueError(f"deform_conv2d: `inputs` must be [B, H, W, Cin], got shape {x.shape}.")
    if kernel.shape.rank != 4 or not kernel.shape.is_fully_defined():
        raise ValueError(
            f"deform_conv2d: `kernel` must have a static shape [kh, kw, Cin, Cout], got {kernel.shape}."
        )
    if offsets.shape.rank != 4:
        raise ValueError(
            f"deform_conv2d: `offsets` must be [B, Ho, Wo, 2*G*kh*kw], got shape {offsets.shape}."
        )
    kh, kw, kernel_in, cout = kernel.shape.as_list()
    channels = x.shape[-1]
    if channels is None:
        raise ValueError("deform_conv2d: the channel count of `inputs` must be known.")
    if channels != kernel_in:
        raise ValueError(
            f"deform_conv2d: `inputs` have {channels} channels but `kernel` {kernel.shape} expects "
            f"{kernel_in} (layout [kh, kw, Cin, Cout])."
        )
    sh, sw = _pair(strides, "strides")
    dh, dw = _pair(dilation_rate, "dilation_rate")
    padding = normalize_padding(padding)
    pad_rows, pad_cols = (padding, padding) if isinstance(padding, str) else padding

    taps = kh * kw
    offset_channels = offsets.shape[-1]
    if offset_channels is None or offset_channels == 0 or offset_channels % (2 * taps):
        raise ValueError(
            f"deform_conv2d: `offsets` need 2 * offset_groups * kh * kw channels (a multiple of "
            f"2*{kh}*{kw} = {2 * taps}: one (dy, dx) per kernel tap and offset group), got "
            f"{offset_channels}."
        )
    groups = offset_channels // (2 * taps)
    if channels % groups:
        raise ValueError(
            f"deform_conv2d: {offset_channels} offset channels mean {groups} offset groups, which "
            f"do not divide the {channels} input channels."
        )
    group_channels = channels // groups

    batch, height, width, _ = _dims(x)
    pt, pb = deform_conv_padding(height, kh, sh, dh, pad_rows)
    pl, pr = deform_conv_padding(width, kw, sw, dw, pad_cols)
    out_h = (height + pt + pb - ((kh - 1) * dh + 1)) // sh + 1
    out_w = (width + pl + pr - ((kw - 1) * dw + 1)) // sw + 1
    if _is_static(out_h, out_w) and (out_h < 1 or out_w < 1):
        raise ValueError(
            f"deform_conv2d: the kernel ({kh}x{kw}, dilation {dh}x{dw}) is larger than the padded "
            f"input ({height}+{pt}+{pb} x {width}+{pl}+{pr}); the output would be {out_h}x{out_w}."
        )
    if None not in (x.shape[0], offsets.shape[0]) and x.shape[0] != offsets.shape[0]:
        raise ValueError(
            f"deform_conv2d: `inputs` have batch size {x.shape[0]} but `offsets` {offsets.shape[0]}."
        )
    for axis, want in ((1, out_h), (2, out_w)):
        got = offsets.shape[axis]
        if got is not None and _is_static(want) and got != want:
            raise ValueError(
                f"deform_conv2d: `offsets` have spatial shape {offsets.shape[1:3]} but the "
                f"convolution output is {out_h}x{out_w}."
            )
    if mask is not None:
        mask = tf.convert_to_tensor(mask)
        if mask.shape.rank != 4 or mask.shape[-1] != groups * taps:
            raise ValueError(
                f"deform_conv2d: `mask` must be [B, Ho, Wo, G*kh*kw] = [B, {out_h}, {out_w}, "
                f"{groups * taps}] for {groups} offset group(s), got shape {mask.shape}."
            )

    index, weights = bilinear_sampling_grid(
        offsets, mask, (height, width), (kh, kw), (sh, sw), (dh, dw), (pt, pl), dtype
    )
    xla = _in_xla_context()
    sample = _sample_autodiff if xla else _sample_custom_gradient
    columns = sample(x, index, weights, groups)  # [P, Cg], P = B*Ho*Wo*G*K

    # Kernel [kh, kw, Cin, Cout] -> rows ordered (g, tap, c) like the columns.
    kernel = tf.reshape(kernel, [taps, groups, group_channels, cout])
    if groups > 1:
        kernel = tf.transpose(kernel, [1, 0, 2, 3])
    kernel = tf.reshape(kernel, [taps * channels, cout])
    if xla:
        outputs = tf.matmul(tf.reshape(columns, [-1, taps * channels]), kernel)
    else:  # the same product as a 1x1 convolution: oneDNN's is faster than its matmul
        columns = tf.reshape(columns, [-1, out_h, out_w, taps * channels])
        outputs = tf.nn.conv2d(columns, kernel[None, None], 1, "VALID")
    if bias is not None:
        outputs = tf.nn.bias_add(outputs, tf.cast(bias, dtype))
    return tf.reshape(outputs, [-1, out_h, out_w, cout])


def bilinear_sampling_grid(offsets, mask, size, kernel_size, strides, dilation, pad, dtype):
    """Flat table rows and bilinear weights of every sample point.

    Returns ``index`` ``[P]`` (rows of :func:`_corner_table`, P = B*Ho*Wo*G*K in that order)
    and ``weights`` ``[P, 4]`` (top-left, top-right, bottom-left, bottom-right; zero for a
    corner outside the input; times the mask when given).
    """
    (height, width), (kh, kw), (sh, sw), (dh, dw), (pt, pl) = size, kernel_size, strides, dilation, pad
    batch, out_h, out_w, offset_channels = _dims(offsets)
    taps = kh * kw
    groups = offset_channels // (2 * taps)
    # Sample coordinates p0 * s - pad + pn * d + delta, shape [B, Ho, Wo, G, K].
    coord_dtype = tf.float64 if dtype == tf.float64 else tf.float32
    offsets = tf.reshape(tf.cast(offsets, coord_dtype), [-1, out_h, out_w, groups, taps, 2])
    rows = tf.cast(tf.range(out_h) * sh - pt, coord_dtype)
    cols = tf.cast(tf.range(out_w) * sw - pl, coord_dtype)
    tap_rows = tf.constant([i * dh for i in range(kh) for _ in range(kw)], coord_dtype)
    tap_cols = tf.constant([j * dw for _ in range(kh) for j in range(kw)], coord_dtype)
    py = rows[:, None, None, None] + tap_rows + offsets[..., 0]
    px = cols[:, None, None] + tap_cols + offsets[..., 1]
    # Clipping keeps far-away points far away (zero weight) and the int32 cast safe.
    py = tf.clip_by_value(py, -2.0, tf.cast(height, coord_dtype) + 1.0)
    px = tf.clip_by_value(px, -2.0, tf.cast(width, coord_dtype) + 1.0)
    y0 = tf.floor(py)
    x0 = tf.floor(px)
    ly = py - y0
    lx = px - x0
    y0 = tf.cast(y0, tf.int32)
    x0 = tf.cast(x0, tf.int32)
    # A point whose top-left neighbour is in [-1, H-1] x [-1, W-1] has at least one neighbour
    # inside; the neighbours outside read the zero border of the padded table.
    inside = (y0 >= -1) & (y0 < height) & (x0 >= -1) & (x0 < width)
    row = (y0 + 1) * (width + 1) + (x0 + 1)
    row = tf.where(inside, row, tf.zeros_like(row))
    image = tf.range(batch)[:, None, None, None, None] * ((height + 1) * (width + 1))
    index = (image + row) * groups + tf.range(groups)[:, None] if groups > 1 else image + row

    hy, hx = 1.0 - ly, 1.0 - lx
    weights = tf.stack([hy * hx, hy * lx, ly * hx, ly * lx], axis=-1)
    weights *= tf.cast(inside, coord_dtype)[..., None]
    weights = tf.cast(weights, dtype)
    if mask is not None:
        mask = tf.reshape(tf.cast(mask, dtype), [-1, out_h, out_w, groups, taps, 1])
        weights *= mask

    return tf.reshape(index, [-1]), tf.reshape(weights, [-1, 4])


def _in_xla_context():
    """True while tracing for XLA (``tf.function(jit_compile=True)``)."""
    try:
        from tensorflow.python.ops import control_flow_util

        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except Exception:  # pragma: no cover - private TF API moved
        return False


def _corner_table(x, groups):
    """``[B*(H+1)*(W+1)*G, 4, C/G]``: row ``((b*(H+1) + y+1)*(W+1) + x+1)*G + g`` holds the
    2x2 neighbourhood ``x[b, y:y+2, x:x+2, C_g]`` (top-left, top-right, bottom-left,
    bottom-right) of the input zero-padded by one pixel."""
    _, height, width, channels = _dims(x)
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    corners = tf.stack(
        [padded[:, :-1, :-1], padded[:, :-1, 1:], padded[:, 1:, :-1], padded[:, 1:, 1:]], axis=3
    )
    if groups > 1:
        corners = tf.reshape(corners, [-1, height + 1, width + 1, 4, groups, channels // groups])
        corners = tf.transpose(corners, [0, 1, 2, 4, 3, 5])
    return tf.reshape(corners, [-1, 4, channels // groups])


def _corner_table_transpose(table, height, width, groups):
    """Adjoint of :func:`_corner_table`: adds each row's four corners back onto the input."""
    cg = table.shape[-1]
    if groups > 1:
        table = tf.reshape(table, [-1, height + 1, width + 1, groups, 4, cg])
        table = tf.transpose(table, [0, 1, 2, 4, 3, 5])
    table = tf.reshape(table, [-1, height + 1, width + 1, 4, groups * cg])
    return tf.add_n(
        [table[:, 1:, 1:, 0], table[:, 1:, :-1, 1], table[:, :-1, 1:, 2], table[:, :-1, :-1, 3]]
    )


def _sample_autodiff(x, index, weights, groups):
    """Bilinear samples ``[P, C/G]`` = sum_q weights[:, q] * table[index, q]; XLA fuses the
    gather, the product and the sum, and differentiates them itself."""
    samples = tf.gather(_corner_table(x, groups), index)
    return tf.reduce_sum(samples * weights[:, :, None], axis=1)


def _sample_custom_gradient(x, index, weights, groups):
    """Same as :func:`_sample_autodiff`, with the weighted sums as batched matrix products
    and a hand-written backward pass (a sparse-dense product for the input gradient); without
    XLA this avoids the broadcasts, tiles and [P, 4, C/G] update tensor of the automatic
    gradient."""
    batch, height, width, _ = _dims(x)

    @tf.custom_gradient
    def sample(x, weights):
        table = _corner_table(x, groups)
        samples = tf.gather(table, index)  # [P, 4, Cg]
        columns = tf.squeeze(tf.matmul(weights[:, None, :], samples), 1)

        def grad(d_columns):
            d_table = _scatter_corners(index, weights, d_columns, batch, tf.shape(table)[0])
            d_x = _corner_table_transpose(d_table, height, width, groups)
            d_weights = tf.squeeze(tf.matmul(samples, d_columns[:, :, None]), 2)
            return d_x, d_weights

        return columns, grad

    return sample(x, weights)


#: TensorFlow's sparse-dense product runs on one thread: the input gradient's scatter is
#: split into this many independent pieces (disjoint groups of images) that run in parallel.
_SCATTER_PIECES = max(1, min(8, os.cpu_count() or 1))


def _scatter_corners(index, weights, d_columns, batch, rows):
    """``d_table[4 index[p] + q] += weights[p, q] * d_columns[p]`` as sparse-dense products
    ``A^T d_columns`` (``A[p, 4 index[p] + q] = weights[p, q]``), which scatter into the
    table without materialising the ``[P, 4, C/G]`` updates. The points of image ``b`` only
    touch its own ``rows / batch`` table rows, so pieces of whole images are independent."""
    batch = tf.cast(batch, tf.int64)
    points = tf.shape(index, out_type=tf.int64)[0] // batch
    rows = tf.cast(rows, tf.int64) // batch
    index = tf.cast(index, tf.int64)
    pieces = []
    for k in range(_SCATTER_PIECES):
        first, last = batch * k // _SCATTER_PIECES, batch * (k + 1) // _SCATTER_PIECES
        start, stop = first * points, last * points
        count = stop - start
        cols = (index[start:stop] - first * rows)[:, None] * 4 + tf.range(4, dtype=tf.int64)
        scatter = tf.SparseTensor(
            tf.stack([tf.repeat(tf.range(count), 4), tf.reshape(cols, [-1])], axis=1),
            tf.reshape(weights[start:stop], [-1]),
            tf.stack([count, 4 * (last - first) * rows]),
        )
        pieces.append(tf.sparse.sparse_dense_matmul(scatter, d_columns[start:stop], adjoint_a=True))
    return tf.concat(pieces, axis=0) if len(pieces) > 1 else pieces[0]
