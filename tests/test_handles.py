"""Model handles: classifier/logits layers, preprocessing, training hints, argument checks."""

import numpy as np
import pytest

import keras
import keras_apps
from keras_apps import graph, registry
from keras_apps.models import googlenet

# keras.applications' own preprocess_input mode for the ImageNet weights of each twin
# (keras/src/applications/*.py: vgg16/19 and resnet -> caffe, densenet -> torch, EfficientNet
# -> a pass-through, the model normalises its 0..255 input itself).
IMAGENET_MODES = {
    "vgg16": "caffe", "vgg19": "caffe",
    "resnet50": "caffe", "resnet101": "caffe", "resnet152": "caffe",
    "densenet121": "torch", "densenet169": "torch", "densenet201": "torch",
    **{f"efficientnet_b{i}": "raw" for i in range(8)},
}  # fmt: skip


def _images(shape, n=2, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (n, *shape)).astype("float32")


def test_preprocessing_is_declared_for_every_weight_source():
    for name in keras_apps.list_models():
        info = keras_apps.model_info(name)
        expected = {"none": "dataset"}
        base = name.rsplit("_", 1)[0] if info["family"] == "growth" else name
        if base in IMAGENET_MODES:  # a grown network reads its base's pretrained weights
            expected["imagenet"] = IMAGENET_MODES[base]
        assert info["preprocessing"] == expected, name
        assert (info["keras_applications"] is not None) == (name in IMAGENET_MODES), name
        assert registry.preprocessing_for(name) == "dataset"
    assert registry.preprocessing_for("resnet50", weights="imagenet") == "caffe"
    assert registry.preprocessing_for("densenet121", "imagenet") == "torch"
    assert registry.preprocessing_for("efficientnet_b0", "imagenet") == "raw"
    with pytest.raises(ValueError, match="nin_cifar has no 'imagenet' weights"):
        registry.preprocessing_for("nin_cifar", "imagenet")


def test_keras_applications_preprocess_input_follows_the_declared_modes():
    pixels = np.random.RandomState(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    caffe = pixels[..., ::-1] - np.array([103.939, 116.779, 123.68], "float32")
    torch = (pixels / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    expected = {"caffe": caffe, "torch": torch, "raw": pixels}
    for module, name in (("vgg16", "vgg16"), ("vgg19", "vgg19"), ("resnet", "resnet50"),
                         ("densenet", "densenet121"), ("efficientnet", "efficientnet_b0")):
        theirs = getattr(keras.applications, module).preprocess_input(pixels.copy())
        mode = registry.preprocessing_for(name, "imagenet")
        np.testing.assert_allclose(theirs, expected[mode], rtol=1e-5, atol=1e-4)


def test_classifier_and_logits_layers_are_named():
    info = keras_apps.model_info("resnet50")
    assert (info["classifier_layer"], info["logits_layer"]) == ("predictions", "predictions")
    info = keras_apps.model_info("nin_cifar")
    assert (info["classifier_layer"], info["logits_layer"]) == ("cccp6", "avg_pool")
    assert keras_apps.model_info("nin_imagenet")["classifier_layer"] == "cccp8"


@pytest.mark.parametrize("name", ["resnet20_cifar", "nin_cifar", "alexnet"])
def test_without_classifier_activation_the_output_is_the_logits(name):
    spec = keras_apps.get_spec(name)
    shape = (max(spec.min_size, 32),) * 2 + (3,)
    model = keras_apps.build(name, input_shape=shape, classes=4, classifier_activation=None)
    assert "predictions_activation" not in [layer.name for layer in model.layers]
    assert model.outputs[0] is model.get_layer(spec.logits_layer).output
    assert graph.logits_model(model).outputs[0] is model.outputs[0]
    sigmoid = keras_apps.build(name, input_shape=shape, classes=4, classifier_activation="sigmoid")
    sigmoid.set_weights(model.get_weights())
    x = _images(shape)
    np.testing.assert_allclose(sigmoid(x), 1 / (1 + np.exp(-model(x).numpy())), rtol=1e-5, atol=1e-6)


def test_mixed_precision_models_output_float32_probabilities():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = keras_apps.build("resnet20_cifar", classes=3)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("predictions").compute_dtype == "bfloat16"
    out = model(_images((32, 32, 3)))
    assert out.dtype == "float32"
    np.testing.assert_allclose(np.sum(out, axis=-1), 1.0, rtol=1e-6)


def test_logits_model_of_googlenet_covers_the_auxiliary_heads():
    model = keras_apps.build("googlenet", aux_logits=True, input_shape=(96, 96, 3), classes=5)
    logits = graph.logits_model(model)
    assert list(logits.output) == ["main", "aux1", "aux2"]
    x = _images((96, 96, 3))
    scores, probabilities = logits(x), model(x)
    for key in ("main", "aux1", "aux2"):
        np.testing.assert_allclose(
            keras.ops.softmax(scores[key]), probabilities[key], rtol=1e-5, atol=1e-6
        )
    assert logits.output["aux1"] is model.get_layer("aux1_predictions").output
    assert logits.get_layer("predictions") is model.get_layer("predictions")


def test_logits_model_rejects_a_fused_softmax():
    image = keras.Input((4,))
    fused = keras.Model(image, keras.layers.Dense(3, activation="softmax", name="head")(image))
    with pytest.raises(ValueError, match="'head' \\(Dense\\).*softmax"):
        graph.logits_model(fused)
    assert graph.logits_model("resnet20_cifar", classes=3).output.shape == (None, 3)
    sequential = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="scores"), keras.layers.Softmax(name="probabilities")],
        name="small",
    )
    logits = graph.logits_model(sequential)
    assert logits.name == "small_logits" and logits.outputs[0] is sequential.get_layer("scores").output


def test_googlenet_training_hints():
    hints = registry.training_hints("googlenet")
    assert hints["loss_weights"] == {"main": 1.0, "aux1": 0.3, "aux2": 0.3}
    train_model = keras_apps.build("googlenet", aux_logits=True, input_shape=(96, 96, 3), classes=5)
    assert registry.training_hints(train_model) == hints  # looked up by model.name
    assert set(train_model.output) == set(hints["loss_weights"])
    inference = hints["inference_model"](train_model)
    assert inference.output.shape == (None, 5)
    assert inference.outputs[0] is train_model.output["main"]
    plain = keras_apps.build("googlenet", input_shape=(64, 64, 3), classes=5)
    assert hints["inference_model"](plain) is plain
    assert registry.training_hints("resnet50") == {}
    assert registry.training_hints(keras.Sequential(name="not_registered")) == {}
    assert googlenet.strip_auxiliary is hints["inference_model"]


def test_build_rejects_arguments_the_builder_does_not_take():
    with pytest.raises(ValueError) as err:
        keras_apps.build("resnet20_cifar", width=0.5)
    assert str(err.value).startswith(
        "resnet20_cifar does not take `width`; it takes: include_top, weights, input_shape,"
    )
    with pytest.raises(ValueError, match="vgg16 does not take `aux_logits`.*dropout"):
        registry.check_arguments("vgg16", {"aux_logits": True, "classes": 10})
    with pytest.raises(ValueError, match="`width`, `depth`"):
        registry.check_arguments("resnet50", {"width": 1, "depth": 2})
    registry.check_arguments("nin_cifar", {"width": 0.25, "dropout": 0.1})  # accepted: no error


def test_register_model_validates_the_new_metadata():
    with pytest.raises(ValueError, match="preprocessing"):
        registry.register_model(
            "h_test_model", family="x", paper="x", input_shape=(8, 8, 3), classes=2, params=0,
            feature_layers={}, min_size=1, preprocessing={"imagenet": "caffe"},
        )
    with pytest.raises(ValueError, match="preprocessing"):
        registry.register_model(
            "h_test_model", family="x", paper="x", input_shape=(8, 8, 3), classes=2, params=0,
            feature_layers={}, min_size=1, preprocessing={"none": "bgr"},
        )
    with pytest.raises(ValueError, match="loss_weights"):
        registry.register_model(
            "h_test_model", family="x", paper="x", input_shape=(8, 8, 3), classes=2, params=0,
            feature_layers={}, min_size=1, training={"lr": 0.1},
        )
    assert "h_test_model" not in keras_apps.list_models()
