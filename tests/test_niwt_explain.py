"""NIWT explanations: Grad-CAM against a numpy computation on a model whose gradient is closed
form, localisation of planted class patterns, textual explanations, the written figure."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from keras_apps.niwt.explain import explain, grad_cam, overlay, textual_explanation


def _head(x, classes, name):
    """GAP -> "predictions" Dense -> softmax: o_c = sum_n W[n, c] mean_ij A^n_ij + b_c, so
    d o_c / d A^n_ij = W[n, c] / (h w) exactly."""
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(classes, name="predictions")(x)
    return keras.layers.Activation("softmax", name="predictions_activation")(x)


def closed_form_model():
    """Conv(3x3, same) -> ReLU -> 2x2 max pool ("pool", 4x4x3) -> GAP -> Dense(4)."""
    inputs = keras.Input((8, 8, 2), name="image")
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    x = keras.layers.ReLU(name="conv_relu")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    model = keras.Model(inputs, _head(x, 4, "closed"), name="closed_form")
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 2, 3)).astype("float32")
    bias = rng.normal(size=3).astype("float32") * 0.1
    dense = rng.normal(size=(3, 4)).astype("float32")
    dense[:, 2] = -np.abs(dense[:, 2]) - 0.1  # class 2: every alpha < 0 while A >= 0 -> an all-zero map
    model.get_layer("conv").set_weights([kernel, bias])
    model.get_layer("predictions").set_weights([dense, np.zeros(4, "float32")])
    return model, kernel, bias, dense


def numpy_pool_activations(images, kernel, bias):
    """The "pool" output by loops: zero-padded 3x3 correlation, ReLU, 2x2 max pooling."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = np.zeros((n, h, w, kernel.shape[-1]))
    for i in range(h):
        for j in range(w):
            patch = padded[:, i:i + 3, j:j + 3, :]
            conv[:, i, j, :] = np.einsum("nabc,abck->nk", patch, kernel) + bias
    conv = np.maximum(conv, 0)
    return conv.reshape(n, h // 2, 2, w // 2, 2, -1).max(axis=(2, 4))


def test_grad_cam_matches_numpy_closed_form():
    model, kernel, bias, dense = closed_form_model()
    images = np.random.default_rng(1).normal(size=(4, 8, 8, 2)).astype("float32")
    class_ids = np.array([0, 3, 1, 2])
    A = numpy_pool_activations(images, kernel, bias)              # (4, 4, 4, 3)
    alpha = dense[:, class_ids].T / 16.0                           # W[:, c] / (h w)
    cam = np.maximum(np.einsum("nhwk,nk->nhw", A, alpha), 0)
    peak = cam.max(axis=(1, 2), keepdims=True)
    expected = np.where(peak > 0, cam / np.where(peak > 0, peak, 1), 0)
    assert peak[3].item() == 0 and peak[:3].min() > 0

    at_layer = grad_cam(model, "pool", images, class_ids, size=(4, 4))
    assert at_layer.dtype == np.float32 and at_layer.shape == (4, 4, 4)
    np.testing.assert_allclose(at_layer, expected, atol=1e-5)
    np.testing.assert_array_equal(at_layer[3], 0)                  # the all-zero map stays 0
    np.testing.assert_allclose(at_layer[:3].max(axis=(1, 2)), 1.0, atol=1e-6)

    # Default size: the input images' (8, 8), bilinear resizing of the same maps.
    full = grad_cam(model, "pool", images, class_ids)
    assert full.shape == (4, 8, 8)
    resized = tf.image.resize(expected[..., None], (8, 8), method="bilinear").numpy()[..., 0]
    np.testing.assert_allclose(full, resized, atol=1e-5)
    assert full.min() >= 0 and full.max() <= 1
    # One class for every image.
    np.testing.assert_allclose(grad_cam(model, "pool", images[:2], 1, size=(4, 4))[1],
                               grad_cam(model, "pool", images[1:2], [1], size=(4, 4))[0], atol=1e-6)


def test_grad_cam_errors():
    model, *_ = closed_form_model()
    images = np.zeros((2, 8, 8, 2), "float32")
    with pytest.raises(ValueError, match=r"'gap' outputs shape \(None, 3\)"):
        grad_cam(model, "gap", images, 0)
    with pytest.raises(ValueError, match="'nope'"):
        grad_cam(model, "nope", images, 0)
    with pytest.raises(ValueError, match="non-empty batch"):
        grad_cam(model, "pool", np.zeros((0, 8, 8, 2)), 0)
    with pytest.raises(ValueError, match="`size`"):
        grad_cam(model, "pool", images, 0, size=(0, 4))


BARS = ("horizontal bar", "vertical bar")


def bar_model():
    """16x16 grey images; "detect" has a horizontal and a vertical 3x3 line detector (each
    answers 0 at the centre of the other's bar), ReLU, 2x2 max pool ("pool", 8x8x2), GAP,
    Dense W = [[1, -1], [-1, 1]]: class 0 = "horizontal bar", class 1 = "vertical bar"."""
    inputs = keras.Input((16, 16, 1), name="image")
    x = keras.layers.Conv2D(2, 3, padding="same", name="detect")(inputs)
    x = keras.layers.ReLU(name="detect_relu")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    model = keras.Model(inputs, _head(x, 2, "bars"), name="bars")
    horizontal = np.array([[-1, -1, -1], [2, 2, 2], [-1, -1, -1]], "float32")
    kernel = np.stack([horizontal, horizontal.T], axis=-1)[:, :, None, :]
    model.get_layer("detect").set_weights([kernel, np.zeros(2, "float32")])
    model.get_layer("predictions").set_weights([np.array([[1, -1], [-1, 1]], "float32") * 4, np.zeros(2, "float32")])
    return model


def bar_image(horizontal=True, vertical=True, scale=1.0):
    image = np.zeros((16, 16, 1), "float32")
    if horizontal:
        image[3, 2:8] = scale       # row 3, columns 2..7
    if vertical:
        image[8:14, 12] = scale     # column 12, rows 8..13
    return image


def test_grad_cam_peaks_on_the_planted_class_pattern():
    model = bar_model()
    image = bar_image()
    maps = grad_cam(model, "pool", np.stack([image, image]), [0, 1])
    assert maps.shape == (2, 16, 16)
    near_horizontal = np.zeros((16, 16), bool)
    near_horizontal[1:6, 0:10] = True
    near_vertical = np.zeros((16, 16), bool)
    near_vertical[6:16, 10:15] = True
    row, col = np.unravel_index(np.argmax(maps[0]), (16, 16))
    assert near_horizontal[row, col], (row, col)
    row, col = np.unravel_index(np.argmax(maps[1]), (16, 16))
    assert near_vertical[row, col], (row, col)
    # Class-discriminative: each map lies on its own bar, not on the other one.
    assert maps[0][near_horizontal].mean() > 5 * maps[0][near_vertical].mean()
    assert maps[1][near_vertical].mean() > 5 * maps[1][near_horizontal].mean()


class PlantedMapping:
    """A hand-made inverse mapping: attribute scores = P @ importance."""

    names = ("stripes", "vertical", "edges", "round")
    P = np.array([[1, -1], [-1, 1], [0.5, 0], [0, 0]], "float64")

    def attribute_scores(self, importance):
        return self.P @ np.asarray(importance, "float64")


def test_textual_explanation_returns_the_planted_top_attributes():
    mapping = PlantedMapping()
    result = textual_explanation(mapping, np.array([1.0, -1.0]), mapping.names, top_k=3)
    # P @ [1, -1] = [2, -2, 0.5, 0] -> stripes 2, edges 0.5, round 0.
    assert [name for name, _ in result] == ["stripes", "edges", "round"]
    np.testing.assert_allclose([score for _, score in result], [2.0, 0.5, 0.0])
    result = textual_explanation(mapping, np.array([0.0, 3.0]), mapping.names, top_k=10)
    # P @ [0, 3] = [-3, 3, 0, 0]: all four, the tie (edges, round) in attribute order.
    assert result == [("vertical", 3.0), ("edges", 0.0), ("round", 0.0), ("stripes", -3.0)]
    with pytest.raises(ValueError, match="3 attribute names for the mapping's 4"):
        textual_explanation(mapping, np.array([1.0, 0.0]), mapping.names[:3])
    with pytest.raises(ValueError, match="`top_k` must be a positive integer"):
        textual_explanation(mapping, np.array([1.0, 0.0]), mapping.names, top_k=0)
    with pytest.raises(ValueError, match="attribute_scores"):
        textual_explanation(object(), np.array([1.0, 0.0]), mapping.names)


def test_overlay_blends_the_colormap():
    import matplotlib

    image = np.full((4, 6, 3), 200, np.uint8)
    heatmap = np.linspace(0, 1, 24, dtype="float32").reshape(4, 6)
    out = overlay(image, heatmap, alpha=0.25, cmap="viridis")
    colour = matplotlib.colormaps["viridis"](heatmap)[..., :3] * 255
    assert out.dtype == np.uint8 and out.shape == (4, 6, 3)
    np.testing.assert_allclose(out, np.round(0.75 * 200 + 0.25 * colour), atol=1)
    # Float pictures in [0, 1], grey pictures, a heatmap at another size.
    assert overlay(np.ones((8, 8)), np.zeros((2, 2)), alpha=0.0).tolist() == np.full((8, 8, 3), 255).tolist()
    with pytest.raises(ValueError, match="`alpha`"):
        overlay(image, heatmap, alpha=1.5)
    with pytest.raises(ValueError, match="not a matplotlib colormap"):
        overlay(image, heatmap, cmap="no-such-map")


def test_explain_writes_the_captioned_figure_and_refuses_to_overwrite(tmp_path):
    model = bar_model()
    mapping = PlantedMapping()
    # A raw 32x32 uint8 picture with only the vertical bar; the model sees it at 16x16 in [0, 1].
    raw = np.repeat(np.repeat((bar_image(horizontal=False) * 255).astype(np.uint8), 2, 0), 2, 1)
    raw = np.repeat(raw, 3, axis=-1)
    seen = []

    def preprocess(picture):
        seen.append(picture.shape)
        return picture[::2, ::2, :1].astype("float32") / 255.0

    path = tmp_path / "figs" / "vertical.png"
    result = explain(model, raw, layer="pool", mapping=mapping, attribute_names=mapping.names,
                     class_names=BARS, top_k=3, path=path, preprocess=preprocess)
    assert seen and seen[0] == (32, 32, 3)
    assert result["class_id"] == 1 and result["class_name"] == "vertical bar"   # the top-1 decision
    expected_p = float(model.predict(preprocess(raw)[None], verbose=0)[0, 1])
    assert result["probability"] == pytest.approx(expected_p, abs=1e-6)
    # importance of class 1 = W[:, 1] / 64 = [-4, 4] / 64 -> P @ it = [-8, 8, -2, 0] / 64:
    # vertical > round > edges > stripes.
    assert [name for name, _ in result["attributes"]] == ["vertical", "round", "edges"]
    np.testing.assert_allclose([score for _, score in result["attributes"]], [8 / 64, 0, -2 / 64], atol=1e-7)
    assert result["caption"] == f"vertical bar: {expected_p:.2f} — because: vertical, round, edges"
    assert result["heatmap"].shape == (32, 32) and result["heatmap"].dtype == np.float32
    row, col = np.unravel_index(np.argmax(result["heatmap"]), (32, 32))
    assert 12 <= row < 32 and 20 <= col < 30, (row, col)                    # on the vertical bar
    assert result["path"] == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["vertical.png"]  # no temporary left

    with pytest.raises(FileExistsError, match="vertical.png"):
        explain(model, raw, layer="pool", mapping=mapping, attribute_names=mapping.names,
                class_names=BARS, path=path, preprocess=preprocess)
    # A chosen decision (class 0, not the top-1), written over the old file.
    again = explain(model, raw, layer="pool", mapping=mapping, attribute_names=mapping.names,
                    class_names=BARS, class_id=0, top_k=2, path=path, overwrite=True, preprocess=preprocess)
    # class 0: importance [4, -4] / 64 -> P @ it = [8, -8, 2, 0] / 64: stripes, edges.
    assert again["class_id"] == 0 and [name for name, _ in again["attributes"]] == ["stripes", "edges"]
    assert again["caption"].startswith("horizontal bar: ") and again["caption"].endswith("because: stripes, edges")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_without_path_and_errors():
    model = bar_model()
    mapping = PlantedMapping()
    image = bar_image(vertical=False)
    result = explain(model, image, layer="pool", mapping=mapping, attribute_names=mapping.names, class_names=BARS)
    assert result["class_id"] == 0 and result["path"] is None and result["heatmap"].shape == (16, 16)
    with pytest.raises(ValueError, match="1 class names for a model with 2 outputs"):
        explain(model, image, layer="pool", mapping=mapping, attribute_names=mapping.names, class_names=BARS[:1])
    with pytest.raises(ValueError, match="`class_id` must be an int in 0..1"):
        explain(model, image, layer="pool", mapping=mapping, attribute_names=mapping.names,
                class_names=BARS, class_id=2)
    with pytest.raises(ValueError, match=r"'gap' outputs shape"):
        explain(model, image, layer="gap", mapping=mapping, attribute_names=mapping.names, class_names=BARS)
