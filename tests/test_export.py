"""keras_apps.export: every format round-trips through an independent loader, the serving
layout and versions, the SavedModel signature, atomic writes and the error messages.

The classifier is a width-0.25 NIN trained for a few epochs on sklearn's digits (8x8 scaled
to [0, 1], upsampled to 16x16x3): int8 calibration and agreement are measured on real images.
"""

import os
import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from sklearn.datasets import load_digits
from tensorflow.python.tools import saved_model_utils

import keras_apps
from keras_apps import export
from keras_apps.export import exporter
from keras_apps.models._common import INPUT_NAME

TRAIN = 1400


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)
    images = images.repeat(2, axis=1).repeat(2, axis=2)[..., None].repeat(3, axis=-1)
    return images, data.target


@pytest.fixture(scope="module")
def classifier(digits):
    images, labels = digits
    keras.utils.set_random_seed(0)
    model = keras_apps.build("nin_cifar", input_shape=(16, 16, 3), classes=10, width=0.25)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images[:TRAIN], labels[:TRAIN], epochs=8, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def exports(classifier, digits, tmp_path_factory):
    """Every format of the classifier, written with the default layout under one root."""
    images, labels = digits
    root = tmp_path_factory.mktemp("saved_models")
    calibration = tf.data.Dataset.from_tensor_slices((images[:TRAIN], labels[:TRAIN])).batch(32)
    results = {}
    for fmt in export.FORMATS:
        data = calibration if fmt == "tflite_int8" else None
        results[fmt] = export.export_model(classifier, fmt, root=root, representative_data=data)
    return root, results


@pytest.fixture(scope="module")
def held_out(classifier, digits):
    images = digits[0][TRAIN:]
    return images, classifier.predict(images, verbose=0)


def _leftovers(directory):
    return [p for p in directory.rglob("*") if ".tmp-" in p.name]


def test_default_layout_and_verification(exports):
    root, results = exports
    assert export.FORMATS == ("keras", "saved_model", "tflite", "tflite_int8", "serving")
    assert results["keras"].path == root / "nin_cifar.keras"
    assert results["saved_model"].path == root / "nin_cifar_saved_model"
    assert results["tflite"].path == root / "nin_cifar.tflite"
    assert results["tflite_int8"].path == root / "nin_cifar_int8.tflite"
    assert results["serving"].path == root / "nin_cifar" / "1"
    for fmt, result in results.items():
        assert result.format == fmt
        assert result.size_bytes > 0
        assert getattr(result, result.criterion) <= result.tolerance
        assert result.agreement == 1.0 or fmt == "tflite_int8"
    assert results["tflite"].criterion == "max_abs_diff"
    assert results["tflite"].tolerance == pytest.approx(export.FLOAT_TOLERANCE)
    assert results["tflite_int8"].criterion == "mean_abs_diff"
    assert results["tflite_int8"].tolerance == pytest.approx(export.INT8_TOLERANCE)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [
            "nin_cifar.keras",
            "nin_cifar_saved_model",
            "nin_cifar.tflite",
            "nin_cifar_int8.tflite",
            "nin_cifar",
        ]
    )
    assert not _leftovers(root)


def test_keras_round_trip(exports, held_out):
    images, expected = held_out
    path = exports[1]["keras"].path
    reloaded = keras.saving.load_model(path, safe_mode=True)
    tolerance = export.FLOAT_TOLERANCE
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, atol=tolerance)
    np.testing.assert_allclose(export.load_exported(path)(images), expected, atol=tolerance)


@pytest.mark.parametrize("fmt", ["saved_model", "serving"])
def test_saved_model_signature_and_round_trip(exports, held_out, fmt):
    images, expected = held_out
    result = exports[1][fmt]
    meta_graph = saved_model_utils.get_meta_graph_def(str(result.path), "serve")
    signature_def = meta_graph.signature_def["serving_default"]
    assert signature_def.method_name == "tensorflow/serving/predict"
    assert list(signature_def.inputs) == [INPUT_NAME] == ["image"]
    assert list(signature_def.outputs) == ["output_0"]

    loaded = tf.saved_model.load(str(result.path))
    serve = loaded.signatures["serving_default"]
    assert list(serve.structured_input_signature[1]) == ["image"]
    outputs = serve(image=tf.constant(images))
    np.testing.assert_allclose(outputs["output_0"].numpy(), expected, atol=export.FLOAT_TOLERANCE)
    assert result.signature == {
        "signature_key": "serving_default",
        "inputs": {"image": {"shape": [None, 16, 16, 3], "dtype": "float32"}},
        "outputs": {"output_0": {"shape": [None, 10], "dtype": "float32"}},
    }


def test_tflite_float_round_trip(exports, held_out):
    images, expected = held_out
    interpreter = Interpreter(model_path=str(exports[1]["tflite"].path))
    runner = interpreter.get_signature_runner("serving_default")
    assert runner.get_input_details()["image"]["dtype"] == np.float32
    got = runner(image=images)["output_0"]
    np.testing.assert_allclose(got, expected, atol=export.FLOAT_TOLERANCE)


def test_tflite_int8_round_trip_size_and_agreement(exports, held_out):
    images, expected = held_out
    result = exports[1]["tflite_int8"]
    runner = Interpreter(model_path=str(result.path)).get_signature_runner("serving_default")
    input_details = runner.get_input_details()["image"]
    output_details = runner.get_output_details()["output_0"]
    assert input_details["dtype"] == np.int8 and output_details["dtype"] == np.int8
    in_scale, in_zero = input_details["quantization"]
    out_scale, out_zero = output_details["quantization"]
    assert (out_scale, out_zero) == (1 / 256, -128)  # softmax output in [0, 1)
    quantized = np.clip(np.round(images / in_scale + in_zero), -128, 127).astype(np.int8)
    got = (runner(image=quantized)["output_0"].astype(np.float32) - out_zero) * out_scale

    agreement = np.mean(got.argmax(axis=1) == expected.argmax(axis=1))
    assert agreement >= 0.95
    assert np.abs(got - expected).mean() <= export.INT8_TOLERANCE
    assert np.abs(got - expected).max() <= 0.15
    np.testing.assert_allclose(export.load_exported(result.path)(images), got, atol=1e-6)
    float_size = exports[1]["tflite"].size_bytes
    assert float_size / result.size_bytes >= 3.0
    assert result.signature["inputs"]["image"]["dtype"] == "int8"
    assert result.signature["outputs"]["output_0"]["quantization"] == {
        "scale": 1 / 256,
        "zero_point": -128,
    }


def test_int8_verification_rejects_miscalibration(classifier, digits, tmp_path):
    images = digits[0]
    with pytest.raises(export.ExportVerificationError, match="nothing was written"):
        export.export_model(
            classifier,
            "tflite_int8",
            root=tmp_path / "out",
            representative_data=images[:200] * 0.05,
            sample=images[TRAIN:],
        )
    assert not (tmp_path / "out").exists()


def test_serving_versions(classifier, tmp_path):
    base = tmp_path / "models" / "digits"

    def serve(**kwargs):
        return export.export_model(classifier, "serving", output=base, verify=False, **kwargs).path

    assert serve() == base / "1"
    assert serve() == base / "2"
    assert serve(version=7) == base / "7"
    assert serve() == base / "8"
    with pytest.raises(FileExistsError, match="Version 7 of"):
        serve(version=7)
    inode = (base / "7").stat().st_ino
    assert serve(version=7, overwrite=True) == base / "7"
    assert (base / "7").stat().st_ino != inode
    assert sorted(p.name for p in base.iterdir()) == ["1", "2", "7", "8"]
    for version in base.iterdir():
        assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert export.load_exported(base).path == base / "8"


@pytest.mark.parametrize("fmt", ["keras", "saved_model", "serving"])
def test_failed_verification_leaves_nothing(classifier, tmp_path, monkeypatch, fmt):
    monkeypatch.setattr(exporter, "FLOAT_TOLERANCE", -1.0)
    with pytest.raises(export.ExportVerificationError, match="nothing was written"):
        export.export_model(classifier, fmt, root=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["keras", "saved_model"])
def test_failed_overwrite_keeps_existing_export(classifier, tmp_path, monkeypatch, fmt):
    first = export.export_model(classifier, fmt, root=tmp_path)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    inode = first.path.stat().st_ino

    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export_model(classifier, fmt, root=tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(exporter, "FLOAT_TOLERANCE", -1.0)
        with pytest.raises(export.ExportVerificationError, match="existing export is unchanged"):
            export.export_model(classifier, fmt, root=tmp_path, overwrite=True)
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert first.path.stat().st_ino == inode

    replaced = export.export_model(classifier, fmt, root=tmp_path, overwrite=True)
    assert replaced.path == first.path and first.path.stat().st_ino != inode
    assert not _leftovers(tmp_path)


def test_failure_mid_conversion_leaves_nothing(classifier, tmp_path, monkeypatch):
    from_saved_model = tf.lite.TFLiteConverter.from_saved_model

    def crash():
        raise RuntimeError("converter crashed")

    def broken_converter(path):
        converter = from_saved_model(path)
        converter.convert = crash
        return converter

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", broken_converter)
    with pytest.raises(export.ExportError, match="converter crashed"):
        export.export_model(classifier, "tflite", root=tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


def test_multi_output_feature_dict(digits, tmp_path):
    model = keras_apps.build("nin_cifar", input_shape=(16, 16, 3), classes=5, width=0.25)
    features = keras_apps.feature_extractor(model)
    stages = sorted(keras_apps.model_info("nin_cifar")["feature_layers"])
    images = digits[0][:6]
    expected = features.predict(images, verbose=0)
    for fmt in ("keras", "saved_model", "tflite"):
        result = export.export_model(features, fmt, root=tmp_path, sample=images)
        assert sorted(result.signature["outputs"]) == stages
        outputs = export.load_exported(result.path)(images)
        assert sorted(outputs) == stages
        for stage in stages:
            np.testing.assert_allclose(outputs[stage], expected[stage], rtol=1e-5, atol=1e-4)
    serve = tf.saved_model.load(str(tmp_path / "nin_cifar_features_saved_model"))
    assert sorted(serve.signatures["serving_default"].structured_outputs) == stages


def test_verify_export(classifier, exports, held_out):
    images, _ = held_out
    for fmt in ("saved_model", "tflite"):
        diff = export.verify_export(classifier, exports[1][fmt].path, images[:32])
        assert 0.0 <= diff <= exports[1][fmt].tolerance
    assert export.verify_export(classifier, exports[1]["tflite_int8"].path, images[:32]) <= 0.15
    other = keras_apps.build("nin_cifar", input_shape=(16, 16, 3), classes=10, width=0.25)
    with pytest.raises(export.ExportVerificationError, match="max \\|exported - keras\\|"):
        export.verify_export(other, exports[1]["tflite"].path, images[:32])
    assert exports[1]["tflite"].path.is_file()


def test_errors(classifier, tmp_path):
    def run(fmt, **kwargs):
        return export.export_model(classifier, fmt, root=tmp_path, **kwargs)

    allowed = "keras, saved_model, tflite, tflite_int8, serving"
    with pytest.raises(ValueError, match=f"'onnx'; allowed formats: {allowed}"):
        run("onnx")
    with pytest.raises(ValueError, match=r"\.keras file.*'\.h5'"):
        run("keras", output=tmp_path / "model.h5")
    with pytest.raises(ValueError, match=r"\.tflite file.*'\.keras'"):
        run("tflite", output=tmp_path / "model.keras")
    with pytest.raises(ValueError, match="writes a directory"):
        run("saved_model", output=tmp_path / "model.tflite")
    with pytest.raises(TypeError, match="must be a keras.Model.*str"):
        export.export_model("nin_cifar", "keras")
    with pytest.raises(ValueError, match="`representative_data` is required for .*'tflite_int8'"):
        run("tflite_int8")
    with pytest.raises(ValueError, match="only applies to format 'tflite_int8'"):
        run("tflite", representative_data=np.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match=r"shape \(8, 8, 3\).*\(16, 16, 3\)"):
        run("tflite_int8", representative_data=np.zeros((4, 8, 8, 3)))
    with pytest.raises(ValueError, match="`version` must be a positive integer, got 0"):
        run("serving", version=0)
    with pytest.raises(ValueError, match="only applies to format 'serving'"):
        run("keras", version=2)
    with pytest.raises(ValueError, match=r"`sample` has shape \(2, 8, 8, 3\)"):
        run("keras", sample=np.zeros((2, 8, 8, 3)))
    with pytest.raises(FileNotFoundError, match="No exported model"):
        export.load_exported(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match="not an exported model"):
        export.load_exported(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_calibration_images_accepts_arrays_datasets_and_generators(digits):
    images, labels = digits
    shape = (16, 16, 3)
    batches = tf.data.Dataset.from_tensor_slices((images[:50], labels[:50])).batch(8)
    unbatched = tf.data.Dataset.from_tensor_slices(images[:50])
    as_dicts = tf.data.Dataset.from_tensor_slices({"image": images[:50], "label": labels[:50]})

    def tflite_style():
        for image in images[:50]:
            yield [image[None]]

    def two_batches():
        return iter([images[:20], images[20:50]])

    for data in (images[:50], batches, unbatched, as_dicts.batch(8), tflite_style, two_batches):
        got = export.calibration_images(data, shape, limit=30)
        np.testing.assert_array_equal(got, images[:30])
    assert export.calibration_images(images[0], shape, limit=30).shape == (1, 16, 16, 3)
    with pytest.raises(TypeError, match="representative_data` must be"):
        export.calibration_images(42, shape, limit=30)
    with pytest.raises(ValueError, match="yielded no images"):
        export.calibration_images(lambda: iter([]), shape, limit=30)
    with pytest.raises(ValueError, match="NaN"):
        export.calibration_images(np.full((2, 16, 16, 3), np.nan), shape, limit=30)


@pytest.fixture
def tiny():
    inputs = keras.Input((4, 4, 3), name=INPUT_NAME)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs, name="tiny")


def test_check_target_is_where_export_model_writes(tiny, tmp_path):
    for fmt in export.FORMATS:
        if fmt == "tflite_int8":
            continue
        expected = export.check_target("tiny", fmt, root=tmp_path)
        assert export.export_model(tiny, fmt, root=tmp_path, verify=False).path == expected
        with pytest.raises(FileExistsError, match=r"overwrite=True \(CLI: --overwrite\)"):
            export.check_target("tiny", fmt, root=tmp_path, version=1 if fmt == "serving" else None)
    assert export.check_target("tiny", "tflite_int8", root=tmp_path) == tmp_path / "tiny_int8.tflite"
    assert export.check_target("tiny", "serving", root=tmp_path) == tmp_path / "tiny" / "2"
    assert export.check_target("tiny", "keras", root=tmp_path, overwrite=True) == tmp_path / "tiny.keras"
    with pytest.raises(ValueError, match="allowed formats"):
        export.check_target("tiny", "onnx")
    with pytest.raises(ValueError, match="not usable as a file name"):
        export.check_target("../tiny", "keras")


def test_a_target_of_the_wrong_kind_or_under_a_file_is_refused_without_overwrite_hints(tiny, tmp_path):
    folder = tmp_path / "model.keras"
    folder.mkdir()
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    cases = [
        (dict(format="keras", output=folder), "is a folder; format 'keras' writes a file"),
        (dict(format="saved_model", output=afile), "is a file; format 'saved_model' writes"),
        (dict(format="tflite", output=afile / "m.tflite"), "notes.txt is a file, not a folder"),
        (dict(format="serving", output=afile / "served"), "notes.txt is a file, not a folder"),
    ]
    for kwargs, message in cases:
        for overwrite in (False, True):
            with pytest.raises(ValueError, match=message) as raised:
                export.export_model(tiny, verify=False, overwrite=overwrite, **kwargs)
            assert "overwrite" not in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras", "notes.txt"]
    assert list(folder.iterdir()) == []


def test_staging_folders_of_killed_exports_are_removed(tiny, tmp_path):
    from keras_apps.export import _atomic

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    host = _atomic._host()
    stale = tmp_path / f".tiny.keras.tmp-{host}-{dead_pid}-abc123_x"
    stale_other_target = tmp_path / f".tiny_saved_model.tmp-{host}-{dead_pid}-zz9"
    live = tmp_path / f".tiny.keras.tmp-{host}-{os.getpid()}-live0001"
    other_host = tmp_path / f".tiny.keras.tmp-elsewhere{host}-{dead_pid}-q1"
    for folder in (stale, stale_other_target, live, other_host):
        (folder / "saved_model").mkdir(parents=True)
    result = export.export_model(tiny, "keras", root=tmp_path, verify=False)
    assert result.path.is_file()
    assert not stale.exists() and not stale_other_target.exists()
    assert live.is_dir() and other_host.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, other_host.name, "tiny.keras"]
    )


def test_staging_folder_names_carry_host_and_pid(tiny, tmp_path, monkeypatch):
    from keras_apps.export import _atomic

    seen = []
    original = _atomic.Staging.commit

    def commit(stage, *, overwrite):
        seen.append(stage.tmp.name)
        original(stage, overwrite=overwrite)

    monkeypatch.setattr(_atomic.Staging, "commit", commit)
    export.export_model(tiny, "keras", root=tmp_path, verify=False)
    assert re.fullmatch(rf"\.tiny\.keras\.tmp-{_atomic._host()}-{os.getpid()}-[a-z0-9_]+", seen[0])


def test_unreadable_exports_are_value_errors_naming_the_file(tmp_path):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"\x00not a zip archive" * 8)
    with pytest.raises(ValueError, match="garbage.keras is not a readable Keras model") as raised:
        export.load_exported(garbage)
    assert "File not found" not in str(raised.value)
    other_zip = tmp_path / "other.keras"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    with pytest.raises(ValueError, match="other.keras is not a readable Keras model"):
        export.load_exported(other_zip)
    tflite = tmp_path / "bad.tflite"
    tflite.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="bad.tflite is not a readable TFLite model"):
        export.load_exported(tflite)
    saved = tmp_path / "bad_saved_model"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="bad_saved_model is not a readable SavedModel"):
        export.load_exported(saved)


@pytest.mark.parametrize("fmt", ["keras", "saved_model", "serving", "tflite"])
def test_hdcnn_exports_in_every_float_format(digits, tmp_path, fmt):
    """HD-CNN (two outputs, nested components): each format round-trips through its loader;
    its SavedModel serves conditional execution with ``beta`` (default inf = the model)."""
    model = keras_apps.build("hdcnn", input_shape=(16, 16, 3), classes=10,
                             building_block_kwargs={"width": 0.25})
    images = digits[0][:8]
    result = export.export_model(model, fmt, root=tmp_path, sample=images)
    expected = model.predict(images, verbose=0)
    outputs = export.load_exported(result.path)(images)
    assert {"coarse", "predictions"} <= set(outputs)
    for key in ("coarse", "predictions"):
        np.testing.assert_allclose(outputs[key], expected[key], rtol=1e-5, atol=1e-5)
    if fmt in ("saved_model", "serving"):
        assert sorted(result.signature["inputs"]) == ["beta", "image"]
        assert "components_run" in outputs
