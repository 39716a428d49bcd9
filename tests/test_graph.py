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
