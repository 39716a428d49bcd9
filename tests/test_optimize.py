"""Model optimisation through tensorflow-model-optimization: the Keras 3 -> tf_keras bridge,
pruning, QAT and int8 TFLite, the measurements, ``keras-apps optimize`` and its benchmark.

References are independent of the code under test: the Keras 3 model's own outputs (bridge),
zero counts of the kernels (sparsity), the float model's predictions run by the LiteRT
interpreter driven here (int8 files), ``zipfile`` sizes computed here."""

import importlib.util
import json
import os
import pathlib
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_apps
import keras_apps_cli
from keras_apps import data as kdata
from keras_apps import export as kexport
from keras_apps.compression import optimize as kopt
from keras_apps.compression import tfmot_bridge
from keras_apps.layers import DeformableConv2D, LocalResponseNormalization, SqueezeExcitation

REPO = pathlib.Path(__file__).resolve().parents[1]


def _perturb(model, seed=0):
    """Random weights everywhere (BN variances positive), so every weight matters."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new = [rng.normal(0.0, 0.3, w.shape).astype(w.dtype) for w in weights]
        if isinstance(layer, keras.layers.BatchNormalization):
            new[-1] = np.abs(new[-1]) + 0.5  # moving variance
        if isinstance(layer, keras.layers.Normalization):
            new[1] = np.abs(new[1]) + 0.5
        layer.set_weights(new)
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # Keras 3 derives mean/variance from the weights here


def _max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.fixture(scope="module")
def digits():
    def arrays(split):
        ds, _ = kdata.load("digits", split, batch_size=128, augment=False, shuffle=False)
        xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds])
        return np.concatenate(xs), np.concatenate(ys)

    train_x, train_y = arrays("train")
    test_x, test_y = arrays("test")
    return train_x, train_y, test_x, test_y


def _tiny_cnn(name="tiny_cnn"):
    inputs = keras.Input((32, 32, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="relu1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Activation("relu", name="relu2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """A small CNN trained on digits (Keras 3), saved as .keras; its test accuracy."""
    train_x, train_y, test_x, test_y = digits
    keras.utils.set_random_seed(0)
    model = _tiny_cnn()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_x, train_y, batch_size=64, epochs=4, verbose=0)
    accuracy = float(np.mean(np.argmax(model.predict(test_x, verbose=0), 1) == test_y))
    path = tmp_path_factory.mktemp("trained") / "tiny_cnn.keras"
    model.save(path)
    return model, path, accuracy


def _train_ds(digits, limit=None):
    train_x, train_y = digits[0][:limit], digits[1][:limit]
    return tf.data.Dataset.from_tensor_slices((train_x, train_y)).shuffle(2048, seed=0).batch(64)


# ---------------------------------------------------------------------------------- bridge


@pytest.mark.parametrize("name, kwargs", [
    ("resnet20_cifar", {}),
    ("nin_cifar", {"width": 0.25}),
    ("densenet_bc100_cifar", {}),
    ("se_resnet18", {"input_shape": (32, 32, 3)}),  # SqueezeExcitation twins
])
def test_bridge_matches_registered_models(name, kwargs):
    kwargs = {"input_shape": (16, 16, 1), **kwargs}
    model = keras_apps.build(name, classes=10, **kwargs)
    _perturb(model)
    x = np.random.default_rng(1).normal(size=(3, *kwargs["input_shape"])).astype(np.float32)
    twin = tfmot_bridge.to_tf_keras(model)
    assert twin.__class__.__module__.startswith("tf_keras")
    assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
    reference = np.asarray(model(x, training=False))
    got = np.asarray(twin(x, training=False))
    assert got.shape == reference.shape
    assert _max_diff(got, reference) <= 1e-5 * max(1.0, float(np.max(np.abs(reference))))


def _vocabulary_model():
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = keras.layers.Normalization(axis=-1, name="normalization")(x)
    x = keras.layers.ZeroPadding2D(1, name="pad")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(x)
    a = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    a = keras.layers.BatchNormalization(name="dw_bn")(a)
    a = keras.layers.ReLU(name="dw_relu")(a)
    b = keras.layers.AveragePooling2D(1, name="avg")(x)
    x = keras.layers.Concatenate(name="concat")([a, b])
    gate = keras.layers.GlobalAveragePooling2D(name="squeeze")(x)
    gate = keras.layers.Reshape((1, 1, 12), name="reshape")(gate)
    gate = keras.layers.Dense(12, activation="sigmoid", name="excite")(gate)
    x = keras.layers.Multiply(name="scale")([x, gate])
    x = keras.layers.Add(name="add")([x, keras.layers.Conv2D(12, 1, name="proj")(b)])
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Dropout(0.3, name="drop")(x)
    f = keras.layers.Flatten(name="flatten")(x)
    g = keras.layers.GlobalMaxPooling2D(name="gmp")(x)
    x = keras.layers.Concatenate(name="features")([f, g])
    x = keras.layers.Dense(5, name="logits")(x)
    outputs = keras.layers.Softmax(name="softmax")(x)
    return keras.Model(inputs, outputs, name="vocabulary")


def test_bridge_layer_vocabulary_and_the_way_back(tmp_path):
    model = _vocabulary_model()
    _perturb(model, seed=3)
    x = np.random.default_rng(2).uniform(0, 255, (4, 12, 12, 3)).astype(np.float32)
    twin = tfmot_bridge.to_tf_keras(model, sample=x)
    reference = np.asarray(model(x, training=False))
    assert _max_diff(twin(x, training=False), reference) <= 1e-5
    # Normalization's mean/variance are weights: a twin that ignored them would differ
    assert not np.allclose(model.get_layer("normalization").get_weights()[0], 0.0)

    # the way back: changed tf_keras weights land in a Keras 3 model of the same architecture
    kernel = twin.get_layer("conv").get_weights()
    kernel[0][..., :3] = 0.0
    twin.get_layer("conv").set_weights(kernel)
    back = tfmot_bridge.to_keras(twin, like=model, sample=x)
    assert isinstance(back, keras.Model) and back is not model
    assert _max_diff(back(x, training=False), twin(x, training=False)) <= 1e-5
    assert _max_diff(back(x, training=False), reference) > 1e-3  # the change arrived
    back.save(tmp_path / "back.keras")
    loaded = keras.saving.load_model(tmp_path / "back.keras", safe_mode=True)
    assert _max_diff(loaded(x, training=False), back(x, training=False)) == 0.0


def _lrn_se_model():
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = LocalResponseNormalization(size=3, k=1.0, alpha=0.5, beta=0.75, name="norm1")(x)
    x = SqueezeExcitation(reduction=2, name="se")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="fc")(x),
                       name="with_lrn_se")


def test_bridge_twins_of_lrn_and_squeeze_excitation_prune_but_refuse_qat():
    """The twins compute the keras_apps layers' equations (large alpha: LRN really divides),
    carry SE's weights; their models prune; QAT names the layer it has no scheme for."""
    model = _lrn_se_model()
    _perturb(model, seed=4)
    x = np.random.default_rng(5).uniform(0, 2, (4, 12, 12, 3)).astype(np.float32)
    twin = tfmot_bridge.to_tf_keras(model, sample=x)
    assert type(twin.get_layer("norm1")) is tfmot_bridge.TFKerasLocalResponseNormalization
    assert _max_diff(twin(x, training=False), model(x, training=False)) <= 1e-5
    without = keras.Model(model.input, model.get_layer("fc")(model.get_layer("pool")(
        model.get_layer("conv1").output)))
    assert _max_diff(without(x), model(x)) > 1e-3  # the two layers change the output
    labels = np.arange(len(x)) % 3
    train = tf.data.Dataset.from_tensor_slices((x, labels)).batch(2)
    pruned = kopt.prune_model(model, train, sparsity=0.5, epochs=2, sample=x)
    kernel = pruned.get_layer("conv1").get_weights()[0]
    assert abs(float(np.mean(kernel == 0)) - 0.5) <= 1.0 / kernel.size
    with pytest.raises(tfmot_bridge.UnsupportedLayerError, match=r"'norm1'.*--int8"):
        kopt.quantization_aware(model, train, epochs=1, sample=x)


def test_bridge_names_an_unsupported_layer():
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    x = DeformableConv2D(4, 3, name="dcn1")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x), name="with_dcn")
    with pytest.raises(tfmot_bridge.UnsupportedLayerError, match=r"'dcn1'.*DeformableConv2D"):
        tfmot_bridge.to_tf_keras(model)

    inner = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs), name="inner")
    outer_in = keras.Input((16, 16, 3))
    outer = keras.Model(outer_in, inner(outer_in), name="outer")
    with pytest.raises(tfmot_bridge.UnsupportedLayerError, match="nested model"):
        tfmot_bridge.to_tf_keras(outer)


def test_importing_tfmot_leaves_keras_3_in_place():
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    tfmot = kopt.import_tfmot()
    assert os.environ.get("TF_USE_LEGACY_KERAS") == before
    assert hasattr(tfmot.sparsity.keras, "prune_low_magnitude")
    assert tf.keras.layers.Dense is keras.layers.Dense  # tf.keras still routes to Keras 3
    model = keras_apps.build("resnet20_cifar", input_shape=(8, 8, 1), classes=3)
    assert isinstance(model, keras.Model) and model.__class__.__module__.startswith("keras")


# ------------------------------------------------------------------------- prune, QAT, PTQ


def test_pruning_reaches_the_target_sparsity_and_keeps_accuracy(digits, trained, tmp_path):
    model, _, accuracy = trained
    test_x, test_y = digits[2], digits[3]
    pruned = kopt.prune_model(model, _train_ds(digits), sparsity=0.5, epochs=2,
                              learning_rate=0.01, sample=test_x[:8])
    assert isinstance(pruned, keras.Model) and pruned.__class__.__module__.startswith("keras")
    for layer in pruned.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = layer.get_weights()[0]
            zeros = np.count_nonzero(kernel == 0) / kernel.size
            assert abs(zeros - 0.5) <= 1.0 / kernel.size + 1e-9, (layer.name, zeros)
    assert np.count_nonzero(model.get_layer("conv1").get_weights()[0] == 0) == 0  # input untouched
    pruned_accuracy = float(np.mean(np.argmax(pruned.predict(test_x, verbose=0), 1) == test_y))
    assert accuracy > 0.8
    assert pruned_accuracy >= accuracy - 0.08, (accuracy, pruned_accuracy)

    # zipped as tfmot measures: the pruned file compresses better
    sizes = {}
    for label, net in (("baseline", kopt._uncompiled(model)), ("pruned", pruned)):
        path = tmp_path / f"{label}.keras"
        net.save(path)
        archive = tmp_path / f"{label}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.write(path, arcname=path.name)
        sizes[label] = archive.stat().st_size
        assert abs(kopt.zipped_size(path) - sizes[label]) <= 0.02 * sizes[label]
    assert sizes["pruned"] < 0.8 * sizes["baseline"], sizes
    reloaded = keras.saving.load_model(tmp_path / "pruned.keras", safe_mode=True)
    assert _max_diff(reloaded.predict(test_x[:16], verbose=0), pruned.predict(test_x[:16], verbose=0)) == 0


def _litert_predict(path, images):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for image in images:
        feed = image[None]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            feed = np.clip(np.round(feed / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], feed)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])[0].astype(np.float32)
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            y = (y - zero) * scale
        results.append(y)
    return np.stack(results), inp["dtype"], out["dtype"]


def test_qat_and_post_training_int8_tflite_agree_with_the_float_model(digits, trained, tmp_path):
    model, _, _ = trained
    train_x, test_x = digits[0], digits[2]
    float_top1 = np.argmax(model.predict(test_x, verbose=0), 1)

    qat = kopt.quantization_aware(model, _train_ds(digits, limit=512), epochs=1,
                                  learning_rate=0.001, sample=test_x[:8])
    path = kopt.qat_tflite(qat, tmp_path / "qat.tflite", representative_data=train_x[:200])
    probabilities, in_type, out_type = _litert_predict(path, test_x)
    assert in_type == np.int8 and out_type == np.int8
    qat_top1 = np.argmax(np.asarray(qat.predict(test_x, verbose=0)), 1)
    assert np.mean(np.argmax(probabilities, 1) == qat_top1) >= 0.95
    assert np.mean(np.argmax(probabilities, 1) == float_top1) >= 0.85
    with pytest.raises(FileExistsError):
        kopt.qat_tflite(qat, path, representative_data=train_x[:200])

    ptq = kexport.export_model(model, "tflite_int8", output=tmp_path / "ptq.tflite",
                               representative_data=train_x[:200])
    probabilities, in_type, _ = _litert_predict(ptq.path, test_x)
    assert in_type == np.int8
    assert np.mean(np.argmax(probabilities, 1) == float_top1) >= 0.95
    assert path.stat().st_size < 0.4 * (model.count_params() * 4)  # int8 weights


def test_bad_arguments_are_refused(trained, tmp_path):
    model, _, _ = trained
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 32, 32, 1), np.float32), np.zeros(4))).batch(2)
    for bad in (1.5, 0, 1, -0.2, True):
        with pytest.raises(ValueError, match="sparsity"):
            kopt.prune_model(model, ds, sparsity=bad)
    with pytest.raises(ValueError, match="at least 2"):
        kopt.prune_model(model, ds.take(1), sparsity=0.5, epochs=1)
    with pytest.raises(ValueError, match="Nothing to do"):
        kopt.optimize_model(model, prune=None, qat=False, int8=False, output_dir=tmp_path / "o")


# ------------------------------------------------------------------------------------- CLI


def test_cli_end_to_end_on_digits(trained, tmp_path, capsys):
    _, path, _ = trained
    out = tmp_path / "opt"
    argv = ["optimize", str(path), "--data", "digits", "--prune", "0.5", "--qat", "--int8",
            "--epochs", "1", "--limit", "400", "--latency-images", "8", "--repeats", "2",
            "--output", str(out)]
    assert keras_apps_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| pruned |" in printed and "qat_int8" in printed
    report = json.loads((out / "optimize.json").read_text())
    rows = {row["variant"]: row for row in report["rows"]}
    assert set(rows) == {"baseline", "baseline_tflite", "ptq_int8", "pruned", "pruned_tflite",
                         "pruned_int8", "qat_int8"}
    for variant, row in rows.items():
        file = out / row["file"]
        assert file.is_file() and row["bytes"] == file.stat().st_size
        assert 0.0 <= row["top1_accuracy"] <= 1.0 and row["seconds_per_image"] > 0
    assert rows["baseline"]["latency_vs_keras"] == 1.0
    assert abs(rows["pruned"]["sparsity"] - 0.5) < 0.01 and rows["baseline"]["sparsity"] < 0.01
    assert rows["pruned"]["zipped_bytes"] < rows["baseline"]["zipped_bytes"]
    assert rows["pruned_int8"]["zipped_bytes"] < rows["ptq_int8"]["zipped_bytes"]
    assert rows["ptq_int8"]["bytes"] < 0.5 * rows["baseline_tflite"]["bytes"]
    assert rows["baseline_tflite"]["agreement_with_baseline"] == 1.0
    assert (out / "optimize.md").read_text().count("\n| ") == 8  # header + 7 rows
    loaded = keras.saving.load_model(out / "pruned.keras", safe_mode=True)
    assert isinstance(loaded, keras.Model)

    before = (out / "optimize.json").read_text()
    assert keras_apps_cli.main(argv) == 2
    assert "already holds results" in capsys.readouterr().err
    assert (out / "optimize.json").read_text() == before

    smaller = ["optimize", str(path), "--int8", "--limit", "200", "--latency-images", "4",
               "--repeats", "1", "--output", str(out), "--overwrite"]
    assert keras_apps_cli.main(smaller) == 0
    capsys.readouterr()
    report = json.loads((out / "optimize.json").read_text())
    assert [row["variant"] for row in report["rows"]] == ["baseline", "baseline_tflite", "ptq_int8"]
    assert not (out / "pruned.keras").exists()  # the earlier run was replaced as a whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_cli_bad_input(trained, tmp_path, capsys):
    _, path, _ = trained
    out = str(tmp_path / "never")
    assert keras_apps_cli.main(["optimize", str(path), "--prune", "1.5", "--output", out]) == 2
    assert "0 < S < 1" in capsys.readouterr().err
    assert keras_apps_cli.main(["optimize", "resnet21_cifar", "--prune", "0.5", "--output", out]) == 2
    assert "resnet20_cifar" in capsys.readouterr().err
    assert keras_apps_cli.main(["optimize", str(path), "--output", out]) == 2
    assert "nothing to do" in capsys.readouterr().err

    inputs = keras.Input((32, 32, 1), name="image")
    x = DeformableConv2D(4, 3, name="dcn1")(keras.layers.Conv2D(4, 3, name="conv1")(inputs))
    x = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    dcn = tmp_path / "dcn.keras"
    keras.Model(inputs, x, name="dcn").save(dcn)
    assert keras_apps_cli.main(["optimize", str(dcn), "--prune", "0.5", "--output", out]) == 2
    err = capsys.readouterr().err
    assert "'dcn1'" in err and "DeformableConv2D" in err and len(err.strip().splitlines()) == 1
    assert not pathlib.Path(out).exists()


# ------------------------------------------------------------------------------- benchmark


@pytest.mark.slow
def test_benchmark_tool_at_toy_size(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_optimize", REPO / "tools" / "bench_optimize.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = tmp_path / "results"
    argv = ["--model", "nin_cifar", "--width", "0.25", "--data", "digits", "--limit", "256",
            "--train-epochs", "1", "--epochs", "1", "--prune", "0.5", "--no-qat", "--no-int8",
            "--latency-images", "4", "--repeats", "1", "--work-dir", str(tmp_path / "work"),
            "--output", str(results)]
    assert bench.main(argv) == 0
    record = json.loads((results / "nin_cifar_digits.json").read_text())
    assert {row["variant"] for row in record["rows"]} == {"baseline", "baseline_tflite", "pruned",
                                                           "pruned_tflite"}
    readme = (results / "README.md").read_text()
    assert "nin_cifar" in readme and "| pruned |" in readme
    assert bench.main(argv) == 0  # a finished run is kept, the table rebuilt
    assert json.loads((results / "nin_cifar_digits.json").read_text()) == record
