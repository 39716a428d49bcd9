"""The OverFeat networks against the paper's Tables 1 and 3: layer sizes, kernels, strides,
padding and parameter counts (closed forms written here from the tables), and the small
variants (every width / 8, the same structure). The full networks are built without initial
values (``keras.StatelessScope``): shapes and counts only, no 145M random draws."""

import numpy as np
import pytest

import keras
import keras_apps
from keras_apps.overfeat.dense import feature_layer
from keras_apps.overfeat.models import FEATURE_LAYER

#: Table 1 (fast, 231x231) and Table 3 (accurate, 221x221): layer -> (filters, kernel,
#: stride, output side); poolings -> (size, output side); FC widths.
FAST = {
    "conv1": (96, 11, 4, 56), "pool1": (2, 28),
    "conv2": (256, 5, 1, 24), "pool2": (2, 12),
    "conv3": (512, 3, 1, 12), "conv4": (1024, 3, 1, 12), "conv5": (1024, 3, 1, 12), "pool5": (2, 6),
    "fc": [("fc6", 3072), ("fc7", 4096)],
}
ACCURATE = {
    "conv1": (96, 7, 2, 108), "pool1": (3, 36),
    "conv2": (256, 7, 1, 30), "pool2": (2, 15),
    "conv3": (512, 3, 1, 15), "conv4": (512, 3, 1, 15), "conv5": (1024, 3, 1, 15),
    "conv6": (1024, 3, 1, 15), "pool6": (3, 5),
    "fc": [("fc7", 4096), ("fc8", 4096)],
}
TABLES = {"overfeat_fast": FAST, "overfeat_accurate": ACCURATE}


def _closed_form_params(table, divisor=1, classes=1000, channels=3):
    total, previous, side = 0, channels, None
    for name, entry in table.items():
        if name.startswith("conv"):
            filters, kernel, _, side = entry
            filters //= divisor
            total += kernel * kernel * previous * filters + filters
            previous = filters
        elif name.startswith("pool"):
            side = entry[1]
    inputs = side * side * previous
    for _, units in table["fc"]:
        total += inputs * (units // divisor) + units // divisor
        inputs = units // divisor
    return total + inputs * classes + classes


def _build_shapes_only(name, **kwargs):
    with keras.StatelessScope(initialize_variables=False):
        return keras_apps.build(name, **kwargs)


@pytest.mark.parametrize("name", ["overfeat_fast", "overfeat_accurate"])
@pytest.mark.parametrize("divisor", [1, 8], ids=["full", "small"])
def test_layers_follow_the_paper_tables(name, divisor):
    table = TABLES[name]
    registered = name if divisor == 1 else f"{name}_small"
    model = _build_shapes_only(registered)
    info = keras_apps.model_info(registered)
    assert info["family"] == "overfeat" and info["input_shape"] == model.input.shape[1:]
    assert model.input.shape[1:] == ({"overfeat_fast": 231, "overfeat_accurate": 221}[name],) * 2 + (3,)
    for layer_name, entry in table.items():
        if layer_name == "fc":
            continue
        layer = model.get_layer(layer_name)
        if layer_name.startswith("conv"):
            filters, kernel, stride, side = entry
            assert isinstance(layer, keras.layers.Conv2D)
            assert layer.kernel_size == (kernel, kernel) and layer.strides == (stride, stride)
            assert layer.padding == ("valid" if layer_name in ("conv1", "conv2") else "same")
            assert keras.activations.serialize(layer.activation) == "relu"
            assert layer.output.shape[1:] == (side, side, filters // divisor)
        else:
            size, side = entry
            assert isinstance(layer, keras.layers.MaxPooling2D)
            assert layer.pool_size == layer.strides == (size, size) and layer.padding == "valid"
            assert layer.output.shape[1:3] == (side, side)
    for fc_name, units in table["fc"]:
        layer = model.get_layer(fc_name)
        assert layer.units == units // divisor and keras.activations.serialize(layer.activation) == "relu"
        assert model.get_layer(fc_name.replace("fc", "drop")).rate == 0.5
    assert model.get_layer("predictions").units == 1000
    assert model.output is model.get_layer("predictions_activation").output
    params = _closed_form_params(table, divisor)
    assert model.count_params() == info["params"] == params
    if divisor == 1:  # the paper's "145M" and "144M"
        assert round(params / 1e6) == {"overfeat_fast": 146, "overfeat_accurate": 145}[name]
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def test_small_variants_have_the_full_networks_layers():
    for name in TABLES:
        full = [type(layer).__name__ + layer.name for layer in _build_shapes_only(name).layers]
        small = [type(layer).__name__ + layer.name for layer in _build_shapes_only(f"{name}_small").layers]
        assert small == full


@pytest.mark.parametrize("name", ["overfeat_fast_small", "overfeat_accurate_small"])
def test_feature_layer_is_the_last_pooling(name):
    model = keras_apps.build(name, classes=3)
    assert FEATURE_LAYER[name] == feature_layer(model) == keras_apps.model_info(name)["feature_layers"]["features"]
    assert model.get_layer(FEATURE_LAYER[name]).output.shape[1:3] == {"overfeat_fast_small": (6, 6),
                                                                       "overfeat_accurate_small": (5, 5)}[name]


@pytest.mark.parametrize("name, min_size", [("overfeat_fast_small", 71), ("overfeat_accurate_small", 77)])
def test_min_size_is_the_smallest_input_with_one_pooled_position(name, min_size):
    assert keras_apps.model_info(name)["min_size"] == min_size
    model = _build_shapes_only(name, input_shape=(min_size, min_size, 3))
    assert model.get_layer(FEATURE_LAYER[name]).output.shape[1:3] == (1, 1)
    with pytest.raises(ValueError, match=f"smaller than the minimum {min_size}"):
        keras_apps.build(name, input_shape=(min_size - 1, min_size, 3))


def test_builder_arguments_are_checked():
    with pytest.raises(ValueError, match="no released Keras weights"):
        keras_apps.build("overfeat_fast_small", weights="imagenet")
    with pytest.raises(ValueError, match="dropout"):
        keras_apps.build("overfeat_fast_small", dropout=1.0)
    with pytest.raises(ValueError, match="flattens a fixed-size feature map"):
        keras_apps.build("overfeat_accurate_small", input_shape=(None, None, 3))


def test_dropout_zero_removes_the_dropout_layers_and_weights_file_loads(tmp_path):
    model = keras_apps.build("overfeat_fast_small", classes=3, dropout=0.0)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    path = tmp_path / "fast.weights.h5"
    model.save_weights(path)
    again = keras_apps.build("overfeat_fast_small", classes=3, dropout=0.0, weights=str(path))
    x = np.random.RandomState(0).uniform(-1, 1, (1, 231, 231, 3)).astype("float32")
    np.testing.assert_array_equal(again(x), model(x))


@pytest.mark.parametrize("name, paper", [("overfeat_fast", 2810e6), ("overfeat_accurate", 5369e6)])
def test_multiply_adds_match_table_4(name, paper):
    """Table 4: 2810M (fast) and 5369M (accurate) connections; our count (biases and the
    poolings not counted) is 0.3% lower."""
    from keras_apps.analysis import flop_report

    with keras.StatelessScope(initialize_variables=False):
        report = flop_report(keras_apps.build(name))
    assert report.uncounted == ()
    assert abs(report.macs / paper - 1) < 0.005
