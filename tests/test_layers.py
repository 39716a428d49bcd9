"""Every custom layer of keras_apps through the shared harness (keras_apps.testing), each
case also checked against an independent reference; and a guard that a layer registered
under the "keras_apps" package cannot be added without a harness case."""

import dataclasses
import importlib
import json
import pathlib
import pkgutil
import subprocess
import sys
import textwrap
from typing import Callable

import keras
import numpy as np
import pytest

import keras_apps
from keras_apps.compression import ProductQuantizedConv2D, ProductQuantizedDense
from keras_apps.layers.hdcnn import FineScatter, FineToCoarse, ProbabilisticAveraging
from keras_apps.layers import (
    DeformableConv2D,
    L2NormalizeScale,
    LocalResponseNormalization,
    OffsetMaxPooling2D,
    SqueezeExcitation,
    ZeroPaddingShortcut,
)
from keras_apps.testing import run_layer_test
from tests.test_deformable import naive_deform_conv2d

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class LayerCase:
    """One harness case: ``reference(layer, inputs)`` is an independent computation of the
    layer's output (numpy loops, closed forms) from its weights."""

    id: str
    cls: type
    init_kwargs: dict
    make_inputs: Callable
    expected_output_shape: tuple
    reference: Callable


def _normal(*shape, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype("float32")


def _naive_padding(layer):
    if isinstance(layer.padding, str):
        return layer.padding
    rows, cols = layer.padding
    assert rows == cols, "the naive reference pads rows and columns alike"
    return rows


def _fresh_reference(layer, x):
    """A fresh DeformableConv2D predicts zero offsets, i.e. is a plain convolution (Dai et
    al., Sec. 2.1); a fresh modulated one also predicts masks sigmoid(0) = 0.5 (Zhu et al.)."""
    out_h, out_w = layer.compute_output_shape(x.shape)[1:3]
    taps = layer.kernel_size[0] * layer.kernel_size[1] * layer.offset_groups
    offsets = np.zeros((x.shape[0], out_h, out_w, 2 * taps))
    mask = np.full((x.shape[0], out_h, out_w, taps), 0.5) if layer.modulated else None
    bias = layer.bias.numpy() if layer.use_bias else None
    y = naive_deform_conv2d(x, offsets, layer.kernel.numpy(), bias, layer.strides,
                            _naive_padding(layer), layer.dilation_rate, mask)
    return np.maximum(y, 0) if layer.get_config()["activation"] == "relu" else y


def _external_reference(layer, inputs):
    x, offsets, *mask = inputs
    bias = layer.bias.numpy() if layer.use_bias else None
    return naive_deform_conv2d(x, offsets, layer.kernel.numpy(), bias, layer.strides,
                               _naive_padding(layer), layer.dilation_rate, mask[0] if mask else None)


def _lrn_reference(layer, x):
    n, channels = layer.size, x.shape[-1]
    out = np.empty_like(x)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        energy = np.sum(x[..., lo : hi + 1] ** 2, axis=-1)
        out[..., i] = x[..., i] / (layer.k + layer.alpha * energy) ** layer.beta
    return out


def _se_reference(layer, x):
    w1, b1, w2, b2 = (w.numpy() for w in (layer.reduce_kernel, layer.reduce_bias,
                                          layer.expand_kernel, layer.expand_bias))
    z = x.mean(axis=(1, 2))
    s = 1 / (1 + np.exp(-(np.maximum(z @ w1 + b1, 0) @ w2 + b2)))
    return x * s[:, None, None, :]


def _shortcut_reference(layer, x):
    batch, height, width, channels = x.shape
    out = np.zeros((batch, -(-height // layer.strides), -(-width // layer.strides), layer.filters), "float32")
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j, :channels] = x[:, i * layer.strides, j * layer.strides, :]
    return out


def _product_quantized_matrix(layer):
    """W_hat[i, j*s:(j+1)*s] = C[Q[i, j], j*s:(j+1)*s] (HD-CNN, "Parameter compression"), one
    loop iteration per row and segment."""
    codes, codebooks, s = layer.codes.numpy(), layer.codebooks.numpy(), layer.segment_length
    matrix = np.zeros((codes.shape[0], codebooks.shape[1]))
    for i in range(codes.shape[0]):
        for j in range(codes.shape[1]):
            matrix[i, j * s : (j + 1) * s] = codebooks[codes[i, j], j * s : (j + 1) * s]
    return matrix


def _product_quantized_dense_reference(layer, x):
    y = x @ _product_quantized_matrix(layer) + (layer.bias.numpy() if layer.use_bias else 0)
    return np.maximum(y, 0) if layer.get_config()["activation"] == "relu" else y


def _product_quantized_conv_reference(layer, x):
    kernel = _product_quantized_matrix(layer).reshape(*layer.kernel_size, x.shape[-1], layer.filters)
    out_h, out_w = layer.compute_output_shape(x.shape)[1:3]
    offsets = np.zeros((x.shape[0], out_h, out_w, 2 * kernel.shape[0] * kernel.shape[1]))
    bias = layer.bias.numpy() if layer.use_bias else None
    y = naive_deform_conv2d(x, offsets, kernel, bias, layer.strides, layer.padding, layer.dilation_rate)
    return np.maximum(y, 0) if layer.get_config()["activation"] == "relu" else y


def _probabilities(*shape, seed=0):
    x = np.random.default_rng(seed).uniform(0.05, 1.0, shape).astype("float32")
    return x / x.sum(axis=-1, keepdims=True)


def _fine_to_coarse_reference(layer, b):
    """B_k = sum_{j in S_k} b_j (HD-CNN Sec. 3), renormalised over k if the layer does."""
    out = np.zeros((b.shape[0], len(layer.coarse_sets)))
    for i in range(b.shape[0]):
        for k, members in enumerate(layer.coarse_sets):
            out[i, k] = sum(b[i, j] for j in members)
        if layer.normalize:
            out[i] /= out[i].sum()
    return out


def _fine_scatter_reference(layer, compact):
    out = np.zeros((compact[0].shape[0], len(layer.coarse_sets), layer.num_classes))
    for k, members in enumerate(layer.coarse_sets):
        for position, j in enumerate(members):
            out[:, k, j] = compact[k][:, position]
    return out


def _averaging_reference(layer, inputs):
    """p = sum_k B_k p_k / sum_k B_k (the paper's Eq. 1), or without the division."""
    coarse, fine = inputs
    out = np.zeros((fine.shape[0], fine.shape[2]))
    for i in range(fine.shape[0]):
        for k in range(fine.shape[1]):
            out[i] += coarse[i, k] * fine[i, k]
        if layer.renormalize:
            out[i] /= coarse[i].sum()
    return out


def _l2_normalize_scale_reference(layer, x):
    """Eq. 1-2 of "Growing a Brain": gamma * x / ||x||_2 over the channel axis."""
    x = np.asarray(x, np.float64)
    norm = np.sqrt(np.maximum((x * x).sum(axis=-1, keepdims=True), layer.epsilon))
    return np.asarray(layer.gamma) * x / norm


def _offset_pooling_reference(layer, x):
    """OverFeat Sec. 3.3: the s^2 poolings of x[:, dy:, dx:] (window k, stride s), each one
    a loop, interleaved as out[i*s + dy, j*s + dx]."""
    (kh, kw), (sh, sw) = layer.pool_size, layer.strides
    out = np.zeros((x.shape[0], x.shape[1] - kh + 1, x.shape[2] - kw + 1, x.shape[3]), "float32")
    for dy in range(sh):
        for dx in range(sw):
            for i in range((x.shape[1] - dy - kh) // sh + 1):
                for j in range((x.shape[2] - dx - kw) // sw + 1):
                    y0, x0 = dy + i * sh, dx + j * sw
                    out[:, i * sh + dy, j * sw + dx] = x[:, y0 : y0 + kh, x0 : x0 + kw].max(axis=(1, 2))
    return out


CASES = [
    LayerCase(
        "l2_normalize_scale",
        L2NormalizeScale,
        dict(scale_init=10.0),
        lambda: _normal(2, 3, 4, 6, seed=3),
        (2, 3, 4, 6),
        _l2_normalize_scale_reference,
    ),
    LayerCase(
        "deformable_predicted_offsets",
        DeformableConv2D,
        dict(filters=4, kernel_size=3, strides=(2, 1), padding=1, dilation_rate=(1, 2),
             offset_groups=2, activation="relu", bias_initializer="he_normal"),
        lambda: _normal(2, 7, 8, 4),
        (2, 4, 6, 4),
        _fresh_reference,
    ),
    LayerCase(
        "deformable_predicted_modulated",
        DeformableConv2D,
        dict(filters=3, kernel_size=(3, 2), padding="valid", modulated=True, use_bias=False),
        lambda: _normal(2, 6, 5, 2, seed=1),
        (2, 4, 4, 3),
        _fresh_reference,
    ),
    LayerCase(
        "deformable_external_offsets",
        DeformableConv2D,
        dict(filters=3, kernel_size=3, padding=1, offset_groups=2, external_offsets=True,
             bias_initializer="he_normal"),
        lambda: [_normal(2, 5, 6, 4, seed=2), _normal(2, 5, 6, 36, seed=3, scale=1.5)],
        (2, 5, 6, 3),
        _external_reference,
    ),
    LayerCase(
        "deformable_external_modulated",
        DeformableConv2D,
        dict(filters=2, kernel_size=2, strides=2, external_offsets=True, modulated=True),
        lambda: [
            _normal(2, 6, 6, 3, seed=4),
            _normal(2, 3, 3, 8, seed=5, scale=1.5),
            np.random.default_rng(6).uniform(0, 1, (2, 3, 3, 4)).astype("float32"),
        ],
        (2, 3, 3, 2),
        _external_reference,
    ),
    LayerCase(
        "local_response_normalization",
        LocalResponseNormalization,
        dict(size=3, k=1.0, alpha=0.5, beta=0.6),
        lambda: _normal(2, 3, 4, 6, seed=7),
        (2, 3, 4, 6),
        _lrn_reference,
    ),
    LayerCase(
        "offset_max_pooling",
        OffsetMaxPooling2D,
        dict(pool_size=3, strides=(3, 2)),
        lambda: _normal(2, 8, 7, 3, seed=22),
        (2, 6, 5, 3),
        _offset_pooling_reference,
    ),
    LayerCase(
        "squeeze_excitation",
        SqueezeExcitation,
        dict(reduction=2, kernel_initializer="he_normal"),
        lambda: _normal(2, 4, 3, 8, seed=8),
        (2, 4, 3, 8),
        _se_reference,
    ),
    LayerCase(
        "zero_padding_shortcut",
        ZeroPaddingShortcut,
        dict(filters=6, strides=2),
        lambda: _normal(2, 5, 4, 4, seed=9),
        (2, 3, 2, 6),
        _shortcut_reference,
    ),
    LayerCase(
        "product_quantized_dense",
        ProductQuantizedDense,
        dict(units=6, segment_length=3, codebook_size=4, activation="relu", bias_initializer="he_normal"),
        lambda: _normal(4, 5, seed=10),
        (4, 6),
        _product_quantized_dense_reference,
    ),
    LayerCase(
        "product_quantized_conv2d_same",
        ProductQuantizedConv2D,
        dict(filters=4, kernel_size=3, strides=(2, 1), padding="same", segment_length=2, codebook_size=5,
             bias_initializer="he_normal"),
        lambda: _normal(2, 5, 6, 3, seed=11),
        (2, 3, 6, 4),
        _product_quantized_conv_reference,
    ),
    LayerCase(
        "product_quantized_conv2d_dilated",
        ProductQuantizedConv2D,
        dict(filters=4, kernel_size=(2, 3), dilation_rate=(1, 2), segment_length=4, codebook_size=3,
             activation="relu", use_bias=False),
        lambda: _normal(2, 5, 7, 2, seed=12),
        (2, 4, 3, 4),
        _product_quantized_conv_reference,
    ),
    LayerCase(
        "fine_to_coarse_disjoint",
        FineToCoarse,
        dict(coarse_sets=[[0, 3], [1, 4, 5], [2]], num_classes=6),
        lambda: _probabilities(4, 6, seed=13),
        (4, 3),
        _fine_to_coarse_reference,
    ),
    LayerCase(
        "fine_to_coarse_overlapping_renormalised",
        FineToCoarse,
        dict(coarse_sets=[[0, 1, 3], [1, 2, 4, 5], [2, 3]], num_classes=6, normalize=True),
        lambda: _probabilities(4, 6, seed=14),
        (4, 3),
        _fine_to_coarse_reference,
    ),
    LayerCase(
        "fine_scatter_overlapping",
        FineScatter,
        dict(coarse_sets=[[0, 2], [1, 2, 4], [3, 4, 5]], num_classes=6, fine_to_coarse=[0, 1, 0, 2, 1, 2]),
        lambda: [_probabilities(4, 2, seed=15), _probabilities(4, 3, seed=16), _probabilities(4, 3, seed=17)],
        (4, 3, 6),
        _fine_scatter_reference,
    ),
    LayerCase(
        "probabilistic_averaging_paper",
        ProbabilisticAveraging,
        dict(),
        lambda: [_probabilities(4, 3, seed=18) * 0.7, _probabilities(4, 3, 5, seed=19)],
        (4, 5),
        _averaging_reference,
    ),
    LayerCase(
        "probabilistic_averaging_release",
        ProbabilisticAveraging,
        dict(renormalize=False),
        lambda: [_probabilities(4, 3, seed=20), _probabilities(4, 3, 5, seed=21)],
        (4, 5),
        _averaging_reference,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_layer_harness(case):
    inputs = case.make_inputs()
    layer = run_layer_test(case.cls, case.init_kwargs, inputs, case.expected_output_shape)
    expected = case.reference(layer, inputs)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(inputs)), expected, rtol=1e-4, atol=1e-5)


def _registered_layers():
    for module in pkgutil.walk_packages(keras_apps.__path__, "keras_apps."):
        importlib.import_module(module.name)  # layers outside keras_apps.layers register on import
    return {
        key: obj
        for key, obj in keras.saving.get_custom_objects().items()
        if key.startswith("keras_apps>") and isinstance(obj, type) and issubclass(obj, keras.layers.Layer)
        and not issubclass(obj, keras.Model)
    }


def test_every_registered_layer_has_a_harness_case():
    registered = _registered_layers()
    assert DeformableConv2D in registered.values()
    covered = {case.cls for case in CASES}
    missing = sorted(key for key, cls in registered.items() if cls not in covered)
    assert not missing, (
        f"layers registered under the 'keras_apps' package without a run_layer_test case: {missing}; "
        "add a LayerCase for each to CASES in tests/test_layers.py"
    )


def test_harness_catches_a_constructor_argument_missing_from_the_config():
    @keras.saving.register_keras_serializable(package="keras_apps_tests")
    class ForgetfulScale(keras.layers.Layer):
        def __init__(self, factor=1.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, inputs):
            return inputs * self.factor

        def get_config(self):
            return super().get_config()  # forgets `factor`

    with pytest.raises(AssertionError, match="missing from get_config"):
        run_layer_test(ForgetfulScale, {"factor": 3.0}, _normal(2, 3))


def test_harness_catches_a_wrong_symbolic_shape():
    @keras.saving.register_keras_serializable(package="keras_apps_tests")
    class WrongShape(keras.layers.Layer):
        def call(self, inputs):
            return inputs[:, 1:]

        def compute_output_shape(self, input_shape):
            return input_shape

    with pytest.raises(AssertionError, match="symbolic output shape"):
        run_layer_test(WrongShape, {}, _normal(2, 4))


@pytest.mark.filterwarnings("ignore:Gradients do not exist")
def test_harness_catches_a_weight_that_does_not_train():
    @keras.saving.register_keras_serializable(package="keras_apps_tests")
    class DeadWeight(keras.layers.Layer):
        def build(self, input_shape):
            self.used = self.add_weight(shape=(input_shape[-1],), initializer="ones")
            self.unused = self.add_weight(shape=(1,), initializer="ones")

        def call(self, inputs):
            return inputs * self.used

    with pytest.raises(AssertionError, match="leaves weight .* unchanged"):
        run_layer_test(DeadWeight, {}, _normal(2, 4))


def test_harness_catches_a_layer_that_ignores_the_bfloat16_policy():
    @keras.saving.register_keras_serializable(package="keras_apps_tests")
    class AlwaysFloat32(keras.layers.Layer):
        def call(self, inputs):
            return keras.ops.cast(inputs, "float32") * 2.0

    with pytest.raises(AssertionError, match="not bfloat16"):
        run_layer_test(AlwaysFloat32, {}, _normal(2, 4))


@pytest.mark.slow
def test_every_case_under_two_mirrored_cpu_replicas():
    # Two logical CPUs must be configured before TensorFlow initialises its devices, hence a
    # fresh interpreter.
    script = textwrap.dedent("""
        import json
        from keras_apps.testing import configure_cpu_replicas, mirrored_strategy, run_layer_test
        configure_cpu_replicas(2)
        from tests.test_layers import CASES
        strategy = mirrored_strategy()
        for case in CASES:
            run_layer_test(case.cls, case.init_kwargs, case.make_inputs(), case.expected_output_shape,
                           run_precision_check=False, strategy=strategy)
        print(json.dumps({"replicas": strategy.num_replicas_in_sync, "cases": len(CASES)}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"replicas": 2, "cases": len(CASES)}
