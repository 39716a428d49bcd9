"""keras_apps.data against independent references: scikit-learn's arrays resized by a naive
numpy bilinear, PIL decodes of the CIFAR-10 JPEGs, a struct parse of IDX headers, numpy
crops, PNGs written here, and tfds mocks (offline)."""

import gzip
import io
import math
import struct
import tarfile
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import shared_data
from PIL import Image

from keras_apps import data
from keras_apps.data import augment
from keras_apps.data.cifar10 import CLASS_NAMES as CIFAR10_CLASSES

#: A missing dataset must fail without tfds' network retries (about 3.5 minutes offline); the
#: bound is loose so that a loaded CI machine does not fail it (20 s were seen under load).
FAIL_FAST_SECONDS = 60


def _all(ds):
    """Concatenated (images, labels) of a whole dataset."""
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels)


def _bilinear_matrix(n_in, n_out):
    """[n_out, n_in] weights of a half-pixel-centre bilinear resize with edge clamping,
    one output sample at a time."""
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        position = min(max((i + 0.5) * n_in / n_out - 0.5, 0), n_in - 1)
        low = int(math.floor(position))
        high, frac = min(low + 1, n_in - 1), position - low
        weights[i, low] += 1 - frac
        weights[i, high] += frac
    return weights


def _bilinear(images, size):
    """Bilinear resize of [N, H, W] to [N, *size] by the separable weights above."""
    rows = _bilinear_matrix(images.shape[1], size[0])
    cols = _bilinear_matrix(images.shape[2], size[1])
    return np.einsum("ih,nhw,jw->nij", rows, images, cols)


def _windows(image, pad, flips=(False, True)):
    """Every window pad_crop_flip can produce from [H, W, C], by numpy slicing."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    for oy in range(2 * pad + 1):
        for ox in range(2 * pad + 1):
            window = padded[oy : oy + h, ox : ox + w]
            for flip in flips:
                yield (oy, ox, flip), (window[:, ::-1] if flip else window)


def _which_window(image, reference, pad, flips=(False, True)):
    for key, window in _windows(reference, pad, flips):
        if np.allclose(image, window, atol=1e-3):
            return key
    return None


@pytest.fixture(scope="module")
def sk_digits():
    from sklearn.datasets import load_digits

    return load_digits()


@pytest.fixture(scope="module")
def digits_reference(sk_digits):
    """All 1797 digits at 32x32 in [0, 255], resized by the naive bilinear."""
    scaled = sk_digits.images * (255.0 / 16.0)
    return _bilinear(scaled, (32, 32))[..., None]


@pytest.fixture(scope="module")
def digits_splits():
    return {
        split: _all(data.load("digits", split, batch_size=2000, augment=False, shuffle=False)[0])
        for split in ("train", "test")
    }


# ---------------------------------------------------------------- names, errors, roots


def test_list_datasets():
    names = data.list_datasets()
    assert names == sorted(names)
    for name in ("digits", "cifar10", "cifar100", "fashion_mnist", "imagenet2012", "folder"):
        assert name in names


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(name="cifar1000"), ["'cifar1000'", "cifar100", "cifar10"]),
        (dict(name="digits", split="validation"), ["'validation'", "train, test"]),
        (dict(name="digits", label="coarse"), ["label='coarse'", "allowed: fine"]),
        (dict(name="digits", batch_size=0), ["batch_size", "0"]),
        (dict(name="digits", limit=-3), ["limit", "-3"]),
        (dict(name="digits", image_size=(32, "a")), ["image_size"]),
    ],
)
def test_bad_arguments_name_value_and_allowed(kwargs, words):
    with pytest.raises(ValueError) as err:
        data.load(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_data_roots_priority(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_APPS_DATA", raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    roots = data.data_roots()
    assert roots[0] == (tmp_path / "shared" / "data").resolve()
    assert roots[-1] == (data._base.repo_root().parent / "shared" / "data").resolve()
    monkeypatch.setenv("KERAS_APPS_DATA", str(tmp_path / "env"))
    assert data.data_roots() == [tmp_path / "env"]
    assert data.data_roots(tmp_path / "explicit") == [tmp_path / "explicit"]


def test_missing_local_sets_name_the_paths(tmp_path):
    start = time.perf_counter()
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load("cifar10", data_dir=tmp_path)
    assert str(tmp_path / "cifar10_jpg") in str(err.value)
    assert "train_airplane.tar.gz" in str(err.value) or "{train,test}_<class>.tar.gz" in str(
        err.value
    )
    assert "--data-dir" in str(err.value)
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.dataset_info("fashion_mnist", data_dir=tmp_path)
    assert str(tmp_path / "fashion_mnist") in str(err.value)
    assert "train-images-idx3-ubyte.gz" in str(err.value)
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load("folder", data_dir=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    assert time.perf_counter() - start < FAIL_FAST_SECONDS


def test_unprepared_tfds_set_fails_fast(tmp_path):
    start = time.perf_counter()
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load("cifar100", data_dir=tmp_path)
    assert time.perf_counter() - start < FAIL_FAST_SECONDS
    message = str(err.value)
    assert str(tmp_path) in message
    assert "cifar-100-binary.tar.gz" in message and "downloads/manual" in message


# ---------------------------------------------------------------- digits


def test_digits_shapes_labels_info(digits_splits, sk_digits):
    info = data.dataset_info("digits")
    assert info.image_shape == (32, 32, 1) and info.num_classes == 10
    assert info.splits == ("train", "test") and len(info.class_names) == 10
    for split, (images, labels) in digits_splits.items():
        assert images.shape[1:] == (32, 32, 1) and images.dtype == np.float32
        assert labels.dtype == np.int32 and labels.min() == 0 and labels.max() == 9
        assert info.num_examples[split] == len(labels)
    assert sum(len(y) for _, y in digits_splits.values()) == len(sk_digits.target)


def test_digits_split_is_stratified_and_deterministic(digits_splits, sk_digits):
    per_class = np.bincount(sk_digits.target, minlength=10)
    test_counts = np.bincount(digits_splits["test"][1], minlength=10)
    train_counts = np.bincount(digits_splits["train"][1], minlength=10)
    np.testing.assert_array_equal(test_counts, np.floor(per_class * 0.2 + 0.5))
    np.testing.assert_array_equal(train_counts + test_counts, per_class)
    again = _all(data.load("digits", "test", batch_size=100, augment=False, shuffle=False)[0])
    np.testing.assert_array_equal(again[0], digits_splits["test"][0])
    np.testing.assert_array_equal(again[1], digits_splits["test"][1])


def test_digits_pixels_are_the_sklearn_images_resized(digits_splits, digits_reference, sk_digits):
    info = data.dataset_info("digits")
    reference = digits_reference.reshape(len(digits_reference), -1)
    matched = []
    for images, labels in digits_splits.values():
        pixels = data.denormalize(images, info).reshape(len(images), -1)
        distance = (
            (pixels**2).sum(1)[:, None] + (reference**2).sum(1)[None] - 2 * pixels @ reference.T
        )
        nearest = distance.argmin(1)
        np.testing.assert_allclose(pixels, reference[nearest], atol=2e-3)
        np.testing.assert_array_equal(labels, sk_digits.target[nearest])
        assert np.all(np.diff(nearest) > 0), "each split keeps the original order"
        matched.append(nearest)
    assert sorted(np.concatenate(matched).tolist()) == list(range(len(reference)))
    # corner pixel of a half-pixel bilinear upsample is the corner input pixel
    first = data.denormalize(digits_splits["train"][0][0], info)
    assert first[0, 0, 0] == pytest.approx(
        sk_digits.images[matched[0][0]][0, 0] * 255 / 16, abs=1e-3
    )


def test_digits_normalised_split_has_zero_mean_unit_std(digits_splits):
    images = digits_splits["train"][0]
    assert abs(images.mean()) < 1e-4
    assert abs(images.std() - 1) < 1e-4


def test_digits_image_size_and_limit():
    ds, info = data.load("digits", "train", batch_size=30, image_size=16, limit=30, shuffle=False)
    images, labels = _all(ds)
    assert images.shape == (30, 16, 16, 1) and info.image_shape == (16, 16, 1)
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [3] * 10)


# ---------------------------------------------------------------- augmentation


def test_pad_crop_flip_equals_numpy_reference():
    image = np.random.RandomState(0).randint(0, 256, (5, 6, 2)).astype(np.float32)
    for (oy, ox, flip), expected in _windows(image, 2):
        out = augment.pad_crop_flip(tf.constant(image), (oy, ox), flip, 2).numpy()
        np.testing.assert_array_equal(out, expected)


def test_random_pad_crop_flip_draws_windows_of_the_padded_image():
    image = np.random.RandomState(1).randint(1, 256, (6, 6, 3)).astype(np.float32)
    keys = set()
    for i in range(40):
        out = augment.random_pad_crop_flip(tf.constant(image), tf.constant([7, i]), 2).numpy()
        key = _which_window(out, image, 2)
        assert key is not None
        keys.add(key)
    assert len({k[:2] for k in keys}) > 5 and {k[2] for k in keys} == {False, True}
    again = augment.random_pad_crop_flip(tf.constant(image), tf.constant([7, 3]), 2).numpy()
    np.testing.assert_array_equal(
        again, augment.random_pad_crop_flip(tf.constant(image), tf.constant([7, 3]), 2).numpy()
    )


def test_center_and_random_crop_and_shorter_side_resize():
    image = np.random.RandomState(2).rand(9, 12, 3).astype(np.float32)
    np.testing.assert_array_equal(augment.center_crop(image, (5, 6)).numpy(), image[2:7, 3:9])
    seen_flips = set()
    for i in range(20):
        out = augment.random_crop_flip(tf.constant(image), (5, 6), tf.constant([1, i])).numpy()
        found = [
            (y, x, f)
            for y in range(5)
            for x in range(7)
            for f in (False, True)
            if np.array_equal(
                out, image[y : y + 5, x : x + 6][:, ::-1] if f else image[y : y + 5, x : x + 6]
            )
        ]
        assert found
        seen_flips.add(found[0][2])
    assert seen_flips == {False, True}
    resized = augment.resize_shorter_side(tf.zeros((40, 60, 3)), (16, 16))
    scale = max(16 / 40, 16 / 60) / 0.875
    assert tuple(resized.shape) == (math.ceil(40 * scale), math.ceil(60 * scale), 3)


def test_pipeline_augmentation_shifts_digits_without_flipping():
    plain, info = data.load(
        "digits", "train", batch_size=20, limit=20, augment=False, shuffle=False
    )
    augmented, _ = data.load(
        "digits", "train", batch_size=20, limit=20, augment=True, shuffle=False
    )
    plain, labels = _all(plain)
    moved, moved_labels = _all(augmented)
    np.testing.assert_array_equal(labels, moved_labels)
    keys = []
    for before, after in zip(data.denormalize(plain, info), data.denormalize(moved, info)):
        key = _which_window(after, before, info.pad, flips=(False,))
        assert key is not None
        keys.append(key)
    assert any(k[:2] != (info.pad, info.pad) for k in keys)


def test_same_seed_same_batches_other_seed_other_batches():
    def batches(seed):
        ds, _ = data.load("digits", "train", batch_size=16, limit=48, seed=seed)
        return _all(ds)

    first, second, other = batches(3), batches(3), batches(4)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[1], other[1])
    assert not np.allclose(first[0], other[0])


def test_each_epoch_reshuffles_and_redraws():
    ds, _ = data.load("digits", "train", batch_size=48, limit=48, seed=5, augment=False)
    (_, y1), (_, y2) = _all(ds), _all(ds)
    assert sorted(y1) == sorted(y2) and not np.array_equal(y1, y2)
    ds, _ = data.load("digits", "train", batch_size=48, limit=48, seed=5, shuffle=False)
    (x1, y1), (x2, y2) = _all(ds), _all(ds)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(x1, x2)


def test_normalize_denormalize_round_trip():
    info = data.dataset_info("digits")
    pixels = np.random.RandomState(3).randint(0, 256, (2, 4, 4, 1)).astype(np.float32)
    np.testing.assert_allclose(
        data.denormalize(data.normalize(pixels, info), info), pixels, atol=1e-4
    )
    tensor = data.normalize(tf.constant(pixels), info.mean, info.std)
    np.testing.assert_allclose(tensor.numpy(), (pixels - info.mean[0]) / info.std[0], rtol=1e-6)


# ---------------------------------------------------------------- cifar10 shards


def _cifar_member_pixels(folder, split, class_name, rank):
    """PIL decode of the rank-th member (by name) of a shard, read by random access."""
    with tarfile.open(folder / f"{split}_{class_name}.tar.gz", "r:gz") as archive:
        names = sorted(n for n in archive.getnames() if n.endswith(".jpg"))
        payload = archive.extractfile(names[rank]).read()
    return np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"))


def test_cifar10_limit_reads_first_members_of_each_shard(tmp_path, monkeypatch):
    folder = shared_data("cifar10_jpg")
    monkeypatch.setenv("KERAS_APPS_CACHE", str(tmp_path))
    ds, info = data.load(
        "cifar10", "test", data_dir=folder.parent, limit=25, batch_size=25, shuffle=False
    )
    images, labels = _all(ds)
    assert images.shape == (25, 32, 32, 3) and info.class_names == list(CIFAR10_CLASSES)
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [3] * 5 + [2] * 5)
    pixels = data.denormalize(images, info)
    starts = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=10))])
    for class_index, rank in ((0, 0), (3, 2), (9, 1)):
        expected = _cifar_member_pixels(folder, "test", CIFAR10_CLASSES[class_index], rank)
        np.testing.assert_allclose(pixels[starts[class_index] + rank], expected, atol=2e-3)
        assert labels[starts[class_index] + rank] == class_index
    assert not list(tmp_path.iterdir()), "a limited read builds no cache"


def test_cifar10_full_split_cache(tmp_path, monkeypatch):
    folder = shared_data("cifar10_jpg")
    monkeypatch.setenv("KERAS_APPS_CACHE", str(tmp_path))
    from keras_apps.data import cifar10

    streamed = cifar10.split_arrays(folder, "test", limit=12)
    images, labels = cifar10.split_arrays(folder, "test")
    assert images.shape == (10000, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)
    cached = [p.name for p in tmp_path.iterdir()]
    assert (
        len(cached) == 1
        and cached[0].startswith("cifar10_jpg-test-")
        and cached[0].endswith(".npz")
    )
    from_cache = cifar10.split_arrays(folder, "test", limit=12)
    np.testing.assert_array_equal(from_cache[0], streamed[0])
    np.testing.assert_array_equal(from_cache[1], streamed[1])
    np.testing.assert_array_equal(
        images[1000], _cifar_member_pixels(folder, "test", "automobile", 0)
    )


# ---------------------------------------------------------------- fashion-mnist / IDX


def test_read_idx_matches_struct_parse():
    folder = shared_data("fashion_mnist")
    images = data.read_idx(folder / "t10k-images-idx3-ubyte.gz")
    labels = data.read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    raw = gzip.open(folder / "t10k-images-idx3-ubyte.gz").read()
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    assert magic == 0x803 and images.shape == (n, rows, cols) == (10000, 28, 28)
    for i, r, c in ((0, 0, 0), (0, 14, 14), (9999, 27, 3), (123, 5, 20)):
        assert images[i, r, c] == raw[16 + i * rows * cols + r * cols + c]
    raw_labels = gzip.open(folder / "t10k-labels-idx1-ubyte.gz").read()
    assert struct.unpack(">II", raw_labels[:8]) == (0x801, 10000)
    np.testing.assert_array_equal(labels[:50], list(raw_labels[8:58]))


def test_read_idx_other_types_and_bad_files(tmp_path):
    values = np.arange(-6, 6, dtype=">i2").reshape(3, 4)
    path = tmp_path / "values.idx"
    path.write_bytes(struct.pack(">BBBBII", 0, 0, 0x0B, 2, 3, 4) + values.tobytes())
    np.testing.assert_array_equal(data.read_idx(path), values)
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad.idx")
    (tmp_path / "short.idx").write_bytes(struct.pack(">BBBBI", 0, 0, 0x08, 1, 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="10"):
        data.read_idx(tmp_path / "short.idx")


def test_fashion_mnist_limit_is_balanced_and_exact():
    folder = shared_data("fashion_mnist")
    ds, info = data.load(
        "fashion_mnist", "test", data_dir=folder.parent, limit=20, batch_size=8, shuffle=False
    )
    images, labels = _all(ds)
    assert images.shape == (20, 28, 28, 1) and info.num_classes == 10
    raw = gzip.open(folder / "t10k-images-idx3-ubyte.gz").read()
    all_labels = np.frombuffer(
        gzip.open(folder / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8
    )
    chosen = np.sort(np.concatenate([np.flatnonzero(all_labels == c)[:2] for c in range(10)]))
    np.testing.assert_array_equal(labels, all_labels[chosen])
    expected = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28, 1)[chosen]
    np.testing.assert_allclose(data.denormalize(images, info), expected, atol=2e-3)


# ---------------------------------------------------------------- tfds (mocked, offline)


def test_cifar100_fine_coarse_both_under_mock():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        ds, info = data.load("cifar100", "train", label="both", batch_size=4, download=True)
        x, y = next(iter(ds))
        assert x.shape == (4, 32, 32, 3) and set(y) == {"fine", "coarse"}
        assert y["fine"].dtype == tf.int32 and int(tf.reduce_max(y["fine"])) < 100
        assert int(tf.reduce_max(y["coarse"])) < 20
        assert info.num_classes == 100 and len(info.coarse_class_names) == 20
        ds, info = data.load("cifar100", "test", label="coarse", batch_size=6, download=True)
        _, y = next(iter(ds))
        assert info.num_classes == 20 and len(info.class_names) == 20 and int(tf.reduce_max(y)) < 20
        assert info.mean == pytest.approx((129.3, 124.07, 112.43), abs=0.01)
        with pytest.raises(ValueError, match="allowed: fine, coarse, both"):
            data.load("cifar100", label="superclass", download=True)


def test_dataset_info_prepares_a_tfds_set_only_with_download():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        with pytest.raises(data.DatasetNotFoundError, match="not prepared"):
            data.dataset_info("cifar100")
        info = data.dataset_info("cifar100", download=True)
        assert info.num_classes == 100 and info.image_shape == (32, 32, 3)


def _constant_png(height, width, colour):
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), colour, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_imagenet2012_under_mock():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=5):
        ds, info = data.load("imagenet2012", "train", batch_size=5, download=True)
        x, y = next(iter(ds))
        assert x.shape == (5, 224, 224, 3) and bool(tf.reduce_all(tf.math.is_finite(x)))
        assert info.num_classes == 1000 and info.augmentation == "resize_crop_flip"
        ds, info = data.load(
            "imagenet2012", "validation[:2]", image_size=64, batch_size=5, download=True
        )
        assert next(iter(ds))[0].shape == (5, 64, 64, 3) and info.image_shape == (64, 64, 3)
        with pytest.raises(ValueError, match="allowed: train, validation"):
            data.load("imagenet2012", "test", download=True)

    colour = (10, 200, 90)

    def constant_images(self, split, decoders=None, read_config=None, **kwargs):
        return tf.data.Dataset.from_tensor_slices(
            {
                "image": [_constant_png(40, 60, colour)] * 3,
                "label": [1, 2, 3],
                "file_name": ["a", "b", "c"],
            }
        )

    with tfds.testing.mock_data(as_dataset_fn=constant_images):
        for split in ("train", "validation"):
            ds, info = data.load(
                "imagenet2012", split, image_size=(16, 24), batch_size=3, download=True
            )
            x, y = next(iter(ds))
            np.testing.assert_allclose(
                data.denormalize(x, info).numpy(),
                np.broadcast_to(colour, (3, 16, 24, 3)),
                atol=0.05,
            )
            assert sorted(y.numpy().tolist()) == [1, 2, 3]


def test_voc_first_object_and_multi_hot_labels():
    import tensorflow_datasets as tfds

    def voc_examples(self, split, decoders=None, read_config=None, **kwargs):
        examples = [([4, 7], [4, 7]), ([], []), ([11], [11])]
        return tf.data.Dataset.from_generator(
            lambda: (
                {
                    "image": _constant_png(20, 30, (1, 2, 3)),
                    "labels": np.array(labels, np.int64),
                    "objects": {"label": np.array(objects, np.int64)},
                }
                for objects, labels in examples
            ),
            output_signature={
                "image": tf.TensorSpec((), tf.string),
                "labels": tf.TensorSpec((None,), tf.int64),
                "objects": {"label": tf.TensorSpec((None,), tf.int64)},
            },
        )

    with tfds.testing.mock_data(as_dataset_fn=voc_examples):
        ds, info = data.load("voc", "test", batch_size=8, image_size=32, download=True)
        assert next(iter(ds))[1].numpy().tolist() == [4, 11]
        assert info.num_classes == 20
        ds, _ = data.load("voc", "test", batch_size=8, image_size=32, label="multi", download=True)
        multi = next(iter(ds))[1].numpy()
        expected = np.zeros((3, 20), np.float32)
        expected[0, [4, 7]] = expected[2, 11] = 1
        np.testing.assert_array_equal(multi, expected)


# ---------------------------------------------------------------- image folders


def _write_pngs(root, classes, per_class, size=(6, 5)):
    """PNG i of class c holds value 40 c + 7 i in channel 0, i in channel 1, 255 - c in 2."""
    expected = {}
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.zeros((*size, 3), np.uint8)
            pixels[..., 0] = 40 * c + 7 * i
            pixels[..., 1] = np.arange(size[1])[None, :] + i
            pixels[..., 2] = 255 - c
            Image.fromarray(pixels).save(root / name / f"img{i:02d}.png")
            expected[(name, i)] = pixels
    return expected


def test_flat_image_folder(tmp_path):
    expected = _write_pngs(tmp_path / "shapes", ["square", "circle"], per_class=5)
    ds, info = data.load(
        "folder", "train", data_dir=tmp_path / "shapes", batch_size=16, shuffle=False, augment=False
    )
    images, labels = _all(ds)
    assert info.class_names == ["circle", "square"] and info.splits == ("train", "test")
    assert info.image_shape == (6, 5, 3) and info.num_examples == {"train": 8, "test": 2}
    np.testing.assert_array_equal(np.bincount(labels), [4, 4])
    train_pixels = data.denormalize(images, info)
    test_images, test_labels = _all(data.load(tmp_path / "shapes", "test", batch_size=4)[0])
    assert test_images.shape == (2, 6, 5, 3) and sorted(test_labels.tolist()) == [0, 1]
    test_pixels = data.denormalize(test_images, info)
    found = []
    for image, label in zip(
        np.concatenate([train_pixels, test_pixels]), np.concatenate([labels, test_labels])
    ):
        name = info.class_names[label]
        found += [
            (n, i)
            for (n, i), v in expected.items()
            if n == name and np.allclose(image, v, atol=2e-3)
        ]
    assert sorted(found) == sorted(expected)


def test_image_folder_with_split_folders(tmp_path):
    train = _write_pngs(tmp_path / "set" / "train", ["b", "a"], per_class=2)
    _write_pngs(tmp_path / "set" / "val", ["a"], per_class=1)
    ds, info = data.load(str(tmp_path / "set"), "train", batch_size=4, shuffle=False, augment=False)
    images, labels = _all(ds)
    assert info.splits == ("train", "val") and info.class_names == ["a", "b"]
    np.testing.assert_array_equal(labels, [0, 0, 1, 1])
    expected = np.stack([train[("a", 0)], train[("a", 1)], train[("b", 0)], train[("b", 1)]])
    np.testing.assert_allclose(data.denormalize(images, info), expected, atol=2e-3)
    val_images, val_labels = _all(data.load("folder", "val", data_dir=tmp_path / "set")[0])
    assert val_labels.tolist() == [0]
    with pytest.raises(ValueError, match="allowed: train, val"):
        data.load("folder", "test", data_dir=tmp_path / "set")
    resized, info = data.load(
        "folder", "train", data_dir=tmp_path / "set", image_size=(12, 10), batch_size=4
    )
    assert next(iter(resized))[0].shape == (4, 12, 10, 3)


def test_env_data_root_is_used(tmp_path, monkeypatch):
    folder = shared_data("fashion_mnist")
    monkeypatch.setenv("KERAS_APPS_DATA", str(folder.parent))
    info = data.dataset_info("fashion_mnist")
    assert str(folder) in info.source
    monkeypatch.setenv("KERAS_APPS_DATA", str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError, match=str(tmp_path)):
        data.dataset_info("fashion_mnist")
