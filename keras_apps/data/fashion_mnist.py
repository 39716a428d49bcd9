"""``fashion_mnist``: Fashion-MNIST (Xiao et al. 2017), 28x28x1, 60k train / 10k test.

Read with :func:`keras_apps.data.idx.read_idx` from ``<DATA>/fashion_mnist/`` (the four
``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` files), else from Keras' download
cache (``$KERAS_HOME`` or ``~/.keras``, ``datasets/fashion-mnist/``); ``download=True``
fetches them there with ``keras.datasets.fashion_mnist.load_data()``. Augmentation: pad 4,
random 28x28 crop, horizontal flip. Mean/std: the training set's (72.94, 90.02).
"""

from __future__ import annotations

import functools
import os
import pathlib

import numpy as np

from keras_apps.data._base import (
    DatasetInfo,
    DatasetNotFoundError,
    Source,
    array_examples,
    data_roots,
    where_to_put,
)
from keras_apps.data.idx import read_idx

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MEAN = (72.94,)
STD = (90.02,)
IMAGE_SHAPE = (28, 28, 1)
SPLITS = ("train", "test")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FOLDER = "fashion_mnist"


def keras_cache_folder() -> pathlib.Path:
    """Where ``keras.datasets.fashion_mnist`` keeps its downloads."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return pathlib.Path(home) / "datasets" / "fashion-mnist"


def find_files(data_dir=None) -> tuple[pathlib.Path | None, list[pathlib.Path]]:
    """``(folder holding the four IDX files or None, folders looked in)``."""
    names = [n for pair in FILES.values() for n in pair]
    looked = []
    for root in data_roots(data_dir):
        looked.extend([root / FOLDER, root])
    looked.append(keras_cache_folder())
    for folder in looked:
        if all((folder / n).is_file() for n in names):
            return folder, looked
    return None, looked


@functools.lru_cache(maxsize=4)
def split_arrays(folder: pathlib.Path, split: str):
    """uint8 images [N, 28, 28, 1] and int32 labels of ``split``."""
    images_file, labels_file = FILES[split]
    images = read_idx(folder / images_file)
    labels = read_idx(folder / labels_file)
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"Fashion-MNIST files in {folder} disagree: images {images.shape}, "
            f"labels {labels.shape}."
        )
    return images[..., None].astype(np.uint8), labels.astype(np.int32)


def source(*, data_dir, label, download) -> Source:
    del label  # one label only, checked by the caller
    folder, looked = find_files(data_dir)
    if folder is None and download:
        import keras

        keras.datasets.fashion_mnist.load_data()
        folder = keras_cache_folder()
    if folder is None:
        names = ", ".join(n for pair in FILES.values() for n in pair)
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found. Looked for {names} in: "
            f"{', '.join(str(p) for p in looked)}. Put them in {where_to_put(FOLDER)}; or pass "
            f"download=True (CLI: --download) to fetch them with keras.datasets.fashion_mnist."
        )
    info = DatasetInfo(
        name="fashion_mnist",
        num_classes=len(CLASS_NAMES),
        image_shape=IMAGE_SHAPE,
        class_names=list(CLASS_NAMES),
        mean=MEAN,
        std=STD,
        splits=SPLITS,
        source=f"IDX files in {folder}",
        num_examples={"train": 60000, "test": 10000},
        augmentation="pad_crop_flip",
        pad=4,
    )

    def labels(split):
        return split_arrays(folder, split)[1]

    def select(split, positions):
        images, all_labels = split_arrays(folder, split)
        return array_examples(images[positions], all_labels[positions])

    return Source(info=info, native_shape=IMAGE_SHAPE, labels=labels, select=select)
