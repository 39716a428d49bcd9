"""The registry, the builder arguments and keras.applications parity."""

import numpy as np
import pytest

import keras
import keras_apps
from keras_apps import registry


def test_list_models_is_sorted_and_filters_with_fnmatch():
    names = keras_apps.list_models()
    assert names == sorted(names)
    assert keras_apps.list_models("vgg1?") == ["vgg16", "vgg19"]
    assert keras_apps.list_models("resnet*_cifar") == [
        "resnet110_cifar", "resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar",
    ]
    assert keras_apps.list_models("no_such_*") == []


def test_model_info_fields():
    info = keras_apps.model_info("resnet50")
    assert info["family"] == "resnet"
    assert "He et al." in info["paper"]
    assert info["input_shape"] == (224, 224, 3)
    assert info["classes"] == 1000
    assert info["params"] == 25_636_712  # keras.applications' published figure
    assert info["keras_applications"] == "ResNet50"
    assert list(info["feature_layers"]) == ["stem", "stage1", "stage2", "stage3", "stage4"]


def test_unknown_name_lists_closest_names():
    with pytest.raises(ValueError, match="Unknown model 'resnet5'.*resnet50"):
        keras_apps.build("resnet5")
    with pytest.raises(ValueError, match="vgg16"):
        keras_apps.model_info("vgg_16")


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model(
            "resnet50", family="x", paper="x", input_shape=(8, 8, 3), classes=2, params=0,
            feature_layers={}, min_size=1,
        )(lambda **kw: None)
    assert keras_apps.model_info("resnet50")["family"] == "resnet"


# Trainable parameter counts published by independent implementations: torchvision for
# ResNet-18/34, He et al. 2016 Table 6 as counted by the akamaster/pytorch_resnet_cifar10
# reference (option A) for the CIFAR ResNets; NIN counted by hand from the layer table.
@pytest.mark.parametrize(
    "name,kwargs,trainable",
    [
        ("resnet18", {}, 11_689_512),
        ("resnet34", {}, 21_797_672),
        ("resnet20_cifar", {}, 269_722),
        ("resnet32_cifar", {}, 464_154),
        ("resnet44_cifar", {}, 658_586),
        ("resnet56_cifar", {}, 853_018),
        ("resnet110_cifar", {}, 1_727_962),
        # the paper's NIN (batch_norm=False): conv1 5x5x3x192+192, cccp1 192x160+160,
        # cccp2 160x96+96, conv2 5x5x96x192+192,
        # cccp3/cccp4/cccp5 192x192+192, conv3 3x3x192x192+192, cccp6 192x100+100
        ("nin_cifar", {"classes": 100, "batch_norm": False}, 14_592 + 30_880 + 15_456 + 460_992 + 3 * 37_056 + 331_968 + 19_300),
        ("nin_imagenet", {"batch_norm": False}, 7_595_176),
    ],
)
def test_trainable_parameters_match_published_figures(name, kwargs, trainable):
    model = keras_apps.build(name, **kwargs)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable


@pytest.mark.parametrize(
    "ours,theirs,kwargs",
    [
        ("vgg16", "VGG16", {"input_shape": (32, 32, 3)}),
        ("vgg19", "VGG19", {"input_shape": (32, 32, 3)}),
        ("resnet50", "ResNet50", {"input_shape": (64, 64, 3)}),
        pytest.param("resnet101", "ResNet101", {"input_shape": (32, 32, 3)}, marks=pytest.mark.slow),
        pytest.param("resnet152", "ResNet152", {"input_shape": (32, 32, 3)}, marks=pytest.mark.slow),
        ("resnet50", "ResNet50", {"input_shape": (64, 64, 3), "include_top": False, "pooling": "max"}),
    ],
)
def test_keras_applications_weights_transplant_in_order(ours, theirs, kwargs):
    reference = getattr(keras.applications, theirs)(weights=None, **kwargs)
    model = keras_apps.build(ours, **kwargs)
    assert model.count_params() == reference.count_params()
    ref_weights = reference.get_weights()
    assert [w.shape for w in model.get_weights()] == [w.shape for w in ref_weights]
    model.set_weights(ref_weights)
    images = np.random.RandomState(0).uniform(0, 255, (2, *kwargs["input_shape"])).astype("float32")
    np.testing.assert_allclose(model(images), reference(images), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,theirs", [("vgg16", "VGG16"), ("resnet50", "ResNet50")])
def test_parameter_count_at_defaults_equals_keras_applications(name, theirs):
    reference = getattr(keras.applications, theirs)(weights=None)
    assert keras_apps.model_info(name)["params"] == reference.count_params()


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"pooling": "mean"}, ValueError, "`pooling` must be one of"),
        ({"classes": 0}, ValueError, "`classes` must be a positive integer"),
        ({"input_shape": (2, 2, 3)}, ValueError, "smaller than the minimum 4"),
        ({"input_shape": (32, 32)}, ValueError, "3 entries"),
        ({"weights": "imagenet.h5"}, ValueError, "path to a .keras or .weights.h5"),
        ({"weights": "missing.weights.h5"}, FileNotFoundError, "does not exist"),
        ({"classifier_activation": "no_such_activation"}, ValueError, "classifier_activation"),
        ({"include_top": "yes"}, TypeError, "include_top"),
        ({"shortcut": "C"}, ValueError, "shortcut"),
    ],
)
def test_bad_builder_arguments_fail_up_front(kwargs, error, match):
    with pytest.raises(error, match=match):
        keras_apps.build("resnet20_cifar", **kwargs)


def test_vgg_top_needs_a_fixed_input_size():
    with pytest.raises(ValueError, match="fixed-size"):
        keras_apps.build("vgg16", input_shape=(None, None, 3))
    model = keras_apps.build("vgg16", input_shape=(None, None, 3), include_top=False, pooling="avg")
    assert model(np.zeros((1, 48, 64, 3), "float32")).shape == (1, 512)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_weights_from_a_local_file(tmp_path, suffix):
    source = keras_apps.build("resnet20_cifar", classes=7)
    path = tmp_path / f"model{suffix}"
    if suffix == ".keras":
        source.save(path)
    else:
        source.save_weights(path)
    model = keras_apps.build("resnet20_cifar", classes=7, weights=str(path))
    images = np.random.RandomState(1).rand(2, 32, 32, 3).astype("float32")
    np.testing.assert_array_equal(model(images), source(images))
    with pytest.raises(ValueError, match="Could not load weights"):
        keras_apps.build("resnet20_cifar", classes=3, weights=str(path))


def test_input_tensor_is_used_as_the_model_input():
    image = keras.Input((40, 40, 3), name="photo")
    model = keras_apps.build("nin_cifar", input_tensor=image, classes=4)
    assert model.inputs[0] is image
    with pytest.raises(ValueError, match="does not match"):
        keras_apps.build("nin_cifar", input_tensor=image, input_shape=(32, 32, 3))


def test_every_model_input_is_named_image():
    model = keras_apps.build("resnet18", input_shape=(32, 32, 3))
    assert model.inputs[0].name == "image"


def test_feature_extractor_shapes_follow_the_stage_strides():
    features = keras_apps.feature_extractor("resnet50", input_shape=(64, 64, 3))
    shapes = {k: tuple(v.shape[1:]) for k, v in features.output.items()}
    assert shapes == {
        "stem": (16, 16, 64),
        "stage1": (16, 16, 256),
        "stage2": (8, 8, 512),
        "stage3": (4, 4, 1024),
        "stage4": (2, 2, 2048),
    }


def test_feature_extractor_shares_weights_and_accepts_layer_names():
    model = keras_apps.build("nin_cifar", classes=10)
    features = keras_apps.feature_extractor(model, ["cccp2", "pool2"])
    assert set(features.output) == {"cccp2", "pool2"}
    assert features.get_layer("conv1") is model.get_layer("conv1")
    with pytest.raises(ValueError, match="no layer 'cccp9'.*cccp"):
        keras_apps.feature_extractor(model, ["cccp9"])
    renamed = keras_apps.build("nin_cifar", name="my_nin")
    with pytest.raises(ValueError, match="pass `layers`"):
        keras_apps.feature_extractor(renamed)


def test_zero_padding_shortcut_matches_a_numpy_reference():
    from keras_apps.layers import ZeroPaddingShortcut

    x = np.random.RandomState(0).rand(2, 7, 6, 3).astype("float32")
    y = ZeroPaddingShortcut(8, strides=2)(x)
    expected = np.zeros((2, 4, 3, 8), "float32")
    expected[..., :3] = x[:, ::2, ::2, :]
    np.testing.assert_array_equal(y, expected)
    with pytest.raises(ValueError, match="input has 3 channels"):
        ZeroPaddingShortcut(2)(x)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_a_corrupt_weights_file_is_reported_with_its_path(tmp_path, suffix):
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(b"not a weights file" * 64)
    with pytest.raises(ValueError, match="Could not load weights from .*corrupt") as err:
        keras_apps.build("resnet20_cifar", weights=str(path))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_weights_of_another_architecture_give_one_error_and_no_warning_flood(tmp_path, suffix):
    import warnings

    source = keras_apps.build("resnet20_cifar")
    path = tmp_path / f"resnet20{suffix}"
    source.save(path) if suffix == ".keras" else source.save_weights(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="another architecture") as err:
            keras_apps.build("nin_cifar", weights=str(path))
    assert str(path) in str(err.value) and "'nin_cifar'" in str(err.value)
    assert [str(w.message) for w in caught] == []
