"""Analyses of developmental networks: layer features, t-SNE, top activating images, learning
curves of old / new / combined units.

References are independent of the code: a naive loop for the top-k ranking (with ties), a
numpy forward of tiny models with known weights, planted data where one group of units
carries the label and the other is noise, solid-colour images read back from the grid PNG."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from threadpoolctl import threadpool_limits

import keras
from keras_apps.growth import analysis


def _dense_model():
    """Input(4) -> Dense(3, relu, "hidden") -> Dense(2, "out") with fixed weights."""
    inputs = keras.Input((4,), name="pixels")
    hidden = keras.layers.Dense(3, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(2, name="out")(hidden)
    model = keras.Model(inputs, outputs, name="tiny")
    w1 = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0], [2.0, 0.5, 0.0], [-1.0, 0.0, 1.5]], np.float32)
    b1 = np.array([0.1, -0.2, 0.3], np.float32)
    w2 = np.array([[1.0, 0.0], [-1.0, 2.0], [0.5, 0.5]], np.float32)
    b2 = np.array([0.0, 1.0], np.float32)
    model.get_layer("hidden").set_weights([w1, b1])
    model.get_layer("out").set_weights([w2, b2])
    return model, (w1, b1, w2, b2)


def _naive_top(features, k):
    """Per unit: image indices sorted by decreasing activation, lower index first on ties."""
    rows = []
    for unit in range(features.shape[1]):
        order = sorted(range(features.shape[0]), key=lambda i: (-features[i, unit], i))
        rows.append(order[:k])
    return np.array(rows)


# -- layer_features ------------------------------------------------------------------------


def test_layer_features_match_numpy_forward():
    model, (w1, b1, w2, b2) = _dense_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=10).astype(np.int32)
    hidden = np.maximum(x @ w1 + b1, 0.0)
    out = hidden @ w2 + b2

    features, labels = analysis.layer_features(model, "hidden", (x, y), batch_size=3)
    np.testing.assert_allclose(features, hidden, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, y)

    features, labels = analysis.layer_features(model, "out", (x, y), limit=7, batch_size=4)
    assert features.shape == (7, 2)
    np.testing.assert_allclose(features, out[:7], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, y[:7])

    batched = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    unbatched = tf.data.Dataset.from_tensor_slices((x, y))
    for data in (batched, unbatched):
        features, labels = analysis.layer_features(model, "hidden", data, limit=9, batch_size=2)
        np.testing.assert_allclose(features, hidden[:9], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(labels, y[:9])


def test_layer_features_average_conv_maps_over_space():
    inputs = keras.Input((5, 5, 2))
    conv = keras.layers.Conv2D(3, 1, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalMaxPooling2D()(conv))
    kernel = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3) - 2.5
    bias = np.array([1.0, -1.0, 0.5], np.float32)
    model.get_layer("conv").set_weights([kernel, bias])
    x = np.random.default_rng(1).normal(size=(6, 5, 5, 2)).astype(np.float32)
    expected = np.zeros((6, 3))
    for n in range(6):
        for i in range(5):
            for j in range(5):
                expected[n] += x[n, i, j] @ kernel[0, 0] + bias
    expected /= 25.0
    features, _ = analysis.layer_features(model, "conv", (x, np.zeros(6, np.int64)))
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)


def test_layer_features_bad_input():
    model, _ = _dense_model()
    x, y = np.zeros((4, 4), np.float32), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=r"no layer 'hiden'.*Closest layer names: hidden"):
        analysis.layer_features(model, "hiden", (x, y))
    with pytest.raises(ValueError, match="empty"):
        analysis.layer_features(model, "hidden", (x[:0], y[:0]))
    with pytest.raises(ValueError, match="empty"):
        analysis.layer_features(model, "hidden", tf.data.Dataset.from_tensor_slices((x, y)).take(0))
    with pytest.raises(ValueError, match="same number of rows"):
        analysis.layer_features(model, "hidden", (x, y[:3]))
    with pytest.raises(ValueError, match="`limit` must be None or a positive integer, got 0"):
        analysis.layer_features(model, "hidden", (x, y), limit=0)
    with pytest.raises(ValueError, match="integer class ids"):
        analysis.layer_features(model, "hidden", (x, np.eye(4)))
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        analysis.layer_features(model, "hidden", x)


# -- top activating images -----------------------------------------------------------------


def test_top_activating_matches_naive_loop_with_ties():
    rng = np.random.default_rng(2)
    features = rng.integers(0, 4, size=(17, 6)).astype(np.float32)  # many ties
    features[:, 5] = 1.0  # all tied: the first k images
    for k in (1, 5, 17):
        top = analysis.top_activating(features, k)
        assert top.shape == (6, k)
        np.testing.assert_array_equal(top, _naive_top(features, k))
    np.testing.assert_array_equal(analysis.top_activating(features, 4)[5], [0, 1, 2, 3])


def test_top_activating_bad_k():
    features = np.ones((3, 2))
    for k in (0, 4, True, 2.0):
        with pytest.raises(ValueError, match="`k`"):
            analysis.top_activating(features, k)
    with pytest.raises(ValueError, match="non-finite"):
        analysis.top_activating(np.array([[1.0], [np.nan]]), 1)


def test_top_activating_grid_rows_are_the_units_top_images(tmp_path):
    rng = np.random.default_rng(3)
    n, k = 9, 3
    colours = rng.integers(0, 256, size=(n, 3)).astype(np.uint8)
    images = np.broadcast_to(colours[:, None, None, :], (n, 8, 6, 3)).copy()  # solid, non-square
    features = rng.normal(size=(n, 6))
    units = [4, 0, 5]
    path = analysis.top_activating_grid(
        images, features, units, tmp_path / "grid.png", k=k, row_labels=["fc7 #4", "fc7 #0", "fc7+ #0"]
    )
    grid = np.asarray(Image.open(path).convert("RGB"))
    assert grid.shape[:2] == (128 * len(units), 192 + 128 * k)
    for r, unit in enumerate(units):
        top = _naive_top(features[:, [unit]], k)[0]
        for c in range(k):
            centre = grid[128 * r + 64, 192 + 128 * c + 64]
            np.testing.assert_array_equal(centre, colours[top[c]])

    titled = analysis.top_activating_grid(
        images.astype(np.float32), features, [1, 2, 3, 4, 5], tmp_path / "titled.png", k=2, title="old vs new"
    )
    assert Image.open(titled).size == (192 + 128 * 2, 48 + 128 * 5)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_top_activating_grid_bad_input(tmp_path):
    images = np.zeros((4, 8, 8, 3), np.uint8)
    features = np.ones((4, 3))
    out = tmp_path / "g.png"
    with pytest.raises(ValueError, match=r"out-of-range unit indices \[3\]"):
        analysis.top_activating_grid(images, features, [0, 3], out, k=2)
    with pytest.raises(ValueError, match="is empty"):
        analysis.top_activating_grid(images, features, [], out)
    with pytest.raises(ValueError, match="`row_labels` has 1 labels for 2 units"):
        analysis.top_activating_grid(images, features, [0, 1], out, k=2, row_labels=["a"])
    with pytest.raises(ValueError, match=r"\[0, 255\].*denormalize"):
        analysis.top_activating_grid(images.astype(np.float32) - 1.0, features, [0], out, k=1)
    with pytest.raises(ValueError, match="has 3 images but the features have 4 rows"):
        analysis.top_activating_grid(images[:3], features, [0], out, k=1)
    with pytest.raises(ValueError, match="`k` must be at most the number of images, 4"):
        analysis.top_activating_grid(images, features, [0], out, k=5)
    assert not out.exists()


# -- t-SNE ---------------------------------------------------------------------------------


@pytest.fixture
def one_openmp_thread():
    """t-SNE's OpenMP threads spin against each other on a loaded 2-core machine (60 points:
    ~7 s with two threads, ~0.5 s with one)."""
    with threadpool_limits(1, user_api="openmp"):
        yield


def test_tsne_plot_writes_png_and_embeds_every_point(tmp_path, one_openmp_thread):
    rng = np.random.default_rng(4)
    centres = rng.normal(scale=8.0, size=(3, 5))
    labels = np.repeat(np.arange(3), 20)
    features = centres[labels] + rng.normal(size=(60, 5))
    embedding, path = analysis.tsne_plot(
        features, labels, tmp_path / "tsne.png", class_names=["a", "b", "c"], title="fc7"
    )
    assert embedding.shape == (60, 2) and np.all(np.isfinite(embedding))
    assert Image.open(path).format == "PNG"
    # well separated clusters stay apart: each point's nearest neighbour shares its class
    distances = np.linalg.norm(embedding[:, None] - embedding[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert np.mean(labels[distances.argmin(axis=1)] == labels) > 0.95

    embedding, _ = analysis.tsne_plot(features, labels, tmp_path / "sub.png", max_points=25)
    assert embedding.shape == (25, 2)
    embedding, _ = analysis.tsne_plot(features[:5], labels[:5], tmp_path / "small.png")  # perplexity < 5/3
    assert embedding.shape == (5, 2)


def test_tsne_plot_bad_input(tmp_path):
    features, labels = np.ones((6, 3)), np.array([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="`class_names` has 2 names but the labels go up to 2"):
        analysis.tsne_plot(features, labels, tmp_path / "t.png", class_names=["a", "b"])
    with pytest.raises(ValueError, match="has 5 entries but the features have 6 rows"):
        analysis.tsne_plot(features, labels[:5], tmp_path / "t.png")
    with pytest.raises(ValueError, match="`perplexity` must be a positive number"):
        analysis.tsne_plot(features, labels, tmp_path / "t.png", perplexity=0)


# -- learning curves of unit groups --------------------------------------------------------


def _planted(rng, n, classes=3, old=6, new=4):
    """Features [n, old + new]: the last ``new`` units are class centres plus noise, the
    first ``old`` are noise independent of the label."""
    labels = rng.integers(0, classes, size=n)
    centres = np.eye(classes, new) * 6.0
    features = np.concatenate([rng.normal(size=(n, old)), centres[labels] + rng.normal(size=(n, new))], axis=1)
    return features.astype(np.float32), labels


def test_unit_groups_accuracy_planted_label_in_new_units():
    rng = np.random.default_rng(5)
    train_x, train_y = _planted(rng, 300)
    eval_x, eval_y = _planted(rng, 300)
    groups = {"old": np.arange(6), "new": np.arange(6, 10), "combined": np.arange(10)}
    accuracy = analysis.unit_groups_accuracy(train_x, train_y, eval_x, eval_y, groups)
    assert list(accuracy) == ["old", "new", "combined"]
    assert accuracy["new"] > 0.97 and accuracy["combined"] > 0.95
    # chance is 1/3; 300 eval points give a binomial standard deviation of ~0.027
    assert abs(accuracy["old"] - 1 / 3) < 0.12


def test_unit_groups_accuracy_bad_groups():
    rng = np.random.default_rng(6)
    x, y = _planted(rng, 30)
    for groups, message in [
        ({"new": np.arange(8, 11)}, r"out-of-range unit indices \[10\]"),
        ({"new": [-1, 2]}, r"out-of-range unit indices \[-1\]"),
        ({"old": np.arange(0)}, "Group 'old' is empty"),
        ({"old": np.ones(10, bool)}, "boolean mask"),
        ({"old": [1, 1]}, r"repeats unit indices \[1\]"),
        ({}, "non-empty mapping"),
    ]:
        with pytest.raises(ValueError, match=message):
            analysis.unit_groups_accuracy(x, y, x, y, groups)
    with pytest.raises(ValueError, match="`eval_labels` has 29 entries but the features have 30 rows"):
        analysis.unit_groups_accuracy(x, y, x, y[:29], {"all": np.arange(10)})
    with pytest.raises(ValueError, match="10 units but `eval_features` have 9"):
        analysis.unit_groups_accuracy(x, y, x[:, :9], y, {"all": np.arange(9)})
    with pytest.raises(ValueError, match="single class"):
        analysis.unit_groups_accuracy(x, np.zeros(30, np.int64), x, y, {"all": np.arange(10)})


def test_unit_learning_curves_callback_records_every_epoch(tmp_path):
    rng = np.random.default_rng(7)
    train_x, train_y = _planted(rng, 96)
    eval_x, eval_y = _planted(rng, 64)
    inputs = keras.Input((10,))
    fc = keras.layers.Dense(6, activation="relu", name="fc")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(fc))
    model.compile("sgd", "sparse_categorical_crossentropy")
    groups = {"old": [0, 1, 2], "new": [3, 4, 5], "combined": np.arange(6)}
    curves = analysis.UnitLearningCurves(
        "fc", groups, (train_x, train_y), tf.data.Dataset.from_tensor_slices((eval_x, eval_y)).batch(16), limit=48
    )
    model.fit(train_x, train_y, epochs=2, batch_size=32, verbose=0, callbacks=[curves])
    assert curves.epochs == [0, 1, 2]
    assert set(curves.curves) == set(groups)
    for points in curves.curves.values():
        assert len(points) == 3 and all(0.0 <= p <= 1.0 for p in points)
    model.fit(train_x, train_y, epochs=1, batch_size=32, verbose=0, callbacks=[curves])
    assert curves.epochs == [0, 1, 2, 3] and all(len(p) == 4 for p in curves.curves.values())

    path = analysis.learning_curves_plot(curves.curves, tmp_path / "curves.png", epochs=curves.epochs)
    assert Image.open(path).format == "PNG"


def test_unit_learning_curves_bad_input(tmp_path):
    data = (np.zeros((4, 10), np.float32), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="Group 'new' is empty"):
        analysis.UnitLearningCurves("fc", {"new": []}, data, data)
    with pytest.raises(TypeError, match="layer name"):
        analysis.UnitLearningCurves(3, {"new": [0]}, data, data)
    with pytest.raises(ValueError, match="same length"):
        analysis.learning_curves_plot({"old": [0.1, 0.2], "new": [0.3]}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="`epochs` must be 2 numbers"):
        analysis.learning_curves_plot({"old": [0.1, 0.2]}, tmp_path / "c.png", epochs=[0])
    assert not (tmp_path / "c.png").exists()
