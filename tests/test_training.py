"""Training, evaluation, resumption and distribution strategies."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras
import keras_apps
from keras_apps import data as kdata
from keras_apps import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    assert metrics == pytest.approx(result.metrics)
    assert 0.0 <= metrics["top1_error"] <= 1.0
    assert metrics["top5_error"] <= metrics["top1_error"]
    reloaded = training.load_model(run / "model.keras")
    images = np.random.RandomState(0).rand(3, 32, 32, 1).astype("float32")
    np.testing.assert_array_equal(reloaded(images), result.model(images))
    assert not list(run.rglob(".*")), "temporary files left behind"


def test_training_reduces_the_loss_on_real_digits(tmp_path):
    result = training.fit(
        "resnet20_cifar", "digits", epochs=3, batch_size=32, strategy="one-device",
        learning_rate=0.05, output_dir=tmp_path, verbose=0,
    )
    losses = result.history["loss"]
    assert losses[-1] < losses[0]
    assert result.metrics["top1_error"] < 0.5  # 10 classes: chance is 0.9


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
    ranks = np.sum(p > p[np.arange(len(y)), y][:, None], axis=1)  # classes scored above the label
    top5 = np.mean(ranks >= 5)
    loss = -np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)))
    assert metrics["examples"] == len(y)
    assert metrics["top1_error"] == pytest.approx(top1)
    assert metrics["top5_error"] == pytest.approx(top5)
    assert metrics["loss"] == pytest.approx(loss, rel=1e-4)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated interruption")


def test_an_interrupted_run_resumes_from_the_last_epoch(tmp_path):
    kwargs = dict(epochs=3, batch_size=64, limit=128, strategy="one-device",
                  output_dir=tmp_path, verbose=0)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        training.fit("resnet20_cifar", "digits", callbacks=[_Interrupt()], **kwargs)
    assert not (tmp_path / "model.keras").exists()  # no final model from a broken run
    result = training.fit("resnet20_cifar", "digits", **kwargs)
    assert len(result.history["loss"]) == 1  # only epoch 3 was left to run
    epochs = [line.split(",")[0] for line in (tmp_path / "history.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2"]


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


@pytest.mark.slow
def test_mirrored_strategy_over_two_cpu_replicas(tmp_path):
    script = textwrap.dedent(f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from keras_apps import training
        strategy = training.get_strategy("mirrored")
        result = training.fit("resnet20_cifar", "digits", epochs=1, batch_size=64, limit=256,
                              strategy=strategy, output_dir={str(tmp_path)!r}, verbose=0)
        print(json.dumps({{"replicas": strategy.num_replicas_in_sync, **result.metrics}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["replicas"] == 2
    assert np.isfinite(metrics["loss"])
    assert json.loads((tmp_path / "config.json").read_text())["replicas"] == 2


def test_googlenet_trains_with_auxiliary_classifiers_and_saves_the_inference_model(tmp_path):
    result = training.fit(
        "googlenet", "digits", epochs=1, batch_size=32, limit=64, image_size=(65, 65),
        strategy="one-device", output_dir=tmp_path, build_kwargs={"aux_logits": True}, verbose=0,
    )
    assert {"main_loss", "aux1_loss", "aux2_loss"} <= set(result.history)
    # Keras reports the total as main + 0.3 * (aux1 + aux2) (GoogLeNet, Sec. 5).
    h = result.history
    assert h["loss"][0] == pytest.approx(
        h["main_loss"][0] + 0.3 * (h["aux1_loss"][0] + h["aux2_loss"][0]), rel=0.05)
    saved = training.load_model(tmp_path / "model.keras")
    assert not isinstance(saved.output, dict)
    assert not any(layer.name.startswith("aux") for layer in saved.layers)
