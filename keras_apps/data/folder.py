"""``folder``: any image folder with one sub-folder per class (``name="folder"`` with
``data_dir=DIR``, or ``name=DIR``).

Classes are the sub-folder names, sorted; images are the ``.png .jpg .jpeg .bmp .gif``
files below each class folder, sorted by path, decoded as RGB. Splits: when ``DIR/train/``
exists, the split folders present among ``train/ val/ validation/ test/`` (each with the
class sub-folders of ``train/``); otherwise a stratified 80/20 ``train``/``test`` split with
:func:`keras_apps.data._base.stratified_split` (seed 0). The first training image (in sorted
order) sets the default size: up to 64 pixels per side, images are delivered at that size
with the CIFAR policy (pad size/8, crop, flip; other sizes are resized to it); larger ones
at 224x224 with "resize_crop_flip". Mean/std: ImageNet's. The paths are the in-memory index
(``classes``, validation carves and ``start_epoch`` select and reorder them). A folder
without class sub-folders (or without images in them) raises DatasetNotFoundError
naming the folder and the expected layout.
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
    Examples,
    Source,
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


def _layout_error(folder: pathlib.Path, found: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"Image folder {folder} {found}. Expected one sub-folder of images "
        f"({' '.join(IMAGE_EXTENSIONS)}) per class: {folder}/<class>/<image>, or split "
        f"folders {folder}/train/<class>/<image> (with optional val/, validation/, test/)."
    )


def scan(folder: pathlib.Path):
    """``(class names, {split: (paths, labels)}, layout description)`` of an image folder."""
    root = folder / "train" if (folder / "train").is_dir() else folder
    class_names = [p.name for p in _class_dirs(root)]
    if not class_names:
        loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        found = (
            f"holds {len(loose)} image(s) but no class sub-folders" if loose
            else "has no class sub-folders"
        )
        raise _layout_error(root, found)
    if root != folder:
        splits = {
            s: _collect(folder / s, class_names) for s in SPLIT_FOLDERS if (folder / s).is_dir()
        }
        layout = f"split folders {', '.join(splits)}"
    else:
        paths, labels = _collect(folder, class_names)
        train, test = stratified_split(labels, test_fraction=0.2, seed=0)
        splits = {"train": (paths[train], labels[train]), "test": (paths[test], labels[test])}
        layout = "stratified 80/20 split (seed 0)"
    if not any(len(paths) for paths, _ in splits.values()):
        raise _layout_error(root, f"has class sub-folders {class_names} but no images")
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

    def labels(split):
        return splits[split][1]

    def select(split, positions):
        paths, all_labels = splits[split]
        paths_t = tf.constant(paths[positions].astype(str))
        labels_t = tf.constant(all_labels[positions])

        def fetch(i):
            image = tf.io.decode_image(
                tf.io.read_file(paths_t[i]), channels=3, expand_animations=False
            )
            return tf.ensure_shape(image, (None, None, 3)), labels_t[i]

        return Examples(count=len(positions), fetch=fetch)

    return Source(info=info, native_shape=None, labels=labels, select=select)
