"""OverFeat's dense evaluation: offset max pooling, to_dense, the window geometry, the output
size formulas and multi-scale / 10-view classification.

References are independent of the code under test: shifted poolings and FC heads written
with numpy, windows and sizes computed by hand from the paper's tables, classifiers run on
explicitly cut crops.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_apps
from keras_apps import graph
from keras_apps.layers import OffsetMaxPooling2D
from keras_apps.overfeat.classify import multi_scale_scores, ten_view_scores
from keras_apps.overfeat.dense import (
    SCALES,
    dense_geometry,
    feature_layer,
    output_size,
    to_dense,
    window_boxes,
)


def _images(n, h, w, c=3, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (n, h, w, c)).astype("float32")


def _randomise_biases(model, seed=0):
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))
    return model


def _shifted_poolings(x, k, s):
    """The paper's offset pooling (Fig. 3) as s^2 separate poolings of x[:, dy:, dx:],
    interleaved by hand: out[i*s + dy, j*s + dx] = pool_(dy,dx)[i, j]."""
    (kh, kw), (sh, sw) = k, s
    n, height, width, c = x.shape
    out = np.full((n, height - kh + 1, width - kw + 1, c), np.nan, "float32")
    for dy in range(sh):
        for dx in range(sw):
            rows = (height - dy - kh) // sh + 1
            cols = (width - dx - kw) // sw + 1
            for i in range(rows):
                for j in range(cols):
                    y0, x0 = dy + i * sh, dx + j * sw
                    window = x[:, y0 : y0 + kh, x0 : x0 + kw, :]
                    assert np.all(np.isnan(out[:, i * sh + dy, j * sw + dx]))  # filled once
                    out[:, i * sh + dy, j * sw + dx] = window.max(axis=(1, 2))
    assert not np.any(np.isnan(out))  # every position belongs to one offset
    return out


def _numpy_pool(x, k, s):
    """Plain "valid" max pooling of window k and stride s."""
    n, height, width, c = x.shape
    rows, cols = (height - k) // s + 1, (width - k) // s + 1
    out = np.empty((n, rows, cols, c), "float32")
    for i in range(rows):
        for j in range(cols):
            out[:, i, j] = x[:, i * s : i * s + k, j * s : j * s + k].max(axis=(1, 2))
    return out


def _fc_head(model, names, pooled):
    """The classifier's FC layers in numpy on one pooled map (n, h, w, C): flatten in
    (h, w, c) order, ReLU on the hidden layers; returns the logits."""
    x = pooled.reshape(len(pooled), -1)
    for position, name in enumerate(names):
        kernel, bias = model.get_layer(name).get_weights()
        x = x @ kernel + bias
        if position < len(names) - 1:
            x = np.maximum(x, 0)
    return x


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------------- OffsetMaxPooling2D


@pytest.mark.parametrize(
    "pool_size, strides, shape",
    [
        (2, None, (2, 9, 8, 3)),          # the fast model's 2x2/2, odd height
        (3, None, (1, 17, 20, 2)),        # the accurate model's 3x3/3, 17 = 3*5 + 2, 20 = 3*6 + 2
        (3, 2, (1, 10, 11, 2)),           # overlapping windows
        ((2, 3), (2, 3), (2, 7, 11, 1)),  # rectangular, sizes not divisible by the stride
    ],
)
def test_offset_max_pooling_interleaves_the_shifted_poolings(pool_size, strides, shape):
    x = _images(*shape, seed=3)
    layer = OffsetMaxPooling2D(pool_size, strides)
    expected = _shifted_poolings(x, layer.pool_size, layer.strides)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), expected)
    assert tuple(layer.compute_output_shape(shape)) == expected.shape
    s = layer.strides
    assert layer.offsets == tuple((dy, dx) for dy in range(s[0]) for dx in range(s[1]))


def test_offset_max_pooling_rejects_bad_arguments_and_small_inputs():
    with pytest.raises(ValueError, match="pool_size"):
        OffsetMaxPooling2D(0)
    with pytest.raises(ValueError, match="strides"):
        OffsetMaxPooling2D(2, strides=(1, 2, 3))
    with pytest.raises(ValueError, match="smaller than the pooling window 3"):
        OffsetMaxPooling2D(3)(np.zeros((1, 2, 5, 1), "float32"))


# ------------------------------------------------------------------------------ toy networks


def _valid_toy(size=14, classes=4):
    """A network with only unpadded layers: 3x3 conv, 2x2/2 pool, 3x3 conv, FC, FC."""
    image = keras.Input((size, size, 2), name="image")
    x = keras.layers.Conv2D(5, 3, activation="relu", name="conv1")(image)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(7, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(0.5, name="drop1")(x)
    x = keras.layers.Dense(classes, name="predictions")(x)
    x = keras.layers.Activation("softmax", name="predictions_activation")(x)
    return _randomise_biases(keras.Model(image, x, name="valid_toy"))


def test_dense_toy_equals_the_classifier_on_each_window_crop():
    model = _valid_toy()
    dense = to_dense(model)
    # by hand: conv1 3x3 -> 3, pool1 2/2 -> 4 (jump 2), conv2 3x3 -> 8, the FC reading
    # conv2's whole 4x4 map -> 8 + 3 * 2 = 14: 14x14 windows at stride 2
    assert dense_geometry(dense) == ((14, 14), (2, 2), (0, 0))
    x = _images(2, 19, 22, 2, seed=1)
    maps = keras.ops.convert_to_numpy(dense(x))
    assert maps.shape == (2, 3, 5, 4)  # ((19 - 14) // 2 + 1, (22 - 14) // 2 + 1)
    boxes = window_boxes(dense, 19, 22)
    for i in range(3):
        for j in range(5):
            np.testing.assert_array_equal(boxes[i, j], [2 * j, 2 * i, 2 * j + 14, 2 * i + 14])
            crop = x[:, 2 * i : 2 * i + 14, 2 * j : 2 * j + 14]
            np.testing.assert_allclose(maps[:, i, j], model(crop), atol=1e-5)
    # the softmax acts per position over the channel axis
    np.testing.assert_allclose(maps.sum(axis=-1), 1.0, rtol=1e-5)


def _two_head_toy(shared_flatten, size=10, classes=3):
    """A frozen feature extractor and two heads reading the same pooled map: a classifier
    and a class-specific box regressor (Flatten -> FC -> FC -> 4 * classes)."""
    image = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1", trainable=False)(image)
    pool = keras.layers.MaxPooling2D(2, name="pool5", trainable=False)(x)
    flat = keras.layers.Flatten(name="flatten")(pool)
    c = keras.layers.Dense(6, activation="relu", name="fc6")(flat)
    c = keras.layers.Dense(classes, name="predictions")(c)
    c = keras.layers.Activation("softmax", name="predictions_activation")(c)
    r = flat if shared_flatten else keras.layers.Flatten(name="regression_flatten")(pool)
    r = keras.layers.Dense(8, activation="relu", name="regression_fc1")(r)
    r = keras.layers.Dropout(0.5, name="regression_drop1")(r)
    r = keras.layers.Dense(5, activation="relu", name="regression_fc2")(r)
    r = keras.layers.Dense(4 * classes, name="boxes")(r)
    return _randomise_biases(keras.Model(image, {"scores": c, "boxes": r}, name="two_heads"))


@pytest.mark.parametrize("shared_flatten", [True, False], ids=["one_flatten", "two_flattens"])
@pytest.mark.parametrize("offset_pooling", [False, True], ids=["plain", "offset"])
def test_two_head_model_becomes_two_maps_of_its_fc_heads(shared_flatten, offset_pooling):
    model = _two_head_toy(shared_flatten)
    dense = to_dense(model, offset_pooling=offset_pooling)
    assert dense.input.shape[1:] == (None, None, 3)
    # names kept, frozen layers stay frozen, the weights are the same values
    names = {layer.name for layer in model.layers} - {"flatten", "regression_flatten"}
    assert {layer.name for layer in dense.layers} == names
    assert not dense.get_layer("conv1").trainable and dense.get_layer("fc6").trainable
    np.testing.assert_array_equal(dense.get_layer("conv1").kernel, model.get_layer("conv1").kernel)
    assert isinstance(dense.get_layer("pool5"), OffsetMaxPooling2D) == offset_pooling

    x = _images(2, 15, 13, 3, seed=2)
    out = dense(x)
    assert sorted(out) == ["boxes", "scores"]
    # the reference: pool5 of the whole image in numpy (from conv1's map), each 5x5 window
    # (each offset's pooled map with offset pooling) through the heads in numpy
    conv1 = keras.ops.convert_to_numpy(keras.Model(dense.input, dense.get_layer("conv1").output)(x))
    stride = 1 if offset_pooling else 2
    offsets = [(dy, dx) for dy in range(2) for dx in range(2)] if offset_pooling else [(0, 0)]
    # conv1 15x13 (same), pool5 7x6 (14x12 at stride 1), 5x5 FC kernel (dilated by 2: 9x9)
    expected_shape = (2, 14 - 8, 12 - 8) if offset_pooling else (2, 7 - 4, 6 - 4)
    assert tuple(out["scores"].shape) == (*expected_shape, 3)
    assert tuple(out["boxes"].shape) == (*expected_shape, 12)
    for dy, dx in offsets:
        pooled = _numpy_pool(conv1[:, dy:, dx:], 2, 2)
        for i in range(pooled.shape[1] - 4):
            for j in range(pooled.shape[2] - 4):
                window = pooled[:, i : i + 5, j : j + 5]
                y, xx = (i * 2 + dy, j * 2 + dx) if offset_pooling else (i, j)
                scores = _softmax(_fc_head(model, ["fc6", "predictions"], window))
                boxes = _fc_head(model, ["regression_fc1", "regression_fc2", "boxes"], window)
                np.testing.assert_allclose(out["scores"][:, y, xx], scores, rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(out["boxes"][:, y, xx], boxes, rtol=1e-4, atol=1e-5)
    assert dense_geometry(dense) == ((10, 10), (stride, stride), (0, 0))


def test_dense_model_round_trips_through_a_keras_file(tmp_path):
    dense = to_dense(_two_head_toy(shared_flatten=False), offset_pooling=True)
    path = tmp_path / "dense.keras"
    dense.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = _images(1, 12, 14, 3, seed=4)
    keras.tree.map_structure(np.testing.assert_array_equal, loaded(x), dense(x))
    assert isinstance(loaded.get_layer("pool5"), OffsetMaxPooling2D)


def test_to_dense_rejects_what_has_no_dense_form():
    image = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(image)
    gap = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    with pytest.raises(ValueError, match="'gap'.*pools globally"):
        to_dense(keras.Model(image, keras.layers.Dense(2)(gap)))
    flat = keras.layers.Flatten(name="flatten")(x)
    no_pool = keras.Model(image, keras.layers.Dense(2, name="fc")(flat))
    with pytest.raises(ValueError, match="No pooling layer before 'flatten'.*'conv'"):
        to_dense(no_pool, offset_pooling=True)
    reshaped = keras.layers.Reshape((2, -1), name="reshape")(keras.layers.Dense(6)(flat))
    with pytest.raises(ValueError, match="'reshape'"):
        to_dense(keras.Model(image, reshaped))
    with pytest.raises(ValueError, match="removes the spatial grid"):
        dense_geometry(no_pool)


# -------------------------------------------------------------------------- OverFeat networks


@pytest.mark.parametrize("name", ["overfeat_fast_small", "overfeat_accurate_small"])
def test_dense_overfeat_at_the_training_size_is_the_classifier(name):
    model = _randomise_biases(keras_apps.build(name, classes=5))
    dense = to_dense(model)
    size = model.input.shape[1]
    x = _images(2, size, size, seed=5)
    maps = keras.ops.convert_to_numpy(dense(x))
    assert maps.shape == (2, 1, 1, 5)
    np.testing.assert_allclose(maps[:, 0, 0], model(x), atol=1e-5)
    assert isinstance(dense.get_layer("fc6" if "fast" in name else "fc7"), keras.layers.Conv2D)
    assert dense.get_layer("predictions").kernel.shape == (1, 1, 512, 5)


@pytest.mark.parametrize(
    "name, pool, fc, height, width",
    [
        pytest.param("overfeat_fast_small", "pool5", ["fc6", "fc7", "predictions"], 263, 295, id="fast"),
        pytest.param("overfeat_accurate_small", "pool6", ["fc7", "fc8", "predictions"], 257, 293, id="accurate"),
    ],
)
def test_dense_overfeat_is_the_fc_head_on_each_window_of_the_pooled_map(name, pool, fc, height, width):
    model = _randomise_biases(keras_apps.build(name, classes=5, classifier_activation=None))
    dense = to_dense(model)
    x = _images(1, height, width, seed=6)
    maps = keras.ops.convert_to_numpy(dense(x))
    pooled = keras.ops.convert_to_numpy(keras.Model(dense.input, dense.get_layer(pool).output)(x))
    k = {"pool5": 6, "pool6": 5}[pool]  # the pooled map the classifier reads: 6x6 / 5x5
    assert maps.shape[1:3] == (pooled.shape[1] - k + 1, pooled.shape[2] - k + 1)
    boxes = window_boxes(dense, height, width)
    crop_side = model.input.shape[1]
    differences = []
    for i in range(maps.shape[1]):
        for j in range(maps.shape[2]):
            expected = _fc_head(model, fc, pooled[:, i : i + k, j : j + k])
            np.testing.assert_allclose(maps[:, i, j], expected, rtol=1e-4, atol=1e-4)
            x1, y1, x2, y2 = boxes[i, j].astype(int)
            assert x2 - x1 == y2 - y1 == crop_side and x2 <= width and y2 <= height
            crop_logits = keras.ops.convert_to_numpy(model(x[:, y1:y2, x1:x2]))
            differences.append(np.abs(crop_logits - maps[:, i, j]).max())
    # the documented caveat: zero-padded conv3.. see the crop's zero border, the dense run
    # real neighbours, so the classifier on the cropped window is a different number
    assert max(differences) > 1e-3


def test_offset_pooling_is_the_classifier_head_on_each_offsets_pooled_map():
    model = _randomise_biases(keras_apps.build("overfeat_accurate_small", classes=4, classifier_activation=None))
    dense = to_dense(model, offset_pooling=True)
    assert dense.get_layer("fc7").dilation_rate == (3, 3)
    x = _images(1, 245, 281, seed=7)  # Table 5 scale 1 height; conv6 maps 17 x 20
    maps = keras.ops.convert_to_numpy(dense(x))
    conv6 = keras.ops.convert_to_numpy(keras.Model(dense.input, dense.get_layer("conv6").output)(x))
    assert conv6.shape[1:3] == (17, 20)
    assert maps.shape[1:3] == (3, 2 * 3)  # 1x1 and 1x2 per offset, 3x3 offsets
    for dy in range(3):
        for dx in range(3):
            pooled = _numpy_pool(conv6[:, dy:, dx:], 3, 3)  # offset (dy, dx)'s pool6, 5 x 6
            for i in range(pooled.shape[1] - 4):
                for j in range(pooled.shape[2] - 4):
                    expected = _fc_head(model, ["fc7", "fc8", "predictions"], pooled[:, i : i + 5, j : j + 5])
                    np.testing.assert_allclose(maps[:, 3 * i + dy, 3 * j + dx], expected, rtol=1e-4, atol=1e-4)
    assert dense_geometry(dense) == ((221, 221), (12, 12), (0, 0))


def _fast_formula(h):
    return ((h - 11) // 4 + 1) // 8 - 6


def _accurate_formula(h):
    return ((h - 7) // 2 + 1) // 18 - 5


def test_output_size_formulas_match_the_built_dense_models():
    fast = to_dense(keras_apps.build("overfeat_fast_small", classes=2))
    accurate = to_dense(keras_apps.build("overfeat_accurate_small", classes=2))
    fast_offset = to_dense(keras_apps.build("overfeat_fast_small", classes=2), offset_pooling=True)
    accurate_offset = to_dense(keras_apps.build("overfeat_accurate_small", classes=2), offset_pooling=True)
    for size in (231, 232, 246, 262, 263, 264, 279, 300, 391, 517):
        assert fast.compute_output_shape((1, size, size, 3))[1] == _fast_formula(size)
        assert output_size("overfeat_fast", size) == output_size("overfeat_fast_small", size) == _fast_formula(size)
        assert output_size("overfeat_fast", size, offset_pooling=True) == fast_offset.compute_output_shape(
            (1, size, size, 3)
        )[1]
    for size in (221, 222, 238, 239, 245, 256, 257, 281, 317, 461, 569):
        assert accurate.compute_output_shape((1, size, size, 3))[1] == _accurate_formula(size)
        assert output_size("overfeat_accurate", size) == _accurate_formula(size)
        assert output_size("overfeat_accurate_small", size, offset_pooling=True) == (
            accurate_offset.compute_output_shape((1, size, size, 3))[1]
        )
    with pytest.raises(ValueError, match="too small.*221"):
        output_size("overfeat_accurate", 220)
    with pytest.raises(ValueError, match="overfeat_fast"):
        output_size("alexnet", 231)


def test_table5_scales_give_the_papers_classifier_maps():
    """Table 5 (accurate model): classifier map before / after the 3x3 offsets."""
    before = [(1, 1), (2, 3), (3, 5), (5, 7), (6, 8), (7, 10)]
    after = [(3, 3), (6, 9), (9, 15), (15, 21), (18, 24), (21, 30)]
    for (h, w), b, a in zip(SCALES["overfeat_accurate"], before, after):
        assert (output_size("overfeat_accurate", h), output_size("overfeat_accurate", w)) == b
        got = (output_size("overfeat_accurate", h, offset_pooling=True),
               output_size("overfeat_accurate", w, offset_pooling=True))
        assert got == a
    # the fast model's derived scales give the same maps, both 2x2 offsets complete
    for (h, w), b in zip(SCALES["overfeat_fast"], before):
        assert (output_size("overfeat_fast", h), output_size("overfeat_fast", w)) == b
        assert output_size("overfeat_fast", h, offset_pooling=True) == 2 * b[0]
        assert output_size("overfeat_fast", w, offset_pooling=True) == 2 * b[1]


def test_overfeat_geometry_and_windows():
    fast = to_dense(keras_apps.build("overfeat_fast_small", classes=2))
    accurate = to_dense(keras_apps.build("overfeat_accurate_small", classes=2))
    # by hand: fast conv1 4 x pool1 2 x pool2 2 x pool5 2 = 32, accurate 2 x 3 x 2 x 3 = 36
    assert dense_geometry(fast) == ((231, 231), (32, 32), (0, 0))
    assert dense_geometry(accurate) == ((221, 221), (36, 36), (0, 0))
    assert dense_geometry(to_dense(keras_apps.build("overfeat_fast_small", classes=2), offset_pooling=True)) == (
        (231, 231), (16, 16), (0, 0)
    )
    boxes = window_boxes(accurate, 281, 317)
    assert boxes.shape == (2, 3, 4) and boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes[1, 2], [72, 36, 72 + 221, 36 + 221])
    np.testing.assert_array_equal(boxes[0, 0], [0, 0, 221, 221])
    assert boxes[..., 2].max() <= 317 and boxes[..., 3].max() <= 281
    with pytest.raises(ValueError, match="too small.*221x221"):
        window_boxes(accurate, 200, 300)


def test_feature_layer_finds_the_last_pooling_before_the_flatten():
    assert feature_layer(keras_apps.build("overfeat_fast_small", classes=2)) == "pool5"
    assert feature_layer(keras_apps.build("overfeat_accurate_small", classes=2)) == "pool6"
    assert feature_layer(keras_apps.build("alexnet", input_shape=(67, 67, 3), classes=2)) == "pool5"
    assert feature_layer(_two_head_toy(shared_flatten=False)) == "pool5"
    assert feature_layer(to_dense(_valid_toy())) == "pool1"  # no Flatten: the last pooling


# ---------------------------------------------------------------------------- classification


def _asymmetric_dense_model():
    """A fully convolutional 'classifier' whose scores are a known function of the pixels: a
    2x3 valid convolution (not mirror-symmetric, so flips matter), 2 classes."""
    image = keras.Input((None, None, 1), name="image")
    conv = keras.layers.Conv2D(2, (2, 3), name="scores")
    model = keras.Model(image, conv(image), name="asymmetric")
    kernel = np.zeros((2, 3, 1, 2), "float32")
    kernel[..., 0, 0] = [[1.0, 0.0, -2.0], [0.5, 0.0, 0.0]]
    kernel[..., 0, 1] = [[0.0, 0.0, 0.0], [0.0, 0.0, 3.0]]
    conv.set_weights([kernel, np.array([0.1, -0.2], "float32")])
    return model, kernel


def _numpy_valid_conv(image, kernel):
    kh, kw = kernel.shape[:2]
    h, w = image.shape[0] - kh + 1, image.shape[1] - kw + 1
    out = np.empty((h, w, kernel.shape[-1]))
    for i in range(h):
        for j in range(w):
            out[i, j] = np.tensordot(image[i : i + kh, j : j + kw], kernel, axes=3)
    return out


def test_multi_scale_scores_average_the_spatial_max_over_scales_and_flips():
    model, kernel = _asymmetric_dense_model()
    images = _images(3, 6, 7, 1, seed=8)
    scales = [(6, 7), (9, 5), (12, 14)]
    bias = np.array([0.1, -0.2])
    expected = np.zeros((3, 2))
    for h, w in scales:
        resized = tf.image.resize(images, (h, w), method="bilinear").numpy()
        for view in (resized, resized[:, :, ::-1]):
            for n in range(3):
                expected[n] += (_numpy_valid_conv(view[n], kernel) + bias).max(axis=(0, 1))
    expected /= 2 * len(scales)
    got = multi_scale_scores(model, images, scales, batch_size=2)
    assert got.shape == (3, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    unflipped = multi_scale_scores(model, images, scales[:1], flips=False)
    np.testing.assert_allclose(
        unflipped[0], (_numpy_valid_conv(tf.image.resize(images, (6, 7)).numpy()[0], kernel) + bias).max(axis=(0, 1)),
        rtol=1e-5, atol=1e-5,
    )
    with pytest.raises(ValueError, match=r"Scale \(1, 7\).*2x3"):
        multi_scale_scores(model, images, [(1, 7)])
    with pytest.raises(ValueError, match="pass `scales`"):
        multi_scale_scores(model, images)


def test_ten_view_scores_average_corners_centre_and_flips():
    image = keras.Input((3, 4, 1), name="image")
    flat = keras.layers.Flatten()(image)
    logits = keras.layers.Dense(3, name="predictions")(flat)
    model = keras.Model(image, keras.layers.Activation("softmax")(logits))
    images = _images(2, 6, 9, 1, seed=9)
    # by hand for 6x9 images and 3x4 crops: corners (0,0) (0,5) (3,0) (3,5), centre (1,2)
    origins = [(0, 0), (0, 5), (3, 0), (3, 5), (1, 2)]
    expected = np.zeros((2, 3))
    for top, left in origins:
        crop = images[:, top : top + 3, left : left + 4]
        expected += model(crop).numpy() + model(np.ascontiguousarray(crop[:, :, ::-1])).numpy()
    np.testing.assert_allclose(ten_view_scores(model, images, batch_size=1), expected / 10, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="2x9, smaller than the 3x4 crops"):
        ten_view_scores(model, images[:, :2])
