"""PASCAL VOC reading (good, malformed and imperfect files), the boxes pipeline on a tiny VOC
folder (resize, crop and flip moving the boxes as computed by hand, seeded augmentation),
and BCCD (skipped when ../shared/data is absent)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_apps import data
from keras_apps.data.detection import crop_flip
from keras_apps.data.voc import VOCFolder, VOCParseError, read_annotation

from conftest import shared_data


def _xml(objects, *, width=60, height=40, filename="img.png", size=True):
    parts = ["<annotation>", f"<filename>{filename}</filename>"]
    if size:
        parts.append(f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>")
    for obj in objects:
        name, box = obj[0], obj[1]
        extra = f"<difficult>{int(obj[2])}</difficult>" if len(obj) > 2 else ""
        coords = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        parts.append(f"<object><name>{name}</name>{extra}<bndbox>{coords}</bndbox></object>")
    parts.append("</annotation>")
    return "".join(parts)


def _write(tmp_path, text, name="a.xml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_annotation_good_and_imperfect_boxes(tmp_path):
    path = _write(tmp_path, _xml([
        ("cat", (10, 5, 30, 25)),
        ("dog", (35, 10, 61, 35), 1),  # one pixel past the right edge: clipped to 60
        ("dog", (7, 7, 7, 20)),  # zero area (a point-like box): dropped
    ]))
    note = read_annotation(path)
    assert (note["id"], note["filename"], note["width"], note["height"]) == ("a", "img.png", 60, 40)
    np.testing.assert_array_equal(note["boxes"], [[10, 5, 30, 25], [35, 10, 60, 35]])
    assert note["boxes"].dtype == np.float32
    assert note["names"] == ["cat", "dog"]
    np.testing.assert_array_equal(note["difficult"], [False, True])
    assert note["dropped"] == 1
    with pytest.raises(VOCParseError, match=r"a\.xml: object 2: \(dog\) .* zero area"):
        read_annotation(path, degenerate="error")
    empty = read_annotation(_write(tmp_path, _xml([]), "empty.xml"))
    assert empty["boxes"].shape == (0, 4) and empty["names"] == [] and empty["difficult"].shape == (0,)


@pytest.mark.parametrize(
    "text, words",
    [
        ("<annotation><size>", ["bad.xml", "not well-formed XML"]),
        ("<root/>", ["bad.xml", "<root>", "expected <annotation>"]),
        (_xml([("cat", (1, 1, 5, 5))], size=False), ["bad.xml", "missing <size>"]),
        (_xml([("cat", (1, 1, 5, 5))]).replace("<height>40</height>", ""), ["missing <height>"]),
        (_xml([("cat", (1, 1, 5, 5))]).replace("<ymax>5</ymax>", ""), ["object 0", "(cat)", "<ymax>"]),
        (_xml([("cat", (1, 1, "five", 5))]), ["<xmax> is 'five'", "not a number"]),
        (_xml([("cat", (1, 1, 5, 5)), ("cat", (9, 1, 5, 5))]), ["object 1", "xmax < xmin"]),
        (_xml([("cat", (1, 8, 5, 5))]), ["object 0", "ymax < ymin"]),
        (_xml([("cat", (1, 1, 70, 5))]), ["outside the 60x40 image", "1 pixel"]),
        (_xml([("cat", (1, 1, 5, 5))]).replace("<name>cat</name>", ""), ["object 0", "missing <name>"]),
    ],
)
def test_read_annotation_errors_name_the_file_and_the_problem(tmp_path, text, words):
    path = _write(tmp_path, text, "bad.xml")
    with pytest.raises(VOCParseError) as info:
        read_annotation(path)
    for word in words:
        assert word in str(info.value)
    assert isinstance(info.value, ValueError)


def test_read_annotation_unknown_class(tmp_path):
    path = _write(tmp_path, _xml([("cat", (1, 1, 5, 5)), ("zebra", (1, 1, 5, 5))]))
    with pytest.raises(VOCParseError, match=r"object 1: class 'zebra' is not one of .*'cat', 'dog'"):
        read_annotation(path, class_names=["cat", "dog"])


@pytest.fixture
def voc_root(tmp_path):
    """A 3-image VOC folder: 40x60 PNGs (image 0 a white cat box on black)."""
    from PIL import Image

    root = tmp_path / "VOCtiny"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    objects = {
        "img0": [("cat", (10, 5, 30, 25)), ("dog", (35, 10, 55, 35), 1)],
        "img1": [],
        "img2": [("dog", (40, 4, 61, 20))],
    }
    for k, (image_id, objs) in enumerate(objects.items()):
        pixels = np.zeros((40, 60, 3), np.uint8)
        pixels[5:25, 10:30] = 255
        pixels[..., 2] = 10 * k
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.png")
        (root / "Annotations" / f"{image_id}.xml").write_text(_xml(objs, filename=f"{image_id}.png"))
    (root / "ImageSets/Main/train.txt").write_text("img0\nimg1\n")
    (root / "ImageSets/Main/test.txt").write_text("img2\n")
    (root / "ImageSets/Main/cat_train.txt").write_text("img0  1\nimg1 -1\n")
    return root


def test_voc_folder_records(voc_root):
    folder = VOCFolder(voc_root)
    assert folder.splits == ("train", "test")  # the per-class cat_train.txt is skipped
    assert folder.ids("train") == ["img0", "img1"]
    assert folder.class_names == ["cat", "dog"]  # sorted union
    record = folder.record("img0")
    assert record["image_path"].endswith("img0.png")
    np.testing.assert_array_equal(record["classes"], [0, 1])
    assert record["classes"].dtype == np.int32
    np.testing.assert_array_equal(record["difficult"], [False, True])
    assert folder.records("train")[1]["boxes"].shape == (0, 4)
    image = folder.image(record)
    assert image.dtype == np.uint8 and image.shape == (40, 60, 3)
    assert image[5:25, 10:30, 0].min() == 255 and image[:5, :, 0].max() == 0
    with pytest.raises(ValueError, match=r"Unknown split 'val'.*train, test"):
        folder.ids("val")
    with pytest.raises(VOCParseError, match=r"img2\.xml: class\(es\) \['dog'\] are not among"):
        VOCFolder(voc_root, class_names=["cat"]).record("img2")


def test_crop_flip_moves_boxes_exactly():
    pixels = np.zeros((40, 60, 3), np.float32)
    pixels[5:25, 10:30] = 255
    boxes = np.array(
        [[10, 5, 30, 25], [0, 0, 6, 10], [40, 0, 50, 10], [20, 30, 44, 40]], np.float32
    )
    crop = (4, 8, 24, 36)  # top, left, height, width: x 8..44, y 4..28
    image, moved, kept = crop_flip(pixels, boxes, crop, False, (24, 36))
    # box 0 inside: shifted by (8, 4); box 1: x 8..6 -> nothing inside, dropped;
    # box 2: x 40..44 of 40..50 (4/10 of its width) -> 40 % inside, dropped;
    # box 3: x 20..44, y 30..40 is below the crop (y < 28) -> dropped
    np.testing.assert_array_equal(kept.numpy(), [True, False, False, False])
    np.testing.assert_allclose(moved.numpy(), [[2, 1, 22, 21]])
    ys, xs = np.nonzero(image.numpy()[..., 0] == 255)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (2, 1, 22, 21)
    # box 2 keeping 6/10 of its width survives a crop to x 44..60, clipped to x 0..6
    _, moved, kept = crop_flip(pixels, boxes[2:3], (0, 44, 40, 16), False, (40, 16))
    np.testing.assert_allclose(moved.numpy(), [[0, 0, 6, 10]])
    # flip and a 2x upscale: x -> 72 - 2 x; the white block moves the same way
    image, moved, _ = crop_flip(pixels, boxes[:1], crop, True, (48, 72))
    np.testing.assert_allclose(moved.numpy(), [[72 - 44, 2, 72 - 4, 42]])
    white = image.numpy()[..., 0] > 250
    ys, xs = np.nonzero(white)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (72 - 44 + 1, 3, 72 - 4 - 1, 41)


def test_load_voc_folder_boxes(voc_root):
    info = data.dataset_info(voc_root)
    assert (info.label, info.class_names, info.image_shape) == ("boxes", ["cat", "dog"], (40, 60, 3))
    assert info.num_examples == {"train": 2, "test": 1}
    ds, info = data.load(str(voc_root), "test", batch_size=2, image_size=(20, 30), preprocessing="raw")
    images, targets = next(iter(ds))
    assert images.shape == (1, 20, 30, 3) and images.dtype == tf.float32
    assert isinstance(targets["boxes"], tf.RaggedTensor)
    # the clipped (40, 4, 60, 20) box at half size
    np.testing.assert_allclose(targets["boxes"].to_list(), [[[20, 2, 30, 10]]])
    assert targets["classes"].dtype == tf.int32 and targets["classes"].to_list() == [[1]]
    assert targets["difficult"].to_list() == [[False]]
    ds, _ = data.load("voc_folder", "train", data_dir=voc_root, batch_size=2, augment=False,
                      shuffle=False)
    images, targets = next(iter(ds))
    assert targets["boxes"].row_lengths().numpy().tolist() == [2, 0]  # the empty image kept
    np.testing.assert_allclose(
        images[0].numpy(), (np.asarray(VOCFolder(voc_root).image("img0"), np.float32)
                            - info.mean) / info.std, atol=1e-5,
    )


def test_boxes_augmentation_is_seeded_and_moves_boxes_with_pixels(voc_root):
    def batches(seed):
        ds, _ = data.load(voc_root, "train", batch_size=2, seed=seed, preprocessing="raw",
                          shuffle=False)
        return [(x.numpy(), y["boxes"].to_list(), y["classes"].to_list()) for x, y in ds]

    first, again, other = batches(5), batches(5), batches(6)
    np.testing.assert_array_equal(first[0][0], again[0][0])
    assert first[0][1] == again[0][1]
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))
    for images, boxes, classes in (first[0], other[0]):
        cat = images[0, ..., 0] > 128  # the white block of image 0
        if 0 in classes[0]:
            x1, y1, x2, y2 = boxes[0][classes[0].index(0)]
            ys, xs = np.nonzero(cat)
            assert abs(xs.min() - x1) <= 1.5 and abs(xs.max() + 1 - x2) <= 1.5
            assert abs(ys.min() - y1) <= 1.5 and abs(ys.max() + 1 - y2) <= 1.5
        flat = np.asarray([box for image_boxes in boxes for box in image_boxes]).reshape(-1, 4)
        assert (flat >= 0).all() and (flat[:, ::2] <= 60).all() and (flat[:, 1::2] <= 40).all()


def test_boxes_argument_errors(voc_root):
    with pytest.raises(ValueError, match=r"label='fine' is not available for 'voc_folder'; allowed: boxes"):
        data.load(voc_root, label="fine")
    with pytest.raises(ValueError, match="start_epoch is not supported for the detection set"):
        data.load(voc_root, start_epoch=0)
    with pytest.raises(ValueError, match=r"label='boxes' is not available for 'digits'"):
        data.load("digits", label="boxes")
    with pytest.raises(ValueError, match="needs its directory"):
        data.load("voc_folder")
    assert "bccd" in data.list_datasets() and "voc_folder" in data.list_datasets()


def test_bccd():
    root = shared_data("detection", "bccd", "BCCD")
    info = data.dataset_info("bccd")
    assert info.class_names == ["RBC", "WBC", "Platelets"]
    assert info.num_examples == {"train": 205, "val": 87, "trainval": 292, "test": 72}
    assert info.image_shape == (480, 640, 3) and info.label == "boxes"
    folder = VOCFolder(root, class_names=("RBC", "WBC", "Platelets"))
    records = folder.records("trainval") + folder.records("test")
    assert len(records) == 364
    # 4888 boxes, of which two are zero-area points (BloodImage_00338, _00343), dropped
    assert sum(len(r["boxes"]) for r in records) == 4886
    assert sum(folder.annotation(r["id"])["dropped"] for r in records) == 2
    ds, loaded = data.load("bccd", "train", batch_size=2, limit=2)
    images, targets = next(iter(ds))
    assert images.shape == (2, 480, 640, 3) and loaded.steps_per_epoch == 1
    assert targets["boxes"].shape.as_list() == [2, None, 4]
    boxes = targets["boxes"].flat_values.numpy()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert boxes.min() >= 0 and boxes[:, 2].max() <= 640 and boxes[:, 3].max() <= 480


# ------------------------------------------------------------------ tfds detection sets


def _tfds_voc_examples(self, split, decoders=None, read_config=None, **kwargs):
    """Three PNG images of 240x300 with normalised (ymin, xmin, ymax, xmax) boxes."""
    import tensorflow as tf

    examples = [
        ([[0.1, 0.2, 0.5, 0.6], [0.25, 0.5, 0.75, 0.9]], [14, 2], [False, True]),
        ([], [], []),
        ([[0.0, 0.0, 1.0, 0.5]], [7], [False]),
    ]

    def png(i):
        pixels = np.full((240, 300, 3), 40 * i, np.uint8)
        return tf.io.encode_png(pixels).numpy()

    return tf.data.Dataset.from_generator(
        lambda: (
            {"image": png(i), "objects": {"bbox": np.array(b, np.float32).reshape(-1, 4),
                                          "label": np.array(c, np.int64),
                                          "is_difficult": np.array(d, bool)}}
            for i, (b, c, d) in enumerate(examples)
        ),
        output_signature={
            "image": tf.TensorSpec((), tf.string),
            "objects": {"bbox": tf.TensorSpec((None, 4), tf.float32), "label": tf.TensorSpec((None,), tf.int64),
                        "is_difficult": tf.TensorSpec((None,), tf.bool)},
        },
    )


def test_tfds_voc_records_in_pixels():
    tfds = pytest.importorskip("tensorflow_datasets")
    from keras_apps import data

    with tfds.testing.mock_data(as_dataset_fn=_tfds_voc_examples):
        folder = data.detection_folder("voc", download=True)
        assert len(folder.class_names) == 20 and folder.class_names[14] == "person"
        records = folder.records("test")
    assert [r["width"] for r in records] == [300] * 3 and [r["height"] for r in records] == [240] * 3
    # (ymin, xmin, ymax, xmax) normalised -> (x1, y1, x2, y2) pixels, by hand
    np.testing.assert_allclose(records[0]["boxes"], [[60, 24, 180, 120], [150, 60, 270, 180]], atol=1e-3)
    np.testing.assert_array_equal(records[0]["classes"], [14, 2])
    np.testing.assert_array_equal(records[0]["difficult"], [False, True])
    assert records[1]["boxes"].shape == (0, 4)
    np.testing.assert_allclose(records[2]["boxes"], [[0, 0, 150, 240]], atol=1e-3)
    image = folder.image(records[2])
    assert image.shape == (240, 300, 3) and image.dtype == np.uint8 and np.all(image == 80)
    with pytest.raises(ValueError, match="split"):
        folder.records("nope")
