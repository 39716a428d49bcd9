"""``load``, ``dataset_info`` and ``list_datasets``: dataset names to batched tf.data
pipelines of preprocessed images, with class subsets, a held-out validation carve,
grayscale <-> RGB delivery and resumable (stateless) epoch orders; detection sets
(``bccd``, ``voc_folder``, a VOC folder path) deliver boxes (:mod:`keras_apps.data.detection`)."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import numbers
import os
import pathlib

import numpy as np
import tensorflow as tf

from keras_apps.data import cifar10, detection, digits, fashion_mnist, folder, tfds_sets, voc
from keras_apps.data._base import (
    DatasetInfo,
    DatasetNotFoundError,
    Source,
    balanced_first,
    data_roots,
    stratified_split,
    where_to_put,
)
from keras_apps.data.augment import make_preprocess
from keras_apps.data.channels import check_channels, converted_statistics
from keras_apps.data.preprocessing import check_mode

__all__ = ["list_datasets", "dataset_info", "detection_folder", "load"]

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


#: Detection sets (PASCAL VOC folders): name -> allowed label choices (the first is the
#: default).
_DETECTION_SOURCES = {"bccd": ("boxes",), "voc_folder": ("boxes",)}
#: Where BCCD lies below a data root (Shenggan/BCCD_Dataset's BCCD folder).
BCCD_SUBFOLDER = "detection/bccd/BCCD"


def list_datasets() -> list[str]:
    """Sorted dataset names ``load`` accepts. Also accepted: ``"tfds:<name>"`` for any tfds
    image classification set, and a directory path (an image folder, or a PASCAL VOC
    folder with ``Annotations/`` and ``JPEGImages/``)."""
    return sorted({**_SOURCES, **_DETECTION_SOURCES})


def _detection_folder(name, *, data_dir, label):
    """``(VOCFolder, dataset name)`` when ``name`` is a detection set, else ``None``."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        return None
    if name in _DETECTION_SOURCES:
        labels = _DETECTION_SOURCES[name]
    elif name not in _SOURCES and not name.startswith("tfds:") and voc.is_voc_folder(name):
        if data_dir is not None and pathlib.Path(os.fspath(data_dir)).resolve() != pathlib.Path(name).resolve():
            raise ValueError(
                f"Dataset {name!r} is a folder path and data_dir={os.fspath(data_dir)!r} names "
                f"another one; pass the folder once, as the name or as data_dir with name='voc_folder'."
            )
        name, data_dir, labels = "voc_folder", name, _DETECTION_SOURCES["voc_folder"]
    else:
        return None
    label = labels[0] if label is None else label
    if label not in labels:
        raise ValueError(
            f"label={label!r} is not available for {name!r}; allowed: {', '.join(labels)}."
        )
    if name == "bccd":
        for root in data_roots(data_dir):
            for candidate in (root / BCCD_SUBFOLDER, root / "BCCD", root):
                if voc.is_voc_folder(candidate):
                    return voc.VOCFolder(candidate, class_names=voc.BCCD_CLASSES), name
        raise DatasetNotFoundError(
            f"BCCD not found (looked in {', '.join(str(r / BCCD_SUBFOLDER) for r in data_roots(data_dir))}). "
            f"Put Shenggan/BCCD_Dataset's BCCD folder (Annotations/, JPEGImages/, ImageSets/Main/) "
            f"at {where_to_put(BCCD_SUBFOLDER)}."
        )
    if data_dir is None:
        raise ValueError(
            "The VOC folder dataset needs its directory: load('voc_folder', data_dir=DIR) or "
            "load(DIR), DIR holding Annotations/, JPEGImages/ and ImageSets/Main/<split>.txt."
        )
    return voc.VOCFolder(data_dir), name


def detection_folder(name, *, data_dir=None, download: bool = False):
    """The records and images of a detection set, for numpy-level work (training windows,
    metrics): a :class:`keras_apps.data.voc.VOCFolder` for ``"bccd"`` (found in the data
    roots, its classes in BCCD's order), ``"voc_folder"`` with ``data_dir`` or a VOC folder
    path; a :class:`keras_apps.data.tfds_detection.TFDSDetection` (same interface) for the
    tfds PASCAL VOC, ``"voc"`` / ``"voc/2012"``, or ``"tfds:<name>"`` of any tfds set with
    ``objects/bbox`` (``data_dir``: the tfds data dir; ``download`` lets tfds prepare it)."""
    if isinstance(name, str) and (name == "voc" or name.startswith("voc/") or name.startswith("tfds:")):
        from keras_apps.data.tfds_detection import TFDSDetection

        return TFDSDetection(name[len("tfds:"):] if name.startswith("tfds:") else name,
                             data_dir=data_dir, download=download)
    found = _detection_folder(name, data_dir=data_dir, label=None)
    if found is None:
        raise ValueError(
            f"{name!r} is not a detection set; detection sets: "
            f"{', '.join(sorted(_DETECTION_SOURCES))}, a folder with Annotations/ and JPEGImages/, "
            "or the tfds 'voc' / 'voc/2012' / 'tfds:<name>'."
        )
    return found[0]


def _reject_for_boxes(name, **arguments):
    """A ValueError for the classification-only arguments a detection set was given."""
    given = [k for k, v in arguments.items() if v is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} not supported for the "
            f"detection set {name!r} (label='boxes'); leave {'it' if len(given) == 1 else 'them'} "
            f"at None."
        )


def _boxes_info(folder, name, preprocessing) -> DatasetInfo:
    info = detection.folder_info(folder, name)
    mode = check_mode(preprocessing, 3, info)
    return dataclasses.replace(info, preprocessing=mode)


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
    label = labels[0] if label is None else label
    if label not in labels:
        raise ValueError(
            f"label={label!r} is not available for {name!r}; allowed: {', '.join(labels)}."
        )
    return factory(data_dir=data_dir, label=label, download=download)


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



def _integer(argument: str, value, minimum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or (minimum is not None and value < minimum)
    ):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"`{argument}` must be an integer{bound}, got {value!r}.")
    return int(value)


def _check_classes(classes, info: DatasetInfo) -> tuple | None:
    """``classes`` as a tuple of distinct ids in ``[0, info.num_classes)``."""
    if classes is None:
        return None
    allowed = (
        f"allowed: distinct ids in 0..{info.num_classes - 1} (the {info.num_classes} "
        f"classes of {info.name!r})"
    )
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise ValueError(f"`classes` must be a sequence of class ids, got {classes!r}; {allowed}.")
    ids = list(classes)
    if not ids:
        raise ValueError(f"`classes` is empty; {allowed}.")
    for value in ids:
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, numbers.Integral)
            or not 0 <= value < info.num_classes
        ):
            raise ValueError(f"`classes` holds {value!r}; {allowed}.")
    duplicates = sorted({int(v) for v in ids if ids.count(v) > 1})
    if duplicates:
        raise ValueError(f"`classes` repeats {duplicates}; {allowed}.")
    return tuple(int(v) for v in ids)


def _check_carve(validation_fraction, subset, validation_seed, base: str, info: DatasetInfo):
    """``(fraction, subset, seed)`` of a validation carve, or ``None``."""
    validation_seed = _integer("validation_seed", validation_seed, 0)
    if subset is not None and subset not in ("training", "validation"):
        raise ValueError(f"`subset` must be 'training' or 'validation', got {subset!r}.")
    if validation_fraction is None:
        if subset is not None:
            raise ValueError(
                f"subset={subset!r} needs validation_fraction (0 < f < 1), the share of the "
                f"{info.train_split!r} split held out for validation."
            )
        return None
    if (
        isinstance(validation_fraction, bool)
        or not isinstance(validation_fraction, numbers.Real)
        or not 0 < validation_fraction < 1
    ):
        raise ValueError(
            f"`validation_fraction` must be a number with 0 < f < 1, got {validation_fraction!r}."
        )
    if subset is None:
        raise ValueError(
            f"validation_fraction={validation_fraction!r} needs subset='training' or "
            f"subset='validation' (which part of the carved {info.train_split!r} split to load)."
        )
    if base != info.train_split:
        raise ValueError(
            f"validation_fraction / subset carve the training split {info.train_split!r} of "
            f"{info.name!r}; got split={base!r}."
        )
    if info.label == "multi":
        raise ValueError(
            "validation_fraction needs one class per example for its stratified carve; "
            "label='multi' has several. Use label='fine' or a separate split."
        )
    return float(validation_fraction), subset, validation_seed


def _carve(labels: np.ndarray, carve) -> dict:
    """Positions (into ``labels``) of the two carved subsets."""
    fraction, _, seed = carve
    training, validation = stratified_split(labels, test_fraction=fraction, seed=seed)
    return {"training": training, "validation": validation}


def _chosen_info(info: DatasetInfo, class_ids, mode: str, carve) -> DatasetInfo:
    """``info`` restricted to ``class_ids`` and recording the preprocessing and carve."""
    changes = {"preprocessing": mode}
    if class_ids is not None:
        changes.update(
            class_ids=class_ids,
            num_classes=len(class_ids),
            class_names=[info.class_names[c] for c in class_ids],
        )
    if carve is not None:
        changes.update(validation_fraction=carve[0], subset=carve[1])
    return dataclasses.replace(info, **changes)


def _class_filter(labels: np.ndarray, class_ids) -> np.ndarray:
    """Positions of the examples whose label is in ``class_ids`` (all labelled ones)."""
    labels = np.asarray(labels)
    if class_ids is None:
        return np.flatnonzero(labels >= 0)
    return np.flatnonzero(np.isin(labels, class_ids))


def _split_counts(source: Source, class_ids) -> dict:
    """Examples per split after the class filter (``None`` where unknown without a pass
    over a streamed split)."""
    info = source.info
    if class_ids is None:
        return dict(info.num_examples)
    if source.read is not None:
        return {s: None for s in info.num_examples}
    return {s: len(_class_filter(source.labels(s), class_ids)) for s in info.num_examples}


def _with_channels(source: Source, channels) -> Source:
    """``source`` whose info describes ``channels``-channel images (shape and statistics,
    :func:`keras_apps.data.channels.converted_statistics`)."""
    info = source.info
    if channels is None or channels == info.image_shape[2]:
        return source
    mean, std = converted_statistics(info.mean, info.std, channels, source.channel_correlation)
    info = dataclasses.replace(
        info, image_shape=(*info.image_shape[:2], channels), mean=mean, std=std
    )
    return dataclasses.replace(source, info=info)


def _resolve_checked(name, *, data_dir, label, download, classes, preprocessing, channels):
    """``(source with the delivered channels' info, class ids, preprocessing mode, stored
    channel count)``."""
    channels = check_channels(channels)
    source = _resolve(name, data_dir=data_dir, label=label, download=download)
    stored = source.info.image_shape[2]
    source = _with_channels(source, channels)
    class_ids = _check_classes(classes, source.info)
    mode = check_mode(preprocessing, source.info.image_shape[2], source.info)
    return source, class_ids, mode, stored


def dataset_info(
    name,
    *,
    data_dir=None,
    label: str | None = None,
    classes=None,
    validation_fraction=None,
    validation_seed: int = 0,
    preprocessing: str = "dataset",
    download: bool = False,
    channels: int | None = None,
) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` as :func:`load` would deliver it (located as by
    ``load``; a set that is not there raises :class:`DatasetNotFoundError` saying where to
    put the files, unless ``download`` prepares it as ``load(download=True)`` does). With ``classes`` the info is the subset's (``num_examples`` counts the kept
    classes; ``None`` for tfds sets, which would need a pass over each split). With
    ``validation_fraction``, ``num_examples`` also holds the "training" and "validation"
    subset sizes of the carved training split. ``channels`` as in :func:`load`
    (``image_shape``, ``mean`` and ``std`` describe the delivered channels). ``label``
    defaults to the dataset's first choice ("fine"; "boxes" for the detection sets, whose
    info counts images per split and names the classes in id order)."""
    found = _detection_folder(name, data_dir=data_dir, label=label)
    if found is not None:
        _reject_for_boxes(
            found[1], classes=classes, validation_fraction=validation_fraction, channels=channels
        )
        return _boxes_info(*found, preprocessing)
    source, class_ids, mode, _ = _resolve_checked(
        name, data_dir=data_dir, label=label, download=download, classes=classes,
        preprocessing=preprocessing, channels=channels,
    )
    info = source.info
    counts = _split_counts(source, class_ids)
    if validation_fraction is not None:
        carve = _check_carve(
            validation_fraction, "training", validation_seed, info.train_split, info
        )
        column = _labels_for_carve(source, info.train_split)
        kept = _class_filter(column, class_ids)
        counts.update({k: len(v) for k, v in _carve(column[kept], carve).items()})
        counts[info.train_split] = len(kept)
        info = _chosen_info(info, class_ids, mode, carve)
        info = dataclasses.replace(info, subset=None)
    else:
        info = _chosen_info(info, class_ids, mode, None)
    return dataclasses.replace(info, num_examples=counts)


def _labels_for_carve(source: Source, split: str) -> np.ndarray:
    if source.read is not None:
        return np.asarray(source.label_column(split))
    return np.asarray(source.labels(split))


def _steps(count: int | None, batch_size: int, drop_remainder: bool) -> int | None:
    if count is None:
        return None
    return count // batch_size if drop_remainder else -(-count // batch_size)


def _relabel_fn(info: DatasetInfo, class_ids):
    """Maps a source label to the delivered one: the position of its class in
    ``class_ids`` (``label="both"``: the fine label; ``"multi"``: the kept columns)."""
    if class_ids is None:
        return lambda label: label
    ids = tf.constant(class_ids, tf.int32)
    if info.label == "multi":
        return lambda label: tf.gather(label, ids, axis=-1)
    size = max(len(info.class_names), max(class_ids) + 1)
    remap = np.full(size, -1, np.int32)
    remap[list(class_ids)] = np.arange(len(class_ids), dtype=np.int32)
    remap = tf.constant(remap)

    def relabel_int(label):
        return tf.gather(remap, tf.cast(label, tf.int32))

    if info.label == "both":
        return lambda label: {**label, "fine": relabel_int(label["fine"])}
    return relabel_int


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
    label: str | None = None,
    download: bool = False,
    drop_remainder: bool = False,
    classes=None,
    validation_fraction: float | None = None,
    subset: str | None = None,
    validation_seed: int = 0,
    preprocessing: str = "dataset",
    start_epoch: int | None = None,
    channels: int | None = None,
):
    """A batched, prefetched ``tf.data.Dataset`` of ``(images, labels)`` and its
    :class:`DatasetInfo`.

    Images are float32 [B, H, W, C], pixels in [0, 255] mapped by ``preprocessing``
    (default ``(pixels - info.mean) / info.std``); labels int32 [B] (``label="both"``:
    ``{"fine", "coarse"}`` int32; VOC ``label="multi"``: float32 [B, classes] multi-hot).

    Args:
        name: one of :func:`list_datasets`, ``"tfds:<name>"``, or an image folder path.
        split: a name in ``info.splits``.
        data_dir: where the data is (see :func:`keras_apps.data.data_roots`; for tfds sets
            the tfds data dir; for ``"folder"`` the image folder).
        image_size: (H, W) or an int; default ``info.image_shape[:2]``.
        augment / shuffle: default True for the training split (its "training" subset
            when carved) only; the "validation" subset is neither by default.
        seed: seeds the shuffle and the per-example augmentation (stateless ops keyed on a
            per-example seed): the same seed gives identical batches.
        limit: use only the first ``limit`` examples, after the class filter and the carve
            (class-balanced for digits, cifar10, fashion_mnist and folders; the first
            records for tfds sets).
        label: the dataset's first choice by default: "fine"; cifar100 also "coarse" and
            "both"; voc also "multi"; the detection sets ("bccd", "voc_folder", a VOC folder
            path) "boxes" only: targets ``{"boxes": RaggedTensor float32 [B, None, 4]
            (x1, y1, x2, y2) in delivered pixels, "classes": RaggedTensor int32 [B, None],
            "difficult": RaggedTensor bool [B, None]}``, ``image_size`` resizing images and
            boxes, training augmentation a scale-jittered crop and flip moving the boxes
            (:mod:`keras_apps.data.detection`); ``classes``, the validation carve,
            ``start_epoch`` and ``channels`` are not available for them.
        download: allow tfds / keras to download (never otherwise).
        drop_remainder: drop the last partial batch (of every epoch).
        classes: source class ids to keep, relabelled 0..k-1 in the given order
            (``info.class_ids``). They select the delivered label: coarse ids for
            ``label="coarse"``, fine ids for ``"both"`` (coarse labels stay as they are),
            columns of the multi-hot vector for ``"multi"`` (examples with none dropped).
        validation_fraction, subset, validation_seed: hold out a stratified share of the
            training split (filtered by ``classes`` first): per class, a seeded
            permutation (``validation_seed``, independent of ``seed``) puts the first
            ``floor(n_c * validation_fraction + 0.5)`` in ``subset="validation"``, the rest in
            ``subset="training"``; the two are disjoint and cover the split.
        preprocessing: one of :data:`keras_apps.data.PREPROCESSING_MODES` ("dataset",
            "caffe", "torch", "tf", "raw"); recorded in ``info.preprocessing``.
        start_epoch: ``None`` gives a finite dataset of one epoch (each iteration
            reshuffles and redraws). An int k gives an infinite dataset of epochs k, k+1,
            ... of ``info.steps_per_epoch`` batches each (no batch spans two epochs), where
            epoch e's order and augmentation are a pure function of ``(seed, e)``: a run
            resumed at epoch k sees exactly the batches an uninterrupted run sees. Needs an
            in-memory index of the split (not available for variable-size tfds sets).
        channels: ``None`` (the dataset's own), 1 or 3. 3 from a grayscale set repeats the
            grey channel (RGB = (g, g, g)); 1 from an RGB set is the ITU-R BT.601 luma
            0.299 R + 0.587 G + 0.114 B (float, unrounded). Applied to the raw [0, 255]
            pixels before augmentation and preprocessing; ``info.image_shape`` has the
            delivered channels, and the "dataset" ``info.mean`` / ``info.std`` are converted
            with them: (m, m, m) and (s, s, s) from grey; from RGB the luma of the means and
            the std of the luma pixels, sqrt(w^T Sigma w) with the channel covariance Sigma
            of the training pixels where their correlation is known (CIFAR-10), else
            w . std (see :mod:`keras_apps.data.channels`).
    """
    batch_size = _positive_int("batch_size", batch_size)
    limit = None if limit is None else _positive_int("limit", limit)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"`seed` must be an integer, got {seed!r}.")
    seed = int(seed)
    start_epoch = None if start_epoch is None else _integer("start_epoch", start_epoch, 0)
    size = _image_size(image_size)
    found = _detection_folder(name, data_dir=data_dir, label=label)
    if found is not None:
        folder_, set_name = found
        _reject_for_boxes(
            set_name, classes=classes, validation_fraction=validation_fraction, subset=subset,
            start_epoch=start_epoch, channels=channels,
        )
        info = _boxes_info(folder_, set_name, preprocessing)
        if split not in info.splits:
            raise ValueError(
                f"Unknown split {split!r} for {set_name!r}; allowed: {', '.join(info.splits)}."
            )
        training = split == info.train_split
        size = size or tuple(info.image_shape[:2])
        ds, count = detection.boxes_dataset(
            folder_, info, split, batch_size=batch_size, image_size=size,
            augment=training if augment is None else bool(augment),
            shuffle=training if shuffle is None else bool(shuffle),
            seed=seed, limit=limit, drop_remainder=drop_remainder,
        )
        info = dataclasses.replace(
            info, image_shape=(*size, 3), steps_per_epoch=_steps(count, batch_size, drop_remainder)
        )
        return ds, info
    source, class_ids, mode, stored_channels = _resolve_checked(
        name, data_dir=data_dir, label=label, download=download, classes=classes,
        preprocessing=preprocessing, channels=channels,
    )
    info = source.info
    base = _check_split(split, source)
    carve = _check_carve(validation_fraction, subset, validation_seed, base, info)
    training = base == info.train_split and (carve is None or carve[1] == "training")
    augment = training if augment is None else bool(augment)
    shuffle = training if shuffle is None else bool(shuffle)
    size = size or tuple(info.image_shape[:2])
    counts = _split_counts(source, class_ids)
    delivered = _chosen_info(info, class_ids, mode, carve)
    preprocess = make_preprocess(
        delivered, native_shape=source.native_shape, image_size=size, augment=augment,
        source_channels=stored_channels,
    )
    relabel = _relabel_fn(info, class_ids)

    def example_fn(image, label, example_seed=None):
        return preprocess(image, relabel(label), example_seed)

    if start_epoch is not None or source.read is None:
        if source.select is None:
            raise ValueError(
                f"start_epoch needs an in-memory index of {info.name!r} to reorder each epoch "
                f"statelessly, and this source streams its records{source.index_note}. Use "
                f"start_epoch=None (one finite, reshuffled epoch per iteration)."
            )
        labels = np.asarray(source.labels(split))
        positions = _class_filter(labels, class_ids)
        if carve is not None:
            subsets = _carve(labels[positions], carve)
            counts.update({k: len(v) for k, v in subsets.items()})
            counts[base] = len(positions)
            positions = positions[subsets[carve[1]]]
        if limit is not None:
            positions = (
                positions[balanced_first(labels[positions], limit)]
                if source.balanced_limit
                else positions[:limit]
            )
        examples = source.select(split, positions)
        count = examples.count
        if start_epoch is not None:
            ds = _epochs(
                examples, example_fn, start_epoch, batch_size, drop_remainder,
                shuffle=shuffle, augment=augment, seed=seed,
            )
        else:
            ds = _one_epoch_indexed(
                examples, example_fn, shuffle=shuffle, augment=augment, seed=seed
            )
    else:
        keep, mask = None, None
        count = source.count(split) if class_ids is None else None
        if class_ids is not None:
            keep = np.zeros(len(info.class_names), bool)
            keep[list(class_ids)] = True
        if carve is not None:
            column = np.asarray(source.label_column(split))
            kept = _class_filter(column, class_ids)
            subsets = _carve(column[kept], carve)
            counts.update({k: len(v) for k, v in subsets.items()})
            counts[base] = len(kept)
            mask = np.zeros(len(column), bool)
            mask[kept[subsets[carve[1]]]] = True
            count = int(mask.sum())
        if limit is not None and count is not None:
            count = min(count, limit)
        ds = source.read(split, keep=keep, positions=mask, limit=limit, shuffle=shuffle, seed=seed)
        ds = _augment_stream(ds, example_fn, augment=augment, seed=seed)
    if start_epoch is None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    steps = _steps(count, batch_size, drop_remainder)
    info = dataclasses.replace(
        delivered,
        image_shape=(*size, info.image_shape[2]),
        num_examples=counts,
        steps_per_epoch=steps,
    )
    return ds, info


def _augment_stream(ds, example_fn, *, augment: bool, seed: int):
    """Today's finite epoch: per-example augmentation seeds drawn from
    ``tf.data.Dataset.random(seed)`` (redrawn every iteration)."""
    if not augment:
        return ds.map(example_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    seed_t = tf.constant(seed, tf.int64)
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip(ds, draws).map(
        lambda example, draw: example_fn(*example, tf.stack([draw, seed_t])),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _one_epoch_indexed(examples, example_fn, *, shuffle: bool, augment: bool, seed: int):
    """One epoch over indexed examples, reshuffled (seeded) on every iteration."""
    indices = tf.data.Dataset.range(examples.count)
    if shuffle and examples.count > 1:
        indices = indices.shuffle(examples.count, seed=seed, reshuffle_each_iteration=True)
    ds = indices.map(examples.fetch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _augment_stream(ds, example_fn, augment=augment, seed=seed)


def epoch_order(seed: int, epoch, count: int, shuffle: bool = True):
    """The example order of ``epoch``: ``argsort(stateless_uniform([count], key))`` with
    ``key = fold_in((seed, epoch), 0)`` (identity when not ``shuffle``), int64."""
    if not shuffle:
        return tf.range(count, dtype=tf.int64)
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    draws = tf.random.stateless_uniform(
        [count], tf.random.experimental.stateless_fold_in(key, 0)
    )
    return tf.cast(tf.argsort(draws, stable=True), tf.int64)


def _epochs(
    examples, example_fn, start_epoch, batch_size, drop_remainder, *, shuffle, augment, seed
):
    """Epochs start_epoch, start_epoch + 1, ... of batches; epoch e is a pure function of
    ``(seed, e)``: :func:`epoch_order`, and the example at position p augmented with seed
    ``fold_in(fold_in((seed, e), 1), p)``."""
    count = examples.count
    if count == 0 or (drop_remainder and count < batch_size):
        raise ValueError(
            f"start_epoch needs at least one batch per epoch; the selection holds {count} "
            f"example(s) for batch_size={batch_size}"
            f"{' with drop_remainder=True' if drop_remainder else ''}."
        )
    seed_t = tf.constant(seed, tf.int64)

    def epoch(e):
        order = epoch_order(seed, e, count, shuffle)
        aug_key = tf.random.experimental.stateless_fold_in(tf.stack([seed_t, e]), 1)
        ds = tf.data.Dataset.zip(
            tf.data.Dataset.from_tensor_slices(order), tf.data.Dataset.range(count)
        )

        def one(index, position):
            image, label = examples.fetch(index)
            if not augment:
                return example_fn(image, label)
            return example_fn(
                image, label, tf.random.experimental.stateless_fold_in(aug_key, position)
            )

        ds = ds.map(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(batch_size, drop_remainder=drop_remainder)

    ds = tf.data.Dataset.counter(start_epoch).flat_map(epoch)
    return ds.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
