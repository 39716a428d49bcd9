"""The registered developmental networks (alexnet_/vgg16_ da, wa, dwa, wwa).

References: the declared parameter counts against a closed form written from the paper's
layer sizes (Sec. 5.1, not from the code), the base network's own weights and outputs (a
grown network starts from them), and the widths the paper gives to each representation.
The all-models tests (tests/test_models.py) build every variant at its default size."""

import numpy as np
import pytest

import keras
import keras_apps

VARIANTS = ("da", "wa", "dwa", "wwa")
NAMES = [f"{base}_{v}" for base in ("alexnet", "vgg16") for v in VARIANTS]
SMALL = {"alexnet": (67, 67, 3), "vgg16": (32, 32, 3)}


def _dense(inputs, units):
    return inputs * units + units


def _paper_params(base, variant):
    """Parameters at 1000 source and 1000 target classes, from the layer sizes: FC6 and FC7
    of 4096 units over the flattened pool5 (AlexNet 6x6x256, VGG-16 7x7x512), every block of
    a widened layer L2-normalised with one scale per channel, the source head kept."""
    base_params = {"alexnet": 62_378_344, "vgg16": 138_357_544}[base]
    flat = {"alexnet": 6 * 6 * 256, "vgg16": 7 * 7 * 512}[base]
    body = base_params - _dense(4096, 1000)
    if variant == "da":  # FC_a 4096 after FC7 (+ its scale); task0 stays on FC7
        return body + _dense(4096, 4096) + 4096 + _dense(4096, 1000) + _dense(4096, 1000)
    if variant == "wa":  # FC7+ 1024; both heads read the 5120 units
        return body + _dense(4096, 1024) + 5120 + 2 * _dense(5120, 1000)
    if variant == "dwa":  # FC7+ 1024, FC_a 4096 over the 5120 units
        return (body + _dense(4096, 1024) + 5120 + _dense(5120, 4096) + 4096
                + _dense(4096, 1000) + _dense(5120, 1000))
    # wwa: FC6+ 512 (FC7 gets 512 more input rows), FC7+ 1024 over the 4608 units
    return (body + _dense(flat, 512) + 4608 + 512 * 4096 + _dense(4608, 1024) + 5120
            + 2 * _dense(5120, 1000))


@pytest.mark.parametrize("name", NAMES)
def test_declared_parameters_equal_the_paper_layer_sizes(name):
    base, variant = name.split("_")
    assert keras_apps.model_info(name)["params"] == _paper_params(base, variant)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_follows_the_base_network(name):
    base = name.split("_")[0]
    info, base_info = keras_apps.model_info(name), keras_apps.model_info(base)
    assert info["family"] == "growth" and "Growing a Brain" in info["paper"]
    for key in ("input_shape", "classes", "feature_layers", "min_size", "preprocessing"):
        assert info[key] == base_info[key], key
    assert info["classifier_layer"] == info["logits_layer"] == "predictions"
    assert info["keras_applications"] is None
    hints = {"loss_weights": {"predictions": 1.0}, "evaluation_output": "predictions"}
    assert keras_apps.training_hints(name) == hints  # by name, nothing built


def test_alexnet_wa_starts_from_the_base_weights(tmp_path):
    base = keras_apps.build("alexnet", input_shape=SMALL["alexnet"], classes=5)
    path = tmp_path / "alexnet.weights.h5"
    base.save_weights(path)
    grown = keras_apps.build("alexnet_wa", input_shape=SMALL["alexnet"], classes=3,
                             source_classes=5, base_weights=str(path))
    assert grown.name == "alexnet_wa"
    assert grown.get_layer("fc7_plus_g1").units == 1024
    for layer in base.layers:
        if not layer.weights:
            continue
        name = "task0_predictions" if layer.name == "predictions" else layer.name
        for old, new in zip(layer.get_weights(), grown.get_layer(name).get_weights()):
            if old.shape == new.shape:
                np.testing.assert_array_equal(new, old)
            else:  # the source head over fc7 ⊕ fc7+: old rows, zero rows for the 1024 new units
                assert new.shape == (4096 + 1024, 5)
                np.testing.assert_array_equal(new[:4096], old)
                np.testing.assert_array_equal(new[4096:], 0.0)
    assert grown.get_layer("predictions").units == 3
    assert not grown.get_layer("task0_predictions").trainable  # the source head does not train on the target
    # without normalisation the source head computes exactly what the base network did
    plain = keras_apps.build("alexnet_wa", input_shape=SMALL["alexnet"], classes=3,
                             source_classes=5, base_weights=str(path), normalize=False)
    images = np.random.RandomState(0).uniform(0, 255, (2, *SMALL["alexnet"])).astype("float32")
    np.testing.assert_allclose(plain(images)["task0"], base(images), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,width", [("alexnet_da", 4096), ("alexnet_wwa", 5120)])
def test_headless_is_the_grown_representation(name, width):
    model = keras_apps.build(name, input_shape=SMALL["alexnet"], include_top=False)
    assert tuple(model.output.shape) == (None, width)
    assert "predictions" not in [layer.name for layer in model.layers]
    with pytest.raises(ValueError, match="pooling"):
        keras_apps.build(name, input_shape=SMALL["alexnet"], include_top=False, pooling="avg")


def test_own_weights_input_tensor_and_a_single_output(tmp_path):
    shape = SMALL["vgg16"]
    model = keras_apps.build("vgg16_wwa", input_shape=shape, classes=4, units=8)
    assert model.get_layer("fc1_plus_g1").units == 4 and model.get_layer("fc2_plus_g1").units == 8
    path = tmp_path / "wwa.weights.h5"
    model.save_weights(path)
    image = keras.Input(shape, name="photo")
    again = keras_apps.build("vgg16_wwa", input_tensor=image, classes=4, units=8, weights=str(path))
    assert again.inputs[0] is image
    images = np.random.RandomState(1).uniform(0, 255, (2, *shape)).astype("float32")
    keras.tree.map_structure(np.testing.assert_array_equal, again(images), model(images))
    single = keras_apps.build("vgg16_da", input_shape=shape, classes=4, depth_units=None,
                              units=16, keep_source=False)
    assert single.get_layer("fc_a_g1").units == 16 and tuple(single.output.shape) == (None, 4)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"weights": "imagenet"}, ValueError, "base_weights"),
    ({"units": 0}, ValueError, "`units` must be a positive integer"),
    ({"depth_units": 64}, ValueError, "depth_units"),
    ({"source_classes": 0}, ValueError, "source_classes"),
    ({"keep_source": "yes"}, TypeError, "keep_source"),
    ({"scale_init": -1.0}, ValueError, "scale_init"),
    ({"base_weights": "imagenet"}, ValueError, "imagenet"),
])
def test_bad_arguments_fail_with_one_clear_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        keras_apps.build("alexnet_wa", input_shape=SMALL["alexnet"], classes=3, **kwargs)
