"""Sets read through tensorflow-datasets: ``cifar100``, ``imagenet2012``, ``sun397``,
``caltech_birds2011``, ``voc`` and any ``tfds:<name>`` with an ``image`` and a class label.

Nothing touches the network unless ``download=True``: the builder must already be prepared
in one of the looked-at data dirs (``data_dir`` and ``data_dir/tensorflow_datasets`` when
given, else ``<DATA>/tensorflow_datasets`` and tfds' default ``~/tensorflow_datasets``),
checked with ``builder.is_prepared()`` before reading. With ``download=True`` an unprepared
builder is prepared by ``download_and_prepare()`` (which also builds from files placed in
``<data dir>/downloads/manual``).

Labels: ``label="fine"`` is the ``label`` feature; cifar100 adds ``"coarse"`` (the 20
superclasses) and ``"both"`` (a dict ``{"fine", "coarse"}`` of int32). VOC is a multi-label
detection set: ``"fine"`` is the label of the first annotated object (images without objects
are skipped), ``"multi"`` the 20-way multi-hot float32 vector of the classes present (the
VOC classification task). Sets of variable-size images use the "resize_crop_flip" policy at
224x224; ``limit`` takes the first N records (not class-balanced).

``classes`` filters the stream by the delivered label (coarse ids for ``"coarse"``, fine ids
for ``"both"``, any kept class for ``"multi"``). A validation carve reads the split's label
column once (one pass over its records with the same decoders as the read, so fixed-size
images are decoded: a few seconds for CIFAR-100, a full read of the files for ImageNet),
memoised per process for prepared builders (keyed on their files); the carved records are
then kept by their position in the unshuffled file order. ``start_epoch`` needs the split
in memory: fixed-size sets are read once into uint8 arrays (CIFAR-100 train: 150 MB,
memoised likewise); variable-size sets cannot be, and raise a ValueError.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import pathlib

import numpy as np
import tensorflow as tf

from keras_apps.data._base import (
    CIFAR10_CHANNEL_CORRELATION,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_GRAY_MEAN,
    IMAGENET_GRAY_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LARGE_IMAGE_SIZE,
    DatasetInfo,
    DatasetNotFoundError,
    Source,
    array_examples,
    data_roots,
)

#: Shuffle buffers: decoded small images, and encoded large ones (decoded after shuffling).
SMALL_SHUFFLE_BUFFER = 10_000
LARGE_SHUFFLE_BUFFER = 1_000
#: Records per batch when reading a label column or a whole split into memory.
LABEL_BATCH = 4096


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
    """How a tfds set is delivered: accepted splits (``None``: the builder's), label
    choices (first = default), statistics (``None``: ImageNet's), the RGB channel
    correlation of the pixels they describe (``None``: unknown) and how to prepare it
    (``{dir}`` is the tfds data dir)."""

    tfds_name: str
    splits: tuple | None
    labels: tuple = ("fine",)
    mean: tuple | None = None
    std: tuple | None = None
    prepare: str = "pass download=True (CLI: --download) to let tfds download and prepare it"
    channel_correlation: tuple | None = None


SPECS = {
    "cifar10": TfdsSpec(
        "cifar10", ("train", "test"), mean=CIFAR10_MEAN, std=CIFAR10_STD,
        channel_correlation=CIFAR10_CHANNEL_CORRELATION,
    ),
    "cifar100": TfdsSpec(
        "cifar100",
        ("train", "test"),
        labels=("fine", "coarse", "both"),
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        prepare=(
            "put cifar-100-binary.tar.gz (https://www.cs.toronto.edu/~kriz/) into "
            "{dir}/downloads/manual and pass download=True (CLI: --download) to prepare it "
            "offline (with network access, download=True (CLI: --download) alone fetches it)"
        ),
    ),
    "imagenet2012": TfdsSpec(
        "imagenet2012",
        ("train", "validation"),
        prepare=(
            "put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from image-net.org) "
            "into {dir}/downloads/manual and pass download=True (CLI: --download) once to "
            "prepare them"
        ),
    ),
    "sun397": TfdsSpec("sun397", ("train", "validation", "test")),
    "caltech_birds2011": TfdsSpec("caltech_birds2011", ("train", "test")),
    "voc": TfdsSpec("voc", ("train", "validation", "test"), labels=("fine", "multi")),
}


def _tfds():
    import tensorflow_datasets as tfds

    return tfds


def _data_dirs(data_dir) -> list[str | None]:
    if data_dir is not None:
        root = pathlib.Path(os.fspath(data_dir)).expanduser()
        return [str(root), str(root / "tensorflow_datasets")]
    dirs = [
        str(r / "tensorflow_datasets") for r in data_roots() if (r / "tensorflow_datasets").is_dir()
    ]
    return dirs + [None]


def make_builder(tfds_name: str, data_dir=None):
    """``tfds.builder(tfds_name, data_dir=data_dir)``; unknown names list the closest
    registered tfds names."""
    tfds = _tfds()
    try:
        return tfds.builder(tfds_name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        close = difflib.get_close_matches(tfds_name, tfds.list_builders(), n=5, cutoff=0.5)
        hint = f" Closest tfds names: {', '.join(close)}." if close else ""
        raise ValueError(f"Unknown tfds dataset {tfds_name!r}.{hint}") from None


def find_builder(tfds_name: str, *, data_dir=None, download: bool = False):
    """``(prepared builder or None, data dirs looked in)``. With ``download`` an
    unprepared builder is prepared in the first data dir."""
    looked = []
    for directory in _data_dirs(data_dir):
        builder = make_builder(tfds_name, directory)
        looked.append(str(builder.data_dir))
        if builder.is_prepared():
            return builder, looked
    if download:
        builder = make_builder(tfds_name, _data_dirs(data_dir)[0])
        builder.download_and_prepare()
        return builder, looked
    return None, looked


def source(name: str, *, data_dir, label, download) -> Source:
    """The :class:`Source` of a tfds set: ``name`` is a key of :data:`SPECS` or
    ``"tfds:<tfds name>"``."""
    tfds_name = name[len("tfds:") :] if name.startswith("tfds:") else name
    spec = SPECS.get(name) or TfdsSpec(tfds_name, None)
    builder, looked = find_builder(spec.tfds_name, data_dir=data_dir, download=download)
    if builder is None:
        target = _data_dirs(data_dir)[0] or str(_tfds().core.constants.DATA_DIR)
        raise DatasetNotFoundError(
            f"tfds dataset {spec.tfds_name!r} is not prepared in: {', '.join(looked)}. To use "
            f"it, {spec.prepare.format(dir=target)}; or point data_dir= (CLI: --data-dir DIR) "
            f"at a tfds data dir holding a prepared copy."
        )
    return builder_source(builder, name=name, label=label, spec=spec)


def _label_feature(builder, name):
    info = builder.info
    keys = info.supervised_keys
    image_key, label_key = keys if keys and len(keys) == 2 else ("image", "label")
    features = info.features
    tfds = _tfds()
    if (
        image_key not in features
        or label_key not in features
        or not isinstance(features[image_key], tfds.features.Image)
        or not isinstance(features[label_key], tfds.features.ClassLabel)
    ):
        raise ValueError(
            f"{name!r} is not an image classification set: it needs an Image feature and a "
            f"ClassLabel feature (supervised keys {keys}); its features are {list(features)}."
        )
    return image_key, label_key


def builder_source(builder, *, name: str, label: str, spec: TfdsSpec) -> Source:
    """The :class:`Source` reading a prepared (or mocked) tfds ``builder``."""
    tfds = _tfds()
    features = builder.info.features
    voc = spec.tfds_name == "voc"
    if voc:
        image_key, names = "image", list(features["labels"].feature.names)
    else:
        image_key, label_key = _label_feature(builder, name)
        names = list(features[label_key].names)
    coarse = list(features["coarse_label"].names) if "coarse_label" in features else []

    height, width, channels = features[image_key].shape
    channels = channels or 3
    fixed = bool(height and width)
    if spec.mean is not None:
        mean, std = spec.mean, spec.std
    elif channels == 3:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif channels == 1:
        mean, std = IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD
    else:
        raise ValueError(
            f"{name!r} has {channels}-channel images; only 1 or 3 channels are supported."
        )

    splits = spec.splits or tuple(builder.info.splits)
    known = builder.info.splits
    info = DatasetInfo(
        name=name,
        num_classes=len(coarse) if label == "coarse" else len(names),
        image_shape=(height, width, channels) if fixed else (*LARGE_IMAGE_SIZE, channels),
        class_names=coarse if label == "coarse" else names,
        mean=tuple(mean),
        std=tuple(std),
        splits=splits,
        source=f"tfds {builder.info.full_name} in {builder.data_dir}",
        num_examples={s: (known[s].num_examples if s in known else None) for s in splits},
        label=label,
        coarse_class_names=coarse if label == "both" else [],
        augmentation="pad_crop_flip" if fixed else "resize_crop_flip",
        pad=max(1, round(height / 8)) if fixed else 0,
    )

    def extract(example):
        if voc:
            if label == "multi":
                present = tf.one_hot(example["labels"], len(names), dtype=tf.float32)
                return example[image_key], tf.minimum(tf.reduce_sum(present, axis=0), 1.0)
            return example[image_key], example["objects"]["label"][0]
        if label == "both":
            return example[image_key], {
                "fine": example[label_key],
                "coarse": example["coarse_label"],
            }
        return example[image_key], example["coarse_label" if label == "coarse" else label_key]

    def decode(image, target):
        image = tf.io.decode_image(image, channels=channels, expand_animations=False)
        return tf.ensure_shape(image, (None, None, channels)), target

    def stratum(example):
        """The class label ``classes`` selects; -1 for a VOC image without objects."""
        if voc:
            objects = tf.cast(example["objects"]["label"], tf.int64)
            return tf.concat([objects, tf.constant([-1], tf.int64)], 0)[0]
        return tf.cast(example["coarse_label" if label == "coarse" else label_key], tf.int64)

    decoders = None if fixed else {image_key: tfds.decode.SkipDecoding()}

    def records(split, shuffle_files=False, seed=0):
        return builder.as_dataset(
            split=split,
            shuffle_files=shuffle_files,
            decoders=decoders,
            read_config=tfds.ReadConfig(shuffle_seed=seed),
        )

    def read(split, *, keep, positions, limit, shuffle, seed):
        ds = records(split, bool(shuffle and limit is None and positions is None), seed)
        if positions is not None:
            mask = tf.constant(positions)
            ds = ds.enumerate().filter(lambda i, example: tf.gather(mask, i))
            ds = ds.map(lambda i, example: example)
        if voc and label == "fine":
            ds = ds.filter(lambda example: tf.size(example["objects"]["label"]) > 0)
        if keep is not None:
            kept = tf.constant(keep)
            if voc and label == "multi":
                ds = ds.filter(
                    lambda example: tf.reduce_any(tf.gather(kept, example["labels"]))
                )
            else:
                ds = ds.filter(lambda example: tf.gather(kept, stratum(example)))
        if limit is not None:
            ds = ds.take(limit)
        ds = ds.map(extract, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if shuffle:
            buffer = SMALL_SHUFFLE_BUFFER if fixed else LARGE_SHUFFLE_BUFFER
            ds = ds.shuffle(min(buffer, limit or buffer), seed=seed, reshuffle_each_iteration=True)
        if not fixed:
            ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds

    def label_column(split):
        def compute():
            ds = records(split).map(stratum, num_parallel_calls=tf.data.AUTOTUNE)
            batches = [b for b in ds.batch(LABEL_BATCH).as_numpy_iterator()]
            return np.concatenate(batches) if batches else np.zeros(0, np.int64)

        return _cached(builder, ("labels", split, label), compute)

    def materialised(split):
        def compute():
            ds = records(split).map(extract, num_parallel_calls=tf.data.AUTOTUNE)
            images, targets = [], []
            for image, target in ds.batch(LABEL_BATCH).as_numpy_iterator():
                images.append(image)
                targets.append(target)
            if not images:
                return np.zeros((0, height, width, channels), np.uint8), np.zeros(0, np.int64)
            return np.concatenate(images), tf.nest.map_structure(
                lambda *parts: np.concatenate(parts), *targets
            )

        return _cached(builder, ("arrays", split, label), compute)

    def labels(split):
        targets = materialised(split)[1]
        return targets["fine"] if label == "both" else targets

    def select(split, positions):
        images, targets = materialised(split)
        return array_examples(
            images[positions], tf.nest.map_structure(lambda a: a[positions], targets)
        )

    def count(split):
        if voc and label == "fine":
            return None  # images without objects are skipped
        try:
            return int(builder.info.splits[split].num_examples) or None
        except (KeyError, ValueError, TypeError, AttributeError):
            return None

    indexed = fixed and not voc
    return Source(
        info=info,
        native_shape=info.image_shape if fixed else None,
        slicing=True,
        labels=labels if indexed else None,
        select=select if indexed else None,
        balanced_limit=False,
        read=read,
        label_column=label_column,
        count=count,
        index_note=(
            "" if indexed else " (its images vary in size, so the split cannot be held in memory)"
        ),
        channel_correlation=spec.channel_correlation,
    )


def _fingerprint(builder) -> tuple:
    """Names, sizes and mtimes of the prepared files (empty when there are none, e.g. under
    ``tfds.testing.mock_data``)."""
    folder = pathlib.Path(os.fspath(builder.data_dir))
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file())
    except OSError:
        return ()
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


_CACHE: dict = {}


def _cached(builder, key: tuple, compute):
    """``compute()`` memoised per process for prepared builders (keyed on their files);
    recomputed every time when there are no files to key on."""
    fingerprint = _fingerprint(builder)
    if not fingerprint:
        return compute()
    full_key = (str(builder.data_dir), builder.info.full_name, fingerprint, *key)
    if full_key not in _CACHE:
        _CACHE[full_key] = compute()
    return _CACHE[full_key]
