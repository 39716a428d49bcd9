"""tf.data pipelines for image classification.

    >>> from keras_apps import data
    >>> data.list_datasets()[:4]
    ['bccd', 'caltech_birds2011', 'cifar10', 'cifar100']
    >>> ds, info = data.load("digits", "train", batch_size=64)   # zero set-up
    >>> images, labels = next(iter(ds))        # float32 [64, 32, 32, 1], int32 [64]
    >>> pixels = data.denormalize(images, info)  # back to [0, 255]

Every dataset yields ``(images, labels)``: images float32 [B, H, W, C], labels int32 [B].
Training splits are shuffled and augmented by default (pad + random crop + flip for small
images, resize + random crop + flip for ImageNet-style sets); everything is keyed on
``seed``.

Preprocessing (``load(..., preprocessing=mode)``, :func:`preprocess_images`,
:data:`PREPROCESSING_MODES`): "dataset" (default: per channel ``(pixels - info.mean) /
info.std``, statistics in [0, 255] pixel units), or the ``keras.applications`` conventions
of pretrained weights, "caffe" (RGB -> BGR minus the ImageNet BGR mean), "torch" (/255, then
the ImageNet mean/std), "tf" (x / 127.5 - 1), and "raw" (0..255 floats). "caffe" and "torch"
need RGB: on grayscale sets they raise a ValueError naming the mode and the channel count.
``info.preprocessing`` records the mode; :func:`denormalize` inverts any of them.

Channels (``load(..., channels=1 | 3)``, :func:`convert_channels`, :data:`CHANNEL_CHOICES`):
3 from a grayscale set repeats the grey channel, 1 from an RGB set is the ITU-R BT.601
luma 0.299 R + 0.587 G + 0.114 B; applied to the raw pixels before augmentation and
preprocessing. ``info.image_shape`` has the delivered channels and the "dataset"
mean/std follow the conversion (:mod:`keras_apps.data.channels` gives the equations), so
a CIFAR-10 network can be fine-tuned on Fashion-MNIST (``channels=3, image_size=32``).

Class subsets: ``classes=[3, 5, 7]`` keeps those source classes and relabels them 0, 1, 2
(``info.class_ids`` = (3, 5, 7), ``info.class_names`` the kept names). They select the
delivered label: coarse ids with cifar100 ``label="coarse"``; fine ids with ``"both"``
(the coarse labels stay as they are); multi-hot columns with VOC ``"multi"``. Ids out of
range, repeated or an empty list raise a ValueError naming the allowed range.

Held-out validation: ``validation_fraction=f, subset="training" | "validation"`` (names
as in ``keras.utils.image_dataset_from_directory``) carve the training split after the
class filter: per class, a ``np.random.RandomState(validation_seed)`` permutation
(``validation_seed=0``, independent of ``seed``) puts ``floor(n_c f + 0.5)`` examples in
"validation" and the rest in "training"; ``limit`` applies after the carve. The validation
subset is neither shuffled nor augmented by default. ``info.num_examples`` adds the
"training" and "validation" sizes. Digits, cifar10, fashion_mnist and folders carve their
in-memory index; tfds sets read the split's label column once (one pass over the records,
images decoded only for fixed-size sets; memoised per process for prepared builders) and
keep the carved records by position in the unshuffled file order (so their files are read
in order and shuffled by the buffer only).

Resumable epochs: ``start_epoch=k`` returns an infinite dataset of epochs k, k+1, ...,
each ``info.steps_per_epoch`` batches (``ceil(n / batch_size)``, floor with
``drop_remainder``); epoch e's order is ``argsort(stateless_uniform([n], fold_in((seed, e),
0)))`` and the example at position p is augmented with seed ``fold_in(fold_in((seed, e),
1), p)``, so a run resumed at epoch k sees exactly the batches of an uninterrupted one.
This needs an in-memory index: digits, cifar10, fashion_mnist and folders (paths) have
one; fixed-size tfds sets (cifar100, tfds cifar10, mnist-like) are read into memory for it;
variable-size tfds sets (imagenet2012, sun397, caltech_birds2011, voc) raise a ValueError.
``start_epoch=None`` (default) gives one finite epoch that reshuffles and redraws on every
iteration; ``info.steps_per_epoch`` is set for it too (``None`` where the count is unknown).

Where the data is: ``data_dir`` if given, else ``$KERAS_APPS_DATA``, else
``<cwd>/../shared/data``, else ``<repo>/../shared/data`` (:func:`data_roots`). Nothing is
downloaded unless ``download=True`` (CLI: --download); a missing set raises
:class:`DatasetNotFoundError` saying where to put which files, and so does an image folder
without class sub-folders. Decoded CIFAR-10 arrays are cached under ``$KERAS_APPS_CACHE``
(default ``~/.cache/keras_apps``).

Detection (``label="boxes"``, the default and only label of ``bccd``, ``voc_folder``
with ``data_dir=DIR`` and any PASCAL VOC folder path): ``(images, {"boxes", "classes",
"difficult"})`` with ragged [B, None, 4] float32 boxes ``(x1, y1, x2, y2)`` in delivered
pixels, int32 class ids and bool flags; ``image_size`` resizes images and boxes; training
augmentation is a scale-jittered random crop and flip that moves, clips and drops boxes
(:mod:`keras_apps.data.detection`). :class:`VOCFolder` reads such folders for numpy work
(``records(split)``, ``image(record)``); :mod:`keras_apps.data.voc` documents how
imperfect annotations are handled (BCCD's two zero-area boxes are dropped). ``load``'s
``label`` defaults to the dataset's first label choice.

Sources: ``bccd`` (``<DATA>/detection/bccd/BCCD``, PASCAL VOC layout), ``digits`` (scikit-learn), ``cifar10`` (JPEG shards, else tfds),
``fashion_mnist`` (IDX files), ``cifar100`` / ``imagenet2012`` / ``sun397`` /
``caltech_birds2011`` / ``voc`` / ``tfds:<name>`` (tensorflow-datasets), and image folders
(``folder`` or a path). Each module's docstring documents its split, order, statistics and
augmentation.
"""

from keras_apps.data._base import DatasetInfo, DatasetNotFoundError, cache_dir, data_roots
from keras_apps.data.augment import normalize
from keras_apps.data.channels import CHANNEL_CHOICES, convert_channels
from keras_apps.data.idx import read_idx
from keras_apps.data.pipeline import dataset_info, detection_folder, list_datasets, load
from keras_apps.data.preprocessing import PREPROCESSING_MODES, denormalize, preprocess_images
from keras_apps.data.voc import VOCFolder, VOCParseError, read_annotation

__all__ = [
    "CHANNEL_CHOICES",
    "DatasetInfo",
    "DatasetNotFoundError",
    "PREPROCESSING_MODES",
    "cache_dir",
    "convert_channels",
    "data_roots",
    "dataset_info",
    "denormalize",
    "list_datasets",
    "detection_folder",
    "load",
    "normalize",
    "preprocess_images",
    "read_annotation",
    "read_idx",
    "VOCFolder",
    "VOCParseError",
]
