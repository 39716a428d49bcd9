"""Graph utilities: splitting a backbone at a named layer and re-applying its rear part."""

import numpy as np
import pytest

import keras
import keras_apps
from keras_apps import graph


def _images(shape, n=2, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (n, *shape)).astype("float32")


@pytest.mark.parametrize(
    "name,layer,shape",
    [
        ("nin_cifar", "drop1", (32, 32, 3)),  # HD-CNN's shared layers end at drop1
        ("resnet20_cifar", "conv3_block3_out", (32, 32, 3)),
        ("vgg16", "block3_pool", (32, 32, 3)),
    ],
)
def test_split_model_composes_to_the_original(name, layer, shape):
    model = keras_apps.build(name, input_shape=shape, classes=6)
    front, rear = graph.split_model(model, layer)
    x = _images(shape)
    np.testing.assert_allclose(rear(front(x)), model(x), rtol=1e-5, atol=1e-6)
    assert front.get_layer(front.layers[1].name) is model.get_layer(front.layers[1].name)
    assert {l.name for l in rear.layers[1:]}.isdisjoint({l.name for l in front.layers[1:]})


def test_cloned_rear_copies_weights_into_independent_layers():
    model = keras_apps.build("nin_cifar", classes=5, width=0.25)
    front, rear = graph.split_model(model, "drop1", clone=True, suffix="_k0")
    x = _images((32, 32, 3))
    np.testing.assert_allclose(rear(front(x)), model(x), rtol=1e-5, atol=1e-6)
    cloned = rear.get_layer("conv2_k0")
    assert cloned is not model.get_layer("conv2")
    cloned.kernel.assign(cloned.kernel * 0.0)
    assert np.any(model.get_layer("conv2").kernel.numpy() != 0)  # the original is untouched


def test_apply_layers_builds_k_branches_on_shared_features():
    block = keras_apps.build("nin_cifar", classes=4, width=0.25)
    image = keras.Input((32, 32, 3))
    shared = graph.feature_extractor(block, {"shared": "drop1"})(image)["shared"]
    branches = [graph.apply_layers(block, {"drop1": shared}, clone=True, suffix=f"_f{k}")
                for k in range(3)]
    model = keras.Model(image, branches)
    outputs = model(_images((32, 32, 3)))
    for out in outputs:
        np.testing.assert_allclose(out, block(_images((32, 32, 3))), rtol=1e-5, atol=1e-6)
    assert len({id(model.get_layer(f"conv3_f{k}")) for k in range(3)}) == 3


def test_a_layer_bypassed_by_a_skip_connection_is_not_a_cut():
    model = keras_apps.build("resnet20_cifar", classes=3)
    with pytest.raises(ValueError, match="do not cut the graph"):
        graph.split_model(model, "conv2_block2_1_relu")
    with pytest.raises(ValueError, match="`suffix` is required"):
        graph.apply_layers(model, {"conv1_relu": model.get_layer("conv1_relu").output}, clone=True)


def _node_counts(model):
    return {layer.name: len(layer._inbound_nodes) for layer in model.layers}


def test_split_model_leaves_the_model_as_it_was():
    model = keras_apps.build("resnet20_cifar", classes=3)
    config = model.get_config()
    outputs = {layer.name: layer.output for layer in model.layers}
    x = _images((32, 32, 3))
    expected = model(x)
    graph.split_model(model, "conv2_block3_out")
    # split again, at a layer the first rear re-used, and at the first layer once more
    front, rear = graph.split_model(model, "conv3_block3_out")
    np.testing.assert_allclose(rear(front(x)), expected, rtol=1e-5, atol=1e-6)
    front, rear = graph.split_model(model, "conv2_block3_out")
    np.testing.assert_allclose(rear(front(x)), expected, rtol=1e-5, atol=1e-6)
    assert rear.get_layer("predictions") is model.get_layer("predictions")  # still shared
    assert model.get_config() == config
    assert all(layer.output is outputs[layer.name] for layer in model.layers)
    np.testing.assert_array_equal(model(x), expected)
    features = graph.feature_extractor(model, ["conv2_block3_out"])
    np.testing.assert_allclose(features(x)["conv2_block3_out"], front(x), rtol=1e-6, atol=1e-6)


def test_cloned_split_adds_no_call_to_the_model():
    model = keras_apps.build("nin_cifar", classes=4, width=0.25)
    before = _node_counts(model)
    graph.split_model(model, "drop1", clone=True, suffix="_a")
    graph.split_model(model, "drop2", clone=True, suffix="_b")
    assert _node_counts(model) == before


def test_split_model_accepts_a_registry_name():
    front, rear = graph.split_model("nin_cifar", "drop1", classes=4, width=0.25)
    assert front.name == "nin_cifar_front" and rear.output.shape == (None, 4)
    assert rear.get_layer("cccp6").filters == 4
    x = _images((32, 32, 3))
    assert rear(front(x)).shape == (2, 4)
    with pytest.raises(TypeError, match="only accepted with a registry name"):
        graph.split_model(keras_apps.build("nin_cifar", width=0.25), "drop1", classes=4)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: graph.split_model(3, "drop1"), "registry name.*got int: 3"),
        (lambda m: graph.split_model(m, 3), "Layer names must be strings, got int"),
        (lambda m: graph.feature_extractor(None), "registry name.*got NoneType"),
        (lambda m: graph.feature_extractor(m, [3]), "Layer names must be strings"),
        (lambda m: keras_apps.list_models(3), "`pattern` must be None or an fnmatch pattern"),
        (lambda m: keras_apps.get_spec(["nin_cifar"]), "Model name must be a string"),
    ],
)
def test_non_string_names_fail_with_a_clear_type_error(call, match):
    model = keras_apps.build("nin_cifar", classes=4, width=0.25)
    with pytest.raises(TypeError, match=match):
        call(model)


def test_clone_function_replaces_chosen_layers_without_weight_copy():
    model = keras_apps.build("nin_cifar", classes=10, width=0.25)

    def narrower_classifier(layer):
        if layer.name == "cccp6":  # HD-CNN: a fine component predicts only its |S_k| classes
            return keras.layers.Conv2D(3, 1, name="cccp6_k0")
        return None

    front, rear = graph.split_model(model, "drop1", clone=True, suffix="_k0", clone_function=narrower_classifier)
    assert rear.output.shape == (None, 3)
    replaced = rear.get_layer("cccp6_k0")
    assert replaced.kernel.shape == (1, 1, 48, 3)
    # the other layers are clones with the model's weights: the features before cccp6 agree
    x = _images((32, 32, 3))
    inner = graph.feature_extractor(rear, ["cccp5_k0"])(front(x))["cccp5_k0"]
    reference = graph.feature_extractor(model, ["cccp5"])(x)["cccp5"]
    np.testing.assert_allclose(inner, reference, rtol=1e-5, atol=1e-6)
    # without clone=True the other layers are the model's own
    _, shared_rear = graph.split_model(model, "drop1", clone_function=narrower_classifier)
    assert shared_rear.get_layer("conv3") is model.get_layer("conv3")
    with pytest.raises(TypeError, match="must return a keras layer or None"):
        graph.split_model(model, "drop1", clone_function=lambda layer: "conv")


def test_with_input_shape_runs_a_fully_convolutional_model_on_any_size():
    model = keras_apps.build("nin_cifar", classes=4, width=0.25)
    dense = graph.with_input_shape(model, (None, None, 3))
    assert tuple(dense.inputs[0].shape) == (None, None, None, 3) and dense.inputs[0].name == "image"
    # independent reference: the same network built at 48x40 with the weights copied in
    fixed = keras_apps.build("nin_cifar", classes=4, width=0.25, input_shape=(48, 40, 3))
    fixed.set_weights(model.get_weights())
    x = _images((48, 40, 3))
    np.testing.assert_allclose(dense(x), fixed(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dense(_images((32, 32, 3))), model(_images((32, 32, 3))), rtol=1e-5, atol=1e-6)
    # the weights are copies: the model keeps its own
    dense.get_layer("conv1").kernel.assign(dense.get_layer("conv1").kernel * 0.0)
    assert np.any(model.get_layer("conv1").kernel.numpy() != 0)


def test_with_input_shape_names_the_layer_that_needs_a_fixed_size():
    model = keras_apps.build("vgg16", input_shape=(32, 32, 3), classes=3)
    with pytest.raises(ValueError, match="layer 'flatten' \\(Flatten\\)"):
        graph.with_input_shape(model, (None, None, 3))
    with pytest.raises(ValueError, match="layer 'fc1' \\(Dense\\)"):
        graph.with_input_shape(model, (64, 64, 3))
    with pytest.raises(ValueError, match="3 entries"):
        graph.with_input_shape(model, (None, None))
