"""HD-CNN: the model's equations against closed forms, the consistency loss on a hand-made
batch, every backbone split, the conventions, the errors, and the multi-phase pipeline
(toy size, on the embedded digits)."""

import json

import keras
import numpy as np
import pytest

import keras_apps
from keras_apps import hdcnn, training
from keras_apps.hdcnn import Hierarchy

SHAPE = (16, 16, 3)


def _images(n=4, seed=0, shape=SHAPE):
    return np.random.default_rng(seed).uniform(-1, 1, (n, *shape)).astype("float32")


def _block(name="nin_cifar", classes=6, **kwargs):
    if name == "nin_cifar":
        kwargs.setdefault("width", 0.25)
    return keras_apps.build(name, input_shape=SHAPE, classes=classes, **kwargs)


def _perturb_batch_norm(model, seed=0):
    """Non-trivial BN statistics, so that a wrong weight copy cannot go unnoticed."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape), beta + rng.normal(0, 0.3, beta.shape),
                               mean + rng.normal(0, 0.3, mean.shape), var * rng.uniform(0.5, 2, var.shape)])


DISJOINT = Hierarchy([0, 1, 0, 2, 1, 2])  # groups {0, 2}, {1, 4}, {3, 5}
OVERLAPPING = Hierarchy([0, 1, 0, 2, 1, 2], [[0, 2, 4], [1, 4], [0, 3, 5]])


def test_build_default_is_the_papers_cifar100_layout():
    model = keras_apps.build("hdcnn")
    assert model.name == "hdcnn"
    assert sorted(model.output) == ["coarse", "predictions"]
    assert tuple(model.output["predictions"].shape) == (None, 100)
    assert tuple(model.output["coarse"].shape) == (None, 9)  # default K for C=100
    parts = hdcnn.components(model)
    assert parts.num_coarse == 9 and parts.shared is not None
    assert [layer.name for layer in parts.shared.layers][-1] == "drop1"  # the release's shared layers
    assert [len(s) for s in hdcnn.hierarchy_of(model).coarse_sets] == [12] + [11] * 8


def test_untrained_disjoint_hdcnn_from_the_building_block_equals_it():
    """Closed form: with disjoint sets, B_k = sum_{j in S_k} q_j and a fine component that
    keeps the block's classifier columns gives p_k(j) = q_j / B_k, so
    sum_k B_k p_k / sum_k B_k = q exactly (paper convention)."""
    block = _block()
    _perturb_batch_norm(block)
    model = hdcnn.build_hdcnn(block, DISJOINT, fine_classifier_init="building_block")
    x = _images()
    q = np.asarray(block(x, training=False))
    out = model(x, training=False)
    np.testing.assert_allclose(out["predictions"], q, rtol=1e-5, atol=1e-6)
    expected_b = np.stack([q[:, [0, 2]].sum(1), q[:, [1, 4]].sum(1), q[:, [3, 5]].sum(1)], axis=1)
    np.testing.assert_allclose(out["coarse"], expected_b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("building_block, shared_until", [
    ("resnet20_cifar", None),  # the residual preset: stage 1 shared
    ("resnet32_cifar", None),  # any other registered backbone: its first registered stage
    ("nin_cifar", "cccp4_relu"),  # a later split
])
def test_any_backbone_split_keeps_the_closed_form(building_block, shared_until):
    block = _block(building_block)
    model = hdcnn.build_hdcnn(block, DISJOINT, shared_until, fine_classifier_init="building_block")
    x = _images(seed=1)
    np.testing.assert_allclose(model(x)["predictions"], block(x), rtol=1e-5, atol=1e-6)


def test_without_shared_layers_every_component_is_a_whole_copy():
    block = _block()
    model = hdcnn.build_hdcnn(block, DISJOINT, shared_layers=False, fine_classifier_init="building_block")
    parts = hdcnn.components(model)
    assert parts.shared is None
    assert parts.fine[0].get_layer("conv1_fine_0") is not None
    x = _images(seed=2)
    np.testing.assert_allclose(model(x)["predictions"], block(x), rtol=1e-5, atol=1e-6)
    shared = hdcnn.build_hdcnn(block, DISJOINT)
    assert model.count_params() > shared.count_params()


def test_probabilistic_averaging_by_hand():
    """Two coarse categories, three classes, numbers worked out on paper."""
    averaging = keras_apps.layers.hdcnn.ProbabilisticAveraging()
    b = np.array([[0.2, 0.6], [0.0, 0.0]], "float32")
    p = np.array([[[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]]] * 2, "float32")
    out = np.asarray(averaging([b, p]))
    np.testing.assert_allclose(out[0], [0.1 / 0.8, 0.25 / 0.8, 0.45 / 0.8], rtol=1e-6)
    np.testing.assert_array_equal(out[1], [0.0, 0.0, 0.0])  # a row of B summing to 0: no NaN
    release = keras_apps.layers.hdcnn.ProbabilisticAveraging(renormalize=False)
    np.testing.assert_allclose(np.asarray(release([b, p]))[0], [0.1, 0.25, 0.45], rtol=1e-6)


def test_release_convention_aggregates_overlapping_sets_renormalised():
    block = _block()
    model = hdcnn.build_hdcnn(block, OVERLAPPING, convention="release")
    x = _images(seed=3)
    q = np.asarray(block(x))
    sums = np.stack([q[:, s].sum(1) for s in OVERLAPPING.coarse_sets], axis=1)
    np.testing.assert_allclose(model(x)["coarse"], sums / sums.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    parts = hdcnn.components(model)
    assert parts.aggregation.normalize and not parts.averaging.renormalize
    assert hdcnn.convention_of(model).lam == 5.0
    paper = hdcnn.build_hdcnn(block, OVERLAPPING)
    assert hdcnn.convention_of(paper).lam == 20.0
    # the paper aggregates with the disjoint P^d even when the fine components overlap
    np.testing.assert_allclose(
        paper(x)["coarse"], np.stack([q[:, [0, 2]].sum(1), q[:, [1, 4]].sum(1), q[:, [3, 5]].sum(1)], 1),
        rtol=1e-5, atol=1e-6,
    )


def test_fine_components_have_compact_outputs_and_their_own_weights():
    model = hdcnn.build_hdcnn(_block(), OVERLAPPING)
    parts = hdcnn.components(model)
    assert [c.outputs[0].shape[-1] for c in parts.fine] == [3, 2, 3]
    kernels = [c.get_layer(f"cccp6_fine_{k}").kernel for k, c in enumerate(parts.fine)]
    assert len({id(v) for v in kernels}) == 3
    x = _images(seed=4)
    out = model(x)
    scattered = [parts.scatter.scatter(k, c(parts.shared(x))) for k, c in enumerate(parts.fine)]
    for k, members in enumerate(OVERLAPPING.coarse_sets):
        outside = [j for j in range(6) if j not in members]
        np.testing.assert_array_equal(np.asarray(scattered[k])[:, outside], 0.0)
    np.testing.assert_allclose(np.sum(out["predictions"], axis=1), 1.0, rtol=1e-5)


def test_hierarchy_travels_with_the_saved_model(tmp_path):
    model = hdcnn.build_hdcnn(_block(), OVERLAPPING, convention="release")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert hdcnn.hierarchy_of(loaded) == Hierarchy(OVERLAPPING.fine_to_coarse, OVERLAPPING.coarse_sets)
    assert hdcnn.convention_of(loaded).name == "release"
    features = keras_apps.feature_extractor(loaded)
    assert tuple(features(_images(seed=5))["shared"].shape) == (4, 8, 8, 24)


def test_consistency_loss_on_a_hand_made_batch():
    b = np.array([[0.5, 0.5], [0.1, 0.9]], "float32")  # batch mean (0.3, 0.7)
    value = float(hdcnn.coarse_consistency_loss(b, [0.5, 0.5], 20))
    assert value == pytest.approx(10 * (0.2**2 + 0.2**2), rel=1e-6)  # lam/2 * sum_k (t_k - mean)^2
    loss = hdcnn.CoarseConsistencyLoss([0.25, 0.75], lam=5)
    assert float(loss(np.zeros(2), b)) == pytest.approx(2.5 * (0.05**2 + 0.05**2), rel=1e-5)
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert revived.targets == [0.25, 0.75] and revived.lam == 5.0


def test_total_loss_is_log_loss_plus_consistency():
    """E = -(1/n) sum log p_y + lam/2 sum_k (t_k - mean_i B_ik)^2, from the model's outputs."""
    model = hdcnn.build_hdcnn(_block(), DISJOINT)
    targets = DISJOINT.coarse_targets("paper")
    model.compile("sgd", loss=hdcnn.hdcnn_losses(model, lam=20),
                  loss_weights={"predictions": 1.0, "coarse": 1.0})
    x, y = _images(8, seed=6), np.array([0, 1, 2, 3, 4, 5, 0, 1])
    out = model(x)
    p, b = np.asarray(out["predictions"], np.float64), np.asarray(out["coarse"], np.float64)
    expected = -np.mean(np.log(p[np.arange(8), y])) + 10 * np.sum((targets - b.mean(0)) ** 2)
    got = model.evaluate(x, {"predictions": y, "coarse": y}, batch_size=8, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(expected, rel=1e-4)


def test_targets_follow_the_convention():
    model = hdcnn.build_hdcnn(_block(), OVERLAPPING, convention="release")
    sizes = np.array([3, 2, 3]) / 8
    np.testing.assert_allclose(hdcnn.hdcnn_losses(model)["coarse"].targets, sizes, rtol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(hierarchy=Hierarchy([0, 0, 1, 1, 1])), "covers 5 fine classes but the model has classes=6"),
    (dict(shared_until="conv9"), "no layer 'conv9'"),
    (dict(shared_until="predictions_activation"), "output layer"),
    (dict(convention="caffe"), "'caffe'"),
    (dict(fine_classifier_init="zeros"), "'zeros'"),
    (dict(shared_layers=False, shared_until="pool1"), "does not apply"),
])
def test_build_errors_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hdcnn.build_hdcnn(_block(), **{"hierarchy": DISJOINT, **kwargs})


def test_a_split_inside_a_residual_block_is_refused():
    with pytest.raises(ValueError, match="conv2_block2_1_relu.*cannot split|do not cut"):
        hdcnn.build_hdcnn(_block("resnet20_cifar"), DISJOINT, "conv2_block2_1_relu")


def test_a_building_block_without_softmax_is_refused():
    block = _block(classifier_activation=None)
    with pytest.raises(ValueError, match="softmax"):
        hdcnn.build_hdcnn(block, DISJOINT)
    with pytest.raises(ValueError, match="plain CNN"):
        keras_apps.build("hdcnn", building_block="hdcnn_resnet20_cifar")


@pytest.mark.slow
def test_generic_fit_uses_the_registered_loss_and_scores_the_predictions(tmp_path):
    """training.fit on the registry name: the hints give the loss (log loss + consistency)
    and evaluate scores the "predictions" output."""
    result = training.fit(
        "hdcnn", "digits", epochs=1, batch_size=64, limit=300, output_dir=tmp_path / "run",
        build_kwargs={"building_block_kwargs": {"width": 0.25}}, verbose=0,
    )
    assert "coarse_loss" in result.history and "predictions_loss" in result.history
    assert 0.0 <= result.metrics["test"]["top1_error"] <= 1.0
    assert sorted(result.model.output) == ["coarse", "predictions"]
    again = training.evaluate(tmp_path / "run" / "model.keras", "digits", limit=300, verbose=0)
    assert again["top1_error"] == pytest.approx(result.metrics["test"]["top1_error"])


@pytest.mark.slow
def test_pipeline_runs_every_phase_and_resumes(tmp_path):
    out = tmp_path / "hd"
    kwargs = dict(n_coarse=2, gamma=5.0, block_epochs=1, fine_epochs=1, finetune_epochs=1,
                  building_block_kwargs={"width": 0.25}, limit=300, batch_size=64, output_dir=out,
                  verbose=0)
    result = hdcnn.fit("nin_cifar", "digits", **kwargs)
    for folder in ("building_block", "hierarchy", "fine_component_0", "fine_component_1", "finetune"):
        assert (out / folder).is_dir()
    tree = Hierarchy.load(out / "hierarchy" / "hierarchy.json")
    assert tree == result.hierarchy and tree.num_coarse == 2
    assert (out / "hierarchy" / "hierarchy.png").read_bytes()[:4] == b"\x89PNG"
    confusion = np.load(out / "hierarchy" / "confusion.npy")
    np.testing.assert_allclose(confusion.sum(1), 1.0, rtol=1e-6)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"building_block", "hierarchy", "fine_components", "finetune"}
    assert len(metrics["fine_components"]) == 2
    assert metrics["hierarchy"]["set_sizes"] == [len(s) for s in tree.coarse_sets]
    # each fine component was trained on its classes only, with local labels
    fine0 = json.loads((out / "fine_component_0" / "config.json").read_text())
    assert fine0["classes_subset"] == tree.coarse_sets[0] and fine0["trainable"] == "fine_component_0"
    loaded = training.load_model(out / "model.keras")
    x = _images(3, shape=tuple(loaded.inputs[0].shape[1:]))
    np.testing.assert_allclose(loaded(x)["predictions"], result.model(x)["predictions"], rtol=1e-5, atol=1e-6)

    with pytest.raises(FileExistsError, match="finished HD-CNN run"):
        hdcnn.fit("nin_cifar", "digits", **kwargs)
    # an interrupted run: finished phases are read back, not retrained
    block_file = out / "building_block" / "model.keras"
    stamp = block_file.stat().st_mtime_ns
    for path in (out / "model.keras", out / "metrics.json"):
        path.unlink()
    import shutil

    shutil.rmtree(out / "finetune")
    again = hdcnn.fit("nin_cifar", "digits", **kwargs)
    assert block_file.stat().st_mtime_ns == stamp
    assert again.hierarchy == tree


def test_the_hierarchy_phase_without_gamma_gives_the_disjoint_groups():
    """gamma=None: the spectral-clustering groups alone (no overlap), a partition of the
    classes (regression: the phase passed probabilities without gamma and always failed)."""
    block = keras_apps.build("nin_cifar", input_shape=(32, 32, 1), classes=10, width=0.25)
    tree = hdcnn.pipeline.hierarchy_from_building_block(block, "digits", 3, gamma=None, limit=200)
    members = sorted(j for s in tree.coarse_sets for j in s)
    assert members == list(range(10))  # every class in exactly one coarse category
    assert len(tree.coarse_sets) == 3


def test_the_consistency_loss_is_per_sample_so_keras_scales_it_like_any_loss():
    """Keras scales per-sample losses by 1/replicas under tf.distribute but leaves a scalar
    call result alone; the term's batch value is repeated per sample, and reduces to it."""
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], "float32")
    loss = hdcnn.CoarseConsistencyLoss([0.25, 0.75], lam=5)
    per_sample = np.asarray(loss.call(None, probs))
    expected = 2.5 * np.sum((np.array([0.25, 0.75]) - probs.mean(0)) ** 2)
    assert per_sample.shape == (3,)
    np.testing.assert_allclose(per_sample, expected, rtol=1e-6)
    assert float(loss(np.zeros(3), probs)) == pytest.approx(expected, rel=1e-6)
