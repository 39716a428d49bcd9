"""``channels=`` of the data floor (grayscale <-> RGB) and its plumbing through fit, evaluate
and the CLI commands. References: numpy repeats, the BT.601 luma 0.299 R + 0.587 G + 0.114 B
computed with numpy, and statistics measured with numpy on the converted pixels."""

import argparse
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_apps import cli, data, training
from keras_apps.data import channels as kchannels
from tests.conftest import shared_data

BT601 = np.array([0.299, 0.587, 0.114])


def _all(ds):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("bad", [0, 2, 4, -1, True, 3.0, "3"])
def test_channels_other_than_none_1_3_is_one_value_error_naming_it(bad):
    for call in (
        lambda: data.dataset_info("digits", channels=bad),
        lambda: data.load("digits", "test", channels=bad),
    ):
        with pytest.raises(ValueError, match="`channels` must be None") as err:
            call()
        assert f"got {bad!r}." in str(err.value)


def test_fashion_mnist_as_rgb_repeats_the_grey_channel_through_augmentation():
    folder = shared_data("fashion_mnist")
    kwargs = dict(data_dir=folder.parent, limit=24, batch_size=8, image_size=32, seed=3)
    grey, grey_info = data.load("fashion_mnist", "train", **kwargs)
    rgb, rgb_info = data.load("fashion_mnist", "train", channels=3, **kwargs)
    x1, y1 = _all(grey)
    x3, y3 = _all(rgb)
    assert x3.shape == (24, 32, 32, 3) and rgb_info.image_shape == (32, 32, 3)
    np.testing.assert_array_equal(y3, y1)
    np.testing.assert_allclose(x3, np.repeat(x1, 3, axis=-1), atol=1e-6)
    assert rgb_info.mean == (72.94,) * 3 and rgb_info.std == (90.02,) * 3
    assert data.dataset_info("fashion_mnist", data_dir=folder.parent, channels=3).image_shape == (
        28, 28, 3)
    assert grey_info.image_shape == (32, 32, 1)


def test_grey_as_rgb_statistics_are_the_grey_ones_per_channel():
    folder = shared_data("fashion_mnist")
    kwargs = dict(data_dir=folder.parent, limit=200, batch_size=100, preprocessing="raw",
                  augment=False, shuffle=False)
    x1, _ = _all(data.load("fashion_mnist", "train", **kwargs)[0])
    x3, _ = _all(data.load("fashion_mnist", "train", channels=3, **kwargs)[0])
    x1, x3 = x1.astype(np.float64), x3.astype(np.float64).reshape(-1, 3)
    np.testing.assert_allclose(x3.mean(0), [x1.mean()] * 3, rtol=1e-9)
    np.testing.assert_allclose(x3.std(0), [x1.std()] * 3, rtol=1e-9)


def test_rgb_to_grey_is_the_bt601_luma_of_the_raw_pixels():
    folder = shared_data("cifar10_jpg")
    kwargs = dict(data_dir=folder.parent, limit=20, batch_size=10, augment=False, shuffle=False)
    rgb, _ = _all(data.load("cifar10", "test", preprocessing="raw", **kwargs)[0])
    grey, info = data.load("cifar10", "test", preprocessing="raw", channels=1, **kwargs)
    grey, _ = _all(grey)
    assert grey.shape == (20, 32, 32, 1) and info.image_shape == (32, 32, 1)
    luma = np.einsum("nhwc,c->nhw", rgb.astype(np.float64), BT601)[..., None]
    np.testing.assert_allclose(grey, luma, atol=1e-3)
    normalised, info = data.load("cifar10", "test", channels=1, **kwargs)
    np.testing.assert_allclose(data.denormalize(_all(normalised)[0], info), luma, atol=2e-3)


def test_rgb_to_grey_statistics_match_the_converted_training_pixels():
    folder = shared_data("cifar10_jpg")
    info = data.dataset_info("cifar10", data_dir=folder.parent, channels=1)
    # The luma of the published per-channel means (125.3, 123.0, 113.9), by linearity.
    assert info.mean == pytest.approx((0.299 * 125.3 + 0.587 * 123.0 + 0.114 * 113.9,))
    rgb, _ = _all(data.load("cifar10", "train", data_dir=folder.parent, limit=1000,
                            batch_size=500, preprocessing="raw", augment=False, shuffle=False)[0])
    luma = np.einsum("nhwc,c->nhw", rgb.astype(np.float64), BT601)
    assert info.mean[0] == pytest.approx(luma.mean(), rel=0.01)
    # The std of the luma pixels, not the luma of the stds (62.9, 4% above the measured std).
    assert info.std[0] == pytest.approx(luma.std(), rel=0.02)
    assert np.dot(BT601, [63.0, 62.1, 66.7]) != pytest.approx(luma.std(), rel=0.02)


def test_converted_statistics_are_the_mean_and_std_of_the_converted_pixels():
    rng = np.random.RandomState(0)
    base = rng.uniform(0, 200, size=(5000, 1))
    rgb = np.clip(base + rng.normal(0, [10.0, 25.0, 40.0], size=(5000, 3)), 0, 255)
    mean, std, rho = rgb.mean(0), rgb.std(0), np.corrcoef(rgb.T)
    luma = rgb @ BT601
    got_mean, got_std = kchannels.converted_statistics(mean, std, 1, rho)
    assert got_mean[0] == pytest.approx(luma.mean(), rel=1e-9)
    assert got_std[0] == pytest.approx(luma.std(), rel=1e-9)
    # Without a correlation: w . std, the bound reached by perfectly correlated channels.
    same = np.repeat(base, 3, axis=1) * [1.0, 0.9, 1.1]
    _, bound = kchannels.converted_statistics(same.mean(0), same.std(0), 1)
    assert bound[0] == pytest.approx((same @ BT601).std(), rel=1e-9)
    grey_mean, grey_std = kchannels.converted_statistics((10.0,), (2.0,), 3)
    assert grey_mean == (10.0,) * 3 and grey_std == (2.0,) * 3


def test_convert_channels_numpy_and_tf_agree_with_numpy_references():
    rng = np.random.RandomState(1)
    rgb = rng.randint(0, 256, size=(2, 4, 5, 3)).astype(np.uint8)
    grey = data.convert_channels(rgb, 1)
    assert isinstance(grey, np.ndarray) and grey.dtype == np.float32 and grey.shape == (2, 4, 5, 1)
    np.testing.assert_allclose(grey[..., 0], rgb.astype(np.float64) @ BT601, atol=1e-4)
    np.testing.assert_allclose(data.convert_channels(tf.constant(rgb), 1).numpy(), grey, atol=1e-4)
    np.testing.assert_array_equal(data.convert_channels(grey, 3), np.repeat(grey, 3, axis=-1))
    with pytest.raises(ValueError, match="1- or 3-channel"):
        data.convert_channels(np.zeros((2, 2, 4)), 1)


def test_rgb_only_preprocessing_works_on_grey_sets_delivered_as_rgb():
    with pytest.raises(ValueError, match="channels=3"):
        data.load("digits", "test", preprocessing="torch")
    ds, info = data.load("digits", "test", preprocessing="torch", channels=3, limit=8,
                         batch_size=8)
    raw, _ = data.load("digits", "test", preprocessing="raw", limit=8, batch_size=8)
    x, pixels = next(iter(ds))[0].numpy(), next(iter(raw))[0].numpy()
    expected = (np.repeat(pixels, 3, -1) / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(x, expected, atol=1e-5)
    assert info.image_shape == (32, 32, 3)


def test_tfds_stream_converts_too():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        kwargs = dict(batch_size=6, preprocessing="raw", augment=False, shuffle=False,
                      download=True)
        rgb, _ = _all(data.load("cifar100", "train", **kwargs)[0])
        grey, info = data.load("cifar100", "train", channels=1, **kwargs)
        grey, _ = _all(grey)
    np.testing.assert_allclose(grey[..., 0], rgb.astype(np.float64) @ BT601, atol=1e-3)
    # No measured correlation for CIFAR-100: the luma std is w . std.
    assert info.std[0] == pytest.approx(np.dot(BT601, [68.170, 65.392, 70.418]))


def _cifar_sized_classifier():
    """A tiny network with CIFAR-10's input, 32x32x3 (a stand-in for a CIFAR ResNet)."""
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="cifar_sized")


def test_fit_records_channels_and_evaluate_reads_them_back(tmp_path):
    folder = shared_data("fashion_mnist")
    run = tmp_path / "run"
    result = training.fit(
        _cifar_sized_classifier(), "fashion_mnist", data_dir=folder.parent, channels=3,
        image_size=32, epochs=1, batch_size=32, limit=64, strategy="one-device",
        output_dir=run, verbose=0,
    )
    config = json.loads((run / "config.json").read_text())
    assert config["channels"] == 3 and config["image_shape"] == [32, 32, 3]
    assert result.model.inputs[0].shape[1:] == (32, 32, 3)
    assert result.metrics["test"]["examples"] == 64

    # Beside its config.json, a saved run is evaluated with the channels it trained with.
    args = argparse.Namespace(
        model=str(run / "model.keras"), data="fashion_mnist", split=None, batch_size=32,
        data_dir=str(folder.parent), image_size=(32, 32), channels=None, limit=16,
        precision="float32", download=False, output=str(tmp_path / "metrics.json"),
    )
    assert cli.evaluate(args) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["examples"] == 16

    with pytest.raises(ValueError, match=r"channels=3 \(CLI: --channels 3\)") as err:
        training.evaluate(result.model, "fashion_mnist", data_dir=folder.parent, image_size=32,
                          limit=16)
    assert "3-channel images" in str(err.value) and "1-channel" in str(err.value)
