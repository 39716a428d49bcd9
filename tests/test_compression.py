"""Product-quantization compression (HD-CNN, "Parameter compression"): the compression factor
against its closed form, k-means codes against planted and exactly representable matrices, the
reconstruction against a naive loop, and compressed models against ordinary copies whose
kernels were replaced by the reconstruction (nested sub-models included)."""

import fractions
import importlib.util
import os
import pathlib

import keras
import numpy as np
import pytest

import keras_apps
from keras_apps.analysis import count_flops
from keras_apps.compression import (
    ProductQuantizedConv2D,
    ProductQuantizedDense,
    compress_model,
    compression_factor,
    kernel_matrix,
    product_quantize,
    reconstruct,
)

REPO = pathlib.Path(__file__).resolve().parents[1]


def _closed_form(m, n, s, k):
    """(32 m n) / (32 k n + 8 m n / s), exactly."""
    return fractions.Fraction(32 * m * n) / (32 * k * n + fractions.Fraction(8 * m * n, s))


def _naive_reconstruct(codes, codebooks, s):
    matrix = np.zeros((codes.shape[0], codebooks.shape[1]), np.float32)
    for i in range(codes.shape[0]):
        for j in range(codes.shape[1]):
            for c in range(s):
                matrix[i, j * s + c] = codebooks[codes[i, j], j * s + c]
    return matrix


def _layer_at(model, path):
    layer = model
    for name in path.split("/"):
        layer = layer.get_layer(name)
    return layer


def _reference(model, compressed, paths):
    """An ordinary copy of ``model`` whose compressed kernels are the naive reconstruction
    of the codes and codebooks that ``compressed`` stores."""
    reference = model.__class__.from_config(model.get_config())
    reference.set_weights(model.get_weights())
    for path in paths:
        layer, quantized = _layer_at(reference, path), _layer_at(compressed, path)
        matrix = _naive_reconstruct(quantized.codes.numpy(), quantized.codebooks.numpy(), quantized.segment_length)
        layer.kernel.assign(matrix.reshape(layer.kernel.shape))
    return reference


def _images(*shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype("float32")


def _dense_model():
    inputs = keras.Input((128,), name="features")
    x = keras.layers.Dense(128, activation="relu", name="fc1")(inputs)
    x = keras.layers.Dense(64, activation="relu", name="fc2")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name="mlp")


def _nested_model():
    """A functional model around a nested functional and a nested Sequential model whose
    layers share names ("proj", "head") with each other and with a top-level layer."""

    def functional_branch():
        inputs = keras.Input((6, 6, 3))
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="proj")(inputs)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        return keras.Model(inputs, keras.layers.Dense(6, name="head")(x), name="inner_a")

    sequential_branch = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="proj"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(6, name="head"),
        ],
        name="inner_b",
    )
    inputs = keras.Input((6, 6, 3), name="image")
    x = keras.layers.Concatenate(name="concat")([functional_branch()(inputs), sequential_branch(inputs)])
    return keras.Model(inputs, keras.layers.Dense(4, name="proj")(x), name="outer")


# -- compression_factor ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "m, n, s, k, by_hand",
    [
        # 32*1024*1024 / (32*64*1024 + 8*1024*1024/2) = 32768 / 6144
        (1024, 1024, 2, 64, fractions.Fraction(16, 3)),
        # NIN conv2 at full width (5x5x192 -> 192), the paper's CIFAR setting s=2, k=64:
        # 32*4800 / (32*64 + 8*4800/2) = 153600 / 21248
        (4800, 192, 2, 64, fractions.Fraction(600, 83)),
        # NIN conv3 (3x3x192 -> 192), s=3: 32*1728 / (32*64 + 8*1728/3) = 55296 / 6656
        (1728, 192, 3, 64, fractions.Fraction(108, 13)),
        # an ImageNet-style 4096x4096 matrix with k=256, s=2: 32*4096 / (32*256 + 4*4096)
        (4096, 4096, 2, 256, fractions.Fraction(16, 3)),
    ],
)
def test_compression_factor_by_hand(m, n, s, k, by_hand):
    assert _closed_form(m, n, s, k) == by_hand
    assert compression_factor(m, n, s, k) == pytest.approx(float(by_hand), rel=1e-15)


@pytest.mark.parametrize("m, n, s, k", [(7, 9, 3, 7), (300, 10, 5, 256), (64, 6, 1, 1), (50, 12, 12, 3)])
def test_compression_factor_matches_the_closed_form(m, n, s, k):
    assert compression_factor(m, n, s, k) == float(_closed_form(m, n, s, k))


# -- product_quantize and reconstruct -------------------------------------------------------------


@pytest.mark.parametrize("k", [5, 8])
def test_quantization_is_exact_when_k_covers_the_distinct_rows(k):
    rng = np.random.default_rng(3)
    m, n, s = 40, 6, 2
    W = np.empty((m, n), np.float32)
    for segment in range(n // s):
        values = rng.standard_normal((5, s)).astype(np.float32)  # 5 distinct rows per segment
        W[:, segment * s : (segment + 1) * s] = values[rng.integers(0, 5, m)]
    codes, codebooks = product_quantize(W, s, k)
    assert codes.dtype == np.uint8 and codes.shape == (m, n // s)
    assert codebooks.dtype == np.float32 and codebooks.shape == (k, n)
    np.testing.assert_array_equal(_naive_reconstruct(codes, codebooks, s), W)


def test_quantization_recovers_planted_centres():
    rng = np.random.default_rng(4)
    m, n, s, k, noise = 300, 8, 4, 6, 1e-3
    centres = 10 * rng.standard_normal((k, n))  # well separated, k per segment
    labels = rng.integers(0, k, (m, n // s))
    W = np.concatenate([centres[labels[:, j], j * s : (j + 1) * s] for j in range(n // s)], axis=1)
    W = W + noise * rng.standard_normal(W.shape)
    codes, codebooks = product_quantize(W, s, k, seed=1)
    for j in range(n // s):
        truth, found = centres[:, j * s : (j + 1) * s], codebooks[:, j * s : (j + 1) * s]
        distances = np.linalg.norm(truth[:, None, :] - found[None, :, :], axis=-1)
        assert np.all(distances.min(axis=1) < 10 * noise), f"segment {j}: a planted centre was missed"
        # each planted label maps to exactly one code and back
        match = distances.argmin(axis=1)
        assert sorted(match) == list(range(k))
        np.testing.assert_array_equal(codes[:, j], match[labels[:, j]])
    assert np.max(np.abs(_naive_reconstruct(codes, codebooks, s) - W)) < 10 * noise


def test_reconstruct_matches_a_naive_loop():
    rng = np.random.default_rng(5)
    m, n, s, k = 17, 12, 3, 9
    codes = rng.integers(0, k, (m, n // s)).astype(np.uint8)
    codebooks = rng.standard_normal((k, n)).astype(np.float32)
    result = reconstruct(codes, codebooks, s)
    assert result.dtype == np.float32 and result.shape == (m, n)
    np.testing.assert_array_equal(result, _naive_reconstruct(codes, codebooks, s))


def test_the_seed_fixes_the_codes():
    W = np.random.default_rng(6).standard_normal((64, 4))
    first, second = product_quantize(W, 2, 8, seed=3), product_quantize(W, 2, 8, seed=3)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


# -- compress_model -------------------------------------------------------------------------------


def _check_report_entry(entry, W, compressed_layer):
    m, n = W.shape
    s, k = entry["s"], entry["k"]
    assert (entry["m"], entry["n"]) == (m, n)
    assert entry["factor"] == float(_closed_form(m, n, s, k))
    assert entry["bytes_before"] == 4 * m * n and entry["bytes_after"] == 4 * k * n + m * n // s
    assert entry["factor"] == pytest.approx(entry["bytes_before"] / entry["bytes_after"], rel=1e-12)
    codes, codebooks = compressed_layer.codes.numpy(), compressed_layer.codebooks.numpy()
    assert codes.dtype == np.uint8 and codes.shape == (m, n // s)
    assert codebooks.dtype == np.float32 and codebooks.shape == (k, n)
    error = np.max(np.abs(W - _naive_reconstruct(codes, codebooks, s)))
    assert entry["max_abs_error"] == pytest.approx(float(error), rel=1e-6)


def _saved_size(model, path):
    model.save(path)
    return os.path.getsize(path)


def test_compress_a_dense_model(tmp_path):
    model = _dense_model()
    before = [w.copy() for w in model.get_weights()]
    compressed, report = compress_model(model, s=4, k=16, min_size=1024)
    assert sorted(report["layers"]) == ["fc1", "fc2"]  # logits (640 parameters) is below min_size
    assert type(compressed.get_layer("fc1")) is ProductQuantizedDense
    assert type(compressed.get_layer("logits")) is keras.layers.Dense
    for got, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, old)  # the input model is unchanged
    for path, entry in report["layers"].items():
        _check_report_entry(entry, model.get_layer(path).kernel.numpy(), compressed.get_layer(path))
    assert compressed.get_layer("fc1").get_config()["activation"] == "relu"

    x = np.random.default_rng(7).standard_normal((5, 128)).astype("float32")
    expected = _reference(model, compressed, report["layers"]).predict(x, verbose=0)
    np.testing.assert_allclose(compressed.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)

    totals = report["totals"]
    assert totals["params_before"] == model.count_params()
    assert totals["bytes_before"] == 4 * model.count_params()
    saved = sum(e["bytes_before"] - e["bytes_after"] for e in report["layers"].values())
    assert totals["bytes_before"] - totals["bytes_after"] == saved
    assert totals["factor"] == pytest.approx(totals["bytes_before"] / totals["bytes_after"])

    original_size = _saved_size(model, tmp_path / "mlp.keras")
    compressed_size = _saved_size(compressed, tmp_path / "mlp_pq.keras")
    assert abs((original_size - compressed_size) - saved) < 0.05 * saved  # the file stores uint8 codes
    loaded = keras.saving.load_model(tmp_path / "mlp_pq.keras", safe_mode=True)
    assert type(loaded.get_layer("fc2")) is ProductQuantizedDense
    assert keras.backend.standardize_dtype(loaded.get_layer("fc2").codes.dtype) == "uint8"
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), compressed.predict(x, verbose=0))


def test_compress_nin(tmp_path):
    model = keras_apps.build("nin_cifar", input_shape=(16, 16, 3), classes=10, width=0.25)
    compressed, report = compress_model(model, s=2, k=16, min_size=2000)
    # cccp1 (48x40), cccp2 (40x24) and cccp6 (48x10) are below min_size=2000 parameters.
    assert sorted(report["layers"]) == ["cccp3", "cccp4", "cccp5", "conv1", "conv2", "conv3"]
    assert report["skipped"] == {}
    for path, entry in report["layers"].items():
        original = model.get_layer(path)
        layer = compressed.get_layer(path)
        assert type(layer) is ProductQuantizedConv2D
        assert (layer.kernel_size, layer.strides, layer.padding) == (
            original.kernel_size, original.strides, original.padding
        )
        assert entry["kernel_shape"] == list(original.kernel.shape)
        _check_report_entry(entry, kernel_matrix(original), layer)
    assert [layer.name for layer in compressed.layers] == [layer.name for layer in model.layers]
    assert count_flops(compressed) == count_flops(model)  # the layers count their MACs as Conv2D

    x = _images(3, 16, 16, 3)
    expected = _reference(model, compressed, report["layers"]).predict(x, verbose=0)
    np.testing.assert_allclose(compressed.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)

    original_size = _saved_size(model, tmp_path / "nin.keras")
    compressed_size = _saved_size(compressed, tmp_path / "nin_pq.keras")
    saved = sum(e["bytes_before"] - e["bytes_after"] for e in report["layers"].values())
    assert abs((original_size - compressed_size) - saved) < 0.05 * saved
    loaded = keras.saving.load_model(tmp_path / "nin_pq.keras", safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), compressed.predict(x, verbose=0))


def test_compress_layers_of_nested_models_by_path_and_pattern(tmp_path):
    model = _nested_model()
    x = _images(4, 6, 6, 3, seed=8)

    compressed, report = compress_model(model, "inner_a/*", s=2, k=4)
    assert sorted(report["layers"]) == ["inner_a/head", "inner_a/proj"]
    assert type(_layer_at(compressed, "inner_a/proj")) is ProductQuantizedConv2D
    assert type(_layer_at(compressed, "inner_a/head")) is ProductQuantizedDense
    assert type(_layer_at(compressed, "inner_b/proj")) is keras.layers.Conv2D
    assert type(compressed.get_layer("proj")) is keras.layers.Dense
    expected = _reference(model, compressed, report["layers"]).predict(x, verbose=0)
    np.testing.assert_allclose(compressed.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)

    compressed, report = compress_model(model, ["inner_b/proj", "proj"], s=2, k=4)
    assert sorted(report["layers"]) == ["inner_b/proj", "proj"]
    assert type(_layer_at(compressed, "inner_b/proj")) is ProductQuantizedConv2D
    assert _layer_at(compressed, "inner_b/proj").strides == (2, 2)
    assert type(compressed.get_layer("proj")) is ProductQuantizedDense
    assert type(_layer_at(compressed, "inner_a/proj")) is keras.layers.Conv2D
    for path, entry in report["layers"].items():
        _check_report_entry(entry, kernel_matrix(_layer_at(model, path)), _layer_at(compressed, path))
    expected = _reference(model, compressed, report["layers"]).predict(x, verbose=0)
    np.testing.assert_allclose(compressed.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)

    compressed.save(tmp_path / "nested.keras")
    loaded = keras.saving.load_model(tmp_path / "nested.keras", safe_mode=True)
    assert type(_layer_at(loaded, "inner_b/proj")) is ProductQuantizedConv2D
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), compressed.predict(x, verbose=0))


def test_compress_a_sequential_model_with_a_layer_called_twice():
    shared = keras.layers.Dense(8, activation="tanh", name="shared_fc")
    inputs = keras.Input((8,))
    functional = keras.Model(inputs, keras.layers.Add(name="sum")([shared(inputs), shared(shared(inputs))]))
    sequential = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8, name="fc"), functional], name="seq")
    x = np.random.default_rng(9).standard_normal((3, 12)).astype("float32")

    compressed, report = compress_model(sequential, "*fc", s=2, k=4)
    assert type(compressed) is keras.Sequential
    assert sorted(report["layers"]) == ["fc", f"{functional.name}/shared_fc"]
    assert type(_layer_at(compressed, f"{functional.name}/shared_fc")) is ProductQuantizedDense
    expected = _reference(sequential, compressed, report["layers"]).predict(x, verbose=0)
    np.testing.assert_allclose(compressed.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_automatic_selection_skips_what_cannot_be_compressed():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(6, 3, groups=2, name="grouped")(inputs)
    x = keras.layers.Conv2D(5, 1, name="odd")(x)
    x = keras.layers.Conv2D(8, 3, name="wide")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="tiny_rows")(keras.layers.Flatten()(x)))
    compressed, report = compress_model(model, s=2, k=8, min_size=0)
    assert list(report["layers"]) == ["wide", "tiny_rows"]
    assert set(report["skipped"]) == {"grouped", "odd"}
    assert "groups=2" in report["skipped"]["grouped"] and "n=5" in report["skipped"]["odd"]
    with pytest.raises(ValueError, match="'grouped' cannot be compressed: groups=2"):
        compress_model(model, ["grouped"], s=2, k=8)
    with pytest.raises(ValueError, match="'odd' cannot be compressed: s=2 does not divide its n=5"):
        compress_model(model, ["odd"], s=2, k=8)


def test_the_dtype_policy_is_kept():
    inputs = keras.Input((16,))
    x = keras.layers.Dense(16, activation="relu", dtype="mixed_bfloat16", name="fc")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, dtype="float32", name="out")(x))
    compressed, _ = compress_model(model, ["fc"], s=2, k=4)
    layer = compressed.get_layer("fc")
    assert layer.dtype_policy.name == "mixed_bfloat16"
    assert keras.backend.standardize_dtype(layer.codebooks.dtype) == "float32"
    assert keras.backend.standardize_dtype(layer(np.ones((2, 16), "float32")).dtype) == "bfloat16"


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "W, s, k, match",
    [
        (np.zeros((8, 6)), 0, 4, r"positive divisor of n=6.*got 0"),
        (np.zeros((8, 6)), 4, 4, r"positive divisor of n=6.*got 4; allowed: 1, 2, 3, 6"),
        (np.zeros((8, 6)), 2.0, 4, r"got 2\.0"),
        (np.zeros((8, 6)), 2, 0, r"\[1, 256\].*got 0"),
        (np.zeros((300, 6)), 2, 257, r"\[1, 256\].*got 257"),
        (np.zeros((8, 6)), 2, 9, r"k`=9 .*m=8 rows"),
        (np.zeros(6), 2, 4, r"2-D matrix.*shape \(6,\)"),
        (np.zeros((2, 3, 4)), 2, 1, r"2-D matrix.*shape \(2, 3, 4\)"),
        (np.array([[0.0, 1.0], [np.nan, 2.0]]), 2, 1, r"finite, got nan at index \(1, 0\)"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), 1, 1, r"finite, got inf at index \(0, 1\)"),
        (np.array([["a", "b"]]), 1, 1, r"real numbers, got dtype <U1"),
    ],
)
def test_product_quantize_rejects_bad_input(W, s, k, match):
    with pytest.raises(ValueError, match=match):
        product_quantize(W, s, k)


@pytest.mark.parametrize(
    "args, match",
    [
        ((0, 4, 2, 1), r"`m` must be a positive integer, got 0"),
        ((8, -4, 2, 1), r"`n` must be a positive integer, got -4"),
        ((8, 6, 4, 4), r"positive divisor of n=6.*got 4"),
        ((300, 6, 2, 257), r"got 257"),
        ((8, 6, 2, 9), r"k`=9 .*m=8"),
    ],
)
def test_compression_factor_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        compression_factor(*args)


def test_product_quantize_rejects_bad_options():
    with pytest.raises(ValueError, match="`n_init` must be a positive integer, got 0"):
        product_quantize(np.zeros((4, 2)), 1, 2, n_init=0)
    with pytest.raises(ValueError, match="`seed` must be an integer, got 'a'"):
        product_quantize(np.zeros((4, 2)), 1, 2, seed="a")


def test_reconstruct_rejects_bad_input():
    codes, codebooks = np.zeros((3, 2), np.uint8), np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match="s must be 3.0, got 2"):
        reconstruct(codes, codebooks, 2)
    with pytest.raises(ValueError, match=r"values in \[0, 4\)\), got values in \[0, 4\]"):
        reconstruct(np.array([[0, 4], [1, 2], [3, 3]], np.uint8), codebooks, 3)
    with pytest.raises(ValueError, match="`codes` must be a 2-D integer array.*float32"):
        reconstruct(codes.astype(np.float32), codebooks, 3)
    with pytest.raises(ValueError, match=r"`codebooks` must be a 2-D float array.*shape \(24,\)"):
        reconstruct(codes, codebooks.ravel(), 3)


def test_compress_model_rejects_bad_input():
    model = _nested_model()
    with pytest.raises(ValueError, match=r"no Dense/Conv2D layer 'inner_a/prj'.*closest: 'inner_a/proj'"):
        compress_model(model, ["inner_a/prj"], k=4)
    with pytest.raises(ValueError, match=r"no Dense/Conv2D layer 'head'.*closest: 'inner_a/head', 'inner_b/head'"):
        compress_model(model, ["head"], k=4)
    with pytest.raises(ValueError, match=r"'inner_a/pool' .* is a GlobalAveragePooling2D; only Dense and Conv2D"):
        compress_model(model, ["inner_a/pool"], k=4)
    with pytest.raises(ValueError, match=r"'inner_b' .* is a Sequential"):
        compress_model(model, ["inner_b"], k=4)
    with pytest.raises(ValueError, match=r"pattern 'fine_\*/\*' matches no Dense/Conv2D layer"):
        compress_model(model, "fine_*/*", k=4)
    with pytest.raises(ValueError, match=r"'inner_a/head' cannot be compressed: k=16 centres need .* m=8"):
        compress_model(model, ["inner_a/head"], k=16)
    with pytest.raises(ValueError, match=r"No Dense/Conv2D layer .* with at least min_size=4096"):
        compress_model(model, k=4)
    with pytest.raises(ValueError, match="`s` \\(segment width\\) must be a positive integer, got 0"):
        compress_model(model, s=0)
    with pytest.raises(ValueError, match=r"\[1, 256\].*got 300"):
        compress_model(model, k=300)
    with pytest.raises(ValueError, match="`min_size` must be a non-negative integer, got -1"):
        compress_model(model, min_size=-1)
    with pytest.raises(ValueError, match="`seed` must be an integer, got 0.5"):
        compress_model(model, k=4, seed=0.5)
    with pytest.raises(ValueError, match="`n_init` must be a positive integer, got 0"):
        compress_model(model, k=4, n_init=0)
    with pytest.raises(ValueError, match="empty list"):
        compress_model(model, [], k=4)
    with pytest.raises(TypeError, match=r"`layers` must be None, an fnmatch pattern string or a list .* got 3"):
        compress_model(model, 3)
    with pytest.raises(TypeError, match="takes a keras.Model, got Dense"):
        compress_model(keras.layers.Dense(2))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(2)

        def call(self, x):
            return self.fc(x)

    with pytest.raises(TypeError, match="no layer list in its config"):
        compress_model(Subclassed())


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (ProductQuantizedDense, dict(units=5, segment_length=2), r"positive divisor of the 5 outputs, got 2"),
        (ProductQuantizedDense, dict(units=0), r"`units` must be a positive integer, got 0"),
        (ProductQuantizedDense, dict(units=4, codebook_size=300), r"\[1, 256\].*got 300"),
        (ProductQuantizedConv2D, dict(filters=4, kernel_size=(3, 0)), r"`kernel_size` .* got \(3, 0\)"),
        (ProductQuantizedConv2D, dict(filters=4, kernel_size=3, padding="causal"), r"'valid' or 'same', got 'causal'"),
        (ProductQuantizedConv2D, dict(filters=4, kernel_size=3, data_format="nhwc"), r"got 'nhwc'"),
    ],
)
def test_layers_reject_bad_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


# -- export and the benchmark script --------------------------------------------------------------


@pytest.mark.parametrize("format", ["saved_model", "tflite"])
def test_a_compressed_model_exports(tmp_path, format):
    from keras_apps.export import export_model

    model = keras_apps.build("nin_cifar", input_shape=(16, 16, 3), classes=10, width=0.25)
    compressed, _ = compress_model(model, ["conv2", "conv3"], s=2, k=8)
    result = export_model(compressed, format, root=tmp_path)  # verifies the reloaded export
    assert result.max_abs_diff is not None and result.max_abs_diff <= result.tolerance


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_compression", REPO / "tools" / "bench_compression.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_script_at_toy_size(tmp_path, capsys):
    output = tmp_path / "bench.json"
    rows = _bench_module().main([
        "--width", "0.25", "--input-shape", "16,16,3", "--classes", "10", "--settings", "2:8", "4:16",
        "--min-size", "2000", "--batch", "4", "--output", str(output),
    ])
    printed = capsys.readouterr().out
    assert [(row["s"], row["k"]) for row in rows] == [(2, 8), (4, 16)]
    for row in rows:
        assert row["file_ratio"] > 1 and row["weight_factor"] > 1
        assert 0 <= row["max_output_diff"] < 1
        assert f"{row['s']:>3} {row['k']:>4}" in printed
    assert output.is_file()
