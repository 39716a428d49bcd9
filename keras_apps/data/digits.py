"""``digits``: scikit-learn's bundled 8x8 handwritten digits (UCI optdigits test set, 1797
images, 10 classes), the suite's zero-setup dataset.

Pixels 0..16 are scaled by 255/16 to [0, 255]; images are delivered resized (bilinear) to
32x32x1 so the small CIFAR networks train on them. Splits: a stratified 80/20 train/test
split, :func:`keras_apps.data._base.stratified_split` with seed 0 (1438 / 359 images), each
split in the original order. Training augmentation: pad 4 (one original pixel), random
32x32 crop; no flip (mirrored digits change meaning). Mean/std: the train split at 32x32.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from keras_apps.data._base import (
    DatasetInfo,
    Source,
    array_examples,
    stratified_split,
)

IMAGE_SHAPE = (32, 32, 1)
NATIVE_SHAPE = (8, 8, 1)
SPLITS = ("train", "test")


@functools.lru_cache(maxsize=1)
def _arrays():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images.astype(np.float32) * (255.0 / 16.0))[..., None]
    labels = digits.target.astype(np.int32)
    train, test = stratified_split(labels, test_fraction=0.2, seed=0)
    return images, labels, {"train": train, "test": test}


@functools.lru_cache(maxsize=1)
def _train_stats():
    images, _, split = _arrays()
    resized = tf.image.resize(images[split["train"]], IMAGE_SHAPE[:2], antialias=True).numpy()
    return (float(resized.mean()),), (float(resized.std()),)


def source(*, data_dir, label, download) -> Source:
    del data_dir, label, download  # bundled with scikit-learn
    _, _, split = _arrays()
    mean, std = _train_stats()
    info = DatasetInfo(
        name="digits",
        num_classes=10,
        image_shape=IMAGE_SHAPE,
        class_names=[str(d) for d in range(10)],
        mean=mean,
        std=std,
        splits=SPLITS,
        source="sklearn.datasets.load_digits (bundled with scikit-learn)",
        num_examples={s: len(split[s]) for s in SPLITS},
        augmentation="pad_crop",
        pad=4,
    )

    def labels(split_name):
        _, all_labels, splits = _arrays()
        return all_labels[splits[split_name]]

    def select(split_name, positions):
        images, all_labels, splits = _arrays()
        idx = splits[split_name][positions]
        return array_examples(images[idx], all_labels[idx])

    return Source(info=info, native_shape=NATIVE_SHAPE, labels=labels, select=select)
