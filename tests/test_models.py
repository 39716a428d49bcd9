"""The all-models test (timm's test_models.py): every registered builder, small inputs."""

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_apps
from keras_apps import graph

BIG = 30_000_000  # parameter count above which a model's tests are marked slow

#: Opt-out list of the all-models tests: registry name -> why the model cannot take the
#: generic small random input of :func:`_small_input` (e.g. it needs several inputs or a
#: fixed non-image input). Every model listed here is skipped with its reason; a new entry
#: needs its own tests elsewhere. Empty today: every registered model takes an image.
SPECIAL_INPUTS: dict[str, str] = {}


def _params(name):
    spec = keras_apps.get_spec(name)
    marks = [pytest.mark.slow] if spec.params > BIG else []
    if name in SPECIAL_INPUTS:
        marks.append(pytest.mark.skip(reason=f"{name} needs special inputs: {SPECIAL_INPUTS[name]}"))
    return pytest.param(name, marks=marks, id=name)


ALL = [_params(name) for name in keras_apps.list_models()]


def _classifier_params(name):
    """Models with a softmax classifier over logits and a headless form (``include_top=
    False``); a model without a logits layer is skipped (HD-CNN averages the probabilities of
    its components and has no headless form; tests/test_hdcnn.py covers its stages)."""
    param = _params(name)
    if keras_apps.model_info(name)["logits_layer"] is None:
        return pytest.param(name, marks=[*param.marks, pytest.mark.skip(
            reason=f"{name} has no logits layer or headless form: its output averages component "
            "probabilities")], id=name)
    return param


CLASSIFIERS = [_classifier_params(name) for name in keras_apps.list_models()]


def _headless_params(name):
    """Classifiers whose headless form is a feature map that ``pooling`` pools; a grown
    network's (family "growth") is the vector of its old and new FC units, so it is skipped
    (tests/test_growth_models.py covers it)."""
    param = _classifier_params(name)
    if keras_apps.model_info(name)["family"] == "growth":
        return pytest.param(name, marks=[*param.marks, pytest.mark.skip(
            reason=f"{name}'s headless form is a vector of FC units: pooling does not apply")], id=name)
    return param


HEADLESS = [_headless_params(name) for name in keras_apps.list_models()]


def _predictions(model, outputs):
    """The class probabilities among a model's outputs: the only output, or for a dict of
    outputs the one its training hints name (``evaluation_output``)."""
    if isinstance(outputs, dict):
        return outputs[keras_apps.training_hints(model)["evaluation_output"]]
    return outputs


def _small_input(name, batch=2, seed=0):
    spec = keras_apps.get_spec(name)
    size = max(spec.min_size, 32)
    shape = (size, size, spec.input_shape[-1])
    images = np.random.RandomState(seed).uniform(-1, 1, (batch, *shape)).astype("float32")
    return shape, images


def test_special_inputs_name_registered_models():
    assert set(SPECIAL_INPUTS) <= set(keras_apps.list_models())
    assert all(isinstance(reason, str) and reason for reason in SPECIAL_INPUTS.values())


def test_registry_is_populated():
    names = keras_apps.list_models()
    assert len(names) >= 14
    for family in ("nin", "vgg", "resnet"):
        assert any(keras_apps.model_info(n)["family"] == family for n in names)


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_and_keras_round_trip(name, tmp_path):
    shape, images = _small_input(name)
    model = keras_apps.build(name, input_shape=shape, classes=5)
    assert model.name == name
    out = _predictions(model, model(images, training=False))
    assert out.shape == (2, 5)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(np.sum(out, axis=-1), 1.0, rtol=1e-5)  # softmax top

    labels = np.array([1, 3])
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(
            labels, _predictions(model, model(images, training=True))
        )
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, grads) if g is None]
    assert not missing, f"no gradient for {missing}"
    assert all(np.all(np.isfinite(g)) for g in grads)

    path = tmp_path / f"{name}.keras"
    model.save(path)  # after the training-mode call updated the BN statistics
    loaded = keras.saving.load_model(path, safe_mode=True)
    keras.tree.map_structure(
        np.testing.assert_array_equal, loaded(images, training=False), model(images, training=False)
    )


@pytest.mark.parametrize("name", ALL)
def test_declared_metadata_matches_built_model(name):
    info = keras_apps.model_info(name)
    model = keras_apps.build(name)
    assert model.count_params() == info["params"]
    assert tuple(model.inputs[0].shape[1:]) == info["input_shape"]
    assert _predictions(model, model.output).shape[-1] == info["classes"]
    for layer_name in info["feature_layers"].values():
        model.get_layer(layer_name)  # every declared stage exists


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_feature_extractor_returns_named_stages(name):
    shape, images = _small_input(name, batch=1)
    features = keras_apps.feature_extractor(name, input_shape=shape)
    outputs = features(images)
    assert list(outputs) == list(keras_apps.model_info(name)["feature_layers"])
    sizes = [int(v.shape[1]) for v in outputs.values()]
    assert sizes == sorted(sizes, reverse=True)  # stages never grow spatially


@pytest.mark.parametrize("name", HEADLESS)
def test_headless_pooling(name):
    shape, images = _small_input(name, batch=1)
    model = keras_apps.build(name, input_shape=shape, include_top=False, pooling="avg")
    assert len(model.outputs[0].shape) == 2
    unpooled = keras_apps.build(name, input_shape=shape, include_top=False)
    model.set_weights(unpooled.get_weights())
    np.testing.assert_allclose(
        model(images), np.mean(unpooled(images), axis=(1, 2)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_softmax_of_logits_equals_output_and_classifier_has_classes_channels(name):
    info = keras_apps.model_info(name)
    shape, images = _small_input(name)
    model = keras_apps.build(name, input_shape=shape, classes=5)
    activation = model.get_layer("predictions_activation")
    assert isinstance(activation, keras.layers.Activation) and activation.dtype_policy.name == "float32"
    assert model.outputs[0] is activation.output  # the softmax is the output layer, alone

    logits = graph.logits_model(model)
    assert logits.outputs[0] is model.get_layer(info["logits_layer"]).output
    assert tuple(logits.outputs[0].shape) == (None, 5)
    scores = _predictions(model, logits(images, training=False))
    np.testing.assert_allclose(
        keras.ops.softmax(scores, axis=-1), _predictions(model, model(images, training=False)),
        rtol=1e-5, atol=1e-6,
    )
    # the classifier (last Dense or 1x1 conv) produces one channel per class
    classifier = model.get_layer(info["classifier_layer"])
    assert isinstance(classifier, (keras.layers.Dense, keras.layers.Conv2D))
    assert classifier.output.shape[-1] == 5
    assert keras.activations.serialize(classifier.activation) == "linear"
    if isinstance(classifier, keras.layers.Conv2D):
        assert classifier.kernel_size == (1, 1)
