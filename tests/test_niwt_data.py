"""keras_apps.niwt.data: the CIFAR-10 attribute matrix, ClassAttributes, the xlsa17
att_splits.mat files, the AwA2 / CUB attribute loaders and the image loaders. Checks against
the real files of ../shared/data/zsl (skipped when absent) use independent numpy references."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import shared_data
from keras_apps.data import DatasetNotFoundError
from keras_apps.niwt import data as zd


# --- ClassAttributes -------------------------------------------------------------------------

def test_class_attributes_normalized_rows_by_hand():
    """(test_niwt_attributes.py covers the CIFAR-10 matrix and ClassAttributes' errors.)"""
    matrix = np.array([[3, 4, 0], [0, 0, 2], [1, 1, 1], [0, 0, 0]], np.float32)
    attrs = zd.ClassAttributes(("a", "b", "c", "d"), ("x", "y", "z"), matrix, seen=(0, 1), unseen=(2, 3))
    norm = attrs.normalized()
    expected = np.array([[0.6, 0.8, 0], [0, 0, 1], [3 ** -0.5] * 3, [0, 0, 0]], np.float32)
    np.testing.assert_allclose(norm.matrix, expected, rtol=1e-6)  # an all-zero row stays zero
    assert norm.seen == (0, 1) and norm.unseen == (2, 3) and norm.class_names == attrs.class_names
    np.testing.assert_array_equal(attrs.matrix, matrix)  # a copy: the original is unchanged


# --- xlsa17 att_splits.mat ----------------------------------------------------------------------

def test_load_att_splits_awa2_locs_and_att_is_row_normalised_original():
    splits = zd.load_att_splits(shared_data("zsl", "awa2", "att_splits.mat"))
    att, orig = splits["att"], splits["original_att"]
    assert att.shape == orig.shape == (50, 85) and att.dtype == np.float32
    ref = orig.astype(np.float64) / np.sqrt((orig.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(att, ref, atol=1e-6)
    assert len(splits["class_names"]) == 50 and splits["class_names"][0] == "antelope"
    sizes = {k: len(splits[k]) for k in zd.LOC_KEYS}
    assert sizes == {"train_loc": 20218, "val_loc": 9191, "trainval_loc": 23527,
                     "test_seen_loc": 5882, "test_unseen_loc": 7913}
    for key in zd.LOC_KEYS:
        assert splits[key].dtype == np.int64 and 0 <= splits[key].min() and splits[key].max() < 37322
    assert splits["train_loc"].min() == 0  # the mat's index 1 -> 0
    seen = set(splits["trainval_loc"]) | set(splits["test_seen_loc"])
    assert not set(splits["trainval_loc"]) & set(splits["test_seen_loc"])
    assert seen == set(splits["train_loc"]) | set(splits["val_loc"])
    assert not seen & set(splits["test_unseen_loc"])
    assert len(seen) + sizes["test_unseen_loc"] == 37322
    every = np.concatenate([splits[k] for k in ("trainval_loc", "test_seen_loc", "test_unseen_loc")])
    assert len(np.unique(every)) == len(every) == 37322 and every.max() == 37321  # each image once


def test_awa2_locs_map_to_the_xlsa17_classes():
    """AwA2's image order is its class folders sorted by name: with the per-class image
    counts, the loc arrays cover exactly the images of the listed classes."""
    splits = zd.load_att_splits(shared_data("zsl", "awa2", "att_splits.mat"))
    names = sorted(zd.AWA2_IMAGE_COUNTS)
    assert set(names) == set(splits["class_names"]) and sum(zd.AWA2_IMAGE_COUNTS.values()) == 37322
    owner = np.repeat(np.arange(50), [zd.AWA2_IMAGE_COUNTS[n] for n in names])

    def covered(key):
        locs = splits[key]
        classes = sorted(set(owner[locs].tolist()))
        assert len(locs) == sum(zd.AWA2_IMAGE_COUNTS[names[c]] for c in classes)  # whole classes
        return {names[c] for c in classes}

    assert covered("test_unseen_loc") == set(zd.XLSA17_AWA2_UNSEEN)
    assert covered("val_loc") == set(zd.XLSA17_AWA2_VALIDATION)
    train = covered("train_loc")
    assert len(train) == 27 and not train & (set(zd.XLSA17_AWA2_UNSEEN) | set(zd.XLSA17_AWA2_VALIDATION))


def test_load_att_splits_cub_and_missing_file(tmp_path):
    splits = zd.load_att_splits(shared_data("zsl", "cub"))  # a folder works too
    assert splits["att"].shape == splits["original_att"].shape == (200, 312)
    assert len(splits["class_names"]) == 200
    assert "train_loc" not in splits and "val_loc" not in splits  # this copy drops them
    assert len(splits["trainval_loc"]) + len(splits["test_seen_loc"]) + len(splits["test_unseen_loc"]) == 11788
    for key in ("trainval_loc", "test_seen_loc", "test_unseen_loc"):
        assert splits[key].min() >= 0 and splits[key].max() < 11788
    with pytest.raises(DatasetNotFoundError, match="att_splits.mat"):
        zd.load_att_splits(tmp_path / "nowhere" / "att_splits.mat")


# --- AwA2 / CUB attribute loaders -----------------------------------------------------------

def test_load_awa2():
    root = shared_data("zsl", "awa2")
    attrs = zd.load_awa2()
    splits = zd.load_att_splits(root / "att_splits.mat")
    assert attrs.matrix.shape == (50, 85) and len(attrs.attribute_names) == 85
    assert attrs.class_names == splits["class_names"]
    assert attrs.attribute_names[:3] == ("black", "white", "blue")
    assert {attrs.class_names[i] for i in attrs.unseen} == {
        "sheep", "dolphin", "bat", "seal", "blue+whale", "rat", "horse", "walrus", "giraffe", "bobcat"}
    assert len(attrs.seen) == 40 and not set(attrs.seen) & set(attrs.unseen)
    assert len(attrs.validation) == 13 and set(attrs.validation) <= set(attrs.seen)
    np.testing.assert_allclose(attrs.matrix, splits["original_att"], atol=0.006)  # %7.2f text
    antelope = attrs.matrix[attrs.class_names.index("antelope")]
    np.testing.assert_array_equal(antelope[:4], [-1, -1, -1, -1])
    assert (attrs.matrix < 0).sum() == 4
    np.testing.assert_allclose(attrs.normalized().matrix, splits["att"], atol=1e-4)
    zeroed = zd.load_awa2(missing_value=0.0)
    assert (zeroed.matrix < 0).sum() == 0 and zeroed.matrix[0, :4].tolist() == [0, 0, 0, 0]
    np.testing.assert_array_equal(zeroed.matrix[1:], attrs.matrix[1:])


def test_load_cub():
    root = shared_data("zsl", "cub")
    attrs = zd.load_cub()
    assert attrs.matrix.shape == (200, 312) and attrs.class_names[0] == "001.Black_footed_Albatross"
    assert attrs.attribute_names[0] == "has_bill_shape::curved_(up_or_down)"
    assert len(attrs.seen) == 150 and len(attrs.unseen) == 50
    assert sorted(attrs.seen + attrs.unseen) == list(range(200)) and attrs.validation is None
    # independent: the mat's test_seen images are of seen classes (labels read here)
    splits = zd.load_att_splits(root)
    rows = np.loadtxt(root / "image_class_labels.txt", dtype=int)
    labels = rows[np.argsort(rows[:, 0]), 1] - 1
    assert set(labels[splits["test_seen_loc"]]) <= set(attrs.seen)
    assert set(labels[splits["test_unseen_loc"]]) == set(attrs.unseen)
    # the mat's class columns, matched by name, are the continuous file's rows
    order = [attrs.class_names.index(n) for n in splits["class_names"]]
    np.testing.assert_allclose(splits["original_att"], attrs.matrix[order], atol=1e-4)


def test_loaders_say_where_to_put_the_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"zsl/awa2.*predicate-matrix-continuous|predicate-matrix-continuous.*zsl/awa2"):
        zd.load_awa2(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="class_attribute_labels_continuous"):
        zd.load_cub(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="No AwA2 images.*JPEGImages"):
        zd.zsl_images("awa2", "train", data_dir=tmp_path, attributes=zd.cifar10_attributes())
    with pytest.raises(ValueError, match="allowed: awa2, cub, caltech_birds2011"):
        zd.zsl_images("imagenet", "train")


def _tiny_awa2(folder, names):
    """A dataset folder: classes.txt, predicates.txt, matrix (AwA2 format)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text("".join(f"{i + 1:6d}\t{n}\n" for i, n in enumerate(names)))
    (folder / "predicates.txt").write_text("     1\tred\n     2\tgreen\n")
    m = np.arange(2 * len(names)).reshape(len(names), 2)
    (folder / "predicate-matrix-continuous.txt").write_text(
        "".join(" ".join(f"{v:7.2f}" for v in row) + "\n" for row in m))


def test_load_awa2_from_the_dataset_folder(tmp_path):
    names = list(zd.AWA2_IMAGE_COUNTS)  # alphabetical; the xlsa17 classes are all there
    _tiny_awa2(tmp_path / "Animals_with_Attributes2", names)
    attrs = zd.load_awa2(tmp_path / "Animals_with_Attributes2")
    assert attrs.class_names == tuple(names) and attrs.attribute_names == ("red", "green")
    np.testing.assert_array_equal(attrs.matrix[3], [6, 7])
    assert attrs.unseen == tuple(sorted(names.index(n) for n in zd.XLSA17_AWA2_UNSEEN))


# --- images ----------------------------------------------------------------------------------

COLOURS = {"zebra": (250, 10, 10), "bat": (10, 250, 10), "horse": (10, 10, 250)}


def _jpeg(colour, size=(12, 10)):
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), colour, np.uint8)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_zsl_images_awa2_folder_gives_global_ids(tmp_path):
    # class order of the attributes differs from the folder's alphabetical order
    attrs = zd.ClassAttributes(("zebra", "bat", "horse"), ("a", "b"),
                               np.array([[1, 0], [0, 1], [1, 1]], np.float32), seen=(0, 1), unseen=(2,))
    for name, colour in COLOURS.items():
        folder = tmp_path / "JPEGImages" / name
        folder.mkdir(parents=True)
        for k in range(5):
            (folder / f"{name}_{k:05d}.jpg").write_bytes(_jpeg(colour))
    ds, info = zd.zsl_images("awa2", "train", attributes=attrs, data_dir=tmp_path, batch_size=16,
                             shuffle=False, augment=False, preprocessing="raw")
    images, labels = next(iter(ds))
    assert images.shape == (12, 10, 12, 3) and labels.dtype == tf.int32  # 4 of 5 per class train
    for image, label in zip(images.numpy(), labels.numpy()):
        assert np.abs(image.mean(axis=(0, 1)) - COLOURS[attrs.class_names[label]]).max() < 8
    assert np.bincount(labels.numpy(), minlength=3).tolist() == [4, 4, 4]
    ds, _ = zd.zsl_images("awa2", "test", class_ids="unseen", attributes=attrs, data_dir=tmp_path,
                          image_size=8, preprocessing="raw")
    images, labels = next(iter(ds))
    assert labels.numpy().tolist() == [2] and images.shape == (1, 8, 8, 3)
    assert np.abs(images.numpy()[0].mean(axis=(0, 1)) - COLOURS["horse"]).max() < 8
    with pytest.raises(ValueError, match="0..2"):
        zd.zsl_images("awa2", class_ids=[5], attributes=attrs, data_dir=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="JPEGImages"):
        zd.zsl_images("awa2", attributes=attrs, data_dir=tmp_path / "empty")
    more = zd.ClassAttributes(attrs.class_names + ("sheep",), ("a", "b"), np.ones((4, 2), np.float32))
    with pytest.raises(DatasetNotFoundError, match=r"no folder for the classes \['sheep'\]"):
        zd.zsl_images("awa2", class_ids=[3], attributes=more, data_dir=tmp_path)


def test_zsl_images_cub_through_tfds_mock(tmp_path):
    """tfds caltech_birds2011 (mocked with known labels): the tfds label is the classes.txt
    id minus 1, so the global id is the label; classes are kept in class_ids' order."""
    tfds = pytest.importorskip("tensorflow_datasets")
    names = tuple(f"{i + 1:03d}.Bird_{i}" for i in range(200))
    attrs = zd.ClassAttributes(names, ("a",), np.ones((200, 1), np.float32))
    png = tf.io.encode_png(np.full((20, 30, 3), 90, "uint8")).numpy()
    tfds_labels = [5, 17, 199, 3, 17]

    def birds(self, split, decoders=None, read_config=None, **kwargs):
        return tf.data.Dataset.from_tensor_slices({"image": [png] * 5, "label": tfds_labels})

    with tfds.testing.mock_data(as_dataset_fn=birds):
        ds, info = zd.zsl_images("cub", "train", class_ids=(199, 17, 5), attributes=attrs, data_dir=tmp_path,
                                 image_size=16, batch_size=8, shuffle=False, augment=False,
                                 download=True)  # mocked: nothing is fetched
        images, labels = next(iter(ds))
    assert images.shape == (4, 16, 16, 3) and labels.dtype == tf.int32
    assert labels.numpy().tolist() == [5, 17, 199, 17]  # class 3 dropped, ids = tfds labels
    assert info.class_ids == (199, 17, 5)
