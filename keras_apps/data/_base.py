"""What every source shares: :class:`DatasetInfo`, :class:`Source`, errors, data roots, the
cache folder and the array helpers (stratified split, class-balanced ``limit``, indexed
reading of in-memory arrays)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

from keras_apps._atomic import atomic_file

#: CIFAR-10 / CIFAR-100 training-set statistics in [0, 255] pixel units (fb.resnet.torch;
#: weiaicunzai/pytorch-cifar100 0.5071, 0.4865, 0.4409 / 0.2673, 0.2564, 0.2762 times 255).
CIFAR10_MEAN = (125.3, 123.0, 113.9)
CIFAR10_STD = (63.0, 62.1, 66.7)
#: Correlation of the R, G, B values of CIFAR-10's training pixels (all 50,000 images of the
#: JPEG shards, measured with ``np.corrcoef``; rows/columns R, G, B); it gives the std of
#: their BT.601 luma under ``channels=1`` (:mod:`keras_apps.data.channels`).
CIFAR10_CHANNEL_CORRELATION = ((1.0, 0.9202, 0.8042), (0.9202, 1.0, 0.9146), (0.8042, 0.9146, 1.0))
CIFAR100_MEAN = (129.304, 124.070, 112.434)
CIFAR100_STD = (68.170, 65.392, 70.418)
#: Per-channel ImageNet statistics in [0, 255] pixel units (the torchvision / timm values
#: 0.485, 0.456, 0.406 and 0.229, 0.224, 0.225 times 255); the default for large-image sets.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
#: Their channel averages, the default for grayscale sets without published statistics.
IMAGENET_GRAY_MEAN = (114.495,)
IMAGENET_GRAY_STD = (57.63,)

#: Shorter side of the eval resize is ``crop size / CROP_FRACTION`` (256 for a 224 crop).
CROP_FRACTION = 0.875
#: Default crop of the sets whose images vary in size (ImageNet-style sources).
LARGE_IMAGE_SIZE = (224, 224)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not where they were looked for; the message says where to
    put which files."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a dataset delivers through :func:`keras_apps.data.load`.

    Attributes:
        name: dataset name as passed to ``load``.
        num_classes: number of classes of the delivered label (the fine label for
            ``label="both"``).
        image_shape: (H, W, C) of the delivered images at the default ``image_size``, C
            the delivered channels (``channels=`` of ``load``); the info returned by
            ``load`` carries the shape actually delivered.
        class_names: class names, index = label.
        mean, std: per-channel statistics of the delivered channels in [0, 255] pixel
            units; delivered images are ``(pixels - mean) / std`` (see :func:`normalize`,
            :func:`denormalize`; a ``channels`` conversion converts them as
            :func:`keras_apps.data.channels.converted_statistics` says).
        splits: the split names ``load`` accepts (tfds sets also take slices such as
            ``"train[:10%]"``).
        source: where the examples are read from.
        num_examples: examples per split, ``None`` where unknown.
        label: the label choice ("fine", "coarse", "both" or "multi").
        coarse_class_names: CIFAR-100 coarse names (``label="both"``), else empty.
        augmentation: training augmentation: "pad_crop" / "pad_crop_flip" (zero-pad by
            ``pad`` pixels, random crop back to size, random horizontal flip) or
            "resize_crop_flip" (resize the shorter side to size / 0.875, random crop, flip).
        pad: zero padding of the random crop at ``image_shape`` (scaled with
            ``image_size``); 0 for "resize_crop_flip".
        train_split: the split that ``augment=None`` / ``shuffle=None`` treat as training.
        class_ids: the source's class ids of the delivered classes, index = delivered
            label (``classes=`` of ``load``; all classes in order by default).
        preprocessing: how the pixels were mapped (a mode of
            :data:`keras_apps.data.PREPROCESSING_MODES`; "dataset" = ``mean`` / ``std``).
        subset: "training" / "validation" when ``validation_fraction`` carved the
            training split, else ``None``.
        validation_fraction: the carved fraction, ``None`` without a carve.
        steps_per_epoch: batches per epoch of the dataset ``load`` returned (``None``
            where the count is unknown, e.g. a class-filtered tfds stream).
    """

    name: str
    num_classes: int
    image_shape: tuple
    class_names: list
    mean: tuple
    std: tuple
    splits: tuple
    source: str
    num_examples: Mapping = dataclasses.field(default_factory=dict)
    label: str = "fine"
    coarse_class_names: list = dataclasses.field(default_factory=list)
    augmentation: str = "pad_crop_flip"
    pad: int = 4
    train_split: str = "train"
    class_ids: tuple | None = None
    preprocessing: str = "dataset"
    subset: str | None = None
    validation_fraction: float | None = None
    steps_per_epoch: int | None = None

    def __post_init__(self):
        if self.class_ids is None:
            object.__setattr__(self, "class_ids", tuple(range(self.num_classes)))


@dataclasses.dataclass(frozen=True)
class Examples:
    """Chosen examples of a split: ``fetch(i)`` (int64 scalar tensor in ``[0, count)``)
    returns the ``(image, label)`` of the i-th, images uint8 or float32 in [0, 255]."""

    count: int
    fetch: Callable


@dataclasses.dataclass(frozen=True)
class Source:
    """A located dataset: its info and how to read one split.

    Indexed sources (an in-memory index of the split) give ``labels(split)``, the int
    class label of every example in the split's order, and ``select(split, indices)``, the
    :class:`Examples` at those positions (``balanced_limit``: ``limit`` takes the first of
    each class in turn). Streaming sources give ``read(split, *, keep, positions, limit,
    shuffle, seed)``: a tf.data.Dataset of ``(image, label)`` (already shuffled when asked)
    holding the records whose position in the unshuffled split is set in ``positions`` (a
    bool array, ``None`` = all) and whose class is set in ``keep`` (``None`` = all), the
    first ``limit`` of them; and ``label_column(split)``, the class label of every record
    (-1 where it has none). A streaming source may also give ``labels``/``select`` for
    the uses that need an index (``start_epoch``).
    ``native_shape`` is the stored (H, W, C), ``None`` when images vary in size.
    ``slicing``: whether tfds split slices ("train[:10%]") are accepted.
    ``count(split)``: examples in a split (``None`` if unknown).
    ``channel_correlation``: the 3 x 3 correlation of the stored RGB channels over the
    pixels ``info.std`` describes (``None`` where unknown), for the luma std of
    ``channels=1``.
    """

    info: DatasetInfo
    native_shape: tuple | None
    slicing: bool = False
    labels: Callable[[str], np.ndarray] | None = None
    select: Callable[[str, np.ndarray], Examples] | None = None
    balanced_limit: bool = True
    read: Callable[..., tf.data.Dataset] | None = None
    label_column: Callable[[str], np.ndarray] | None = None
    count: Callable[[str], int | None] | None = None
    index_note: str = ""
    channel_correlation: tuple | None = None


def repo_root() -> pathlib.Path:
    """The folder holding the ``keras_apps`` package."""
    return pathlib.Path(__file__).resolve().parents[2]


def data_roots(data_dir=None) -> list[pathlib.Path]:
    """Data roots in priority order: ``data_dir``, else ``$KERAS_APPS_DATA``, else
    ``<cwd>/../shared/data`` and ``<repo root>/../shared/data``."""
    if data_dir is not None:
        return [pathlib.Path(os.fspath(data_dir)).expanduser()]
    env = os.environ.get("KERAS_APPS_DATA")
    if env:
        return [pathlib.Path(env).expanduser()]
    roots = []
    for root in (
        pathlib.Path.cwd().parent / "shared" / "data",
        repo_root().parent / "shared" / "data",
    ):
        root = root.resolve()
        if root not in roots:
            roots.append(root)
    return roots


def cache_dir() -> pathlib.Path:
    """``$KERAS_APPS_CACHE`` or ``~/.cache/keras_apps`` (decoded-array caches)."""
    env = os.environ.get("KERAS_APPS_CACHE")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "keras_apps"


def save_npz_atomic(path: pathlib.Path, **arrays) -> None:
    """Writes ``arrays`` to ``path`` atomically, so a reader never sees a partial file."""
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def where_to_put(subfolder: str) -> str:
    """The sentence telling where a data folder goes."""
    return (
        f"<DATA>/{subfolder}/, where <DATA> is `data_dir=` (CLI: --data-dir DIR), else "
        f"$KERAS_APPS_DATA, else ../shared/data beside the repository"
    )


def stratified_split(labels: np.ndarray, *, test_fraction: float = 0.2, seed: int = 0):
    """Deterministic stratified split: per class, a ``np.random.RandomState(seed)``
    permutation of that class's indices puts the first ``floor(n_c * test_fraction + 0.5)``
    in test. Returns sorted ``(train_indices, test_indices)``."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rng = np.random.RandomState(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(np.floor(len(idx) * test_fraction + 0.5))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def balanced_quotas(class_sizes, limit: int) -> list[int]:
    """How many of each class a class-balanced ``limit`` takes: round-robin over the
    classes (in order), skipping exhausted ones, until ``limit`` are taken."""
    sizes = np.asarray(class_sizes, dtype=np.int64)
    ranks = np.concatenate([np.arange(s) for s in sizes]) if len(sizes) else np.zeros(0, np.int64)
    owners = np.repeat(np.arange(len(sizes)), sizes)
    order = np.lexsort((owners, ranks))[:limit]
    return np.bincount(owners[order], minlength=len(sizes)).tolist()


def balanced_first(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Sorted indices of the first examples of each class under :func:`balanced_quotas`."""
    labels = np.asarray(labels)
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    classes = np.unique(labels)
    per_class = [np.flatnonzero(labels == c) for c in classes]
    quotas = balanced_quotas([len(i) for i in per_class], limit)
    return np.sort(np.concatenate([i[:q] for i, q in zip(per_class, quotas)]))


def array_examples(images: np.ndarray, labels) -> Examples:
    """:class:`Examples` gathering from in-memory arrays (``labels`` an array or a dict of
    arrays)."""
    images = tf.constant(images)
    labels = tf.nest.map_structure(tf.constant, labels)

    def fetch(i):
        return tf.gather(images, i), tf.nest.map_structure(lambda a: tf.gather(a, i), labels)

    return Examples(count=int(images.shape[0]), fetch=fetch)

