"""AlexNet, GoogLeNet, DenseNet, SENet, EfficientNet and the ImageNet weight transplant.

Every check compares with an independent reference: keras.applications (parameter counts,
weight shapes and outputs after a transplant), the papers' tables (GoogLeNet's channels,
DenseNet-BC's 0.8M, SE-ResNet-50's 28.1M), numpy (SE block, LRN) and the scaling equations.
Nothing is downloaded: the ImageNet path is tested with keras.applications monkeypatched.
"""

import math

import numpy as np
import pytest

import keras
import keras_apps
from keras_apps.layers import LocalResponseNormalization, SqueezeExcitation
from keras_apps.models import efficientnet, googlenet, pretrained


def _trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _randomise(model, seed=0):
    """Random values for every weight, positive where a variance is expected, so that any
    mix-up of weights (BN statistics included) changes the outputs."""
    rng = np.random.RandomState(seed)
    values = []
    for weight in model.weights:
        shape = tuple(weight.shape)
        if weight.path.endswith(("variance", "gamma", "count")):
            values.append(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif weight.path.endswith(("mean", "beta", "bias")):
            values.append(rng.normal(0.0, 0.1, shape).astype("float32"))
        else:
            values.append(np.asarray(weight.numpy()))
    model.set_weights(values)
    return model


# --------------------------------------------------------------------- keras.applications twins

_HEAVY = {"DenseNet201", "EfficientNetB4", "EfficientNetB5", "EfficientNetB6", "EfficientNetB7"}
TWINS = [
    pytest.param(name, keras_name, marks=[pytest.mark.slow] if keras_name in _HEAVY else [], id=name)
    for name, keras_name in [
        ("densenet121", "DenseNet121"),
        ("densenet169", "DenseNet169"),
        ("densenet201", "DenseNet201"),
        *[(f"efficientnet_b{i}", f"EfficientNetB{i}") for i in range(8)],
    ]
]


@pytest.mark.parametrize("name, keras_name", TWINS)
def test_parameter_count_and_weight_order_equal_keras_applications(name, keras_name):
    assert keras_apps.model_info(name)["keras_applications"] == keras_name
    shape = (32, 32, 3)  # the counts of these networks do not depend on the input size
    ours = keras_apps.build(name, input_shape=shape)
    reference = getattr(keras.applications, keras_name)(weights=None, input_shape=shape)
    assert ours.count_params() == reference.count_params() == keras_apps.model_info(name)["params"]
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in reference.weights]


@pytest.mark.parametrize(
    "name, keras_name", [("densenet121", "DenseNet121"), ("efficientnet_b0", "EfficientNetB0")]
)
def test_transplanted_weights_give_keras_applications_outputs(name, keras_name):
    shape = (64, 64, 3)
    reference = getattr(keras.applications, keras_name)(
        weights=None, input_shape=shape, classifier_activation=None
    )
    _randomise(reference)
    ours = keras_apps.build(name, input_shape=shape, classifier_activation=None)
    pretrained.transplant_weights(reference, ours)
    images = np.random.RandomState(1).uniform(0, 255, (2, *shape)).astype("float32")
    np.testing.assert_allclose(ours(images), reference(images), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------- ImageNet weights, offline


def _fake_constructor(keras_name, calls, input_shape=(64, 64, 3), zero_mean=False):
    """Stands in for keras.applications.<keras_name>: records ``(kwargs, model)`` in ``calls``
    and returns the network built with weights=None, random weights (the "ImageNet" ones)
    and logits."""
    original = getattr(keras.applications, keras_name)

    def constructor(**kwargs):
        model = original(
            include_top=kwargs["include_top"],
            weights=None,
            input_shape=input_shape,
            classes=kwargs["classes"],
            classifier_activation=None,
        )
        _randomise(model, seed=3)
        if zero_mean:
            norm = model.get_layer("normalization")
            norm.set_weights([np.zeros(3, "float32"), *norm.get_weights()[1:]])
        calls.append((kwargs, model))
        return model

    return constructor


def test_imagenet_weights_are_transplanted_from_keras_applications(monkeypatch):
    calls = []
    monkeypatch.setattr(keras.applications, "DenseNet121", _fake_constructor("DenseNet121", calls))
    model = keras_apps.build(
        "densenet121", weights="imagenet", input_shape=(64, 64, 3), classifier_activation=None
    )
    assert len(calls) == 1
    kwargs, reference = calls[0]
    assert kwargs["weights"] == "imagenet" and kwargs["include_top"] is True and kwargs["classes"] == 1000
    images = np.random.RandomState(2).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(model(images), reference(images), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, keras_name", [("vgg16", "VGG16"), ("resnet50", "ResNet50")])
def test_imagenet_weights_without_top_for_the_foundation_families(monkeypatch, name, keras_name):
    calls = []
    monkeypatch.setattr(keras.applications, keras_name, _fake_constructor(keras_name, calls))
    model = keras_apps.build(name, weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    kwargs, reference = calls[0]
    assert kwargs["include_top"] is False and kwargs["input_shape"] == (None, None, 3)
    images = np.random.RandomState(5).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(model(images), reference(images), rtol=1e-5, atol=1e-4)


def test_imagenet_efficientnet_without_top_keeps_the_stddev_rescaling(monkeypatch):
    calls = []
    fake = _fake_constructor("EfficientNetB0", calls, zero_mean=True)
    monkeypatch.setattr(keras.applications, "EfficientNetB0", fake)
    model = keras_apps.build(
        "efficientnet_b0", weights="imagenet", include_top=False, input_shape=(64, 64, 3)
    )
    kwargs, reference = calls[0]
    assert kwargs["include_top"] is False and kwargs["weights"] == "imagenet"
    assert model.get_layer("rescaling_stddev") is not None
    assert len(model.weights) == len(reference.weights)
    for ours, theirs in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    # keras.applications divides by sqrt(std) once more after Normalization when it loads the
    # ImageNet weights; with a zero mean that equals scaling the input pixels by 1/sqrt(std).
    scale = 1.0 / np.sqrt(np.array(efficientnet.IMAGENET_STDDEV_RGB, "float32"))
    images = np.random.RandomState(4).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(model(images), reference(images * scale), rtol=1e-4, atol=1e-4)


def test_imagenet_errors_are_clear(monkeypatch):
    with pytest.raises(ValueError, match="densenet121.*efficientnet_b0"):
        keras_apps.build("googlenet", weights="imagenet")
    with pytest.raises(ValueError, match="classes=1000"):
        keras_apps.build("densenet121", weights="imagenet", classes=10)
    with pytest.raises(ValueError, match=r"\(224, 224, 3\)"):
        keras_apps.build("vgg16", weights="imagenet", input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="include_preprocessing"):
        keras_apps.build("efficientnet_b0", weights="imagenet", include_preprocessing=False)

    def offline(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None")

    monkeypatch.setattr(keras.applications, "DenseNet121", offline)
    with pytest.raises(FileNotFoundError, match="could not be fetched.*keras.*models"):
        keras_apps.build("densenet121", weights="imagenet", include_top=False, input_shape=(32, 32, 3))

    def corrupt_cache(**kwargs):
        raise OSError("Unable to synchronously open file (truncated file)")

    monkeypatch.setattr(keras.applications, "DenseNet121", corrupt_cache)
    with pytest.raises(ValueError, match="truncated file.*weights=None"):
        keras_apps.build("densenet121", weights="imagenet", include_top=False, input_shape=(32, 32, 3))
    assert "densenet121" in pretrained.imagenet_models()
    assert "se_resnet50" not in pretrained.imagenet_models()


def test_offline_imagenet_weights_give_a_clear_error_fast(monkeypatch, tmp_path):
    """The real keras.applications download path, with the network unreachable (as here)
    and an empty cache: one FileNotFoundError naming the cache folder, no traceback soup."""
    import socket
    import time
    import urllib.error

    from keras.src.backend import config as keras_config
    from keras.src.utils import file_utils

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(file_utils, "urlretrieve", unreachable)
    monkeypatch.setattr(keras_config, "keras_home", lambda: str(tmp_path))  # an empty cache
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as err:
        keras_apps.build("resnet50", weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    assert time.monotonic() - start < 60
    message = str(err.value)
    assert "'resnet50' could not be fetched (no network?)" in message
    assert ".keras" in message and "models" in message and "weights=None" in message
    assert "copy resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 (from https://" in message
    assert err.value.__cause__ is None  # one message, not a chain of tracebacks


def _photos(size, n=6):
    """``n`` crops of scikit-learn's two bundled photographs (no download), 0..255 RGB."""
    from sklearn.datasets import load_sample_images

    crops = []
    for index in range(n):
        image = load_sample_images().images[index % 2]
        top, left = 40 * (index // 2), 60 * (index // 2)
        crop = image[top : top + 4 * size, left : left + 4 * size]
        crops.append(keras.ops.image.resize(crop[None].astype("float32"), (size, size))[0])
    return np.stack([np.asarray(c) for c in crops]).astype("float32")


@pytest.mark.parametrize(
    "name, keras_name, module",
    [
        ("resnet50", "ResNet50", "resnet"),
        ("vgg16", "VGG16", "vgg16"),
        ("densenet121", "DenseNet121", "densenet"),
        ("efficientnet_b0", "EfficientNetB0", "efficientnet"),
    ],
)
def test_transplanted_model_with_declared_preprocessing_matches_keras_applications(name, keras_name, module):
    """Our model fed ``preprocess_images(pixels, preprocessing_for(name, "imagenet"))``
    predicts what the keras.applications twin predicts on its own ``preprocess_input``.

    Random (seeded) weights stand in for the ImageNet ones; the logits are compared, since a
    random deep network's probabilities hardly depend on the image, and every other mode is
    checked to give different logits (the declared mode is the only one that fits)."""
    from keras_apps.data.preprocessing import PREPROCESSING_MODES, preprocess_images

    shape = (64, 64, 3)
    reference = getattr(keras.applications, keras_name)(
        weights=None, input_shape=shape, classes=10, classifier_activation=None
    )
    _randomise(reference)
    ours = keras_apps.build(name, input_shape=shape, classes=10, classifier_activation=None)
    pretrained.transplant_weights(reference, ours)
    pixels = _photos(64)
    mode = keras_apps.registry.preprocessing_for(name, "imagenet")
    theirs = np.asarray(reference(getattr(keras.applications, module).preprocess_input(pixels.copy())))
    mine = np.asarray(ours(preprocess_images(pixels, mode)))
    np.testing.assert_array_equal(np.argmax(mine, axis=-1), np.argmax(theirs, axis=-1))
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    for other in set(PREPROCESSING_MODES) - {mode, "dataset"}:
        assert not np.allclose(ours(preprocess_images(pixels, other)), theirs, rtol=1e-5, atol=1e-6), other


# --------------------------------------------------------------------- GoogLeNet


def test_googlenet_inception_channels_follow_table_1():
    model = keras_apps.build("googlenet")
    expected = {
        "3a": 256, "3b": 480,
        "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832,
        "5a": 832, "5b": 1024,
    }  # fmt: skip
    for module, channels in expected.items():
        assert model.get_layer(f"inception_{module}_output").output.shape[-1] == channels
        assert sum(googlenet.INCEPTION_FILTERS[module][i] for i in (0, 2, 4, 5)) == channels
    spatial = {m: model.get_layer(f"inception_{m}_output").output.shape[1] for m in ("3a", "4a", "5a")}
    assert spatial == {"3a": 28, "4a": 14, "5a": 7}
    assert not any(layer.name.startswith("aux") for layer in model.layers)
    assert model.count_params() == keras_apps.model_info("googlenet")["params"]


def test_googlenet_auxiliary_classifiers_train_and_strip():
    shape = (96, 96, 3)
    train_model = keras_apps.build("googlenet", aux_logits=True, input_shape=shape, classes=5)
    assert list(train_model.output) == ["main", "aux1", "aux2"]
    # the auxiliary heads read the outputs of 4a and 4d (Sec. 5)
    layer = train_model.get_layer
    assert layer("aux1_ave_pool").input.name == layer("inception_4a_output").output.name
    assert layer("aux2_ave_pool").input.name == layer("inception_4d_output").output.name
    assert layer("aux1_ave_pool").pool_size == (5, 5) and layer("aux1_ave_pool").strides == (3, 3)
    assert layer("aux1_conv").filters == 128 and layer("aux1_fc").units == 1024
    assert layer("aux1_drop_fc").rate == 0.7
    assert googlenet.AUX_LOSS_WEIGHT == 0.3
    assert googlenet.loss_arguments()["loss_weights"] == {"main": 1.0, "aux1": 0.3, "aux2": 0.3}

    inference = googlenet.strip_auxiliary(train_model)
    plain = keras_apps.build("googlenet", input_shape=shape, classes=5)
    assert inference.count_params() == plain.count_params() < train_model.count_params()
    assert not any(layer.name.startswith("aux") for layer in inference.layers)
    for weight in inference.weights:  # the very same variables
        assert any(weight is other for other in train_model.weights)

    images = np.random.RandomState(0).uniform(-1, 1, (3, *shape)).astype("float32")
    labels = np.array([0, 2, 4])
    train_model.compile(optimizer="sgd", **googlenet.loss_arguments())
    history = train_model.fit(images, googlenet.training_targets(labels), epochs=1, verbose=0)
    assert {"main_loss", "aux1_loss", "aux2_loss"} <= set(history.history)
    np.testing.assert_allclose(
        inference(images, training=False), train_model(images, training=False)["main"], rtol=1e-6, atol=1e-7
    )


def test_googlenet_auxiliary_arguments_are_checked():
    with pytest.raises(ValueError, match="include_top"):
        keras_apps.build("googlenet", aux_logits=True, include_top=False)
    with pytest.raises(ValueError, match="65x65"):
        keras_apps.build("googlenet", aux_logits=True, input_shape=(64, 64, 3))
    keras_apps.build("googlenet", aux_logits=True, input_shape=(65, 65, 3))


# --------------------------------------------------------------------- AlexNet, LRN


def test_alexnet_layer_sizes_follow_the_paper():
    model = keras_apps.build("alexnet")
    names = ("conv1", "pool1", "pool2", "conv5", "pool5")
    sizes = {n: tuple(model.get_layer(n).output.shape[1:]) for n in names}
    assert sizes == {
        "conv1": (55, 55, 96),
        "pool1": (27, 27, 96),
        "pool2": (13, 13, 256),
        "conv5": (13, 13, 256),
        "pool5": (6, 6, 256),
    }
    assert model.get_layer("fc6").units == model.get_layer("fc7").units == 4096
    assert model.count_params() == keras_apps.model_info("alexnet")["params"] == 62_378_344


def test_local_response_normalization_matches_the_equation():
    rng = np.random.RandomState(0)
    x = rng.normal(0, 3, (2, 3, 4, 7)).astype("float32")
    layer = LocalResponseNormalization(size=5, k=2.0, alpha=1e-2, beta=0.75)
    expected = np.empty_like(x)
    channels = x.shape[-1]
    for i in range(channels):
        lo, hi = max(0, i - 2), min(channels - 1, i + 2)
        expected[..., i] = x[..., i] / (2.0 + 1e-2 * np.sum(x[..., lo : hi + 1] ** 2, axis=-1)) ** 0.75
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-6)
    assert LocalResponseNormalization.from_config(layer.get_config()).get_config() == layer.get_config()


# --------------------------------------------------------------------- SENet


def test_squeeze_excitation_matches_numpy_reference():
    rng = np.random.RandomState(0)
    x = rng.normal(0, 1, (2, 5, 6, 32)).astype("float32")
    layer = SqueezeExcitation(reduction=16)
    layer.build(x.shape)
    w1, b1 = rng.normal(0, 0.5, (32, 2)), rng.normal(0, 0.1, 2)
    w2, b2 = rng.normal(0, 0.5, (2, 32)), rng.normal(0, 0.1, 32)
    layer.set_weights([w1, b1, w2, b2])
    z = x.mean(axis=(1, 2))  # squeeze, Eq. 2
    s = 1.0 / (1.0 + np.exp(-(np.maximum(z @ w1 + b1, 0.0) @ w2 + b2)))  # excitation, Eq. 3
    np.testing.assert_allclose(layer(x), x * s[:, None, None, :], rtol=1e-5, atol=1e-6)  # Eq. 4
    assert layer.count_params() == 32 * 2 + 2 + 2 * 32 + 32
    clone = SqueezeExcitation.from_config(layer.get_config())
    assert clone.reduction == 16


def test_se_resnet50_matches_the_paper_and_applies_se_before_the_addition():
    model = keras_apps.build("se_resnet50", input_shape=(32, 32, 3))
    assert _trainable_params(model) == 28_088_024  # 28.1M, ~2.53M more than ResNet-50
    se = model.get_layer("conv2_block1_se")
    assert se.reduction == 16 and se.units == 256 // 16
    add_inputs = {t.name for t in model.get_layer("conv2_block1_add").input}
    assert se.output.name in add_inputs
    assert len([layer for layer in model.layers if isinstance(layer, SqueezeExcitation)]) == 16


# --------------------------------------------------------------------- DenseNet


def test_cifar_densenet_bc_has_the_papers_parameter_count():
    model = keras_apps.build("densenet_bc100_cifar")
    assert round(_trainable_params(model) / 1e6, 1) == 0.8  # Table 2: L=100, k=12 -> 0.8M
    assert model.count_params() == keras_apps.model_info("densenet_bc100_cifar")["params"]
    # 2k = 24 stem maps + 16 layers x k=12 = 216, compressed to 108; 108 + 192 = 300 -> 150
    assert model.get_layer("conv2_block16_concat").output.shape[-1] == 216
    assert model.get_layer("pool2_conv").output.shape[-1] == 108
    assert model.get_layer("pool3_conv").output.shape[-1] == 150
    assert model.get_layer("relu").output.shape[1:] == (8, 8, 342)


# --------------------------------------------------------------------- EfficientNet scaling


@pytest.mark.parametrize("phi", [0, 1, 2.5, 7])
def test_compound_scaling_follows_equation_3(phi):
    config = efficientnet.compound_scaling(phi)
    assert config.depth == pytest.approx(1.2**phi)
    assert config.width == pytest.approx(1.1**phi)
    assert config.resolution == round(224 * 1.15**phi)
    assert config.variant is None
    # alpha * beta^2 * gamma^2 ~ 2, so FLOPs grow by about 2^phi
    assert 1.9 < efficientnet.ALPHA * efficientnet.BETA**2 * efficientnet.GAMMA**2 < 2.0


def test_named_variants_use_the_official_coefficients():
    expected = {
        "b0": (1.0, 1.0, 224, 0.2),
        "b1": (1.0, 1.1, 240, 0.2),
        "b4": (1.4, 1.8, 380, 0.4),
        "b7": (2.0, 3.1, 600, 0.5),
    }
    for variant, (width, depth, resolution, dropout) in expected.items():
        config = efficientnet.compound_scaling(variant)
        assert (config.width, config.depth) == (width, depth)
        assert (config.resolution, config.dropout) == (resolution, dropout)
        assert keras_apps.model_info(f"efficientnet_{variant}")["input_shape"] == (resolution, resolution, 3)
    assert efficientnet.compound_scaling("EfficientNetB3") == efficientnet.compound_scaling("b3")
    with pytest.raises(ValueError, match="b0"):
        efficientnet.compound_scaling("b9")
    with pytest.raises(ValueError, match="phi"):
        efficientnet.compound_scaling(-1)


def test_rounding_of_filters_and_repeats():
    assert efficientnet.round_filters(32, 1.1) == 32  # 35.2 -> 32 (within 10%)
    assert efficientnet.round_filters(16, 1.4) == 24  # 22.4 -> 24
    assert efficientnet.round_filters(1280, 2.0) == 2560
    assert efficientnet.round_filters(40, 1.2) == 48
    assert efficientnet.round_repeats(3, 1.1) == math.ceil(3.3) == 4


def test_efficientnet_for_any_phi_scales_depth_and_width():
    config = efficientnet.compound_scaling(1)
    model = efficientnet.efficientnet(1, include_top=False, input_shape=(32, 32, 3))
    assert model.name == "efficientnet_phi1"
    blocks = [layer for layer in model.layers if layer.name.endswith("_project_conv")]
    assert len(blocks) == sum(math.ceil(config.depth * r) for r in (1, 2, 2, 3, 3, 4, 1)) == 23
    assert model.get_layer("top_conv").filters == efficientnet.round_filters(1280, 1.1) == 1408
    plain = efficientnet.efficientnet(
        "b0", include_top=False, include_preprocessing=False, input_shape=(32, 32, 3)
    )
    reference = keras_apps.build("efficientnet_b0", include_top=False, input_shape=(32, 32, 3))
    assert reference.count_params() - plain.count_params() == 7  # Normalization mean, variance, count
