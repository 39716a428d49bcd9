"""tf.data pipelines for image classification.

    >>> from keras_apps import data
    >>> data.list_datasets()[:4]
    ['caltech_birds2011', 'cifar10', 'cifar100', 'digits']
    >>> ds, info = data.load("digits", "train", batch_size=64)   # zero set-up
    >>> images, labels = next(iter(ds))        # float32 [64, 32, 32, 1], int32 [64]
    >>> pixels = data.denormalize(images, info)  # back to [0, 255]

Every dataset yields ``(images, labels)``: images float32 [B, H, W, C] normalised per
channel with ``info.mean`` / ``info.std`` (given in [0, 255] pixel units), labels int32 [B].
Training splits are shuffled and augmented by default (pad + random crop + flip for small
images, resize + random crop + flip for ImageNet-style sets); everything is keyed on
``seed``.

Where the data is: ``data_dir`` if given, else ``$KERAS_APPS_DATA``, else
``<cwd>/../shared/data``, else ``<repo>/../shared/data`` (:func:`data_roots`). Nothing is
downloaded unless ``download=True``; a missing set raises :class:`DatasetNotFoundError`
saying where to put which files. Decoded CIFAR-10 arrays are cached under
``$KERAS_APPS_CACHE`` (default ``~/.cache/keras_apps``).

Sources: ``digits`` (scikit-learn), ``cifar10`` (JPEG shards, else tfds),
``fashion_mnist`` (IDX files), ``cifar100`` / ``imagenet2012`` / ``sun397`` /
``caltech_birds2011`` / ``voc`` / ``tfds:<name>`` (tensorflow-datasets), and image folders
(``folder`` or a path). Each module's docstring documents its split, order, statistics and
augmentation.
"""

from keras_apps.data._base import DatasetInfo, DatasetNotFoundError, cache_dir, data_roots
from keras_apps.data.augment import denormalize, normalize
from keras_apps.data.idx import read_idx
from keras_apps.data.pipeline import dataset_info, list_datasets, load

__all__ = [
    "DatasetInfo",
    "DatasetNotFoundError",
    "cache_dir",
    "data_roots",
    "dataset_info",
    "denormalize",
    "list_datasets",
    "load",
    "normalize",
    "read_idx",
]
