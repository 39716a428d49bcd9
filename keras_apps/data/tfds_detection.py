"""A tensorflow-datasets detection set (PASCAL VOC ``voc`` = ``voc/2007``, ``voc/2012``, or
any set with an ``image`` and ``objects`` holding ``bbox`` and ``label``) with the interface of
:class:`keras_apps.data.voc.VOCFolder`: ``class_names``, ``splits``, ``records(split)`` and
``image(record)``, so that the OverFeat pipeline runs on it unchanged.

tfds stores boxes normalised as ``(ymin, xmin, ymax, xmax)``; records carry them in pixels as
``(x1, y1, x2, y2)`` (times the image's width and height), the class ids of
``objects/label`` (names from its ClassLabel feature), ``objects/is_difficult`` where the set
has it (else all False). Boxes narrower than a pixel after the conversion are dropped (VOC
has none). A split is read once, its encoded images kept in memory and decoded on demand.
Nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_apps.data._base import DatasetNotFoundError
from keras_apps.data.tfds_sets import _tfds, find_builder

__all__ = ["TFDSDetection"]


class TFDSDetection:
    """A tfds detection set read into records (see the module docstring)."""

    def __init__(self, tfds_name: str = "voc", *, data_dir=None, download: bool = False):
        builder, looked = find_builder(tfds_name, data_dir=data_dir, download=download)
        if builder is None:
            raise DatasetNotFoundError(
                f"tfds {tfds_name!r} is not prepared (looked in {', '.join(looked)}); prepare it with "
                f"tfds (`tfds build {tfds_name}`) on a machine with the data, or pass download=True "
                "(CLI: --download)."
            )
        features = builder.info.features
        if "image" not in features or "objects" not in features:
            raise ValueError(
                f"tfds {tfds_name!r} has no 'image' and 'objects' features; a detection set needs "
                f"both (features: {', '.join(features)})."
            )
        objects = features["objects"]
        for key in ("bbox", "label"):
            if key not in objects:
                raise ValueError(f"tfds {tfds_name!r}: its 'objects' have no {key!r} (they have {', '.join(objects)}).")
        self.builder = builder
        self.root = f"tfds {builder.info.full_name} in {builder.data_dir}"
        self.class_names = list(objects["label"].names)
        known = tuple(builder.info.splits)
        self.splits = known or ("train", "validation", "test")
        self._encoded: dict[str, bytes] = {}
        self._records: dict[str, list] = {}

    def records(self, split: str) -> list[dict]:
        """Every example of ``split`` as a record ``{id, image_path, boxes, classes,
        difficult, width, height}`` (``image_path`` names the tfds example)."""
        if split not in self.splits:
            raise ValueError(f"Unknown split {split!r} of {self.root}; allowed: {', '.join(self.splits)}.")
        if split in self._records:
            return self._records[split]
        tfds = _tfds()
        ds = self.builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
        records = []
        for index, example in enumerate(ds.as_numpy_iterator()):
            encoded = example["image"]
            shape = tf.io.extract_jpeg_shape(encoded) if encoded[:2] == b"\xff\xd8" else tf.shape(
                tf.io.decode_image(encoded, channels=3, expand_animations=False))
            height, width = int(shape[0]), int(shape[1])
            objects = example["objects"]
            bbox = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)
            boxes = np.stack([bbox[:, 1] * width, bbox[:, 0] * height, bbox[:, 3] * width, bbox[:, 2] * height], 1)
            classes = np.asarray(objects["label"], np.int32).reshape(-1)
            difficult = np.asarray(objects.get("is_difficult", np.zeros(len(classes), bool)), bool).reshape(-1)
            keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
            name = example.get("image/filename", b"")
            name = name.decode() if isinstance(name, bytes) else str(name)
            record_id = f"{split}/{index}"
            self._encoded[record_id] = encoded
            records.append({
                "id": record_id,
                "image_path": f"{self.root}: {split}[{index}]" + (f" {name}" if name else ""),
                "boxes": boxes[keep].astype(np.float32),
                "classes": classes[keep],
                "difficult": difficult[keep],
                "width": width,
                "height": height,
            })
        self._records[split] = records
        return records

    def image(self, record) -> np.ndarray:
        """The decoded RGB uint8 image of a record (or its id)."""
        record_id = record if isinstance(record, str) else record["id"]
        if record_id not in self._encoded:
            raise ValueError(f"No image {record_id!r}: read its split with records() first.")
        return tf.io.decode_image(self._encoded[record_id], channels=3, expand_animations=False).numpy()
