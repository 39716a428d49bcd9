"""keras_apps.data class subsets, validation carves, preprocessing modes and resumable
epochs, against references computed here: the unfiltered pipeline filtered by numpy,
keras.applications' preprocess_input, per-class counts, PIL decodes and tfds mocks."""

import dataclasses
import io
import tarfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import shared_data
from PIL import Image

from keras_apps import data
from keras_apps.data.cifar10 import CLASS_NAMES as CIFAR10_CLASSES

PLAIN = dict(augment=False, shuffle=False)


def _all(ds):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels)


def _rows(images):
    """Images as sorted byte strings (a multiset to compare selections)."""
    return sorted(np.ascontiguousarray(i).tobytes() for i in images)


@pytest.fixture(scope="module")
def digits_train():
    return _all(data.load("digits", "train", batch_size=2000, **PLAIN)[0])


# ---------------------------------------------------------------- class subsets


def test_classes_keep_and_relabel_in_the_given_order(digits_train):
    images, labels = digits_train
    ds, info = data.load("digits", "train", batch_size=500, classes=[7, 2, 5], **PLAIN)
    kept_images, kept_labels = _all(ds)
    mask = np.isin(labels, [7, 2, 5])
    np.testing.assert_array_equal(kept_images, images[mask])
    np.testing.assert_array_equal(kept_labels, [[7, 2, 5].index(v) for v in labels[mask]])
    assert info.class_ids == (7, 2, 5) and info.num_classes == 3
    assert info.class_names == ["7", "2", "5"]
    assert info.num_examples["train"] == int(mask.sum())
    assert data.dataset_info("digits").class_ids == tuple(range(10))


@pytest.mark.parametrize("classes", [[10], [-1], [2, 2], [], "3", [True], [1.5], 4])
def test_bad_class_ids_name_the_value_and_the_range(classes):
    with pytest.raises(ValueError) as err:
        data.load("digits", classes=classes)
    assert "0..9" in str(err.value) and "classes" in str(err.value)


def test_limit_with_classes_is_balanced_over_the_kept_classes():
    ds, _ = data.load("digits", "train", batch_size=64, classes=[1, 4], limit=10, **PLAIN)
    np.testing.assert_array_equal(np.bincount(_all(ds)[1]), [5, 5])


# ---------------------------------------------------------------- validation carve


def test_validation_carve_is_stratified_disjoint_and_covering(digits_train):
    images, labels = digits_train
    parts = {}
    for subset in ("training", "validation"):
        ds, info = data.load(
            "digits", "train", batch_size=2000, validation_fraction=0.25, subset=subset,
            **PLAIN,
        )
        parts[subset] = _all(ds)
        assert info.subset == subset and info.validation_fraction == 0.25
    per_class = np.bincount(labels, minlength=10)
    np.testing.assert_array_equal(
        np.bincount(parts["validation"][1], minlength=10), np.floor(per_class * 0.25 + 0.5)
    )
    assert _rows(np.concatenate([parts["training"][0], parts["validation"][0]])) == _rows(images)
    assert info.num_examples["training"] == len(parts["training"][1])
    assert info.num_examples["validation"] == len(parts["validation"][1])
    assert info.num_examples["train"] == len(labels)


def test_validation_carve_is_seeded_apart_from_the_shuffle_seed():
    def validation(**kwargs):
        ds, _ = data.load(
            "digits", "train", batch_size=2000, validation_fraction=0.2, subset="validation",
            **kwargs,
        )
        return _all(ds)

    first = validation()
    np.testing.assert_array_equal(validation(seed=9)[0], first[0])
    other = validation(validation_seed=1)
    assert _rows(other[0]) != _rows(first[0])
    again_first = validation()
    np.testing.assert_array_equal(again_first[0], first[0])  # neither shuffled nor augmented


def test_validation_carve_composes_with_classes_and_limit(digits_train):
    _, labels = digits_train
    ds, info = data.load(
        "digits", "train", batch_size=500, classes=[3, 5], validation_fraction=0.25,
        subset="validation", **PLAIN,
    )
    _, got = _all(ds)
    expected = np.floor(np.bincount(labels, minlength=10)[[3, 5]] * 0.25 + 0.5)
    np.testing.assert_array_equal(np.bincount(got, minlength=2), expected)
    ds, info = data.load(
        "digits", "train", batch_size=500, classes=[3, 5], validation_fraction=0.25,
        subset="training", limit=6, **PLAIN,
    )
    np.testing.assert_array_equal(np.bincount(_all(ds)[1]), [3, 3])
    assert info.num_examples["validation"] == int(expected.sum())
    assert info.steps_per_epoch == 1


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(subset="training"), ["subset='training'", "validation_fraction"]),
        (dict(validation_fraction=0.1), ["subset='training'", "subset='validation'"]),
        (dict(validation_fraction=0.1, subset="training", split="test"), ["'train'", "'test'"]),
        (dict(validation_fraction=1.5, subset="training"), ["0 < f < 1", "1.5"]),
        (dict(validation_fraction=0.1, subset="val"), ["'val'", "'training' or 'validation'"]),
    ],
)
def test_bad_carve_arguments(kwargs, words):
    with pytest.raises(ValueError) as err:
        data.load("digits", **kwargs)
    for word in words:
        assert word in str(err.value)


def test_dataset_info_reports_class_and_subset_sizes(digits_train):
    _, labels = digits_train
    info = data.dataset_info("digits", classes=[0, 1], validation_fraction=0.5)
    counts = np.bincount(labels, minlength=10)[:2]
    assert info.num_classes == 2 and info.num_examples["train"] == counts.sum()
    assert info.num_examples["validation"] == np.floor(counts * 0.5 + 0.5).sum()
    assert info.num_examples["training"] + info.num_examples["validation"] == counts.sum()


# ---------------------------------------------------------------- preprocessing modes


@pytest.mark.parametrize("mode", ["caffe", "torch", "tf"])
def test_modes_equal_keras_applications_preprocess_input(mode):
    pixels = np.random.RandomState(0).uniform(0, 255, (2, 5, 4, 3)).astype(np.float32)
    expected = keras.applications.imagenet_utils.preprocess_input(pixels.copy(), mode=mode)
    np.testing.assert_allclose(data.preprocess_images(pixels, mode), expected, atol=1e-5)
    tensor = data.preprocess_images(tf.constant(pixels), mode)
    np.testing.assert_allclose(tensor.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("mode", data.PREPROCESSING_MODES)
def test_denormalize_inverts_every_mode(mode):
    info = dataclasses.replace(_rgb_info(), preprocessing=mode)
    pixels = np.random.RandomState(1).uniform(0, 255, (3, 4, 4, 3)).astype(np.float32)
    out = data.preprocess_images(pixels, mode, info)
    np.testing.assert_allclose(data.denormalize(out, info), pixels, atol=1e-3)
    np.testing.assert_allclose(
        data.denormalize(tf.constant(out), info).numpy(), pixels, atol=1e-3
    )
    np.testing.assert_allclose(data.normalize(pixels, info), out, atol=1e-6)


def _rgb_info():
    return data.DatasetInfo(
        name="rgb", num_classes=2, image_shape=(4, 4, 3), class_names=["a", "b"],
        mean=(120.0, 110.0, 100.0), std=(60.0, 50.0, 40.0), splits=("train",), source="test",
    )


def test_raw_and_dataset_modes():
    pixels = np.random.RandomState(2).uniform(0, 255, (2, 3, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(data.preprocess_images(pixels, "raw"), pixels)
    info = _rgb_info()
    np.testing.assert_allclose(
        data.preprocess_images(pixels, "dataset", info),
        (pixels - np.float32(info.mean)) / np.float32(info.std),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="needs the DatasetInfo"):
        data.preprocess_images(pixels, "dataset")
    with pytest.raises(ValueError, match="allowed: dataset, caffe, torch, tf, raw"):
        data.preprocess_images(pixels, "inception")


def test_load_applies_the_mode_to_the_pixels():
    raw, raw_info = data.load("digits", "test", batch_size=400, preprocessing="raw", **PLAIN)
    tf_mode, info = data.load("digits", "test", batch_size=400, preprocessing="tf", **PLAIN)
    pixels, _ = _all(raw)
    scaled, _ = _all(tf_mode)
    assert raw_info.preprocessing == "raw" and info.preprocessing == "tf"
    assert pixels.max() > 200 and pixels.min() >= 0
    np.testing.assert_allclose(scaled, pixels / 127.5 - 1, atol=1e-5)
    np.testing.assert_allclose(data.denormalize(scaled, info), pixels, atol=1e-3)


@pytest.mark.parametrize("mode", ["caffe", "torch"])
def test_rgb_modes_refuse_grayscale_sets(mode):
    with pytest.raises(ValueError) as err:
        data.load("digits", preprocessing=mode)
    assert f"preprocessing={mode!r}" in str(err.value) and "1 channel" in str(err.value)


# ---------------------------------------------------------------- resumable epochs


def _epochs(ds, steps, epochs):
    batches = list(ds.take(steps * epochs))
    return [batches[e * steps : (e + 1) * steps] for e in range(epochs)]


def _same(batches_a, batches_b):
    return all(
        np.array_equal(xa.numpy(), xb.numpy()) and np.array_equal(ya.numpy(), yb.numpy())
        for (xa, ya), (xb, yb) in zip(batches_a, batches_b)
    )


def test_start_epoch_resumes_exactly():
    kwargs = dict(batch_size=16, limit=40, seed=3)
    from_zero, info = data.load("digits", "train", start_epoch=0, **kwargs)
    assert info.steps_per_epoch == 3
    assert from_zero.cardinality() == tf.data.INFINITE_CARDINALITY
    epochs = _epochs(from_zero, 3, 4)
    resumed, _ = data.load("digits", "train", start_epoch=2, **kwargs)
    assert _same(epochs[2] + epochs[3], list(resumed.take(6)))
    assert [len(y) for _, y in epochs[0]] == [16, 16, 8], "no batch spans two epochs"
    labels = [np.concatenate([y.numpy() for _, y in e]) for e in epochs]
    assert all(sorted(y) == sorted(labels[0]) for y in labels)
    assert not _same(epochs[2], epochs[3])
    other, _ = data.load("digits", "train", start_epoch=2, **{**kwargs, "seed": 4})
    assert not _same(epochs[2], list(other.take(3)))


def test_start_epoch_augments_per_epoch_and_drop_remainder():
    plain, _ = data.load("digits", "train", batch_size=20, limit=20, start_epoch=0,
                         augment=False, shuffle=False)
    first, second = list(plain.take(2))
    np.testing.assert_array_equal(first[0].numpy(), second[0].numpy())
    moved, _ = data.load("digits", "train", batch_size=20, limit=20, start_epoch=0,
                         shuffle=False)
    first, second = list(moved.take(2))
    np.testing.assert_array_equal(first[1].numpy(), second[1].numpy())
    assert not np.allclose(first[0].numpy(), second[0].numpy())
    dropped, info = data.load("digits", "train", batch_size=16, limit=40, start_epoch=1,
                              drop_remainder=True)
    assert info.steps_per_epoch == 2
    assert all(len(y) == 16 for _, y in dropped.take(5))
    with pytest.raises(ValueError, match="at least one batch"):
        data.load("digits", batch_size=64, limit=40, start_epoch=0, drop_remainder=True)
    with pytest.raises(ValueError, match="start_epoch"):
        data.load("digits", start_epoch=-1)


def test_finite_steps_per_epoch():
    ds, info = data.load("digits", "train", batch_size=32)
    assert info.steps_per_epoch == int(ds.cardinality()) == -(-1438 // 32)
    ds, info = data.load("digits", "train", batch_size=32, drop_remainder=True)
    assert info.steps_per_epoch == int(ds.cardinality()) == 1438 // 32


# ---------------------------------------------------------------- image folders


def _write_pngs(root, classes, per_class, size=(6, 5)):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((*size, 3), 40 * c + 7 * i, np.uint8)
            Image.fromarray(pixels).save(root / name / f"img{i:02d}.png")


def test_folder_without_class_subfolders_says_what_layout_is_expected(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(flat / "a.png")
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load(flat)
    message = str(err.value)
    assert str(flat) in message and "<class>/<image>" in message
    assert "no class sub-folders" in message and "concatenate" not in message
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(data.DatasetNotFoundError, match="no images"):
        data.load(tmp_path / "empty")
    (tmp_path / "split" / "train").mkdir(parents=True)
    with pytest.raises(data.DatasetNotFoundError, match="no class sub-folders"):
        data.load(tmp_path / "split")


def test_folder_classes_carve_and_start_epoch(tmp_path):
    _write_pngs(tmp_path / "set", ["a", "b", "c"], per_class=5)
    ds, info = data.load(tmp_path / "set", "train", classes=[2, 0], batch_size=16, **PLAIN)
    images, labels = _all(ds)
    assert info.class_names == ["c", "a"] and sorted(set(labels)) == [0, 1]
    pixels = data.denormalize(images, info)[:, 0, 0, 0]
    assert set(np.round(pixels[labels == 0]).astype(int)) <= {80 + 7 * i for i in range(5)}
    assert set(np.round(pixels[labels == 1]).astype(int)) <= {7 * i for i in range(5)}
    ds, info = data.load(tmp_path / "set", "train", validation_fraction=0.25,
                         subset="validation", batch_size=16)
    assert np.bincount(_all(ds)[1]).tolist() == [1, 1, 1]
    ds, info = data.load(tmp_path / "set", "train", start_epoch=1, batch_size=4, seed=2)
    resumed, _ = data.load(tmp_path / "set", "train", start_epoch=2, batch_size=4, seed=2)
    steps = info.steps_per_epoch
    assert steps == 3 and _same(list(ds.take(2 * steps))[steps:], list(resumed.take(steps)))


# ---------------------------------------------------------------- cifar10 shards


def _member(folder, split, class_name, rank):
    with tarfile.open(folder / f"{split}_{class_name}.tar.gz", "r:gz") as archive:
        names = sorted(n for n in archive.getnames() if n.endswith(".jpg"))
        payload = archive.extractfile(names[rank]).read()
    return np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"))


def test_cifar10_classes_with_limit_decode_the_chosen_members(tmp_path, monkeypatch):
    folder = shared_data("cifar10_jpg")
    monkeypatch.setenv("KERAS_APPS_CACHE", str(tmp_path))
    ds, info = data.load(
        "cifar10", "test", data_dir=folder.parent, classes=[9, 3], limit=4, batch_size=8,
        **PLAIN,
    )
    images, labels = _all(ds)
    assert info.class_names == ["truck", "cat"] and labels.tolist() == [1, 1, 0, 0]
    pixels = data.denormalize(images, info)
    for row, (name, rank) in enumerate([("cat", 0), ("cat", 1), ("truck", 0), ("truck", 1)]):
        np.testing.assert_allclose(pixels[row], _member(folder, "test", name, rank), atol=2e-3)
    assert info.num_examples["test"] == 2000
    assert not list(tmp_path.iterdir()), "a selection builds no cache"
    assert CIFAR10_CLASSES[3] == "cat"


# ---------------------------------------------------------------- tfds (mocked, offline)


def test_cifar100_both_classes_select_fine_and_keep_coarse():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        ds, _ = data.load("cifar100", "train", label="both", batch_size=64, download=True,
                          **PLAIN)
        images, labels = zip(*[(x.numpy(), y) for x, y in ds])
        images = np.concatenate(images)
        fine = np.concatenate([y["fine"].numpy() for y in labels])
        coarse = np.concatenate([y["coarse"].numpy() for y in labels])
        chosen = [int(fine[3]), int(fine[0])] if fine[3] != fine[0] else [int(fine[0])]
        ds, info = data.load("cifar100", "train", label="both", classes=chosen, batch_size=64,
                             download=True, **PLAIN)
        batches = list(ds)
        got_images = np.concatenate([x.numpy() for x, _ in batches])
        got_fine = np.concatenate([y["fine"].numpy() for _, y in batches])
        got_coarse = np.concatenate([y["coarse"].numpy() for _, y in batches])
        mask = np.isin(fine, chosen)
        np.testing.assert_array_equal(got_images, images[mask])
        np.testing.assert_array_equal(got_fine, [chosen.index(v) for v in fine[mask]])
        np.testing.assert_array_equal(got_coarse, coarse[mask])
        assert info.class_ids == tuple(chosen) and len(info.coarse_class_names) == 20
        with pytest.raises(ValueError, match="0..19"):
            data.load("cifar100", label="coarse", classes=[20], download=True)


def test_tfds_carve_and_start_epoch_under_mock():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=30):
        full, _ = data.load("cifar100", "train", batch_size=64, download=True, **PLAIN)
        images, labels = _all(full)
        parts = {}
        for subset in ("training", "validation"):
            ds, info = data.load("cifar100", "train", batch_size=64, download=True,
                                 validation_fraction=0.3, subset=subset, **PLAIN)
            parts[subset] = _all(ds)
            assert info.steps_per_epoch == 1
        assert _rows(np.concatenate([parts["training"][0], parts["validation"][0]])) == _rows(
            images
        )
        assert info.num_examples["validation"] == len(parts["validation"][1])
        ds, info = data.load("cifar100", "train", batch_size=8, start_epoch=0, download=True)
        epochs = _epochs(ds, info.steps_per_epoch, 3)
        resumed, _ = data.load("cifar100", "train", batch_size=8, start_epoch=1, download=True)
        assert info.steps_per_epoch == 4
        assert _same(epochs[1] + epochs[2], list(resumed.take(8)))
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(ValueError, match="vary in size"):
            data.load("imagenet2012", "train", start_epoch=0, download=True)


# ---------------------------------------------------------------- messages


def test_download_hints_name_the_cli_flag(tmp_path):
    messages = []
    for name in ("cifar10", "cifar100", "fashion_mnist"):
        with pytest.raises(data.DatasetNotFoundError) as err:
            data.dataset_info(name, data_dir=tmp_path)
        messages.append(str(err.value))
    for message in messages:
        assert message.count("download=True") == message.count("download=True (CLI: --download)")
        assert "download=True (CLI: --download)" in message
