"""``load``, ``dataset_info`` and ``list_datasets``: dataset names to batched tf.data
pipelines of normalised images."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import numbers
import os
import pathlib

import tensorflow as tf

from keras_apps.data import cifar10, digits, fashion_mnist, folder, tfds_sets
from keras_apps.data._base import DatasetInfo, Source
from keras_apps.data.augment import make_preprocess

__all__ = ["list_datasets", "dataset_info", "load"]

# name -> (source factory(data_dir=, label=, download=), allowed label choices)
_SOURCES = {
    "digits": (digits.source, ("fine",)),
    "cifar10": (cifar10.source, ("fine",)),
    "fashion_mnist": (fashion_mnist.source, ("fine",)),
    "folder": (folder.source, ("fine",)),
    **{
        name: (functools.partial(tfds_sets.source, name), spec.labels)
        for name, spec in tfds_sets.SPECS.items()
        if name != "cifar10"
    },
}


def list_datasets() -> list[str]:
    """Sorted dataset names ``load`` accepts. Also accepted: ``"tfds:<name>"`` for any tfds
    image classification set, and a directory path (an image folder)."""
    return sorted(_SOURCES)


def _resolve(name, *, data_dir, label, download) -> Source:
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise TypeError(
            f"Dataset name must be a string or a path, got {type(name).__name__}: {name!r}."
        )
    if name in _SOURCES:
        factory, labels = _SOURCES[name]
    elif name.startswith("tfds:") and len(name) > len("tfds:"):
        factory, labels = functools.partial(tfds_sets.source, name), ("fine",)
    elif "/" in name or os.sep in name or pathlib.Path(name).is_dir():
        if (
            data_dir is not None
            and pathlib.Path(os.fspath(data_dir)).resolve() != pathlib.Path(name).resolve()
        ):
            raise ValueError(
                f"Dataset {name!r} is a folder path and data_dir={os.fspath(data_dir)!r} names "
                f"another one; pass the folder once, as the name or as data_dir with name='folder'."
            )
        factory, labels, data_dir = folder.source, ("fine",), name
    else:
        close = difflib.get_close_matches(name, list(_SOURCES), n=3, cutoff=0.5)
        hint = f" Closest names: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown dataset {name!r}.{hint} Known: {', '.join(list_datasets())}; also "
            f"'tfds:<name>' for a tfds image classification set, or a path to an image folder."
        )
    if label not in labels:
        raise ValueError(
            f"label={label!r} is not available for {name!r}; allowed: {', '.join(labels)}."
        )
    return factory(data_dir=data_dir, label=label, download=download)


def dataset_info(name, *, data_dir=None, label: str = "fine") -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (located as by :func:`load`, never
    downloaded); raises :class:`DatasetNotFoundError` saying where to put the files."""
    return _resolve(name, data_dir=data_dir, label=label, download=False).info


def _check_split(split, source: Source) -> str:
    if not isinstance(split, str):
        raise TypeError(f"`split` must be a string, got {type(split).__name__}: {split!r}.")
    base = split.split("[", 1)[0] if source.slicing else split
    allowed = source.info.splits
    if allowed and base not in allowed:
        slices = " (or a tfds slice such as 'train[:10%]')" if source.slicing else ""
        raise ValueError(
            f"Unknown split {split!r} for {source.info.name!r}; allowed: "
            f"{', '.join(allowed)}{slices}."
        )
    return base


def _positive_int(argument: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{argument}` must be a positive integer, got {value!r}.")
    return int(value)


def _image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        height, width = image_size
        return _positive_int("image_size", height), _positive_int("image_size", width)
    except (TypeError, ValueError):
        raise ValueError(
            f"`image_size` must be None, an int or (height, width) of positive ints, "
            f"got {image_size!r}."
        ) from None


def load(
    name,
    split: str = "train",
    *,
    data_dir=None,
    batch_size: int = 32,
    image_size=None,
    augment: bool | None = None,
    shuffle: bool | None = None,
    seed: int = 0,
    limit: int | None = None,
    label: str = "fine",
    download: bool = False,
    drop_remainder: bool = False,
):
    """A batched, prefetched ``tf.data.Dataset`` of ``(images, labels)`` and its
    :class:`DatasetInfo`.

    Images are float32 [B, H, W, C], ``(pixels - info.mean) / info.std`` with pixels in
    [0, 255]; labels int32 [B] (``label="both"``: ``{"fine", "coarse"}`` int32; VOC
    ``label="multi"``: float32 [B, 20] multi-hot).

    Args:
        name: one of :func:`list_datasets`, ``"tfds:<name>"``, or an image folder path.
        split: a name in ``info.splits``.
        data_dir: where the data is (see :func:`keras_apps.data.data_roots`; for tfds sets
            the tfds data dir; for ``"folder"`` the image folder).
        image_size: (H, W) or an int; default ``info.image_shape[:2]``.
        augment / shuffle: default True for the training split only.
        seed: seeds the shuffle and the per-example augmentation (stateless ops keyed on a
            per-example seed drawn from ``tf.data.Dataset.random(seed)``): the same seed
            (under the same TF global seed) gives identical batches; every epoch reshuffles
            and redraws.
        limit: use only the first ``limit`` examples (class-balanced for digits, cifar10,
            fashion_mnist and folders; the first records for tfds sets).
        label: "fine"; cifar100 also "coarse" and "both"; voc also "multi".
        download: allow tfds / keras to download (never otherwise).
    """
    batch_size = _positive_int("batch_size", batch_size)
    limit = None if limit is None else _positive_int("limit", limit)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"`seed` must be an integer, got {seed!r}.")
    seed = int(seed)
    size = _image_size(image_size)
    source = _resolve(name, data_dir=data_dir, label=label, download=download)
    info = source.info
    training = _check_split(split, source) == info.train_split
    augment = training if augment is None else bool(augment)
    shuffle = training if shuffle is None else bool(shuffle)
    size = size or tuple(info.image_shape[:2])
    preprocess = make_preprocess(
        info, native_shape=source.native_shape, image_size=size, augment=augment
    )

    ds = source.read(split, limit=limit, shuffle=shuffle, seed=seed)
    if augment:
        seed_t = tf.constant(seed, tf.int64)
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, draws).map(
            lambda example, draw: preprocess(*example, tf.stack([draw, seed_t])),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    else:
        ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    return ds, dataclasses.replace(info, image_shape=(*size, info.image_shape[2]))
