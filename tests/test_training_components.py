"""Training components: learning-rate multipliers, freezing by pattern, ties-aware top-k,
precision policies, and the throughput benchmark at a toy size."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_apps.training.freezing import set_trainable
from keras_apps.training.metrics import TopKAccuracy, top_k_accuracy
from keras_apps.training.multipliers import with_lr_multipliers
from keras_apps.training.precision import PRECISIONS, precision_policy

from conftest import REPO

RNG = np.random.default_rng(0)
X = RNG.normal(size=(8, 4)).astype("float32")
Y = RNG.normal(size=(8, 3)).astype("float32")


def parallel_model(init="zeros"):
    """Three identical Dense layers on one input, summed: every step gives all three the same
    gradient, so their changes differ only by their learning rates."""
    x = keras.Input((4,))
    branches = [
        keras.layers.Dense(3, name=name, kernel_initializer=init, bias_initializer=init)(x)
        for name in ("fc7", "fc8", "base")
    ]
    return keras.Model(x, keras.layers.Add(name="sum")(branches))


def changes(model, optimizer, steps=1, x=X, y=Y):
    model.compile(optimizer=optimizer, loss="mse")
    before = {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers}
    for _ in range(steps):
        model.train_on_batch(x, y)
    return {
        name: [w.numpy() - w0 for w, w0 in zip(model.get_layer(name).weights, weights)]
        for name, weights in before.items()
        if weights
    }


# --- with_lr_multipliers -------------------------------------------------------------------


def test_sgd_step_changes_multiplied_layers_by_exactly_the_factor():
    optimizer = with_lr_multipliers(keras.optimizers.SGD(0.5), {"fc8": 8.0, "fc*": 2.0})
    delta = changes(parallel_model(), optimizer)
    reference = changes(parallel_model(), keras.optimizers.SGD(0.5))
    factors = [8.0, 8.0, 2.0, 2.0]  # kernel and bias of fc8, then of fc7 (first match wins)
    for multiplied, base, factor in zip(delta["fc8"] + delta["fc7"], delta["base"] * 2, factors):
        assert np.abs(base).min() > 0
        # Zero start and power-of-two factors: w = -f * lr * g is exact in float32.
        np.testing.assert_array_equal(multiplied, factor * base)
    for base, plain in zip(delta["base"], reference["base"]):
        np.testing.assert_array_equal(base, plain)  # unmatched layers train as without multipliers


OPTIMIZERS = {
    "sgd-momentum": lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    "sgd-weight-decay": lambda: keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.1),
    "sgd-cosine": lambda: keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 4)),
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.5),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.01),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_update_is_factor_times_the_base_update(name):
    make = OPTIMIZERS[name]
    decays = make().weight_decay is not None
    # Weight decay needs non-zero weights and makes later steps depend on them: one step then.
    steps, init = (1, "ones") if decays else (3, "zeros")
    delta = changes(parallel_model(init), with_lr_multipliers(make(), {"fc8": 10.0}), steps)
    reference = changes(parallel_model(init), make(), steps)
    for multiplied, base, plain in zip(delta["fc8"], delta["base"], reference["base"]):
        assert np.abs(base).min() > 1e-4
        np.testing.assert_allclose(multiplied, 10.0 * base, rtol=1e-5, atol=2e-6)
        if steps == 1:  # later gradients depend on fc8's larger steps
            np.testing.assert_allclose(base, plain, rtol=1e-6, atol=1e-7)
    for fc7, base in zip(delta["fc7"], delta["base"]):
        np.testing.assert_array_equal(fc7, base)


def test_lr_multipliers_with_a_loss_scale_optimizer_in_float16():
    with precision_policy("float16"):
        model = parallel_model()
    delta = changes(model, with_lr_multipliers(keras.optimizers.SGD(0.5), {"fc8": 4.0}))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert type(model.optimizer.inner_optimizer).__name__ == "LRMultipliedSGD"
    for multiplied, base in zip(delta["fc8"], delta["base"]):
        assert np.abs(base).min() > 0
        np.testing.assert_array_equal(multiplied, 4.0 * base)
    loss_scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())
    wrapped = with_lr_multipliers(loss_scaled, {"fc8": 2.0})
    assert isinstance(wrapped, keras.optimizers.LossScaleOptimizer)
    assert wrapped.inner_optimizer.lr_multipliers == {"fc8": 2.0}


def test_lr_multiplier_pattern_matching_no_layer_names_close_ones():
    model = parallel_model()
    optimizer = with_lr_multipliers("sgd", {"fc8|fc9": 2.0})
    with pytest.raises(ValueError, match=r"'fc9'.*closest: fc8") as error:
        optimizer.build(model.trainable_variables)
    assert "fc8|fc9" in str(error.value)
    model.compile(with_lr_multipliers("sgd", {"fc9": 2.0}), "mse")
    with pytest.raises(ValueError, match="matches no layer with trainable weights"):
        model.train_on_batch(X, Y)  # fit builds the optimizer before its first step


def test_lr_multipliers_match_nested_layer_names():
    inner = keras.Sequential([keras.layers.Dense(3, name="conv")], name="block")
    x = keras.Input((4,))
    model = keras.Model(x, inner(keras.layers.Dense(4, name="stem")(x)))
    optimizer = with_lr_multipliers("sgd", {"conv": 3.0, "block": 2.0, "st*": 0.0})
    optimizer.build(model.trainable_variables)
    factors = {v.path: optimizer.lr_factor(v) for v in model.trainable_variables}
    assert factors == {
        "stem/kernel": 0.0, "stem/bias": 0.0, "block/conv/kernel": 3.0, "block/conv/bias": 3.0
    }


@pytest.mark.parametrize(
    "multipliers, message",
    [({}, "non-empty mapping"), ({"fc8": -1.0}, "finite number >= 0"), ({"fc8": True}, "finite"),
     ({"fc8|": 2.0}, "empty alternative"), ([("fc8", 2.0)], "mapping")],
)
def test_lr_multipliers_reject_bad_values(multipliers, message):
    with pytest.raises(ValueError, match=message):
        with_lr_multipliers(keras.optimizers.SGD(), multipliers)


def test_lr_multipliers_reject_a_built_optimizer_and_non_optimizers():
    optimizer = keras.optimizers.SGD()
    optimizer.build(parallel_model().trainable_variables)
    with pytest.raises(ValueError, match="already built"):
        with_lr_multipliers(optimizer, {"fc8": 2.0})
    with pytest.raises(TypeError, match="keras.optimizers.Optimizer"):
        with_lr_multipliers(object(), {"fc8": 2.0})


def test_lr_multiplier_optimizer_config_round_trip():
    schedule = keras.optimizers.schedules.CosineDecay(0.1, 100)
    optimizer = with_lr_multipliers(
        keras.optimizers.AdamW(schedule, weight_decay=0.01), {"fc8": 10.0, "fc*": 2.0}
    )
    saved = json.dumps(keras.optimizers.serialize(optimizer))
    restored = keras.optimizers.deserialize(json.loads(saved))
    assert type(restored) is type(optimizer) and isinstance(restored, keras.optimizers.AdamW)
    assert list(restored.lr_multipliers.items()) == [("fc8", 10.0), ("fc*", 2.0)]
    assert restored.get_config() == optimizer.get_config()
    assert isinstance(restored._learning_rate, keras.optimizers.schedules.CosineDecay)


FRESH_PROCESS_LOAD = """
import json, sys
import keras, numpy as np
import keras_apps.training.multipliers  # registers the LRMultiplied optimizers
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
x, y = np.load(sys.argv[2])["x"], np.load(sys.argv[2])["y"]
model.train_on_batch(x, y)
np.savez(sys.argv[3], *[w.numpy() for w in model.weights])
optimizer = model.optimizer
print(json.dumps({"class": type(optimizer).__name__, "multipliers": optimizer.lr_multipliers,
                  "iterations": int(optimizer.iterations.numpy())}))
"""


def run_python(code, *args, env=None):
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_compiled_model_with_lr_multipliers_saves_and_loads_in_a_fresh_process(tmp_path):
    model = parallel_model("ones")
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.1)
    model.compile(with_lr_multipliers(optimizer, {"fc8": 10.0}), "mse")
    model.train_on_batch(X, Y)
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "batch.npz", x=X, y=Y)
    report = run_python(
        FRESH_PROCESS_LOAD, tmp_path / "m.keras", tmp_path / "batch.npz", tmp_path / "after.npz"
    )
    assert report == {"class": "LRMultipliedSGD", "multipliers": {"fc8": 10.0}, "iterations": 2}
    model.train_on_batch(X, Y)  # the same second step here: momentum state was saved and loaded
    loaded = np.load(tmp_path / "after.npz")
    for index, weight in enumerate(model.weights):
        np.testing.assert_allclose(loaded[f"arr_{index}"], weight.numpy(), rtol=1e-6, atol=1e-7)


MIRRORED = """
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from keras_apps.training.multipliers import with_lr_multipliers

def model():
    x = keras.Input((4,))
    branches = [keras.layers.Dense(3, name=n, kernel_initializer="ones")(x)
                for n in ("fc8", "base")]
    return keras.Model(x, keras.layers.Add()(branches))

rng = np.random.default_rng(0)
x, y = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")
results = {}
for name, strategy in (("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
                       ("single", tf.distribute.OneDeviceStrategy("/cpu:0"))):
    with strategy.scope():
        net = model()
        optimizer = with_lr_multipliers(keras.optimizers.SGD(0.1, weight_decay=0.1), {"fc8": 10.0})
        net.compile(optimizer, "mse")
    before = [w.numpy() for w in net.weights]
    net.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=1, verbose=0)
    results[name] = [(w.numpy() - b).tolist() for w, b in zip(net.weights, before)]
    results[name + "_replicas"] = strategy.num_replicas_in_sync
print(json.dumps(results))
"""


@pytest.mark.slow
def test_lr_multipliers_under_mirrored_strategy_on_two_cpus():
    report = run_python(MIRRORED)
    assert report["mirrored_replicas"] == 2
    for run in ("mirrored", "single"):
        fc8_kernel, fc8_bias, base_kernel, base_bias = map(np.array, report[run])
        assert np.abs(base_kernel).min() > 1e-3
        np.testing.assert_allclose(fc8_kernel, 10.0 * base_kernel, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(fc8_bias, 10.0 * base_bias, rtol=1e-5, atol=2e-6)
    for mirrored, single in zip(report["mirrored"], report["single"]):
        np.testing.assert_allclose(mirrored, single, rtol=1e-5, atol=1e-6)


# --- set_trainable -------------------------------------------------------------------------


def small_cnn():
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, name="conv1")(x)
    y = keras.layers.BatchNormalization(name="bn1")(y)
    y = keras.layers.GlobalAveragePooling2D(name="pool")(y)
    y = keras.layers.Dense(6, activation="relu", name="fc7")(y)
    return keras.Model(x, keras.layers.Dense(3, activation="softmax", name="fc8")(y))


def test_set_trainable_trains_only_the_matching_layers():
    model = small_cnn()
    assert set_trainable(model, "fc7*|fc8*") == ["fc7", "fc8"]
    assert [v.path for v in model.trainable_variables] == [
        "fc7/kernel", "fc7/bias", "fc8/kernel", "fc8/bias"
    ]
    before = {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers}
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    images = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    model.fit(images, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    for name, weights in before.items():
        for weight, start in zip(model.get_layer(name).weights, weights):
            if name in ("fc7", "fc8"):
                assert not np.array_equal(weight.numpy(), start), weight.path
            else:  # the frozen BatchNormalization's moving statistics included
                np.testing.assert_array_equal(weight.numpy(), start, err_msg=weight.path)


def test_set_trainable_reaches_nested_layers_and_resets_earlier_freezing():
    block = keras.Sequential(
        [keras.layers.Dense(4, name="conv"), keras.layers.Dense(4, name="other")], name="block"
    )
    x = keras.Input((4,))
    stem = keras.layers.Dense(4, name="stem")(x)
    model = keras.Model(x, keras.layers.Dense(2, name="head")(block(stem)))
    assert set_trainable(model, "conv") == ["conv"]
    assert [v.path for v in model.trainable_variables] == ["block/conv/kernel", "block/conv/bias"]
    assert set_trainable(model, "stem|block") == ["stem", "block"]
    assert {v.path for v in model.trainable_variables} == {
        "stem/kernel", "stem/bias", "block/conv/kernel", "block/conv/bias",
        "block/other/kernel", "block/other/bias",
    }


def test_set_trainable_pattern_matching_nothing_names_close_layers():
    with pytest.raises(ValueError, match=r"'fc9\*' \(closest: fc8"):
        set_trainable(small_cnn(), "fc7|fc9*")
    with pytest.raises(TypeError, match="string"):
        set_trainable(small_cnn(), ["fc7"])


# --- top-k with ties -----------------------------------------------------------------------


def naive_top_k(labels, scores, k):
    correct = 0
    for label, row in zip(labels, scores):
        rivals = sum(1 for c, s in enumerate(row) if c != label and s >= row[label])
        correct += rivals < k
    return correct / len(labels)


def tied_scores(n=200, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(n, classes)).astype("float32") / 4  # many ties
    labels = rng.integers(0, classes, size=n)
    return labels, scores


@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_top_k_counts_ties_against_like_a_naive_loop(k):
    labels, scores = tied_scores()
    expected = naive_top_k(labels, scores, k)
    assert 0.01 < expected < 0.99
    assert top_k_accuracy(labels, scores, k) == pytest.approx(expected)
    metric = TopKAccuracy(k)
    metric.update_state(labels[:, None], scores)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)


def test_one_hot_scores_are_correct_only_on_the_scored_class():
    labels = np.arange(10)
    predicted = np.array([0, 1, 2, 3, 4, 4, 3, 2, 1, 0])
    scores = np.eye(10, dtype="float32")[predicted]
    expected = np.mean(labels == predicted)  # every other class ties at 0: a miss
    assert top_k_accuracy(labels, scores, 5) == pytest.approx(expected)
    many_classes = np.eye(1000, dtype="float32")[predicted]
    assert top_k_accuracy(labels, many_classes, 5) == pytest.approx(expected)
    metric = TopKAccuracy(5)
    metric.update_state(labels, scores)
    assert float(metric.result()) == pytest.approx(expected)


def test_k_at_least_the_class_count_is_always_correct_and_nan_is_a_miss():
    labels, scores = tied_scores(n=20, classes=4)
    for k in (4, 7):
        assert top_k_accuracy(labels, scores, k) == 1.0
    scores[0, labels[0]] = np.nan
    assert top_k_accuracy(labels, scores, 4) == pytest.approx(19 / 20)
    metric = TopKAccuracy(4)
    metric.update_state(labels, scores)
    assert float(metric.result()) == pytest.approx(19 / 20)


def test_top_k_metric_in_compile_and_saved_model(tmp_path):
    labels, scores = tied_scores(n=64)
    x = keras.Input((10,))
    model = keras.Model(x, keras.layers.Identity(name="scores")(x))
    model.compile(loss="sparse_categorical_crossentropy", metrics=[TopKAccuracy(3)])
    result = model.evaluate(scores, labels, batch_size=16, verbose=0, return_dict=True)
    assert result["top3"] == pytest.approx(naive_top_k(labels, scores, 3), abs=1e-6)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    again = loaded.evaluate(scores, labels, batch_size=16, verbose=0, return_dict=True)
    assert again["top3"] == pytest.approx(result["top3"])
    restored = keras.metrics.deserialize(keras.metrics.serialize(TopKAccuracy(2, name="t2")))
    assert isinstance(restored, TopKAccuracy) and (restored.k, restored.name) == (2, "t2")


def test_top_k_rejects_bad_arguments():
    with pytest.raises(ValueError, match="positive integer"):
        TopKAccuracy(0)
    with pytest.raises(ValueError, match="positive integer"):
        top_k_accuracy([0], [[1.0, 0.0]], 2.5)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        top_k_accuracy([0, 1, 1], [[1.0, 0.0], [0.0, 1.0]], 1)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        top_k_accuracy([0, 2], [[1.0, 0.0], [0.0, 1.0]], 1)


# --- precision -----------------------------------------------------------------------------


def test_precision_policy_sets_and_restores_the_dtype_policy():
    assert PRECISIONS == ("float32", "bfloat16", "float16")
    assert keras.config.dtype_policy().name == "float32"
    with precision_policy("bfloat16") as policy:
        assert policy.name == "mixed_bfloat16"
        layer = keras.layers.Dense(2)
        layer.build((None, 3))
    assert (layer.compute_dtype, layer.kernel.dtype) == ("bfloat16", "float32")
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(RuntimeError):
        with precision_policy("mixed_float16"):
            assert keras.config.dtype_policy().name == "mixed_float16"
            raise RuntimeError("inside")
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(ValueError, match="float32, bfloat16, float16"):
        with precision_policy("half"):
            pass


# --- tools/bench_throughput.py -------------------------------------------------------------


@pytest.mark.slow
def test_bench_throughput_runs_at_a_toy_size():
    out = subprocess.run(
        [sys.executable, "tools/bench_throughput.py", "--models", "resnet20_cifar",
         "--image-size", "32", "--batch-size", "2", "--repeats", "1",
         "--variants", "bfloat16,float16"],
        cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True,
        text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "no keras.applications twin" in out.stdout
    assert "bfloat16 train step" in out.stdout and "bfloat16 inference" in out.stdout
    assert "mixed_float16" in out.stdout
