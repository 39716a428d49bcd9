"""Training, evaluation, resumption and distribution strategies."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_apps
from keras_apps import data as kdata
from keras_apps import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_classifier(classes=10, activation="softmax", name="tiny"):
    inputs = keras.Input((32, 32, 1), name="image")
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(classes, name="predictions")(x)
    if activation:
        x = keras.layers.Activation(activation, name="predictions_activation")(x)
    return keras.Model(inputs, x, name=name)


def test_fit_writes_the_run_directory(tmp_path):
    result = training.fit(
        "resnet20_cifar", "digits", epochs=1, batch_size=64, limit=256, strategy="one-device",
        output_dir=tmp_path / "run", verbose=0,
    )
    run = tmp_path / "run"
    for name in ("model.keras", "metrics.json", "config.json", "history.csv",
                 "checkpoints/last.keras"):
        assert (run / name).is_file(), name
    assert any((run / "logs").rglob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"] == pytest.approx(result.metrics["test"])
    assert metrics["validation"] == pytest.approx(result.metrics["validation"])
    test = metrics["test"]
    assert 0.0 <= test["top1_error"] <= 1.0
    assert test["top5_error"] <= test["top1_error"]
    reloaded = training.load_model(run / "model.keras")
    images = np.random.RandomState(0).rand(3, 32, 32, 1).astype("float32")
    np.testing.assert_array_equal(reloaded(images), result.model(images))
    assert not list(run.rglob(".*")), "temporary files left behind"


def test_validation_is_carved_from_the_training_split_and_the_test_split_used_once(tmp_path):
    result = training.fit(
        _tiny_classifier(), "digits", epochs=1, batch_size=64,
        output_dir=tmp_path, validation_fraction=0.2, verbose=0,
    )
    n_train = kdata.dataset_info("digits").num_examples["train"]
    val, test = result.metrics["validation"], result.metrics["test"]
    # stratified per class: about a fifth of each class of the 1438 training images
    assert abs(val["examples"] - 0.2 * n_train) <= 10
    assert test["examples"] == kdata.dataset_info("digits").num_examples["test"]
    assert "val_loss" in result.history  # Keras validated on the held-out part
    np.testing.assert_allclose(result.history["val_top1"][-1], val["top1_accuracy"], atol=1e-6)


@pytest.mark.slow
def test_training_reduces_the_loss_on_real_digits(tmp_path):
    # 16x16 (the 8x8 digits upscaled less): a quarter of the 32x32 computation, every image
    # and step kept; test top-1 error 0.045 in 3 epochs (seeds 0 and 1).
    result = training.fit(
        "resnet20_cifar", "digits", epochs=3, batch_size=32, strategy="one-device",
        learning_rate=0.05, image_size=(16, 16), output_dir=tmp_path, verbose=0,
    )
    losses = result.history["loss"]
    assert losses[-1] < losses[0]
    assert result.metrics["test"]["top1_error"] < 0.5  # 10 classes: chance is 0.9


def test_fit_takes_a_dataset_pair_a_builder_and_any_optimizer_and_loss(tmp_path):
    rng = np.random.RandomState(0)
    x = rng.rand(64, 32, 32, 1).astype("float32")
    y = rng.randint(0, 3, 64).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[:16], y[:16])).batch(16)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    result = training.fit(
        lambda: _tiny_classifier(3, activation=None), (train, val), epochs=2,
        strategy="one-device", output_dir=tmp_path, optimizer="adam", loss=loss,
        learning_rate=1e-3, verbose=0,
    )
    assert isinstance(result.model.optimizer, keras.optimizers.Adam) or result.model.optimizer is None
    assert len(result.history["loss"]) == 2
    assert result.metrics["validation"]["examples"] == 16


def test_a_pair_with_regression_targets_reports_the_compiled_loss(tmp_path):
    """Targets that are not class ids (here box edges, a squared-error objective): the final
    validation metrics are the compiled loss, equal to the mean squared error by hand."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 2))).astype("float32")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="boxes")(inputs))
    pair = (tf.data.Dataset.from_tensor_slices((x, y)).batch(16), tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
    result = training.fit(model, pair, epochs=1, learning_rate=0.01, loss="mse", metrics=[],
                          output_dir=tmp_path / "run", verbose=0)
    by_hand = float(np.mean((result.model.predict(x, verbose=0) - y) ** 2))
    assert result.metrics["validation"]["loss"] == pytest.approx(by_hand, rel=1e-4)
    assert "top1_error" not in result.metrics["validation"]


def test_from_logits_follows_the_classifier_activation():
    logits_model = _tiny_classifier(activation=None)
    probs_model = _tiny_classifier(activation="softmax")
    assert training.outputs_probabilities(logits_model) is False
    assert training.outputs_probabilities(probs_model) is True
    x = np.random.RandomState(1).rand(8, 32, 32, 1).astype("float32")
    y = np.arange(8) % 10
    training.compile_for_classification(logits_model, num_classes=10, weight_decay=0)
    reported = logits_model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    z = logits_model.predict(x, verbose=0).astype(np.float64)
    log_softmax = z - z.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    assert reported == pytest.approx(-np.mean(log_softmax[np.arange(8), y]), rel=1e-4)


def test_a_nested_model_output_is_read_through_to_its_softmax():
    inner = _tiny_classifier(activation="softmax", name="inner")
    image = keras.Input((32, 32, 1), name="image")
    wrapped = keras.Model(image, inner(image), name="wrapped")
    assert training.outputs_probabilities(wrapped) is True
    logits = _tiny_classifier(activation=None, name="inner_logits")
    assert training.outputs_probabilities(keras.Model(image, logits(image))) is False


def test_a_built_model_trains_as_a_copy_under_another_strategy(tmp_path):
    """A model built outside any strategy scope, trained under an explicit strategy: its
    variables must be re-created in that scope (a copy with the same weights)."""
    model = _tiny_classifier()
    before = [w.copy() for w in model.get_weights()]
    result = training.fit(model, "digits", epochs=1, limit=64, strategy="one-device",
                          output_dir=tmp_path, validation_fraction=0, verbose=0)
    assert result.model is not model
    assert isinstance(result.model.distribute_strategy, tf.distribute.OneDeviceStrategy)
    assert any(not np.array_equal(a, b) for a, b in zip(before, result.model.get_weights()))


def test_a_model_the_caller_compiled_is_trained_as_compiled(tmp_path):
    model = _tiny_classifier()
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    training.fit(model, "digits", epochs=1, limit=64, compile=False,
                 output_dir=tmp_path, validation_fraction=0, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # learning rate 0: nothing moved


def test_freezing_and_learning_rate_multipliers_through_fit(tmp_path):
    model = _tiny_classifier()
    before = {w.path: w.numpy().copy() for w in model.weights}
    result = training.fit(
        model, "digits", epochs=1, limit=64, output_dir=tmp_path,
        trainable="predictions", lr_multipliers={"predictions": 10.0}, weight_decay=0,
        validation_fraction=0, verbose=0,
    )
    after = {w.path: w.numpy() for w in result.model.weights}
    assert np.array_equal(before["conv/kernel"], after["conv/kernel"])  # frozen
    assert not np.array_equal(before["predictions/kernel"], after["predictions/kernel"])


def test_class_subsets_train_a_k_way_classifier(tmp_path):
    result = training.fit(
        "resnet20_cifar", "digits", classes=[3, 5, 7], epochs=1, limit=90, batch_size=32,
        strategy="one-device", output_dir=tmp_path, verbose=0,
    )
    assert result.model.output.shape[-1] == 3
    assert result.metrics["test"]["examples"] <= 90
    assert json.loads((tmp_path / "config.json").read_text())["classes_subset"] == [3, 5, 7]


def test_evaluate_matches_a_naive_count():
    model = keras_apps.build("nin_cifar", input_shape=(32, 32, 1), classes=10, width=0.25)
    metrics = training.evaluate(model, "digits", split="test", batch_size=50, verbose=0)
    ds, _ = kdata.load("digits", "test", batch_size=50, augment=False, shuffle=False)
    probabilities, labels = [], []
    for images, y in ds:
        probabilities.append(model(images).numpy())
        labels.append(y.numpy())
    p, y = np.concatenate(probabilities), np.concatenate(labels)
    top1 = np.mean(np.argmax(p, axis=1) != y)
    ranks = np.sum(p >= p[np.arange(len(y)), y][:, None], axis=1) - 1  # others at or above
    top5 = np.mean(ranks >= 5)
    loss = -np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)))
    assert metrics["examples"] == len(y)
    assert metrics["top1_error"] == pytest.approx(top1)
    assert metrics["top5_error"] == pytest.approx(top5)
    assert metrics["loss"] == pytest.approx(loss, rel=1e-4)


def test_top5_error_counts_tied_scores_against_the_model():
    # Saturated softmax: one-hot probabilities, every other class tied at exactly 0.
    model = _tiny_classifier()
    kernel, bias = model.get_layer("predictions").get_weights()
    model.get_layer("predictions").set_weights([kernel * 0, bias * 0 + np.arange(10) * 1000.0])
    metrics = training.evaluate(model, "digits", split="test", verbose=0)
    ds, _ = kdata.load("digits", "test", augment=False, shuffle=False)
    y = np.concatenate([labels.numpy() for _, labels in ds])
    p = model.predict(next(iter(ds))[0], verbose=0)
    assert np.all(p[:, :9] == 0.0) and np.all(p[:, 9] > 0.99)  # nine classes tied at zero
    # only class 9 is inside any top-k; everything else is tied at 0 and counts against
    assert metrics["top5_error"] == pytest.approx(np.mean(y != 9))
    assert metrics["top1_error"] == pytest.approx(np.mean(y != 9))


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated interruption")


_RESUME = """
import sys, numpy as np, tensorflow as tf, keras
tf.config.experimental.enable_op_determinism()  # bitwise-repeatable kernels on this CPU
from keras_apps import training

class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated interruption")

root = sys.argv[1]
kwargs = dict(epochs=3, batch_size=32, limit=128, strategy="one-device", verbose=0,
              build_kwargs={"width": 0.25}, learning_rate=0.02)
whole = training.fit("nin_cifar", "digits", output_dir=root + "/a", **kwargs)
try:
    training.fit("nin_cifar", "digits", callbacks=[Interrupt()], output_dir=root + "/b", **kwargs)
except RuntimeError:
    pass
import os
print("FINAL_MODEL_AFTER_INTERRUPTION", os.path.exists(root + "/b/model.keras"))
resumed = training.fit("nin_cifar", "digits", output_dir=root + "/b", **kwargs)
diff = max(float(np.max(np.abs(a.numpy() - b.numpy())))
           for a, b in zip(whole.model.weights, resumed.model.weights))
print("EPOCHS_RESUMED", len(resumed.history["loss"]), "MAX_DIFF", diff)
"""


@pytest.mark.slow
def test_an_interrupted_run_resumes_with_the_same_data_order_and_weights(tmp_path):
    script = tmp_path / "resume.py"
    script.write_text(_RESUME)
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=900,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    words = out.stdout.split()
    assert words[words.index("FINAL_MODEL_AFTER_INTERRUPTION") + 1] == "False"
    assert words[words.index("EPOCHS_RESUMED") + 1] == "1"  # only epoch 3 was left to run
    # NIN has dropout: equal weights need the data order and the dropout RNG restored too
    assert float(words[words.index("MAX_DIFF") + 1]) == 0.0
    rows = (tmp_path / "b" / "history.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["0", "1", "2"]
    assert not list((tmp_path / "b").rglob(".*")), "staging files left behind"


def test_a_finished_run_is_kept_unless_overwrite(tmp_path):
    kwargs = dict(epochs=1, limit=64, output_dir=tmp_path, verbose=0)
    training.fit(_tiny_classifier(), "digits", **kwargs)
    stamp = (tmp_path / "model.keras").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match=r"finished run .* overwrite=True \(CLI: --overwrite\)"):
        training.fit(_tiny_classifier(), "digits", **kwargs)
    assert (tmp_path / "model.keras").stat().st_mtime_ns == stamp
    training.fit(_tiny_classifier(), "digits", overwrite=True, **kwargs)
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 2  # header + 1 epoch


def test_resuming_with_other_settings_is_refused_before_anything_changes(tmp_path):
    kwargs = dict(epochs=3, limit=64, strategy="one-device", output_dir=tmp_path, verbose=0)
    with pytest.raises(RuntimeError):
        training.fit("nin_cifar", "digits", build_kwargs={"width": 0.25},
                     callbacks=[_Interrupt()], **kwargs)
    config = (tmp_path / "config.json").read_text()
    with pytest.raises(ValueError, match=r"other settings .*build_kwargs.*0\.25.*0\.5"):
        training.fit("nin_cifar", "digits", build_kwargs={"width": 0.5}, **kwargs)
    assert (tmp_path / "config.json").read_text() == config


def test_a_failed_run_leaves_no_empty_folder(tmp_path):
    class Fail(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise RuntimeError("broken before the first epoch")

    with pytest.raises(RuntimeError):
        training.fit(_tiny_classifier(), "digits", epochs=1, limit=64, callbacks=[Fail()],
                     output_dir=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def test_output_dir_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        training.fit(_tiny_classifier(), "digits", output_dir=tmp_path / "file", verbose=0)
    with pytest.raises(ValueError, match="lies under the file"):
        training.fit(_tiny_classifier(), "digits", output_dir=tmp_path / "file" / "run", verbose=0)


_KILL_DURING_BACKUP = """
import os, signal, sys
import keras
from keras_apps import training

calls = {"n": 0}
original = keras.Model.save_weights

def save_weights(self, filepath, *args, **kwargs):
    calls["n"] += 1
    if calls["n"] == 2 and os.environ.get("KILL") == "1":  # epoch 2's backup: die mid-write
        with open(filepath, "wb") as f:
            f.write(b"\\x89HDF\\r\\n\\x1a\\n" + b"\\0" * 100)
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, filepath, *args, **kwargs)

keras.Model.save_weights = save_weights
result = training.fit("resnet20_cifar", "digits", epochs=3, batch_size=64, limit=128,
                      strategy="one-device", output_dir=sys.argv[1], verbose=0)
print("EPOCHS_RUN", len(result.history["loss"]))
"""


@pytest.mark.slow
def test_a_kill_during_the_backup_write_keeps_the_last_good_state(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_KILL_DURING_BACKUP)
    run = tmp_path / "run"
    env = {**os.environ, "KILL": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    killed = subprocess.run([sys.executable, str(script), str(run)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    env["KILL"] = "0"
    resumed = subprocess.run([sys.executable, str(script), str(run)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "EPOCHS_RUN 2" in resumed.stdout  # resumed after epoch 1, the last good backup
    assert not list(run.rglob(".*")), "staging files left behind"


def test_learning_rate_schedules_follow_their_equations():
    step = training.learning_rate_schedule("step", 0.1, 100)
    assert [float(step(s)) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cosine = training.learning_rate_schedule("cosine", 0.1, 100)
    assert float(cosine(50)) == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 0.5)))
    assert training.learning_rate_schedule("constant", 0.1, 100) == 0.1
    with pytest.raises(ValueError, match="choose one of constant, step, cosine"):
        training.learning_rate_schedule("linear", 0.1, 100)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="Unknown strategy 'tpu'"):
        training.get_strategy("tpu")
    with pytest.raises(ValueError, match="`epochs` must be a positive integer, got 0"):
        training.fit("resnet20_cifar", epochs=0)
    with pytest.raises(ValueError, match="Unknown model 'resnet21_cifar'"):
        training.fit("resnet21_cifar", epochs=1)
    with pytest.raises(ValueError, match="`precision` must be one of float32, bfloat16, float16"):
        training.fit("resnet20_cifar", precision="int8")
    with pytest.raises(ValueError, match="width"):
        training.fit("resnet20_cifar", build_kwargs={"width": 0.5})


def test_load_model_says_what_is_wrong_with_a_file(tmp_path):
    import zipfile

    with pytest.raises(FileNotFoundError):
        training.load_model(tmp_path / "missing.keras")
    other = tmp_path / "other.keras"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("hello.txt", "not a model")
    with pytest.raises(ValueError, match="not a readable Keras model file"):
        training.load_model(other)
    good = tmp_path / "good.keras"
    _tiny_classifier().save(good)
    data = bytearray(good.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    flipped = tmp_path / "flipped.keras"
    flipped.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="flipped.keras"):
        training.load_model(flipped)


def test_evaluate_explains_a_channel_mismatch():
    model = keras_apps.build("resnet20_cifar", input_shape=(32, 32, 3), classes=10)
    with pytest.raises(ValueError, match="3-channel images.*1-channel"):
        training.evaluate(model, "digits", verbose=0)


@pytest.mark.slow
def test_bfloat16_training_saves_a_float32_model_that_exports(tmp_path):
    from keras_apps import export

    result = training.fit("resnet20_cifar", "digits", epochs=1, limit=64, batch_size=32,
                          precision="bfloat16", strategy="one-device",
                          output_dir=tmp_path / "run", verbose=0)
    assert training.model_precision(result.model) == "float32"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "bfloat16"
    exported = export.export_model(result.model, "saved_model", root=tmp_path / "exports")
    assert exported.max_abs_diff <= exported.tolerance
    bf16 = training.with_precision(result.model, "bfloat16")
    assert training.model_precision(bf16) == "bfloat16"
    x = np.random.RandomState(0).rand(4, 32, 32, 1).astype("float32")
    np.testing.assert_allclose(bf16(x), result.model(x), atol=0.05)  # same weights, bf16 compute
    bf16_metrics = training.evaluate(tmp_path / "run" / "model.keras", "digits",
                                     precision="bfloat16", verbose=0)
    assert bf16_metrics["precision"] == "bfloat16"


@pytest.mark.slow
def test_mirrored_strategy_over_two_cpu_replicas(tmp_path):
    script = textwrap.dedent(f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from keras_apps import training
        strategy = training.get_strategy("mirrored")
        result = training.fit("resnet20_cifar", "digits", epochs=1, batch_size=64, limit=256,
                              strategy=strategy, output_dir={str(tmp_path)!r}, verbose=0,
                              lr_multipliers={{"predictions": 10.0}})
        print(json.dumps({{"replicas": strategy.num_replicas_in_sync, **result.metrics["test"]}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["replicas"] == 2
    assert np.isfinite(metrics["loss"])
    assert json.loads((tmp_path / "config.json").read_text())["replicas"] == 2


@pytest.mark.slow
def test_googlenet_trains_with_auxiliary_classifiers_and_saves_the_inference_model(tmp_path):
    result = training.fit(
        "googlenet", "digits", epochs=1, batch_size=32, limit=64, image_size=(65, 65),
        strategy="one-device", output_dir=tmp_path, build_kwargs={"aux_logits": True},
        validation_fraction=0, verbose=0,
    )
    assert {"main_loss", "aux1_loss", "aux2_loss"} <= set(result.history)
    # Keras reports the total as main + 0.3 * (aux1 + aux2) (GoogLeNet, Sec. 5).
    h = result.history
    assert h["loss"][0] == pytest.approx(
        h["main_loss"][0] + 0.3 * (h["aux1_loss"][0] + h["aux2_loss"][0]), rel=0.05)
    saved = training.load_model(tmp_path / "model.keras")
    assert not isinstance(saved.output, dict)
    assert not any(layer.name.startswith("aux") for layer in saved.layers)
    # the hint lives with the family, not in the loop
    assert keras_apps.get_spec("googlenet").training["loss_weights"] == {
        "main": 1.0, "aux1": 0.3, "aux2": 0.3}


@pytest.mark.slow
def test_precision_accuracy_script_at_toy_size(tmp_path):
    command = [sys.executable, "tools/precision_accuracy.py", "--epochs", "1", "--limit", "64",
               "--batch-size", "32", "--seeds", "0", "--precisions", "float32,bfloat16",
               "--output", str(tmp_path)]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert sorted(r["precision"] for r in records) == ["bfloat16", "float32"]
    assert all(0.0 <= r["test_top1_error"] <= 1.0 for r in records)
    assert "| `resnet20_cifar` | digits (limit 64) | 1 | bfloat16 | 1 |" in (
        tmp_path / "README.md").read_text()
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert again.stdout.count("done already") == 2  # resumable: finished runs are kept


def test_evaluate_test_false_leaves_the_test_split_unread(tmp_path, monkeypatch):
    splits = []
    original = kdata.load

    def recording(name, split="train", **kwargs):
        splits.append(split)
        return original(name, split, **kwargs)

    monkeypatch.setattr(kdata, "load", recording)
    result = training.fit(_tiny_classifier(), "digits", epochs=1, limit=128, output_dir=tmp_path,
                          evaluate_test=False, verbose=0)
    assert "test" not in result.metrics and "validation" in result.metrics
    assert "test" not in json.loads((tmp_path / "metrics.json").read_text())
    assert "test" not in splits and "train" in splits
