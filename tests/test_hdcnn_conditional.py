"""keras_apps.hdcnn.conditional: conditional execution (Yan et al. 2015, "Test-time
efficiency") against references that run every component on every image and mask the
result in numpy, evidence that the skipped samples never reach a fine component, and the
SavedModel whose serving_default is the same routing (directly and through
keras_apps.export).

The routing tests use a width-0.25 NIN HD-CNN (C=10, K=3, 16x16 images) whose coarse
route is trained for a few epochs on colour-coded classes, so that the coarse probabilities
B spread over the images.
"""

import importlib.util
import json
import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.tools import saved_model_utils

import keras_apps
from keras_apps import export, registry
from keras_apps.hdcnn import Hierarchy, components, hierarchy_of
from keras_apps.hdcnn.conditional import (
    ConditionalResult,
    conditional_predict,
    export_saved_model,
)
from tests.conftest import REPO

#: One worker runs the whole module (``--dist loadgroup``): the trained model and the
#: SavedModel of the module-scoped fixtures are then made once, not once per worker.
pytestmark = pytest.mark.xdist_group("hdcnn_conditional")

C, K, SIZE = 10, 3, 16
OVERLAPPING = Hierarchy([0, 0, 0, 0, 1, 1, 1, 2, 2, 2], [[0, 1, 2, 3, 4], [3, 4, 5, 6, 7], [7, 8, 9, 0]])


def _build(convention="paper", shared_layers=True, hierarchy=None):
    return keras_apps.build(
        "hdcnn", input_shape=(SIZE, SIZE, 3), classes=C, convention=convention,
        shared_layers=shared_layers, hierarchy=hierarchy, building_block_kwargs={"width": 0.25},
    )


def _colour_data(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, n)
    centres = np.random.default_rng(99).normal(0.0, 1.0, (C, 3))
    images = centres[labels][:, None, None, :] + rng.normal(0.0, 0.7, (n, SIZE, SIZE, 3))
    return images.astype(np.float32), labels


def _train(model):
    """A few epochs of the shared layers and coarse component on the coarse labels (the
    fine components keep their random weights): enough to spread B over the images."""
    images, labels = _colour_data(192, seed=0)
    head = keras.Model(model.inputs, model.output["coarse"])
    head.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    head.fit(images, hierarchy_of(model).fine_to_coarse[labels], epochs=4, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def trained():
    """The trained paper model, and a release-convention model on the overlapping hierarchy
    sharing its shared layers and coarse component (its fine components stay random)."""
    keras.utils.set_random_seed(0)
    paper = _train(_build("paper"))
    release = _build("release", hierarchy=OVERLAPPING)
    for name in ("shared", "coarse_component"):
        release.get_layer(name).set_weights(paper.get_layer(name).get_weights())
    return {"paper": paper, "release_overlapping": release}


@pytest.fixture(scope="module")
def images():
    return _colour_data(40, seed=1)[0]


def _reference(model, images, beta):
    """Every fine component on ALL images, scattered with a loop, masked and averaged."""
    parts = components(model)
    coarse = np.asarray(model(images, training=False)["coarse"], np.float64)
    features = images if parts.shared is None else parts.shared(images, training=False)
    n = len(images)
    scattered = np.zeros((n, K, C))
    for k, (fine, members) in enumerate(zip(parts.fine, parts.scatter.coarse_sets)):
        compact = np.asarray(fine(features, training=False))
        for j, c in enumerate(members):
            scattered[:, k, c] = compact[:, j]
    cut = 0.0 if math.isinf(beta) else 1.0 / (beta * K)
    mask = coarse >= cut
    mask[np.arange(n), np.argmax(coarse, axis=1)] = True
    weighted = np.einsum("nk,nkc->nc", coarse * mask, scattered)
    if parts.averaging.renormalize:
        weighted = weighted / (coarse * mask).sum(axis=1, keepdims=True)
    return weighted, mask


def _beta_in_a_gap(coarse):
    """A beta whose threshold 1/(beta K) lies mid-way in the widest gap between sorted B
    values among the thresholds that make images run different numbers of components, so
    no B_ik sits near the threshold."""
    values = np.sort(coarse.ravel())
    best, cut = 0.0, None
    for low, high in zip(values[:-1], values[1:]):
        middle = (low + high) / 2
        if high - low > best and len(set(np.maximum((coarse >= middle).sum(axis=1), 1))) > 1:
            best, cut = high - low, middle
    assert best > 1e-3, best
    return 1.0 / (cut * K)


@pytest.mark.parametrize(
    "convention, shared_layers, hierarchy",
    [("paper", True, None), ("release", True, None), ("paper", False, None),
     ("release", True, OVERLAPPING), ("paper", True, OVERLAPPING)],
    ids=["paper", "release", "paper-no-shared", "release-overlapping", "paper-overlapping"],
)
def test_beta_inf_is_the_full_model(images, convention, shared_layers, hierarchy):
    model = _build(convention, shared_layers, hierarchy)
    expected = model(images, training=False)
    result = conditional_predict(model, images, math.inf, batch_size=16)
    assert isinstance(result, ConditionalResult)
    np.testing.assert_allclose(result.probabilities, expected["predictions"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.coarse, expected["coarse"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(result.components_run, np.full(len(images), K))
    assert result.threshold == 0.0 and result.mean_components_run == K


@pytest.mark.parametrize("which", ["paper", "release_overlapping"])
def test_small_beta_matches_the_masked_reference(trained, images, which):
    model = trained[which]
    coarse = np.asarray(model(images, training=False)["coarse"])
    beta = _beta_in_a_gap(coarse)
    expected, mask = _reference(model, images, beta)
    result = conditional_predict(model, images, beta, batch_size=16)
    counts = np.maximum((coarse >= 1.0 / (beta * K)).sum(axis=1), 1)
    np.testing.assert_array_equal(result.components_run, counts)
    np.testing.assert_array_equal(result.components_run, mask.sum(axis=1))
    assert len(set(counts.tolist())) > 1  # the chosen beta really splits the images
    np.testing.assert_allclose(result.probabilities, expected, rtol=0, atol=1e-6)
    assert result.threshold == pytest.approx(1.0 / (beta * K))


def test_beta_below_one_runs_only_the_top_coarse_component(trained, images):
    """1/(beta K) > 1 for beta < 1/K: no B_ik reaches it, each image runs argmax_k B_ik,
    and the renormalised average is that component's scattered prediction."""
    model = trained["paper"]
    parts = components(model)
    result = conditional_predict(model, images, 0.1)
    np.testing.assert_array_equal(result.components_run, np.ones(len(images)))
    features = parts.shared(images, training=False)
    top = np.argmax(result.coarse, axis=1)
    for k, members in enumerate(parts.scatter.coarse_sets):
        rows = top == k
        if not rows.any():
            continue
        compact = np.asarray(parts.fine[k](features, training=False))[rows]
        expected = np.zeros((rows.sum(), C))
        expected[:, members] = compact
        np.testing.assert_allclose(result.probabilities[rows], expected, rtol=0, atol=1e-6)


def test_skipped_images_never_reach_a_fine_component(trained, images):
    """Side channel: each fine component's call adds its batch size to a variable inside
    the routed graph, so the totals are the numbers of images it really processed."""
    source = trained["paper"]
    model = _build("paper")
    model.set_weights(source.get_weights())
    parts = components(model)
    seen = [tf.Variable(0, dtype=tf.int32) for _ in parts.fine]
    for fine, counter in zip(parts.fine, seen):
        original = fine.call

        def call(inputs, training=None, mask=None, original=original, counter=counter):
            counter.assign_add(tf.shape(inputs)[0])
            return original(inputs, training=training, mask=mask)

        fine.call = call
    coarse = np.asarray(model(images, training=False)["coarse"])
    beta = _beta_in_a_gap(coarse)
    for counter in seen:
        counter.assign(0)
    conditional_predict(model, images, beta, batch_size=16)
    _, mask = _reference(source, images, beta)
    assert [int(c.numpy()) for c in seen] == mask.sum(axis=0).tolist()
    assert sum(int(c.numpy()) for c in seen) < K * len(images)
    for counter in seen:
        counter.assign(0)
    conditional_predict(model, images[:1], 0.1)  # one image: two components get no rows
    assert sorted(int(c.numpy()) for c in seen) == [0, 0, 1]


def test_the_routed_graph_is_traced_once_per_model(trained, images):
    from keras_apps.hdcnn.conditional import _routing_function

    model = trained["paper"]
    function = _routing_function(model)
    for batch_size, beta in ((7, 1.0), (16, 2.0), (40, math.inf)):
        conditional_predict(model, images, beta, batch_size=batch_size)
    assert _routing_function(model) is function
    assert function.experimental_get_tracing_count() == 1


def test_datasets_of_images_or_pairs(trained, images):
    model = trained["paper"]
    expected = conditional_predict(model, images, 2.0)
    labels = np.zeros(len(images), np.int64)
    for dataset in (
        tf.data.Dataset.from_tensor_slices(images).batch(8),
        tf.data.Dataset.from_tensor_slices((images, labels)).batch(16),
        tf.data.Dataset.from_tensor_slices((images, labels)),  # unbatched
    ):
        got = conditional_predict(model, dataset, 2.0, batch_size=12)
        np.testing.assert_allclose(got.probabilities, expected.probabilities, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got.components_run, expected.components_run)


@pytest.mark.parametrize("beta", [0, -1.0, float("nan"), "2", None, True])
def test_bad_beta_is_one_clear_error(trained, images, beta):
    with pytest.raises(ValueError, match=rf"`beta` must be a positive number.*got {re.escape(repr(beta))}"):
        conditional_predict(trained["paper"], images, beta)


def test_bad_images_and_batch_size(trained, images):
    with pytest.raises(ValueError, match=r"`images` has shape \(40, 16, 16\); the model takes"):
        conditional_predict(trained["paper"], images[..., 0], 1.0)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer, got 0"):
        conditional_predict(trained["paper"], images, 1.0, batch_size=0)
    with pytest.raises(ValueError, match="is not an HD-CNN"):
        conditional_predict(keras_apps.build("nin_cifar", input_shape=(16, 16, 3), classes=10,
                                             width=0.25), images, 1.0)


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("conditional") / "hdcnn_conditional"
    return export_saved_model(trained["paper"], path)


def test_saved_model_signature(saved):
    signature_def = saved_model_utils.get_meta_graph_def(str(saved), "serve").signature_def[
        "serving_default"]
    assert signature_def.method_name == "tensorflow/serving/predict"
    assert sorted(signature_def.inputs) == ["beta", "image"]
    assert sorted(signature_def.outputs) == ["coarse", "components_run", "predictions"]
    assert [d.size for d in signature_def.inputs["image"].tensor_shape.dim] == [-1, SIZE, SIZE, 3]
    assert signature_def.inputs["beta"].tensor_shape.dim == []
    assert signature_def.outputs["components_run"].dtype == tf.int32.as_datatype_enum


def test_saved_model_equals_the_model_and_conditional_predict(trained, images, saved):
    model = trained["paper"]
    serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
    full = serve(image=tf.constant(images), beta=tf.constant(math.inf))
    expected = model.predict(images, verbose=0)
    for key in ("coarse", "predictions"):
        np.testing.assert_allclose(full[key].numpy(), expected[key], rtol=0, atol=1e-6)
    beta = _beta_in_a_gap(expected["coarse"])
    routed = serve(image=tf.constant(images), beta=tf.constant(beta, tf.float32))
    reference = conditional_predict(model, images, beta)
    np.testing.assert_allclose(routed["predictions"].numpy(), reference.probabilities, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(routed["components_run"].numpy(), reference.components_run)
    with pytest.raises(tf.errors.InvalidArgumentError, match="beta must be a positive number"):
        serve(image=tf.constant(images[:2]), beta=tf.constant(0.0))


def test_existing_target_is_refused_unless_overwrite(trained, saved):
    before = sorted(p.name for p in saved.parent.iterdir())
    with pytest.raises(FileExistsError, match="already exists"):
        export_saved_model(trained["paper"], saved)
    assert export_saved_model(trained["paper"], saved, overwrite=True) == saved
    assert sorted(p.name for p in saved.parent.iterdir()) == before


def test_floor_export_uses_the_registry_serving_hint(trained, images, tmp_path):
    model = trained["paper"]
    result = export.export_model(model, "saved_model", output=tmp_path / "sm")
    assert result.max_abs_diff <= 1e-6
    assert sorted(result.signature["inputs"]) == ["beta", "image"]
    assert sorted(result.signature["outputs"]) == ["coarse", "components_run", "predictions"]
    loaded = export.load_exported(result.path)
    assert loaded.defaults == {"beta": math.inf}
    expected = model.predict(images, verbose=0)
    full = loaded.run(images)
    np.testing.assert_allclose(full["predictions"], expected["predictions"], rtol=0, atol=1e-6)
    routed = loaded.run(images, beta=2.0)
    np.testing.assert_array_equal(routed["components_run"],
                                  conditional_predict(model, images, 2.0).components_run)
    with pytest.raises(ValueError, match=r"no input\(s\) \['gamma'\]; besides the images it takes: beta"):
        loaded.run(images, gamma=1.0)
    assert export.verify_export(model, result.path, images[:4]) <= 1e-6


def test_hdcnn_presets_register_the_serving_hint():
    for name in ("hdcnn", "hdcnn_resnet20_cifar"):
        assert registry.serving_hint(name) is not None, name
    assert registry.serving_hint("nin_cifar") is None


def _bench():
    spec = importlib.util.spec_from_file_location("bench_hdcnn_conditional",
                                                  REPO / "tools" / "bench_hdcnn_conditional.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_tool_at_toy_size(trained, images, tmp_path):
    model_path = tmp_path / "hd.keras"
    trained["paper"].save(model_path)
    array_path = tmp_path / "images.npy"
    np.save(array_path, images[:24])
    output = tmp_path / "bench.json"
    rows = _bench().main([
        "--model", str(model_path), "--images", str(array_path), "--betas", "0.5", "inf",
        "--repeats", "2", "--batch-size", "24", "--output", str(output),
    ])
    assert [row["beta"] for row in rows] == [0.5, math.inf]
    assert rows[0]["mean_components_run"] == 1.0 and rows[1]["mean_components_run"] == K
    assert all(row["ratio"] > 0 for row in rows)
    written = json.loads(output.read_text())
    assert written["images"] == 24 and len(written["rows"]) == 2


def test_floor_tflite_converts_the_plain_model(trained, images, tmp_path):
    """TFLite has no serving hint: it converts the Keras model (every component)."""
    result = export.export_model(trained["paper"], "tflite", output=tmp_path / "hd.tflite")
    assert sorted(result.signature["outputs"]) == ["coarse", "predictions"]
    assert list(result.signature["inputs"]) == ["image"]
    assert result.max_abs_diff <= 1e-5
