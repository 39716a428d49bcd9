"""``folder``: any image folder with one sub-folder per class (``name="folder"`` with
``data_dir=DIR``, or ``name=DIR``).

Classes are the sub-folder names, sorted; images are the ``.png .jpg .jpeg .bmp .gif``
files below each class folder, sorted by path, decoded as RGB. Splits: when ``DIR/train/``
exists, the split folders present among ``train/ val/ validation/ test/`` (each with the
class sub-folders of ``train/``); otherwise a stratified 80/20 ``train``/``test`` split with
:func:`keras_apps.data._base.stratified_split` (seed 0). The first training image (in sorted
order) sets the default size: up to 64 pixels per side, images are delivered at that size
with the CIFAR policy (pad size/8, crop, flip; other sizes are resized to it); larger ones
at 224x224 with "resize_crop_flip". Mean/std: ImageNet's.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import tensorflow as tf

from keras_apps.data._base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LARGE_IMAGE_SIZE,
    DatasetInfo,
    DatasetNotFoundError,
    Source,
    balanced_first,
    stratified_split,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLIT_FOLDERS = ("train", "val", "validation", "test")
SMALL_MAX_SIDE = 64


def _class_dirs(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(class_dir: pathlib.Path) -> list[str]:
    return sorted(
        str(p) for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _collect(split_dir: pathlib.Path, class_names: list[str]):
    paths, labels = [], []
    for class_dir in _class_dirs(split_dir):
        if class_dir.name not in class_names:
            raise ValueError(
                f"{class_dir} is not a class of {split_dir.parent / 'train'}; its classes are "
                f"{class_names}."
            )
        files = _images(class_dir)
        paths.extend(files)
        labels.extend([class_names.index(class_dir.name)] * len(files))
    return np.asarray(paths, dtype=object), np.asarray(labels, dtype=np.int32)


def scan(folder: pathlib.Path):
    """``(class names, {split: (paths, labels)}, layout description)`` of an image folder."""
    if (folder / "train").is_dir():
        class_names = [p.name for p in _class_dirs(folder / "train")]
        splits = {
            s: _collect(folder / s, class_names) for s in SPLIT_FOLDERS if (folder / s).is_dir()
        }
        layout = f"split folders {', '.join(splits)}"
    else:
        class_names = [p.name for p in _class_dirs(folder)]
        paths, labels = _collect(folder, class_names)
        train, test = stratified_split(labels, test_fraction=0.2, seed=0)
        splits = {"train": (paths[train], labels[train]), "test": (paths[test], labels[test])}
        layout = "stratified 80/20 split (seed 0)"
    if not class_names or not any(len(p) for p, _ in splits.values()):
        raise DatasetNotFoundError(
            f"No images ({' '.join(IMAGE_EXTENSIONS)}) found in class sub-folders of {folder}. "
            f"Expected {folder}/<class>/<image> or {folder}/train/<class>/<image>."
        )
    return class_names, splits, layout


def source(*, data_dir, label, download) -> Source:
    del label, download  # one label; nothing to download
    if data_dir is None:
        raise ValueError(
            "The image folder dataset needs its directory: load('folder', data_dir=DIR) "
            "(CLI: --data-dir DIR) or load(DIR), with one sub-folder per class."
        )
    folder = pathlib.Path(os.fspath(data_dir)).expanduser()
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"Image folder {folder} does not exist. Pass data_dir=DIR (CLI: --data-dir DIR) "
            f"naming a folder with one sub-folder of images per class."
        )
    class_names, splits, layout = scan(folder)
    from PIL import Image

    training_first = sorted(splits, key=lambda s: s != "train")
    first_image = next(splits[s][0][0] for s in training_first if len(splits[s][0]))
    with Image.open(first_image) as first:
        width, height = first.size
    small = max(height, width) <= SMALL_MAX_SIDE
    info = DatasetInfo(
        name="folder",
        num_classes=len(class_names),
        image_shape=(height, width, 3) if small else (*LARGE_IMAGE_SIZE, 3),
        class_names=class_names,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        splits=tuple(splits),
        source=f"image folder {folder} ({layout})",
        num_examples={s: len(p) for s, (p, _) in splits.items()},
        augmentation="pad_crop_flip" if small else "resize_crop_flip",
        pad=max(1, round(min(height, width) / 8)) if small else 0,
    )

    def read(split, *, limit, shuffle, seed):
        paths, labels = splits[split]
        if limit is not None:
            idx = balanced_first(labels, limit)
            paths, labels = paths[idx], labels[idx]
        paths_t = tf.constant(paths.astype(str))
        labels_t = tf.constant(labels)
        ds = tf.data.Dataset.range(len(paths))
        if shuffle and len(paths) > 1:
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

        def decode(i):
            image = tf.io.decode_image(
                tf.io.read_file(paths_t[i]), channels=3, expand_animations=False
            )
            return tf.ensure_shape(image, (None, None, 3)), labels_t[i]

        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return Source(info=info, read=read, native_shape=None)
