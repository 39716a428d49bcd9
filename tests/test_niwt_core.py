"""NIWT steps 1-3 against independent references: finite differences, a planted linear map,
planted unseen weights, scipy's Spearman correlation."""

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from keras_apps import export
from keras_apps.niwt.importance import (
    ImportanceMapping,
    class_importance,
    fit_importance_mapping,
    neuron_importance,
    rank_correlation,
)
from keras_apps.niwt.models import IMPORTANCE_LAYER, vgg_niwt_cifar
from keras_apps.niwt.transfer import add_unseen_classes, extend_classifier


def _tiny(classes=3, seed=0):
    """Smooth (tanh) conv net, so central differences are accurate."""
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((6, 6, 2), name="image")
    x = keras.layers.Conv2D(4, 3, activation="tanh", name="conv")(x)
    x = keras.layers.Conv2D(5, 3, activation="tanh", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(6, activation="tanh", name="fc")(x)
    x = keras.layers.Dense(classes, name="predictions")(x)
    return keras.Model(inputs, keras.layers.Activation("softmax", name="predictions_activation")(x))


def test_importance_matches_finite_differences():
    model = _tiny()
    images = np.random.RandomState(0).normal(size=(3, 6, 6, 2)).astype("float32")
    ids = np.array([0, 2, 1])
    got = neuron_importance(model, "conv", images, ids, batch_size=2)
    assert got.shape == (3, 4) and got.dtype == np.float32

    to_conv = keras.Model(model.inputs, model.get_layer("conv").output)
    head = keras.Model(model.get_layer("conv").output, model.get_layer("predictions").output)
    acts = to_conv.predict(images, verbose=0).astype("float64")
    eps = 1e-2
    positions = list(np.ndindex(*acts.shape[1:]))
    perturbed = []
    for n in range(3):
        for i, j, c in positions:
            for sign in (1, -1):
                moved = acts[n].copy()
                moved[i, j, c] += sign * eps
                perturbed.append(moved)
    scores = head.predict(np.stack(perturbed).astype("float32"), verbose=0, batch_size=1024)
    scores = scores.reshape(3, len(positions), 2, -1)
    expected = np.zeros((3, 4))
    for n in range(3):
        for k, (i, j, c) in enumerate(positions):
            expected[n, c] += (scores[n, k, 0, ids[n]] - scores[n, k, 1, ids[n]]) / (2 * eps)
    expected /= acts.shape[1] * acts.shape[2]
    np.testing.assert_allclose(got, expected, rtol=2e-2, atol=2e-4)


def test_importance_under_tf_function_and_dense_layer():
    model = _tiny()
    images = np.random.RandomState(1).normal(size=(4, 6, 6, 2)).astype("float32")
    dense = neuron_importance(model, "fc", images, 1)  # no spatial axis: the gradient itself
    kernel = model.get_layer("predictions").kernel.numpy()
    np.testing.assert_allclose(dense, np.tile(kernel[:, 1], (4, 1)), rtol=1e-5, atol=1e-6)
    importance, acts = neuron_importance(model, "conv2", tf.data.Dataset.from_tensor_slices(
        (images, np.zeros(4))).batch(3), [0, 1, 2, 0], return_activations=True)
    assert importance.shape == (4, 5) and acts.shape == (4, 2, 2, 5)


def test_class_importance_and_rank_correlation():
    imp = np.array([[1, 2], [3, 4], [5, 6]], "float32")
    classes, means = class_importance(imp, [2, 0, 2])
    assert classes.tolist() == [0, 2]
    np.testing.assert_allclose(means, [[3, 4], [3, 4]])
    rng = np.random.RandomState(0)
    a, b = rng.normal(size=(4, 30)), rng.normal(size=(4, 30))
    b[1, :5] = b[1, 0]  # ties
    expected = [scipy.stats.spearmanr(x, y).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(rank_correlation(a, b), expected, atol=1e-12)


def test_mapping_recovers_a_planted_linear_map(tmp_path):
    rng = np.random.RandomState(0)
    attributes = rng.rand(24, 6).astype("float32")
    planted = rng.normal(size=(6, 10)).astype("float32")
    ids = np.repeat(np.arange(20), 4)  # classes 20..23 never seen by the fit
    scale = rng.uniform(0.5, 2.0, size=(len(ids), 1))  # cosine ignores each instance's scale
    importances = (attributes[ids] @ planted) * scale + rng.normal(0, 0.01, (len(ids), 10))
    mapping = fit_importance_mapping(attributes, importances, ids, validation_classes=[18, 19],
                                     learning_rate=0.05, layer="conv", attribute_names=list("abcdef"))
    assert mapping.validation_classes == [18, 19] and mapping.best_step is not None
    truth, predicted = attributes[20:] @ planted, mapping.predict(attributes[20:])
    cosine = (truth * predicted).sum(1) / np.linalg.norm(truth, axis=1) / np.linalg.norm(predicted, axis=1)
    assert cosine.min() > 0.99, cosine
    correlations = [h["validation_rank_correlation"] for h in mapping.history]
    assert max(correlations) > 0.9
    path = mapping.save(tmp_path / "mapping.npz")
    loaded = ImportanceMapping.load(path)
    np.testing.assert_array_equal(loaded.weights, mapping.weights)
    assert loaded.layer == "conv" and loaded.attribute_names == tuple("abcdef")
    with pytest.raises(FileExistsError, match="mapping.npz"):
        mapping.save(path)


def test_attribute_scores_rank_the_attribute_whose_direction_the_importance_follows():
    weights = np.eye(3, 5, dtype="float32") * [[1], [2], [3]]
    mapping = ImportanceMapping(weights)
    scores = mapping.attribute_scores(np.array([0.1, 0, 5, 0, 0], "float32"))
    assert np.argmax(scores) == 2 and scores.shape == (3,)
    np.testing.assert_allclose(scores[2], 5 / np.hypot(0.1, 5), rtol=1e-6)


def test_mapping_bad_input():
    with pytest.raises(ValueError, match="3 attribute rows for 2 importance rows"):
        fit_importance_mapping(np.ones((3, 2)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="class id 5 has no row"):
        fit_importance_mapping(np.ones((3, 2)), np.ones((2, 4)), [0, 5])
    with pytest.raises(ValueError, match="validation classes \\[7\\]"):
        fit_importance_mapping(np.ones((3, 2)), np.ones((3, 4)), [0, 1, 2], validation_classes=[7])
    with pytest.raises(ValueError, match="takes 2 attributes"):
        ImportanceMapping(np.ones((2, 4))).predict(np.ones((1, 3)))


def _planted_case():
    """A seen model, and the importance a planted unseen weight w* produces at conv2."""
    model = _tiny(classes=3, seed=1)
    images = np.random.RandomState(2).normal(size=(16, 6, 6, 2)).astype("float32")
    planted = np.random.RandomState(3).normal(size=(6, 1)).astype("float32")
    reference = extend_classifier(model, planted, np.zeros(1))
    target = neuron_importance(reference, "conv2", images, 3).mean(axis=0)
    mapping = ImportanceMapping(target[None], layer="conv2")  # attribute [1] -> the target importance
    return model, images, planted[:, 0], mapping


def test_unseen_weights_reach_the_planted_direction():
    model, images, planted, mapping = _planted_case()
    extended, history = add_unseen_classes(model, [[1.0]], mapping, images, lam=0.0, learning_rate=0.02,
                                           batch_size=16, max_steps=1500, return_history=True)
    assert extended.output.shape[-1] == 4
    w = extended.get_layer("predictions").kernel.numpy()[:, 3]
    assert w @ planted / np.linalg.norm(w) / np.linalg.norm(planted) > 0.95
    # the seen classes keep their weights; the network itself is unchanged
    np.testing.assert_array_equal(extended.get_layer("predictions").kernel.numpy()[:, :3],
                                  model.get_layer("predictions").kernel.numpy())
    np.testing.assert_array_equal(extended.get_layer("fc").kernel.numpy(), model.get_layer("fc").kernel.numpy())
    assert history["steps"][0] < 1500  # stopped by the < 1% over 40 iterations rule
    observed = neuron_importance(extended, "conv2", images, 3).mean(axis=0)
    target = mapping.predict([1.0])
    assert observed @ target / np.linalg.norm(observed) / np.linalg.norm(target) > 0.99


def test_lambda_pulls_unseen_weights_to_the_mean_seen_weight():
    model, images, _, mapping = _planted_case()
    w_bar = model.get_layer("predictions").kernel.numpy().mean(axis=1)
    distances = []
    for lam in (0.0, 1.0, 100.0):
        extended = add_unseen_classes(model, [[1.0]], mapping, images, lam=lam, learning_rate=0.02,
                                      batch_size=16, max_steps=400)
        distances.append(np.linalg.norm(extended.get_layer("predictions").kernel.numpy()[:, 3] - w_bar))
    assert distances[0] > distances[1] > distances[2]
    assert distances[2] < 0.05


def test_global_ids_order_the_columns_and_the_model_exports(tmp_path):
    model, images, planted, mapping = _planted_case()
    extended = add_unseen_classes(model, [[1.0]], mapping, images, lam=1e-3, max_steps=50,
                                  seen_ids=[0, 1, 3], unseen_ids=[2])
    kernel = extended.get_layer("predictions").kernel.numpy()
    seen_kernel = model.get_layer("predictions").kernel.numpy()
    np.testing.assert_array_equal(kernel[:, [0, 1, 3]], seen_kernel)
    reloaded = keras.saving.load_model(_save(extended, tmp_path / "x.keras"), safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), extended.predict(images, verbose=0), atol=1e-6)
    for format in ("saved_model", "tflite"):
        result = export.export_model(extended, format, root=tmp_path, sample=images[:4])
        assert result.max_abs_diff <= 1e-4


def _save(model, path):
    model.save(path)
    return path


def test_transfer_bad_input():
    model, images, _, mapping = _planted_case()
    with pytest.raises(ValueError, match="`lam` must be a number >= 0, got -1"):
        add_unseen_classes(model, [[1.0]], mapping, images, lam=-1)
    with pytest.raises(ValueError, match="takes 1 attributes"):
        add_unseen_classes(model, [[1.0, 2.0]], mapping, images)
    with pytest.raises(ValueError, match=r"class ids \[1\] are both seen and unseen"):
        add_unseen_classes(model, [[1.0]], mapping, images, seen_ids=[0, 1, 2], unseen_ids=[1])
    with pytest.raises(ValueError, match="non-empty batch"):
        add_unseen_classes(model, [[1.0]], mapping, images[:0])
    with pytest.raises(ValueError, match="'nope': model .* has no layer"):
        neuron_importance(model, "nope", images, 0)
    with pytest.raises(ValueError, match="predicts 20 importances but layer 'conv' has 4 channels"):
        add_unseen_classes(model, [[1.0]], ImportanceMapping(np.ones((1, 20)), layer="conv"), images)
    with pytest.raises(ValueError, match="class id 7 is out of range: the model scores 3 classes"):
        neuron_importance(model, "conv", images, 7)


def test_backbone_layers():
    model = vgg_niwt_cifar(7, widths=(4, 4, 8), fc_units=8)
    assert model.get_layer(IMPORTANCE_LAYER).output.shape[1:] == (8, 8, 8)
    assert model.get_layer("predictions").units == 7 and model.output.shape[-1] == 7
    with pytest.raises(ValueError, match="`classes` must be a positive integer, got 0"):
        vgg_niwt_cifar(0)
