"""Zero-shot data: xlsa17 att_splits, AwA2 / CUB attribute files and their images."""

import numpy as np
import pytest

from keras_apps.data import DatasetNotFoundError
from keras_apps.data._base import data_roots
from keras_apps.niwt import data as zsl


def _zsl_root():
    for root in data_roots():
        if (root / "zsl" / "awa2" / "att_splits.mat").is_file() and (root / "zsl" / "cub").is_dir():
            return root / "zsl"
    pytest.skip("../shared/data/zsl (AwA2 / CUB attribute files, xlsa17 splits) is absent; see PROVENANCE.md")


def test_att_splits_are_transposed_zero_based_and_att_is_the_normalised_original():
    splits = zsl.load_att_splits(_zsl_root() / "awa2")
    att, original = splits["att"], splits["original_att"]
    assert att.shape == original.shape == (50, 85)
    np.testing.assert_allclose(att, original / np.linalg.norm(original, axis=1, keepdims=True), atol=1e-5)
    every = np.concatenate([splits[k] for k in ("trainval_loc", "test_seen_loc", "test_unseen_loc")])
    assert every.min() == 0 and every.max() == sum(zsl.AWA2_IMAGE_COUNTS.values()) - 1
    assert len(np.unique(every)) == len(every) == 37322  # each image once


def test_awa2_classes_and_the_xlsa17_split():
    root = _zsl_root()
    awa2 = zsl.load_awa2()
    assert awa2.matrix.shape == (50, 85) and awa2.class_names[:2] == ("antelope", "grizzly+bear")
    assert awa2.class_names == zsl.load_att_splits(root / "awa2")["class_names"]
    assert sorted(awa2.class_names[i] for i in awa2.unseen) == sorted(zsl.XLSA17_AWA2_UNSEEN)
    assert len(awa2.seen) == 40 and set(awa2.validation) <= set(awa2.seen) and len(awa2.validation) == 13
    # the loc arrays, mapped to classes through the alphabetical image order, agree with the class lists
    splits = zsl.load_att_splits(root / "awa2")
    names = sorted(zsl.AWA2_IMAGE_COUNTS)
    bounds = np.cumsum([zsl.AWA2_IMAGE_COUNTS[n] for n in names])
    classes_of = lambda loc: {names[i] for i in np.searchsorted(bounds, loc, side="right")}  # noqa: E731
    assert classes_of(splits["test_unseen_loc"]) == set(zsl.XLSA17_AWA2_UNSEEN)
    assert classes_of(splits["val_loc"]) == set(zsl.XLSA17_AWA2_VALIDATION)
    np.testing.assert_allclose(awa2.normalized().matrix, splits["att"], atol=1e-5)


def test_cub_split_from_the_image_labels():
    _zsl_root()
    cub = zsl.load_cub()
    assert cub.matrix.shape == (200, 312)
    assert len(cub.seen) == 150 and len(cub.unseen) == 50 and not set(cub.seen) & set(cub.unseen)
    assert cub.attribute_names[0] == "has_bill_shape::curved_(up_or_down)"


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="att_splits.mat"):
        zsl.load_att_splits(tmp_path / "nothing")
    with pytest.raises(DatasetNotFoundError, match="AwA2"):
        zsl.zsl_images("awa2", "train", data_dir=tmp_path, attributes=zsl.cifar10_attributes())
    with pytest.raises(ValueError, match="allowed: awa2, cub, caltech_birds2011"):
        zsl.zsl_images("imagenet", "train")


def test_awa2_images_from_a_folder_carry_global_class_ids(tmp_path):
    import tensorflow as tf

    _zsl_root()
    awa2 = zsl.load_awa2()
    picked = [awa2.class_names.index(n) for n in ("zebra", "horse", "antelope")]
    for k, class_id in enumerate(picked):
        folder = tmp_path / "JPEGImages" / awa2.class_names[class_id]
        folder.mkdir(parents=True)
        for i in range(5):
            pixels = np.full((12, 12, 3), 40 * k + i, "uint8")
            (folder / f"{i}.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    ds, _ = zsl.zsl_images("awa2", "train", class_ids=picked, data_dir=tmp_path, image_size=8, batch_size=64,
                           shuffle=False, augment=False)
    images, labels = next(iter(ds))
    assert images.shape[1:] == (8, 8, 3)
    assert set(labels.numpy().tolist()) == set(picked)  # ids of the attribute matrix, not folder order
    with pytest.raises(DatasetNotFoundError, match="no folder for the classes"):
        zsl.zsl_images("awa2", "train", class_ids=[awa2.class_names.index("sheep")], data_dir=tmp_path)


def test_cub_images_from_tfds_carry_the_classes_txt_order():
    tfds = pytest.importorskip("tensorflow_datasets")
    import tensorflow as tf

    _zsl_root()
    cub = zsl.load_cub()
    png = tf.io.encode_png(np.full((20, 30, 3), 90, "uint8")).numpy()

    def birds(self, split, decoders=None, read_config=None, **kwargs):
        return tf.data.Dataset.from_tensor_slices({"image": [png] * 3, "label": [5, 17, 199]})

    with tfds.testing.mock_data(as_dataset_fn=birds):
        ds, _ = zsl.zsl_images("cub", "train", class_ids=[5, 17, 199], image_size=16, batch_size=3,
                               shuffle=False, augment=False, download=True)  # mocked: nothing is fetched
        images, labels = next(iter(ds))
    assert images.shape == (3, 16, 16, 3)
    assert sorted(labels.numpy().tolist()) == [5, 17, 199]
    assert cub.class_names[5].startswith("006.") and cub.class_names[199].startswith("200.")
