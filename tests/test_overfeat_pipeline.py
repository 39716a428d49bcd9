"""OverFeat's localization pipeline: box parametrisation, the class-specific L2 loss, the
regression head, training windows, dense predictions mapped back to the image, localize /
detect, saving a system -- each against closed forms or hand-made cases."""

import json
import pathlib

import keras
import numpy as np
import pytest

import keras_apps
from keras_apps import overfeat
from keras_apps.overfeat.regression import (
    BoxRegressionLoss,
    decode_boxes,
    encode_boxes,
    flip_targets,
    regression_targets,
)
from keras_apps.overfeat.windows import box_coverage, crop_windows, sample_windows

MODEL = "overfeat_accurate_small"  # 221x221, field of view 221, stride 36 (12 with offset pooling)


@pytest.fixture(scope="module")
def system():
    """A 3-object + background classifier whose scores do not depend on the image (conv
    kernels and FC kernels zero, biases set) and a regressor predicting the box
    t = (-0.25, -0.2, 0.25, 0.3) for every class at every window."""
    keras.utils.set_random_seed(0)
    classifier = keras_apps.build(MODEL, classes=4)
    regressor = overfeat.regression_head(classifier, classes=3)
    for layer in classifier.layers + regressor.layers:
        if layer.weights and layer.name not in ("predictions", "boxes"):
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    kernel, _ = classifier.get_layer("predictions").get_weights()
    classifier.get_layer("predictions").set_weights(
        [np.zeros_like(kernel), np.log(np.array([0.6, 0.1, 0.05, 0.25], np.float32))]
    )
    kernel, _ = regressor.get_layer("boxes").get_weights()
    regressor.get_layer("boxes").set_weights(
        [np.zeros_like(kernel), np.tile(np.array([-0.25, -0.2, 0.25, 0.3], np.float32), 3)]
    )
    return overfeat.overfeat_system(classifier, regressor), classifier, regressor


# ----------------------------------------------------------------------- parametrisation


def test_encode_decode_closed_form_and_round_trip():
    window = np.array([[100.0, 50.0, 321.0, 271.0]])  # side 221, centre (210.5, 160.5)
    box = np.array([[150.0, 60.0, 250.0, 200.0]])
    expected = (box - np.array([210.5, 160.5, 210.5, 160.5])) / 221.0
    np.testing.assert_allclose(encode_boxes(box, window), expected, rtol=1e-6)
    np.testing.assert_allclose(decode_boxes(expected, window), box, rtol=1e-6)
    full = encode_boxes(window, window)
    np.testing.assert_allclose(full, [[-0.5, -0.5, 0.5, 0.5]], atol=1e-7)


def test_flip_targets_equals_encoding_the_mirrored_box_in_the_mirrored_window():
    width = 640.0
    window = np.array([120.0, 40.0, 341.0, 261.0])
    box = np.array([130.0, 60.0, 200.0, 180.0])

    def mirror(b):
        return np.array([width - b[2], b[1], width - b[0], b[3]])

    direct = encode_boxes(mirror(box)[None], mirror(window)[None])[0]
    np.testing.assert_allclose(np.asarray(flip_targets(encode_boxes(box[None], window[None])))[0], direct,
                               atol=1e-6)


def test_box_regression_loss_is_the_true_class_l2_only():
    y_true = np.array([[1, 0.1, 0.2, 0.3, 0.4], [0, -0.1, 0.0, 0.1, 0.2]], np.float32)
    rng = np.random.default_rng(0)
    y_pred = rng.normal(size=(2, 12)).astype(np.float32)
    per_example = [
        np.sum((y_pred[0, 4:8] - y_true[0, 1:]) ** 2),
        np.sum((y_pred[1, 0:4] - y_true[1, 1:]) ** 2),
    ]
    loss = float(BoxRegressionLoss()(y_true, y_pred))
    assert loss == pytest.approx(np.mean(per_example), rel=1e-5)
    # the other classes' outputs get no gradient
    import tensorflow as tf

    pred = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        value = BoxRegressionLoss()(y_true, pred)
    grad = tape.gradient(value, pred).numpy()
    assert np.all(grad[0, [0, 1, 2, 3, 8, 9, 10, 11]] == 0) and np.all(grad[0, 4:8] != 0)
    assert np.all(grad[1, 4:] == 0)
    restored = keras.losses.deserialize(keras.losses.serialize(BoxRegressionLoss()))
    assert float(restored(y_true, y_pred)) == pytest.approx(loss)


def test_regression_targets_rows():
    rows = regression_targets([2], [[10.0, 10.0, 20.0, 30.0]], [[0.0, 0.0, 40.0, 40.0]])
    np.testing.assert_allclose(rows, [[2, -0.25, -0.25, 0.0, 0.25]], atol=1e-7)


# --------------------------------------------------------------------------------- head


def test_regression_head_shares_and_freezes_the_feature_extractor(system):
    _, classifier, regressor = system
    assert regressor.output.shape[-1] == 12
    assert regressor.get_layer("conv1") is classifier.get_layer("conv1")
    for name in ("conv1", "conv6", "pool6"):
        assert not classifier.get_layer(name).trainable
    assert [regressor.get_layer(n).units for n in ("reg_fc1", "reg_fc2")] == [512, 128]  # 4096, 1024 / 8
    trainable = {w.path.split("/")[0] for w in regressor.trainable_weights}
    assert trainable == {"reg_fc1", "reg_fc2", "boxes"}


def test_regression_head_default_units_at_full_size_and_bad_input():
    # a classifier with the paper's 4096-unit FC gets the paper's regressor (4096, 1024)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(4096, activation="relu", name="fc6")(x)
    full = keras.Model(inputs, keras.layers.Dense(10, name="predictions")(x))
    head = overfeat.regression_head(full, classes=10)
    assert [head.get_layer(n).units for n in ("reg_fc1", "reg_fc2")] == [4096, 1024]
    assert head.output.shape[-1] == 40
    small = keras_apps.build(MODEL, classes=3)
    with pytest.raises(ValueError, match="classes"):
        overfeat.regression_head(small, classes=0)
    with pytest.raises(ValueError, match="units"):
        overfeat.regression_head(small, classes=3, units=(64,))
    with pytest.raises(ValueError, match="nope"):
        overfeat.regression_head(small, classes=3, at="nope")


# ------------------------------------------------------------------------------ windows


def _records():
    return [
        {"boxes": [[100, 100, 200, 210], [300, 50, 340, 90]], "classes": [0, 1], "width": 640, "height": 480},
        {"boxes": [[10, 300, 260, 470]], "classes": [2], "width": 640, "height": 480},
    ]


def test_sample_windows_follow_the_coverage_and_size_rules():
    records = _records()
    windows = sample_windows(records, num_classes=3, field_of_view=221, stride=36, scales=(1.0, 2.0),
                             per_box=4, size_range=(0.3, 1.0), background_per_image=20, seed=3)
    sides = windows["window"][:, 2] - windows["window"][:, 0]
    np.testing.assert_allclose(sides, 221.0 / windows["scale"], rtol=1e-5)
    objects = windows["label"] < 3
    for row in np.flatnonzero(objects):
        box = windows["box"][row]
        longer = max(box[2] - box[0], box[3] - box[1]) * windows["scale"][row]
        assert 0.3 * 221 <= longer <= 221
        inside = box_coverage(box, windows["window"][row])[0, 0]
        # independent coverage: the intersection area by hand
        w = windows["window"][row]
        ix = max(0, min(box[2], w[2]) - max(box[0], w[0]))
        iy = max(0, min(box[3], w[3]) - max(box[1], w[1]))
        assert inside == pytest.approx(ix * iy / ((box[2] - box[0]) * (box[3] - box[1])))
        assert inside > 0.5
        centre = (w[:2] + w[2:]) / 2
        assert np.all(np.abs(centre - (box[:2] + box[2:]) / 2) <= 36 / windows["scale"][row] / 2 + 1e-4)
    # the 40-px box (class 1) is too small at scale 1 (40 < 0.3 * 221), valid at scale 2
    assert set(windows["scale"][windows["label"] == 1]) == {2.0}
    # the 250-px box (class 2) is too large at scale 1 and 2 -> never an object window
    assert not np.any(windows["label"] == 2)
    background = ~objects
    assert background.sum() > 0 and np.all(np.isnan(windows["box"][background]))
    for row in np.flatnonzero(background):
        record = records[windows["image"][row]]
        boxes = np.asarray(record["boxes"], float)
        longer = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * windows["scale"][row]
        valid = boxes[(longer >= 0.3 * 221) & (longer <= 221)]
        if len(valid):
            assert box_coverage(valid, windows["window"][row]).max() <= 0.5
    again = sample_windows(records, num_classes=3, field_of_view=221, stride=36, scales=(1.0, 2.0),
                           per_box=4, size_range=(0.3, 1.0), background_per_image=20, seed=3)
    for key in windows:
        np.testing.assert_array_equal(windows[key], again[key])


def test_sample_windows_bad_input():
    with pytest.raises(ValueError, match="class ids"):
        sample_windows([{"boxes": [[0, 0, 10, 10]], "classes": [5], "width": 50, "height": 50}],
                       num_classes=3, field_of_view=221, stride=36)
    with pytest.raises(ValueError, match="scales"):
        sample_windows(_records(), num_classes=3, field_of_view=221, stride=36, scales=(0,))
    with pytest.raises(ValueError, match="size_range"):
        sample_windows(_records(), num_classes=3, field_of_view=221, stride=36, size_range=(1.0, 0.5))


def test_crop_windows_cut_exact_pixels_and_zero_outside():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    windows = {"image": np.array([0, 0]), "window": np.array([[10, 5, 30, 25], [70, 50, 90, 70]], np.float32),
               "label": np.array([0, 1]), "scale": np.ones(2), "box": np.zeros((2, 4))}
    crops = crop_windows([image], windows, 20)
    np.testing.assert_array_equal(crops[0], image[5:25, 10:30])
    np.testing.assert_array_equal(crops[1, :10, :10], image[50:60, 70:80])
    assert np.all(crops[1, 10:] == 0) and np.all(crops[1, :, 10:] == 0)


# ---------------------------------------------------------------- dense predictions


def test_dense_predictions_map_windows_and_boxes_back_to_the_image(system):
    model, _, _ = system
    image = np.zeros((240, 300, 3), np.uint8)
    out = overfeat.dense_predictions(model, [image], scales=(1.0, 2.0))[0]
    assert [p["scale"] for p in out] == [(1.0, 1.0), (2.0, 2.0)]
    for prediction, s in zip(out, (1.0, 2.0)):
        h, w = prediction["scores"].shape[:2]
        # closed form: the accurate network's window (i, j) starts at 36 (i, j) pixels of the
        # scaled image and is 221 wide
        for i in range(h):
            for j in range(w):
                expected = np.array([36 * j, 36 * i, 36 * j + 221, 36 * i + 221]) / s
                np.testing.assert_allclose(prediction["windows"][i, j], expected, rtol=1e-5)
                cx, cy = expected[[0, 2]].mean(), expected[[1, 3]].mean()
                side = 221 / s
                box = [cx - 0.25 * side, cy - 0.2 * side, cx + 0.25 * side, cy + 0.3 * side]
                for c in range(3):
                    np.testing.assert_allclose(prediction["boxes"][i, j, c], box, rtol=1e-5)
        np.testing.assert_allclose(prediction["scores"][..., :], np.broadcast_to([0.6, 0.1, 0.05, 0.25],
                                   prediction["scores"].shape), atol=1e-6)
    # ((300 - 7) / 2 + 1) -> 147 -> pool 49 -> conv2 43 -> pool 21 -> pool 7 -> fc 3 columns
    assert out[0]["scores"].shape[:2] == (overfeat.output_size(MODEL, 240), overfeat.output_size(MODEL, 300))
    flipped = overfeat.dense_predictions(model, [image], scales=(1.0,), flip=True)[0][0]
    # the mirrored image's windows, mirrored back: x -> 300 - x (not the unmirrored grid: 300 is
    # not 221 + 36 k, the grid leaves 7 pixels on the right)
    plain = out[0]["windows"]
    mirrored = np.stack([300 - plain[..., 2], plain[..., 1], 300 - plain[..., 0], plain[..., 3]], -1)
    np.testing.assert_allclose(flipped["windows"], mirrored[:, ::-1], atol=1e-4)
    offset = overfeat.dense_predictions(model, [image], scales=(1.0,), offset_pooling=True)[0][0]
    steps = np.diff(offset["windows"][0, :, 0])
    np.testing.assert_allclose(steps, 12.0)


def test_localize_and_detect_on_a_constant_system(system):
    model, _, _ = system
    image = np.zeros((240, 300, 3), np.uint8)
    windows = overfeat.dense_predictions(model, [image])[0][0]["windows"].reshape(-1, 4)
    found = overfeat.localize(model, [image], top_k=2, background_class=3, merge_threshold=1e-9)[0]
    # top-1 class (0, p = 0.6) everywhere; no two distinct windows merge at a tiny threshold
    assert set(found["classes"].tolist()) == {0} and len(found["boxes"]) == 2
    np.testing.assert_allclose(found["scores"], 0.6, atol=1e-6)
    # one guess per class: the two classes C_s (0, p = 0.6 and 3 the background excluded -> 1, 0.1)
    distinct = overfeat.localize(model, [image], top_k=5, background_class=3, merge_threshold=1e-9,
                                 distinct_classes=True)[0]
    assert distinct["classes"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(distinct["scores"], [0.6, 0.1, 0.05], atol=1e-6)
    detected = overfeat.detect(model, [image], score_threshold=0.08, merge_threshold=1e-9,
                               background_class=-1)[0]
    # classes 0 (0.6) and 1 (0.1) pass 0.08, class 2 (0.05) does not; the background never counts
    assert sorted(set(detected["classes"].tolist())) == [0, 1]
    assert len(detected["boxes"]) == 2 * len(windows)
    merged = overfeat.detect(model, [image], score_threshold=0.5, merge_threshold=1e9)[0]
    # everything of class 0 merges into one box: the mean of the boxes, the sum of the scores
    side = 221.0
    centres = np.stack([(windows[:, 0] + windows[:, 2]) / 2, (windows[:, 1] + windows[:, 3]) / 2], 1)
    boxes = np.concatenate([centres - [0.25 * side, 0.2 * side], centres + [0.25 * side, 0.3 * side]], 1)
    assert len(merged["boxes"]) == 1
    np.testing.assert_allclose(merged["boxes"][0], boxes.mean(0), rtol=1e-5)
    assert merged["scores"][0] == pytest.approx(0.6 * len(windows), rel=1e-5)


def test_box_size_range_keeps_the_regressors_domain(system):
    """The constant regressor's boxes are 0.5 x 0.5 of their 221-px window (longer side 0.5):
    kept by (0.3, 0.6), all dropped by (0.6, 1.0), at every scale."""
    model, _, _ = system
    image = np.zeros((240, 300, 3), np.uint8)
    kept = overfeat.detect(model, [image], scales=(1.0, 2.0), score_threshold=0.5, merge_threshold=1e-9,
                           box_size_range=(0.3, 0.6))[0]
    windows = sum(p["windows"].shape[0] * p["windows"].shape[1]
                  for p in overfeat.dense_predictions(model, [image], scales=(1.0, 2.0))[0])
    assert len(kept["boxes"]) == windows
    dropped = overfeat.detect(model, [image], scales=(1.0, 2.0), score_threshold=0.5, box_size_range=(0.6, 1.0))[0]
    assert len(dropped["boxes"]) == 0
    guesses = overfeat.localize(model, [image], top_k=3, background_class=3, box_size_range=(0.6, 1.0))[0]
    assert len(guesses["boxes"]) == 0
    with pytest.raises(ValueError, match="box_size_range"):
        overfeat.detect(model, [image], box_size_range=(1.0, 0.5))


def test_bad_inputs_of_the_pipeline(system):
    model, classifier, _ = system
    image = np.zeros((240, 300, 3), np.uint8)
    with pytest.raises(ValueError, match="too small"):
        overfeat.dense_predictions(model, [np.zeros((100, 300, 3), np.uint8)])
    with pytest.raises(ValueError, match="empty"):
        overfeat.detect(model, [])
    with pytest.raises(ValueError, match="box regressor"):
        overfeat.detect(classifier, [image])
    with pytest.raises(ValueError, match="background"):
        overfeat.detect(model, [image], background_class=0)
    with pytest.raises(ValueError, match="score_threshold"):
        overfeat.detect(model, [image], score_threshold=2)
    with pytest.raises(ValueError, match="top_k"):
        overfeat.localize(model, [image], top_k=0)
    other = keras_apps.build(MODEL, classes=4)
    with pytest.raises(ValueError, match="regression_head"):
        overfeat.overfeat_system(other, overfeat.regression_head(classifier, classes=3))


def test_save_and_load_system(system, tmp_path):
    model, _, _ = system
    path = overfeat.save_system(model, tmp_path / "system.keras", class_names=["RBC", "WBC", "Platelets"],
                                scales=(1.0, 2.0), score_threshold=0.3, merge_threshold=0.5)
    loaded, meta = overfeat.load_system(path)
    assert meta["class_names"] == ["RBC", "WBC", "Platelets"] and meta["background"]
    image = np.random.default_rng(0).integers(0, 256, (240, 300, 3)).astype(np.uint8)
    a = overfeat.dense_predictions(model, [image])[0][0]
    b = overfeat.dense_predictions(loaded, [image])[0][0]
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-5)
    with pytest.raises(FileExistsError, match="overwrite"):
        overfeat.save_system(model, path, class_names=["RBC", "WBC", "Platelets"])
    with pytest.raises(ValueError, match="class names"):
        overfeat.save_system(model, tmp_path / "x.keras", class_names=["RBC"])
    with pytest.raises(ValueError, match=".keras"):
        overfeat.save_system(model, tmp_path / "x.h5", class_names=["RBC", "WBC", "Platelets"])
    assert json.loads(path.with_suffix(".json").read_text())["scales"] == [1.0, 2.0]
    assert not list(pathlib.Path(tmp_path).glob(".*"))  # no temporary files left


@pytest.mark.slow
def test_fit_runs_on_the_tfds_voc_too(tmp_path):
    """The same pipeline on tfds PASCAL VOC (mocked: three 240x300 images): 20 classes +
    background, a system saved with its settings, detections in the images' pixels."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from tests.test_data_voc import _tfds_voc_examples

    with tfds.testing.mock_data(as_dataset_fn=_tfds_voc_examples):
        result = overfeat.fit(MODEL, "voc", download=True, scales=(1.0,), epochs=1, regressor_epochs=1,
                              batch_size=8, output_dir=tmp_path / "voc")
    assert result.system.output["scores"].shape[-1] == 21 and result.system.output["boxes"].shape[-1] == 80
    assert result.class_names[14] == "person" and result.windows["train"]["person"] >= 1
    loaded, meta = overfeat.load_system(tmp_path / "voc" / "system.keras")
    assert meta["class_names"] == result.class_names and "score_threshold" in meta
    found = overfeat.detect(loaded, [np.zeros((240, 300, 3), np.uint8)], score_threshold=0.0,
                            preprocess=lambda x: x / 255.0)[0]
    assert found["boxes"].shape[1] == 4 and np.all(found["classes"] < 20)
