"""Deformable convolution: the op against a naive per-pixel loop, Conv2D and shifted
convolutions; numerical gradients; the layer's serialisation, XLA, MirroredStrategy, SavedModel
and TFLite paths; the deformable ResNets."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_apps
from keras_apps.layers import DeformableConv2D
from keras_apps.models import resnet_dcn
from keras_apps.ops import deform_conv2d

# -- independent reference --------------------------------------------------------------------


def _same_pads(size, k, s, d):
    """TensorFlow's SAME padding (documented formula), (before, after)."""
    effective = (k - 1) * d + 1
    total = max((math.ceil(size / s) - 1) * s + effective - size, 0)
    return total // 2, total - total // 2


def _bilinear(image, y, x):
    """torchvision's ``bilinear_interpolate``: zero outside (-1, H) x (-1, W), and each of the
    four neighbours contributes only if it lies inside the image. ``image`` is [H, W, C]."""
    height, width = image.shape[:2]
    if y <= -1 or y >= height or x <= -1 or x >= width:
        return np.zeros(image.shape[-1])
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    value = np.zeros(image.shape[-1])
    for yy, xx, weight in (
        (y0, x0, (1 - ly) * (1 - lx)),
        (y0, x0 + 1, (1 - ly) * lx),
        (y0 + 1, x0, ly * (1 - lx)),
        (y0 + 1, x0 + 1, ly * lx),
    ):
        if 0 <= yy < height and 0 <= xx < width:
            value += weight * image[yy, xx]
    return value


def naive_deform_conv2d(x, offsets, kernel, bias, strides, padding, dilation, mask=None):
    """y[b, ho, wo] = bias + sum_{g, i, j} m * W[i, j, C_g] . x_{C_g}(ho*s - pt + i*d + dy, ...),
    one loop iteration per output pixel, offset group and kernel tap, in float64."""
    batch, height, width, channels = x.shape
    kh, kw, _, cout = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    if padding == "same":
        pt, pb = _same_pads(height, kh, sh, dh)
        pl, pr = _same_pads(width, kw, sw, dw)
    elif padding == "valid":
        pt = pb = pl = pr = 0
    else:
        pt = pb = pl = pr = padding
    out_h = (height + pt + pb - (kh - 1) * dh - 1) // sh + 1
    out_w = (width + pl + pr - (kw - 1) * dw - 1) // sw + 1
    taps = kh * kw
    groups = offsets.shape[-1] // (2 * taps)
    cg = channels // groups
    out = np.zeros((batch, out_h, out_w, cout))
    for b in range(batch):
        for ho in range(out_h):
            for wo in range(out_w):
                acc = np.zeros(cout) if bias is None else np.array(bias, dtype=np.float64)
                for g in range(groups):
                    image = x[b, :, :, g * cg : (g + 1) * cg]
                    for i in range(kh):
                        for j in range(kw):
                            t = i * kw + j
                            dy = offsets[b, ho, wo, 2 * (g * taps + t)]
                            dx = offsets[b, ho, wo, 2 * (g * taps + t) + 1]
                            sample = _bilinear(image, ho * sh - pt + i * dh + dy, wo * sw - pl + j * dw + dx)
                            m = 1.0 if mask is None else mask[b, ho, wo, g * taps + t]
                            acc += m * sample @ kernel[i, j, g * cg : (g + 1) * cg]
                out[b, ho, wo] = acc
    return out


def _output_size(size, k, s, d, padding):
    if padding == "same":
        return math.ceil(size / s)
    pad = 0 if padding == "valid" else 2 * padding
    return (size + pad - (k - 1) * d - 1) // s + 1


def _random_case(rng, size, channels, cout, kernel, strides, dilation, padding, groups, masked, spread):
    (h, w), (kh, kw) = size, kernel
    ho = _output_size(h, kh, strides[0], dilation[0], padding)
    wo = _output_size(w, kw, strides[1], dilation[1], padding)
    x = rng.standard_normal((2, h, w, channels))
    # Fractional offsets, kept away from integers: integer part in [-spread, spread].
    whole = rng.integers(-spread, spread + 1, size=(2, ho, wo, 2 * groups * kh * kw))
    offsets = whole + rng.uniform(0.15, 0.85, size=whole.shape) * rng.choice([-1, 1], size=whole.shape)
    k = rng.standard_normal((kh, kw, channels, cout))
    bias = rng.standard_normal(cout)
    mask = rng.uniform(0, 1, size=(2, ho, wo, groups * kh * kw)) if masked else None
    return x, offsets, k, bias, mask


CASES = [
    # size, Cin, Cout, kernel, strides, dilation, padding, groups, mask
    ((7, 6), 4, 3, (3, 3), (1, 1), (1, 1), "valid", 1, False),
    ((8, 8), 4, 2, (3, 3), (2, 2), (1, 1), "same", 2, True),
    ((7, 9), 6, 3, (3, 2), (1, 2), (2, 1), "same", 3, False),
    ((6, 7), 4, 3, (3, 3), (2, 2), (2, 2), 1, 4, True),
    ((5, 5), 2, 2, (1, 1), (1, 1), (1, 1), "valid", 2, True),
]


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[3]}s{c[4]}d{c[5]}p{c[6]}g{c[7]}m{int(c[8])}")
def test_matches_naive_loop(case, mode):
    size, cin, cout, kernel, strides, dilation, padding, groups, masked = case
    rng = np.random.default_rng(CASES.index(case))
    x, offsets, k, bias, mask = _random_case(
        rng, size, cin, cout, kernel, strides, dilation, padding, groups, masked, spread=3
    )
    expected = naive_deform_conv2d(x, offsets, k, bias, strides, padding, dilation, mask)

    def op(x, offsets, k, bias, mask):
        return deform_conv2d(x, offsets, k, bias, strides, padding, dilation, mask)

    if mode == "jit":
        op = tf.function(op, jit_compile=True)
    got = op(x, offsets, k, bias, mask).numpy()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


# -- Conv2D, shifts and borders ------------------------------------------------------------------


@pytest.mark.parametrize(
    "size,strides,padding,dilation",
    [
        (8, 1, "same", 1),
        (8, 2, "same", 1),
        (9, 2, "same", 1),
        (7, 1, "valid", 2),
        (10, 3, "same", 1),
        (8, 2, 1, 1),
    ],
)
def test_fresh_layer_equals_conv2d(size, strides, padding, dilation):
    """Zero-initialised offsets: exactly Conv2D, including SAME's asymmetric stride-2 padding."""
    x = np.random.default_rng(0).standard_normal((2, size, size, 6)).astype("float32")
    dcn = DeformableConv2D(5, 3, strides, padding, dilation, offset_groups=2, bias_initializer="normal")
    y = dcn(x)
    if isinstance(padding, int):
        x = np.pad(x, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
        padding = "valid"
    conv = keras.layers.Conv2D(5, 3, strides, padding, dilation_rate=dilation)
    conv.build(x.shape)
    conv.set_weights([dcn.kernel.numpy(), dcn.bias.numpy()])
    np.testing.assert_allclose(y, conv(x), rtol=1e-5, atol=1e-5)


def test_fresh_modulated_layer_is_half_conv2d_plus_bias():
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 4)).astype("float32")
    dcn = DeformableConv2D(3, 3, 2, "same", modulated=True, bias_initializer="normal")
    y = dcn(x)
    plain = tf.nn.conv2d(x, dcn.kernel, 2, "SAME")
    np.testing.assert_allclose(y, 0.5 * plain + dcn.bias, rtol=1e-5, atol=1e-5)


def test_integer_offsets_equal_shifted_convolution():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 9, 8, 3))
    k = rng.standard_normal((3, 3, 3, 4))
    dy, dx = 2, -1
    offsets = np.tile([dy, dx], (1, 9, 8, 9)).astype("float64")
    got = deform_conv2d(x, offsets, k, padding="same")
    # Sampling at p + (dy, dx) is a plain convolution of the (zero-extended) input shifted
    # by (dy, dx): shifted[y, x] = x[y + dy, x + dx].
    margin = 4
    padded = np.pad(x, [(0, 0), (margin, margin), (margin, margin), (0, 0)])
    shifted = np.roll(padded, (-dy, -dx), axis=(1, 2))  # rolls in zeros: margin > shift
    window = shifted[:, margin - 1 : margin + 9 + 1, margin - 1 : margin + 8 + 1]
    expected = tf.nn.conv2d(window, k, 1, "VALID")
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_samples_outside_the_image_contribute_zero():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 5, 5, 2))
    k = rng.standard_normal((3, 3, 2, 2))
    bias = np.array([0.5, -1.0])
    far = np.full((1, 5, 5, 18), 100.0)
    only_bias = np.broadcast_to(bias, (1, 5, 5, 2))
    np.testing.assert_allclose(deform_conv2d(x, far, k, bias, padding="same"), only_bias)
    np.testing.assert_allclose(deform_conv2d(x, -far, k, bias, padding="same"), only_bias)
    # Half a pixel above row 0 keeps half of row 0 (no clamping to the border).
    one = np.ones((1, 1, 2, 1))
    got = deform_conv2d(x, np.broadcast_to([-0.5, 0.0], (1, 5, 5, 2)).copy(), one)
    np.testing.assert_allclose(got[0, 0, :, 0], 0.5 * x[0, 0].sum(-1), rtol=1e-12)
    np.testing.assert_allclose(got[0, 1:, :, 0], 0.5 * (x[0, :-1] + x[0, 1:]).sum(-1), rtol=1e-12)
    # 1.5 pixels above: only the zero padding remains.
    got = deform_conv2d(x, np.broadcast_to([-1.5, 0.3], (1, 5, 5, 2)).copy(), one)
    assert np.all(got[0, 0] == 0) and np.any(got[0, 2] != 0)


# -- gradients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["graph", "jit"])
def test_gradients_match_finite_differences(mode):
    """Without XLA the op has a hand-written backward pass; with XLA, automatic gradients."""
    rng = np.random.default_rng(4)
    x, offsets, k, _, mask = _random_case(
        rng, (5, 5), 4, 3, (2, 2), (1, 1), (1, 1), "valid", 2, True, spread=2
    )
    x, offsets, mask = x[:1], offsets[:1], mask[:1]  # keep the Jacobians small

    def op(x, offsets, mask, k):
        return deform_conv2d(x, offsets, k, padding="valid", mask=mask)

    op = tf.function(op, jit_compile=(mode == "jit"))
    theoretical, numerical = tf.test.compute_gradient(op, [x, offsets, mask, k], delta=1e-6)
    for name, t, n in zip(["input", "offsets", "mask", "kernel"], theoretical, numerical):
        assert np.abs(t).max() > 0, name
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-7, err_msg=name)


def test_hand_written_and_xla_gradients_agree_across_images(monkeypatch):
    """The hand-written backward pass splits the input gradient's scatter by images."""
    from keras_apps.ops import deform_conv as dc

    monkeypatch.setattr(dc, "_SCATTER_PIECES", 2)
    rng = np.random.default_rng(11)
    x, offsets, k, bias, mask = _random_case(rng, (6, 5), 4, 3, (3, 3), (2, 1), (1, 1), "same", 2, True, 2)
    x, offsets, mask = (np.concatenate([a, a[:1]]) for a in (x, offsets, mask))  # batch 3

    def grads(x, offsets, mask, k, bias):
        with tf.GradientTape() as tape:
            tape.watch([x, offsets, mask, k, bias])
            y = deform_conv2d(x, offsets, k, bias, (2, 1), "same", 1, mask)
            loss = tf.reduce_sum(tf.sin(y))
        return tape.gradient(loss, [x, offsets, mask, k, bias])

    args = [tf.constant(a) for a in (x, offsets, mask, k, bias)]
    for a, b in zip(tf.function(grads)(*args), tf.function(grads, jit_compile=True)(*args)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_layer_gradients_reach_every_weight():
    layer = DeformableConv2D(4, 3, padding="same", modulated=True, offset_groups=2)
    x = tf.random.normal((2, 6, 6, 4))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert [w.name for w in layer.trainable_weights] == ["kernel", "bias", "offset_kernel", "offset_bias"]
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None and np.abs(g).max() > 0, w.name


# -- errors ------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    x = np.zeros((1, 6, 6, 4), "float32")
    k = np.zeros((3, 3, 4, 2), "float32")
    with pytest.raises(ValueError, match="2 \\* offset_groups \\* kh \\* kw"):
        deform_conv2d(x, np.zeros((1, 6, 6, 17), "float32"), k, padding="same")
    with pytest.raises(ValueError, match="do not divide"):
        deform_conv2d(x, np.zeros((1, 6, 6, 54), "float32"), k, padding="same")
    with pytest.raises(ValueError, match="`mask` must be"):
        deform_conv2d(x, np.zeros((1, 6, 6, 18), "float32"), k, padding="same", mask=np.zeros((1, 6, 6, 18)))
    with pytest.raises(ValueError, match="spatial shape"):
        deform_conv2d(x, np.zeros((1, 6, 6, 18), "float32"), k, padding="valid")
    with pytest.raises(ValueError, match="larger than the padded input"):
        deform_conv2d(np.zeros((1, 2, 2, 4)), np.zeros((1, 1, 1, 18)), k)
    with pytest.raises(ValueError, match="larger than the padded input"):
        DeformableConv2D(2, 3)(np.zeros((1, 2, 5, 4)))
    with pytest.raises(ValueError, match="must divide"):
        DeformableConv2D(2, 3, offset_groups=3)(x)
    external = DeformableConv2D(2, 3, padding="same", external_offsets=True)
    with pytest.raises(ValueError, match="modulated=False"):
        external([x, np.zeros((1, 6, 6, 18), "float32"), np.zeros((1, 6, 6, 9), "float32")])
    with pytest.raises(ValueError, match="channels"):
        external([x, np.zeros((1, 6, 6, 16), "float32")])
    with pytest.raises(ValueError, match="one input tensor"):
        DeformableConv2D(2, 3)([x, x])


def test_external_offsets_match_op():
    rng = np.random.default_rng(5)
    x, offsets, k, bias, mask = _random_case(rng, (6, 6), 4, 2, (3, 3), (1, 1), (1, 1), "same", 1, True, 2)
    layer = DeformableConv2D(2, 3, padding="same", modulated=True, external_offsets=True, dtype="float64")
    layer.build([x.shape, offsets.shape, mask.shape])
    layer.set_weights([k, bias])
    got = layer([x, offsets, mask])
    expected = naive_deform_conv2d(x, offsets, k, bias, (1, 1), "same", (1, 1), mask)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


# -- the layer in models: serialisation, XLA, distribution, export ---------------------------------


def _small_model(modulated=True):
    inputs = keras.Input((12, 12, 3), name="image")
    x = DeformableConv2D(8, 3, padding="same", modulated=modulated, offset_groups=1, name="dcn1")(inputs)
    x = keras.layers.ReLU()(x)
    x = DeformableConv2D(6, 3, strides=2, padding=1, offset_groups=2, activation="relu", name="dcn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    rng = np.random.default_rng(6)
    for layer in model.layers:  # learned-looking offsets: about one pixel
        if isinstance(layer, DeformableConv2D):
            layer.offset_kernel.assign(0.3 * rng.standard_normal(layer.offset_kernel.shape).astype("float32"))
    return model


def test_config_and_keras_file_round_trip(tmp_path):
    layer = DeformableConv2D(
        4, (3, 2), strides=(2, 1), padding=(1, 0), dilation_rate=(1, 2), offset_groups=2, modulated=True,
        activation="relu", use_bias=False, kernel_regularizer="l2", name="d",
    )
    clone = DeformableConv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()

    model = _small_model()
    x = np.random.default_rng(7).standard_normal((2, 12, 12, 3)).astype("float32")
    path = tmp_path / "dcn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(model(x), loaded(x))


def test_jit_compile_and_mirrored_strategy_training():
    x = np.random.default_rng(8).standard_normal((4, 12, 12, 3)).astype("float32")
    y = np.arange(4) % 3
    model = _small_model()
    eager = model(x)
    np.testing.assert_allclose(tf.function(model, jit_compile=True)(x), eager, rtol=1e-4, atol=1e-5)
    # Graph mode (model.fit's default on a CPU), with a partial last batch (dynamic batch size).
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    assert np.all(np.isfinite(model.fit(x, y, batch_size=3, epochs=1, verbose=0).history["loss"]))

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _small_model()
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    before = model.get_layer("dcn1").offset_kernel.numpy()
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert not np.allclose(model.get_layer("dcn1").offset_kernel.numpy(), before)


def test_saved_model_export_and_tflite_builtins(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = _small_model()
    x = np.random.default_rng(9).standard_normal((2, 12, 12, 3)).astype("float32")
    expected = model(x).numpy()
    export_dir = str(tmp_path / "saved")
    model.export(export_dir, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(export_dir)
    np.testing.assert_allclose(reloaded.serve(x), expected, rtol=1e-5, atol=1e-5)

    converter = tf.lite.TFLiteConverter.from_saved_model(export_dir)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no SELECT_TF_OPS
    flatbuffer = converter.convert()
    interpreter = Interpreter(model_content=flatbuffer)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "GATHER" in ops and not any(name.startswith("Flex") or name == "CUSTOM" for name in ops), ops
    runner = interpreter.get_signature_runner()
    (input_name,) = runner.get_input_details()
    (output,) = runner(**{input_name: x}).values()
    np.testing.assert_allclose(output, expected, rtol=1e-4, atol=1e-4)


# -- deformable ResNets ------------------------------------------------------------------------------


def test_resnet_dcn_layers_and_equivalence_to_resnet():
    kwargs = dict(input_shape=(64, 64, 3), classes=10)
    plain = keras_apps.build("resnet50", **kwargs)
    dcn = keras_apps.build("resnet50_dcn", **kwargs)
    deformable = [layer.name for layer in dcn.layers if isinstance(layer, DeformableConv2D)]
    assert deformable == [f"conv5_block{i}_2_conv" for i in (1, 2, 3)]
    assert [layer.name for layer in dcn.layers] == [layer.name for layer in plain.layers]
    # With zero-initialised offsets, a DCNv1 ResNet computes its plain ResNet.
    assert resnet_dcn.transfer_resnet_weights(dcn, plain) == len([lay for lay in plain.layers if lay.weights])
    x = np.random.default_rng(10).uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(dcn(x), plain(x), rtol=1e-4, atol=1e-6)

    v2 = keras_apps.build("resnet50_dcnv2", include_top=False, input_shape=(64, 64, 3))
    modulated = [layer for layer in v2.layers if isinstance(layer, DeformableConv2D)]
    assert len(modulated) == 4 + 6 + 3 and all(layer.modulated for layer in modulated)
    option = keras_apps.build(
        "resnet50_dcn", include_top=False, input_shape=(64, 64, 3), deformable_stages=(3, 4, 5)
    )
    assert sum(isinstance(layer, DeformableConv2D) for layer in option.layers) == 13
    with pytest.raises(ValueError, match="deformable_stages"):
        keras_apps.build("resnet50_dcn", deformable_stages=(6,))
    for name in ("resnet50_dcn", "resnet50_dcnv2", "resnet101_dcn"):
        assert name in keras_apps.list_models("resnet*_dcn*")
