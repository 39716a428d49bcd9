"""Developmental networks ("Growing a Brain", Wang, Ramanan, Hebert, CVPR 2017): growing a
trained network (DA-, WA-, DWA-, WWA-CNN), its L2-normalise-and-scale layer, the fine-tuning
scenarios and the 10x learning rate of the new layers.

References are independent of the code: the source network's own outputs (new units with
zero outgoing weights must not change them), weights read before growing, numpy norms, layer
names written out by hand from the naming rules, fnmatch applied by hand to the patterns
finetune passes on, and a numpy accuracy of the task0 head."""

import fnmatch
import importlib
import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_apps
from keras_apps import growth
from keras_apps.layers import L2NormalizeScale
from keras_apps.training import compile_for_classification, evaluate, set_trainable

finetune_module = importlib.import_module("keras_apps.growth.finetune")

X8 = np.random.default_rng(0).normal(size=(6, 8)).astype("float32")
HEAD = ("task0_predictions", "task0_predictions_activation")


def _randomise(model, seed=0):
    """Non-zero random weights everywhere (biases too; a BatchNormalization's moving variance
    positive), so copies are checked on real values."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            values = [rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in layer.get_weights()]
            if isinstance(layer, keras.layers.BatchNormalization):
                values[-1] = np.abs(values[-1]) + 0.5
            layer.set_weights(values)
    return model


def _alexnet_like(dropout=0.5):
    """Input(8) -> fc6 (6, relu) -> drop6 -> fc7 (5, relu) -> drop7 -> predictions (3) ->
    predictions_activation (softmax)."""
    inputs = keras.Input((8,), name="pixels")
    x = keras.layers.Dense(6, activation="relu", name="fc6")(inputs)
    x = keras.layers.Dropout(dropout, name="drop6")(x)
    x = keras.layers.Dense(5, activation="relu", name="fc7")(x)
    x = keras.layers.Dropout(dropout, name="drop7")(x)
    x = keras.layers.Dense(3, name="predictions")(x)
    x = keras.layers.Activation("softmax", name="predictions_activation")(x)
    return _randomise(keras.Model(inputs, x, name="toy"))


def _conv_toy():
    """16x16x3 -> Conv2D conv (4) -> BatchNormalization conv_bn -> ReLU conv_relu ->
    GlobalAveragePooling2D gap -> fc7 (5, relu) -> predictions (3, softmax)."""
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.ReLU(name="conv_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(5, activation="relu", name="fc7")(x)
    x = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return _randomise(keras.Model(inputs, x, name="convtoy"))


def _weights(model):
    return {
        layer.name: [np.array(w) for w in layer.get_weights()]
        for layer in model.layers
        if layer.weights
    }


def _np(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def _matched(pattern, names):
    """The names an fnmatch pattern with | alternatives matches (written here, not imported)."""
    alternatives = pattern.split("|")
    return {name for name in names if any(fnmatch.fnmatchcase(name, alt) for alt in alternatives)}


# --- 1. copied weights are bit-identical ---------------------------------------------------

UNITS = 4
#: Layers of the grown toy whose input gained units: {name: (old input rows, new rows)}.
EXPANDED = {
    "depth": {},
    "width": {"task0_predictions": (5, UNITS)},
    "depth_width": {"task0_predictions": (5, UNITS)},
    "recursive_width": {"fc7": (6, UNITS // 2), "task0_predictions": (5, UNITS)},
    "transfer": {},
}


@pytest.mark.parametrize("mode", [*growth.MODES, "transfer"])
def test_copied_weights_are_bit_identical(mode):
    source = _alexnet_like()
    before = _weights(source)
    if mode == "transfer":
        grown = growth.transfer(source, classes=4, seed=0)
    else:
        grown = growth.grow(source, mode, units=UNITS, seed=0)
    expanded = EXPANDED[mode]
    for name, old in before.items():
        new_name = "task0_predictions" if name == "predictions" else name
        new = grown.get_layer(new_name).get_weights()
        assert len(new) == len(old) == 2
        if new_name in expanded:
            rows, extra = expanded[new_name]
            assert old[0].shape[0] == rows
            assert new[0].shape == (rows + extra, old[0].shape[1])
            assert np.array_equal(new[0][:rows], old[0])
            assert np.array_equal(new[0][rows:], np.zeros((extra, old[0].shape[1]), np.float32))
            assert np.array_equal(new[1], old[1])
        else:
            for w_new, w_old in zip(new, old):
                assert np.array_equal(w_new, w_old), new_name
    # the source network is left as it was
    for name, old in before.items():
        for w_now, w_old in zip(source.get_layer(name).get_weights(), old):
            assert np.array_equal(w_now, w_old)
    # the new classifier reads the representation the new units widened
    # (depth: fc_a of `units`; depth_width: fc_a as wide as the old fc7 by default)
    widths = {"depth": UNITS, "width": 5 + UNITS, "depth_width": 5,
              "recursive_width": 5 + UNITS, "transfer": 5}
    classes = 4 if mode == "transfer" else 3
    assert grown.get_layer("predictions").get_weights()[0].shape == (widths[mode], classes)


# --- 2. new units with zero outgoing weights leave the source outputs unchanged ----------


@pytest.mark.parametrize("mode", growth.MODES)
def test_source_head_reproduces_the_source_network(mode):
    source = _alexnet_like()
    grown = growth.grow(source, mode, units=UNITS, normalize=False, seed=0)
    expected = _np(source(X8))
    outputs = grown(X8)
    assert set(outputs) == {"predictions", "task0"}
    np.testing.assert_allclose(_np(outputs["task0"]), expected, rtol=0, atol=1e-6)


def test_width_classifier_with_the_old_weights_reproduces_the_source():
    source = _alexnet_like()
    grown = growth.grow(source, "width", units=UNITS, normalize=False, seed=0)
    kernel, bias = source.get_layer("predictions").get_weights()
    padded = np.vstack([kernel, np.zeros((UNITS, 3), np.float32)])
    grown.get_layer("predictions").set_weights([padded, bias])
    outputs = grown(X8)
    expected = _np(source(X8))
    np.testing.assert_allclose(_np(outputs["predictions"]), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(_np(outputs["task0"]), expected, rtol=0, atol=1e-6)


def test_width_below_the_top_layer():
    source = _alexnet_like()
    grown = growth.grow(source, "width", at="fc6", units=UNITS, normalize=False, seed=0)
    assert set(growth.new_layers(grown)) == {
        "fc6_plus_g1", "fc6_concat_g1", "predictions", "predictions_activation"
    }
    kernel = grown.get_layer("fc7").get_weights()[0]
    assert kernel.shape == (6 + UNITS, 5)
    assert np.array_equal(kernel[:6], source.get_layer("fc7").get_weights()[0])
    assert not kernel[6:].any()
    assert np.array_equal(grown.get_layer("task0_predictions").get_weights()[0],
                          source.get_layer("predictions").get_weights()[0])
    np.testing.assert_allclose(_np(grown(X8)["task0"]), _np(source(X8)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["width", "recursive_width"])
def test_width_at_a_global_pooling_layer(mode):
    """gap gets a ReLU 1x1 convolution on the map it pools, pooled the same way; fc7 reads
    the widened pooling with zero rows for the new channels."""
    source = _conv_toy()
    x = np.random.default_rng(2).uniform(0, 1, size=(3, 16, 16, 3)).astype("float32")
    at = "gap" if mode == "width" else "fc7"
    assert growth.top_representation_layer(source) == "fc7"
    grown = growth.grow(source, mode, at=at, units=UNITS, normalize=False, seed=0)
    extra = UNITS if mode == "width" else UNITS // 2
    expected = {"gap_plus_conv_g1", "gap_plus_g1", "gap_concat_g1", "predictions"}
    if mode == "recursive_width":
        expected |= {"fc7_plus_g1", "fc7_concat_g1"}
    assert set(growth.new_layers(grown)) == expected
    conv = grown.get_layer("gap_plus_conv_g1")
    assert isinstance(conv, keras.layers.Conv2D) and conv.kernel.shape == (1, 1, 4, extra)
    assert isinstance(grown.get_layer("gap_plus_g1"), keras.layers.GlobalAveragePooling2D)
    kernel = grown.get_layer("fc7").get_weights()[0]
    assert kernel.shape == (4 + extra, 5) and not kernel[4:].any()
    np.testing.assert_allclose(_np(grown(x)["task0"]), _np(source(x)), rtol=0, atol=1e-6)
    # the new channels: mean over space of relu(1x1 conv of the ReLU map gap pools), by numpy
    relu_map = _np(keras.Model(source.input, source.get_layer("conv_relu").output)(x))
    w, b = conv.get_weights()
    pooled = np.maximum(np.einsum("nhwc,ck->nhwk", relu_map, w[0, 0]) + b, 0).mean(axis=(1, 2))
    widened = _np(keras.Model(grown.input, grown.get_layer("gap_concat_g1").output)(x))
    np.testing.assert_allclose(widened[:, :4], relu_map.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(widened[:, 4:], pooled, rtol=1e-5, atol=1e-6)


def test_keep_source_false_and_seeded_new_layers():
    source = _alexnet_like()
    grown = growth.grow(source, "width", units=UNITS, keep_source=False, seed=7)
    assert not isinstance(grown.output, dict)
    assert not any(layer.name.startswith("task0_") for layer in grown.layers)
    assert growth.generation(grown) == 1 and growth.task_heads(grown) == {}
    again = growth.grow(source, "width", units=UNITS, keep_source=False, seed=7)
    for a, b in zip(grown.get_weights(), again.get_weights()):
        assert np.array_equal(a, b)


# --- 3. L2NormalizeScale --------------------------------------------------------------------


def test_l2_normalize_scale_output_norm_is_its_constant_scale():
    x2 = np.random.default_rng(11).normal(size=(5, 7)).astype("float32")
    x4 = np.random.default_rng(12).normal(size=(2, 3, 4, 6)).astype("float32")
    for x, s in ((x2, 10.0), (x4, 20.0)):
        y = _np(L2NormalizeScale(s)(x))
        norms = np.sqrt((y.astype(np.float64) ** 2).sum(axis=-1))  # per sample / per position
        np.testing.assert_allclose(norms, np.full(x.shape[:-1], s), rtol=1e-5)
        reference = s * x / np.sqrt((x.astype(np.float64) ** 2).sum(axis=-1, keepdims=True))
        np.testing.assert_allclose(y, reference, rtol=1e-5, atol=1e-6)


def test_l2_normalize_scale_per_channel_gamma():
    x = np.random.default_rng(13).normal(size=(2, 3, 3, 4)).astype("float32")
    layer = L2NormalizeScale(10.0)
    layer.build(x.shape)
    gamma = np.array([0.5, -2.0, 3.0, 7.5], np.float32)
    layer.set_weights([gamma])
    reference = np.empty_like(x, dtype=np.float64)
    for n, i, j in np.ndindex(*x.shape[:3]):
        v = x[n, i, j].astype(np.float64)
        reference[n, i, j] = gamma * v / math.sqrt(float(v @ v))
    np.testing.assert_allclose(_np(layer(x)), reference, rtol=1e-5, atol=1e-6)
    assert [w.name for w in layer.trainable_weights] == ["gamma"]


def test_l2_normalize_scale_is_finite_with_finite_gradients_at_zero():
    x = tf.constant(np.stack([np.zeros(4, np.float32), np.array([3.0, 0.0, 4.0, 0.0], np.float32)]))
    layer = L2NormalizeScale(10.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.constant([[1.0, 2.0, 3.0, 4.0]]))
    grad_x = tape.gradient(loss, x).numpy()
    grad_gamma = tape.gradient(loss, layer.gamma).numpy()
    for value in (y.numpy(), grad_x, grad_gamma):
        assert np.all(np.isfinite(value))
    np.testing.assert_array_equal(y.numpy()[0], np.zeros(4))
    np.testing.assert_allclose(y.numpy()[1], [6.0, 0.0, 8.0, 0.0], rtol=1e-6)  # 10 * x / 5
    # d/dgamma_c of sum_c w_c gamma_c x_c/||x||: zero sample adds 0, second adds w_c x_c/5
    np.testing.assert_allclose(grad_gamma, [0.6, 0.0, 2.4, 0.0], rtol=1e-6, atol=1e-7)


def test_l2_normalize_scale_config_round_trip_and_keras_file(tmp_path):
    layer = L2NormalizeScale(20.0, epsilon=1e-10, name="scale")
    config = layer.get_config()
    assert config["scale_init"] == 20.0 and config["epsilon"] == 1e-10 and config["name"] == "scale"
    assert L2NormalizeScale.from_config(config).get_config() == config

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, L2NormalizeScale(5.0, name="scale")(inputs))
    model.get_layer("scale").set_weights([np.array([1.0, -0.5, 4.0], np.float32)])
    x = np.random.default_rng(14).normal(size=(2, 4, 4, 3)).astype("float32")
    path = tmp_path / "scale.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("scale"), L2NormalizeScale)
    np.testing.assert_array_equal(_np(loaded(x)), _np(model(x)))


def test_l2_normalize_scale_rejects_bad_scale_init():
    for bad in (0, -1.0, float("nan"), float("inf"), True, "10"):
        with pytest.raises(ValueError, match=re.escape(f"got {bad!r}")):
            L2NormalizeScale(bad)


def test_l2_normalize_scale_under_mixed_bfloat16():
    x = np.random.default_rng(15).normal(size=(3, 2, 2, 8)).astype("float32")
    gamma = np.linspace(1.0, 20.0, 8).astype("float32")
    layer32 = L2NormalizeScale(10.0)
    layer16 = L2NormalizeScale(10.0, dtype="mixed_bfloat16")
    for layer in (layer32, layer16):
        layer.build(x.shape)
        layer.set_weights([gamma])
    y32, y16 = layer32(x), layer16(x)
    assert y16.dtype == tf.bfloat16 and layer16.gamma.dtype == "float32"
    np.testing.assert_allclose(_np(tf.cast(y16, tf.float32)), _np(y32), rtol=2e-2, atol=2e-2)


# --- 4. new layers learn at 10x the rate ---------------------------------------------------


def test_finetune_multiplies_the_new_layers_step_by_exactly_ten(monkeypatch):
    source = _alexnet_like(dropout=0.0)
    grown = growth.grow(source, "width", units=UNITS, seed=0)
    captured = {}

    def fake_fit(model, data, **kwargs):
        captured.update(kwargs, model=model, data=data)
        return "fit result"

    monkeypatch.setattr(finetune_module.training, "fit", fake_fit)
    assert growth.finetune(grown, "target data", scenario="all", epochs=1) == "fit result"
    assert captured["model"] is grown and captured["data"] == "target data"
    assert captured["momentum"] == 0.9 and captured["weight_decay"] == 5e-4  # the paper's SGD
    assert captured["lr_schedule"] == "step" and captured["loss_weights"] == {"predictions": 1.0}

    with_weights = [layer.name for layer in grown.layers if layer.weights]
    new = {"fc7_plus_g1", "fc7_l2norm_g1", "fc7_plus_l2norm_g1", "predictions"}
    ((pattern, factor),) = captured["lr_multipliers"].items()
    assert factor == 10.0
    assert _matched(pattern, with_weights) == new
    every = [layer.name for layer in grown.layers[1:]]
    assert _matched(captured["trainable"], every) == set(every) - set(HEAD)

    x = X8
    y = np.array([0, 1, 2, 1, 0, 2], np.int32)

    def one_step(multipliers):
        twin = keras.models.clone_model(grown)
        twin.set_weights(grown.get_weights())
        set_trainable(twin, captured["trainable"])
        compile_for_classification(
            twin, optimizer=keras.optimizers.SGD(1.0, momentum=0.0, weight_decay=None),
            loss_weights=captured["loss_weights"], lr_multipliers=multipliers,
        )
        start = _weights(twin)
        twin.train_on_batch(x, y)  # the loss is on "predictions" only
        end = _weights(twin)
        return {name: [w1 - w0 for w1, w0 in zip(end[name], ws)] for name, ws in start.items()}

    multiplied, plain = one_step(captured["lr_multipliers"]), one_step(None)
    start = _weights(grown)
    for name in with_weights:
        for d_multiplied, d_plain, w0 in zip(multiplied[name], plain[name], start[name]):
            if name in new:
                assert np.abs(d_plain).max() > 1e-3, name
                # a change read as w1 - w0 in float32 carries the rounding of w1 (half an ulp,
                # gamma ~ 10): at most 0.5 ulp on the left and 10 * 0.5 ulp on the right
                ulp = np.spacing(np.float32(np.abs(w0).max() + np.abs(d_multiplied).max()))
                np.testing.assert_allclose(d_multiplied, 10.0 * d_plain, rtol=1e-5, atol=6 * ulp)
            elif name in HEAD:
                assert not d_multiplied.any() and not d_plain.any()
            else:
                assert np.abs(d_plain).max() > 0, name
                np.testing.assert_array_equal(d_multiplied, d_plain)


# --- 5. growing twice ----------------------------------------------------------------------


def test_growing_twice_equals_growing_once_by_the_sum():
    a, b = 2, 3
    source = _alexnet_like()
    once_a = growth.grow(source, "width", units=a, normalize=False, seed=1)
    twice = growth.grow(once_a, "width", units=b, normalize=False, seed=2)
    once = growth.grow(source, "width", units=a + b, normalize=False, seed=3)
    assert [growth.generation(m) for m in (source, once_a, twice)] == [0, 1, 2]
    assert set(twice.output) == {"predictions", "task1", "task0"}
    names = {layer.name for layer in twice.layers}
    assert {"fc7_plus_g1", "fc7_concat_g1", "fc7_plus_g2", "fc7_concat_g2",
            "task1_predictions"} <= names

    g1 = twice.get_layer("fc7_plus_g1").get_weights()
    g2 = twice.get_layer("fc7_plus_g2").get_weights()
    once.get_layer("fc7_plus_g1").set_weights(
        [np.concatenate([g1[0], g2[0]], axis=1), np.concatenate([g1[1], g2[1]])]
    )
    once.get_layer("predictions").set_weights(twice.get_layer("predictions").get_weights())

    x = np.random.default_rng(16).normal(size=(7, 8)).astype("float32")
    got, want = twice(x), once(x)
    np.testing.assert_allclose(_np(got["predictions"]), _np(want["predictions"]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_np(got["task0"]), _np(want["task0"]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_np(got["task0"]), _np(source(x)), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_np(got["task1"]), _np(once_a(x)["predictions"]), rtol=0, atol=1e-6)


# --- 6. names of the new layers, scenarios, errors -----------------------------------------

#: New layers of the first growth of the toy (normalize=True), from the naming rules.
NEW_LAYERS = {
    "depth": ["fc_a_g1", "fc_a_l2norm_g1"],
    "width": ["fc7_plus_g1", "fc7_l2norm_g1", "fc7_plus_l2norm_g1", "fc7_concat_g1"],
    "depth_width": ["fc7_plus_g1", "fc7_l2norm_g1", "fc7_plus_l2norm_g1", "fc7_concat_g1",
                    "fc_a_g1", "fc_a_l2norm_g1"],
    "recursive_width": ["fc6_plus_g1", "fc6_l2norm_g1", "fc6_plus_l2norm_g1", "fc6_concat_g1",
                        "fc7_plus_g1", "fc7_l2norm_g1", "fc7_plus_l2norm_g1", "fc7_concat_g1"],
}
WEIGHTLESS = {"fc6_concat_g1", "fc7_concat_g1", "predictions_activation"}
SOURCE_LAYERS = ["pixels", "fc6", "drop6", "fc7", "drop7", "predictions", "predictions_activation"]


@pytest.mark.parametrize("mode", growth.MODES)
def test_new_layers_are_named_by_the_rules(mode):
    source = _alexnet_like()
    for normalize in (True, False):
        grown = growth.grow(source, mode, units=UNITS, normalize=normalize)
        expected = [n for n in NEW_LAYERS[mode] if normalize or "l2norm" not in n]
        expected += ["predictions", "predictions_activation"]
        order = [layer.name for layer in grown.layers]
        assert set(order) == set(SOURCE_LAYERS) | set(HEAD) | set(expected)
        assert sorted(growth.new_layers(grown)) == sorted(expected)
        assert growth.new_layers(grown) == [n for n in order if n in expected]  # in model order
        weighted = sorted(set(expected) - WEIGHTLESS)
        assert sorted(growth.new_layers(grown, with_weights=True)) == weighted
        assert growth.task_heads(grown) == {"task0": list(HEAD)}
        assert grown.name == f"toy_{growth.ABBREVIATIONS[mode]}"


def test_transfer_adds_only_a_classifier():
    source = _alexnet_like()
    grown = growth.transfer(source, classes=4)
    assert growth.generation(grown) == 1 and grown.name == "toy_ft"
    assert growth.new_layers(grown) == ["predictions", "predictions_activation"]
    assert growth.new_layers(grown, with_weights=True) == ["predictions"]
    outputs = grown(X8)
    assert _np(outputs["predictions"]).shape == (6, 4)
    np.testing.assert_allclose(_np(outputs["task0"]), _np(source(X8)), rtol=0, atol=1e-6)


def test_scenario_layers():
    grown = growth.grow(_alexnet_like(), "width", units=UNITS)
    new = NEW_LAYERS["width"] + ["predictions", "predictions_activation"]
    order = [layer.name for layer in grown.layers]
    expected = {
        "new": set(new),
        "fc7-new": {"fc7", "drop7", *new},
        "FC6-New": {"fc6", "drop6", "fc7", "drop7", *new},
        "fc6-NEW": {"fc6", "drop6", "fc7", "drop7", *new},
        "all": {"fc6", "drop6", "fc7", "drop7", *new},
        "ALL": {"fc6", "drop6", "fc7", "drop7", *new},
    }
    for scenario, names in expected.items():
        got = growth.scenario_layers(grown, scenario)
        assert set(got) == names, scenario
        assert got == [n for n in order if n in names], scenario

    depth = growth.grow(_alexnet_like(), "depth", units=UNITS)
    assert set(growth.scenario_layers(depth, "fc7-new")) == {
        "fc7", "drop7", "fc_a_g1", "fc_a_l2norm_g1", "predictions", "predictions_activation"
    }  # the source head reads drop7 too, but task heads never train


def test_scenario_errors():
    grown = growth.grow(_alexnet_like(), "width", units=UNITS)
    with pytest.raises(ValueError, match="'fc5'"):
        growth.scenario_layers(grown, "fc5-new")
    for bad in ("bogus", "-new", "fc7"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            growth.scenario_layers(grown, bad)
    with pytest.raises(ValueError, match="'fc5'"):
        growth.finetune(grown, "digits", scenario="fc5-new")
    with pytest.raises(ValueError, match="never grown"):
        growth.new_layers(_alexnet_like())


def _flatten_toy():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(4, activation="relu", name="fc7")(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="predictions")(x))


def test_grow_errors_name_the_bad_value():
    source = _alexnet_like()
    cases = [
        (dict(mode="width", units=0), "got 0"),
        (dict(mode="width", units=-3), "got -3"),
        (dict(mode="depth", units=0), "got 0"),
        (dict(mode="sideways", units=2), "'sideways'"),
        (dict(mode="width", units=2, scale_init=0), "got 0"),
        (dict(mode="width", units=2, scale_init=-10.0), "got -10.0"),
        (dict(mode="width", units=2, at="drop7"), "'drop7'"),
        (dict(mode="width", units=2, at="no_such_layer"), "'no_such_layer'"),
        (dict(mode="depth", units=2, at="fc6"), "'fc6'"),
        (dict(mode="width", units=2, depth_units=3), "'width'"),
        (dict(mode="recursive_width", units=1), "got 1"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            growth.grow(source, **kwargs)
    with pytest.raises(ValueError, match="'flatten'"):
        growth.grow(_flatten_toy(), "width", units=2, at="flatten")
    with pytest.raises(TypeError, match="'alexnet'"):
        growth.grow("alexnet", "width", units=2)


# --- 7. finetune end to end ----------------------------------------------------------------


def _pair(n=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, 16, 16, 3)).astype("float32")
    y = rng.integers(0, classes, size=n).astype("int32")
    return x, y, tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def test_finetune_new_scenario_trains_only_the_new_layers(tmp_path):
    grown = growth.grow(_conv_toy(), "width", units=3, seed=0)
    before = _weights(grown)
    _, _, train = _pair(seed=1)
    _, _, val = _pair(seed=2)
    result = growth.finetune(grown, (train, val), scenario="new", epochs=1, batch_size=8,
                             learning_rate=0.05, output_dir=tmp_path / "run", verbose=0)
    after = _weights(result.model)
    new = {"fc7_plus_g1", "fc7_l2norm_g1", "fc7_plus_l2norm_g1", "predictions"}
    frozen = ("conv", "conv_bn", "fc7", "task0_predictions")
    assert set(after) == set(frozen) | new
    for name in frozen:  # BatchNorm statistics too; the task0 head bit-identical
        for w_after, w_before in zip(after[name], before[name]):
            assert np.array_equal(w_after, w_before), name
    for name in new:
        assert any(not np.array_equal(a, b) for a, b in zip(after[name], before[name])), name
    assert "validation" in result.metrics
    assert (tmp_path / "run" / "model.keras").is_file()


# --- 8. registered families ----------------------------------------------------------------

FAMILIES = [
    pytest.param("resnet20_cifar", dict(input_shape=(16, 16, 3), classes=3), id="resnet20_cifar"),
    pytest.param("nin_cifar", dict(width=0.25, input_shape=(16, 16, 3), classes=3), id="nin_cifar"),
    pytest.param("alexnet", dict(input_shape=(67, 67, 3), classes=3), id="alexnet"),
]


def _check_copied(source, grown):
    """Every weighted source layer is in ``grown`` (its classifier head as task0_*) with equal
    weights, or, where its input grew, with equal first input rows and zero rows after."""
    head = set(growth.task_heads(grown)["task0"])
    for layer in source.layers:
        if not layer.weights:
            continue
        name = f"task0_{layer.name}" if f"task0_{layer.name}" in head else layer.name
        for old, new in zip(layer.get_weights(), grown.get_layer(name).get_weights()):
            if old.shape == new.shape:
                assert np.array_equal(old, new), name
            else:
                rows = old.shape[-2]
                assert old.shape[:-2] == new.shape[:-2] and old.shape[-1] == new.shape[-1], name
                assert np.array_equal(new[..., :rows, :], old), name
                assert not new[..., rows:, :].any(), name


@pytest.mark.parametrize("name,kwargs", FAMILIES)
def test_growing_registered_families(name, kwargs, tmp_path):
    source = keras_apps.build(name, **kwargs)
    x = np.random.default_rng(3).uniform(0, 1, size=(2, *kwargs["input_shape"])).astype("float32")
    expected = _np(source(x))
    grown = {}
    for mode in ("depth", "width"):
        grown[mode] = growth.grow(source, mode, units=8, normalize=False, seed=0)
        _check_copied(source, grown[mode])
        outputs = grown[mode](x)
        np.testing.assert_allclose(_np(outputs["task0"]), expected, rtol=0, atol=1e-5)
        assert _np(outputs["predictions"]).shape == (2, 3)
    _check_keras_file(grown["width"], x, tmp_path / "grown.keras")


def _check_keras_file(grown, x, path):
    grown.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    got, want = loaded(x), grown(x)
    assert set(got) == set(want) == {"predictions", "task0"}
    for key in want:
        np.testing.assert_array_equal(_np(got[key]), _np(want[key]))


def test_grown_toys_with_scale_layers_load_in_safe_mode(tmp_path):
    for mode in growth.MODES:
        grown = growth.grow(_alexnet_like(), mode, units=UNITS, seed=0)
        _randomise(grown, seed=5)  # gammas away from their initial value
        _check_keras_file(grown, X8, tmp_path / f"{mode}.keras")
    grown = growth.grow(_conv_toy(), "width", at="gap", units=UNITS, seed=0)
    _check_keras_file(grown, np.ones((2, 16, 16, 3), np.float32), tmp_path / "gap.keras")


# --- 9. training hints and evaluation of the source head ----------------------------------


def test_training_hints_and_evaluate_the_task0_head():
    grown = growth.grow(_conv_toy(), "width", units=3, seed=0)
    assert keras_apps.training_hints(grown) == {
        "loss_weights": {"predictions": 1.0}, "evaluation_output": "predictions"
    }
    assert keras_apps.training_hints(_conv_toy()) == {}
    x, y, data = _pair(n=24, seed=4)
    for output in ("task0", "predictions"):
        scores = _np(grown(x)[output])
        accuracy = float(np.mean(np.argmax(scores, axis=1) == y))
        loss = float(-np.mean(np.log(np.clip(scores[np.arange(len(y)), y], 1e-7, 1.0))))
        result = evaluate(grown, data, output=output, verbose=0)
        assert result["examples"] == 24
        assert result["top1_accuracy"] == pytest.approx(accuracy)
        assert result["loss"] == pytest.approx(loss, rel=1e-5)
    default = evaluate(grown, data, verbose=0)  # the hint: the predictions head
    explicit = evaluate(grown, data, output="predictions", verbose=0)
    assert default["loss"] == pytest.approx(explicit["loss"])
    with pytest.raises(ValueError, match="'task7'"):
        evaluate(grown, data, output="task7", verbose=0)
