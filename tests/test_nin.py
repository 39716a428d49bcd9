"""Network in Network: the paper's layers with ``batch_norm=False``, BatchNormalization by
default, and the default recipe training it on digits."""

import keras
import numpy as np
import pytest

import keras_apps
from keras_apps import data as kdata
from keras_apps import training

HIDDEN = ("conv1", "cccp1", "cccp2", "conv2", "cccp3", "cccp4", "conv3", "cccp5")


def _paper_params(classes, c=(192, 160, 96, 192, 192, 192, 192, 192), cin=3):
    """Lin et al.'s CIFAR network: 5x5 conv1, 1x1 cccp1-2, 5x5 conv2, 1x1 cccp3-4, 3x3 conv3,
    1x1 cccp5, 1x1 cccp6 -> classes; every convolution with a bias."""
    kernels = (5, 1, 1, 5, 1, 1, 3, 1, 1)
    channels = (cin, *c, classes)
    return sum(k * k * a * b + b for k, a, b in zip(kernels, channels[:-1], channels[1:]))


def test_without_batch_norm_it_is_the_papers_network():
    model = keras_apps.build("nin_cifar", batch_norm=False)
    assert model.count_params() == _paper_params(10) == 966_986
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert all(model.get_layer(name).use_bias for name in HIDDEN)
    assert model.get_layer("drop1").rate == model.get_layer("drop2").rate == 0.5


def test_batch_norm_sits_between_every_hidden_convolution_and_its_relu():
    model = keras_apps.build("nin_cifar", width=0.25, classes=7)
    for name in HIDDEN:
        conv, bn, relu = (model.get_layer(n) for n in (name, f"{name}_bn", f"{name}_relu"))
        assert not conv.use_bias
        assert bn.input is conv.output and relu.input is bn.output
        assert bn.momentum == 0.9
    # Dropout before BN shifts its variance between training and inference: off by default.
    assert model.get_layer("drop1").rate == model.get_layer("drop2").rate == 0.0
    assert keras_apps.build("nin_cifar", width=0.25, dropout=0.3).get_layer("drop1").rate == 0.3
    assert model.get_layer("cccp6").use_bias and "cccp6_bn" not in [layer.name for layer in model.layers]
    # BN adds gamma, beta, moving mean and variance per channel and drops the conv bias.
    channels = sum(model.get_layer(name).filters for name in HIDDEN)
    plain = keras_apps.build("nin_cifar", width=0.25, classes=7, batch_norm=False)
    assert model.count_params() == plain.count_params() + 3 * channels
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    assert np.allclose(model(x).numpy().sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="`batch_norm` must be True or False, got 'yes'"):
        keras_apps.build("nin_cifar", batch_norm="yes")


@pytest.mark.slow
def test_default_recipe_trains_nin_on_digits(tmp_path):
    # The plain network (batch_norm=False, dropout 0.5) stayed at chance (0.10) for 6 epochs at
    # 32x32, and for 4 epochs at the 16x16 used here (0.11), where this recipe reached 0.96-0.98.
    result = training.fit("nin_cifar", "digits", epochs=4, build_kwargs={"width": 0.25},
                          image_size=(16, 16), strategy="one-device", output_dir=tmp_path, verbose=0)
    assert result.history["loss"][-1] < 0.8 * result.history["loss"][0]
    test, _ = kdata.load("digits", "test", batch_size=128, image_size=(16, 16))
    correct = total = 0
    for images, labels in test:
        correct += int(np.sum(np.argmax(result.model.predict(images, verbose=0), axis=1) == labels.numpy()))
        total += len(labels)
    assert total == 359 and correct / total > 0.6, correct / total  # chance: 0.10
