"""Zero-shot data for NIWT: class-attribute matrices, the xlsa17 splits and the images.

- :func:`cifar10_attributes`, :class:`ClassAttributes`, :data:`CIFAR10_ATTRIBUTES`,
  :data:`CIFAR10_ATTRIBUTE_MATRIX` (each value documented in
  :data:`keras_apps.niwt.attributes.CIFAR10_ATTRIBUTE_DOCS`): re-exported from
  :mod:`keras_apps.niwt.attributes`.
- :func:`load_att_splits`: an xlsa17 ``att_splits.mat`` (Xian et al., "Zero-Shot Learning —
  A Comprehensive Evaluation of the Good, the Bad and the Ugly", the "proposed splits").
- :func:`load_awa2`, :func:`load_cub`: the AwA2 (50 x 85) and CUB-200-2011 (200 x 312)
  continuous class-attribute matrices with the xlsa17 seen/unseen classes.
- :func:`zsl_images`: their images as ``(image, global class id)`` batches, restricted to
  chosen classes, through :func:`keras_apps.data.load`.

Where the files are: ``<DATA>/zsl/awa2`` and ``<DATA>/zsl/cub`` under the data roots of
:func:`keras_apps.data.data_roots` (``data_dir``, else ``$KERAS_APPS_DATA``, else
``../shared/data``); ``data_dir`` may also name the dataset's own folder (AwA2's
``Animals_with_Attributes2/``, CUB's ``CUB_200_2011/``). Missing files raise
:class:`keras_apps.data.DatasetNotFoundError` saying where to put which files.

xlsa17 facts these loaders rely on (checked against the ``att_splits.mat`` files in
``tests/test_niwt_data.py``):

- ``att`` is ``original_att`` with every class column scaled to unit L2 norm; both are stored
  attributes x classes (transposed here to classes x attributes).
- The ``*_loc`` arrays are 1-based image indices. AwA2's image order is the class folders of
  ``JPEGImages`` in sorted (alphabetical) order, so with the per-class image counts
  (:data:`AWA2_IMAGE_COUNTS`) every loc array maps to classes; CUB's is the ``images.txt``
  (= ``image_class_labels.txt``) order, so ``labels[loc - 1]`` are its classes.
- AwA2: ``test_unseen_loc`` covers exactly the images of :data:`XLSA17_AWA2_UNSEEN`,
  ``val_loc`` those of :data:`XLSA17_AWA2_VALIDATION` (13 seen classes held out for
  validation), ``train_loc`` the other 27 seen classes. ``allclasses_names`` is in
  ``classes.txt`` order.
- CUB: ``trainval_loc`` holds 150 classes, ``test_unseen_loc`` 50 others; the copy in
  ``../shared/data`` (re-saved by cetinsamet/attribute-label-embedding) lacks ``train_loc`` /
  ``val_loc``, so :func:`load_cub` gives ``validation=None`` for it, and its
  ``allclasses_names`` is not in ``classes.txt`` order (the loaders match names, never
  positions).

AwA2's antelope row: ``predicate-matrix-continuous.txt`` (and xlsa17's ``original_att``) has
-1.00 for its first four predicates (black, white, blue, brown), AwA2's "no value". The
loader keeps the file's values by default, because xlsa17's ``att`` — the matrix every
published AwA2 number uses — is the L2-normalised row *with* those -1 entries
(``load_awa2().normalized().matrix`` equals it); ``missing_value=0.0`` replaces them.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from keras_apps.data._base import DatasetNotFoundError, data_roots, where_to_put
from keras_apps.niwt.attributes import (
    CIFAR10_ATTRIBUTE_DOCS,
    CIFAR10_ATTRIBUTE_MATRIX,
    CIFAR10_ATTRIBUTES,
    CIFAR10_CLASSES,
    ClassAttributes,
    cifar10_attributes,
)

__all__ = [
    "AWA2_IMAGE_COUNTS",
    "CIFAR10_ATTRIBUTES",
    "CIFAR10_ATTRIBUTE_DOCS",
    "CIFAR10_ATTRIBUTE_MATRIX",
    "CIFAR10_CLASSES",
    "ClassAttributes",
    "LOC_KEYS",
    "XLSA17_AWA2_UNSEEN",
    "XLSA17_AWA2_VALIDATION",
    "ZSL_DATASETS",
    "cifar10_attributes",
    "load_att_splits",
    "load_awa2",
    "load_cub",
    "zsl_images",
]

#: The image-index arrays of an xlsa17 ``att_splits.mat``.
LOC_KEYS = ("train_loc", "val_loc", "trainval_loc", "test_seen_loc", "test_unseen_loc")

#: xlsa17 "proposed split" unseen (test) classes of AwA2 (and AwA1), in classes.txt order.
XLSA17_AWA2_UNSEEN = (
    "horse", "blue+whale", "sheep", "seal", "bat", "giraffe", "rat", "bobcat", "walrus", "dolphin",
)
#: The 13 seen classes whose images form xlsa17 AwA2's ``val_loc`` (the validation split the
#: proposed split's hyper-parameters are chosen on), in classes.txt order.
XLSA17_AWA2_VALIDATION = (
    "beaver", "deer", "mole", "hamster", "chimpanzee", "leopard", "moose", "rabbit", "giant+panda",
    "gorilla", "ox", "dalmatian", "raccoon",
)
#: Images per class of AwA2's ``JPEGImages/`` (37,322 in all), alphabetical = xlsa17's image
#: order; the tests check them against the runs of the xlsa17 loc arrays.
AWA2_IMAGE_COUNTS = {
    "antelope": 1046, "bat": 383, "beaver": 193, "blue+whale": 174, "bobcat": 630, "buffalo": 895,
    "chihuahua": 567, "chimpanzee": 728, "collie": 1028, "cow": 1338, "dalmatian": 549, "deer": 1344,
    "dolphin": 946, "elephant": 1038, "fox": 664, "german+shepherd": 1033, "giant+panda": 874,
    "giraffe": 1202, "gorilla": 872, "grizzly+bear": 852, "hamster": 779, "hippopotamus": 684,
    "horse": 1645, "humpback+whale": 709, "killer+whale": 291, "leopard": 720, "lion": 1019,
    "mole": 100, "moose": 704, "mouse": 185, "otter": 758, "ox": 728, "persian+cat": 747, "pig": 713,
    "polar+bear": 868, "rabbit": 1088, "raccoon": 512, "rat": 310, "rhinoceros": 696, "seal": 988,
    "sheep": 1420, "siamese+cat": 500, "skunk": 188, "spider+monkey": 291, "squirrel": 1200,
    "tiger": 877, "walrus": 215, "weasel": 272, "wolf": 589, "zebra": 1170,
}

#: Names :func:`zsl_images` accepts (``caltech_birds2011`` is CUB).
ZSL_DATASETS = ("awa2", "cub", "caltech_birds2011")

_AWA2_FILES = ("classes.txt", "predicates.txt", "predicate-matrix-continuous.txt")
_CUB_FILES = ("classes.txt", "attributes.txt", "attributes/class_attribute_labels_continuous.txt")


def _missing(what: str, subfolder: str, files, looked) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{what} not found (looked in: {', '.join(str(p) for p in looked)}). Put "
        f"{', '.join(files)} in {where_to_put(subfolder)}; or pass data_dir= naming the "
        f"dataset's own folder."
    )


def _candidates(data_dir, subfolder: str) -> list[pathlib.Path]:
    roots = data_roots(data_dir)
    out = []
    for root in roots:
        out.append(root / subfolder)
        if data_dir is not None:
            out.append(root)
    return out


def _locate(data_dir, subfolder: str, files, what: str) -> pathlib.Path:
    looked = _candidates(data_dir, subfolder)
    for folder in looked:
        if all((folder / f).is_file() or (f == "attributes.txt" and (folder.parent / f).is_file())
               for f in files):
            return folder
    raise _missing(what, subfolder, files, looked)


def _find_att_splits(folder: pathlib.Path, data_dir, subfolder: str) -> pathlib.Path | None:
    for candidate in [folder / "att_splits.mat"] + [p / "att_splits.mat" for p in _candidates(data_dir, subfolder)]:
        if candidate.is_file():
            return candidate
    return None


def _mat_names(value) -> tuple:
    return tuple(str(np.asarray(v).ravel()[0]).strip() for v in np.asarray(value).ravel())


def load_att_splits(path) -> dict:
    """An xlsa17 ``att_splits.mat`` (read with ``scipy.io.loadmat``).

    Args:
        path: the ``.mat`` file, or a folder holding ``att_splits.mat``.

    Returns:
        A dict with ``"att"`` float32 (C, A) (the mat stores A x C: transposed here; each
        class row has unit L2 norm), ``"original_att"`` float32 (C, A) when present (the
        unnormalised class attributes), ``"class_names"`` (``allclasses_names``, a tuple of
        str) when present, and each of :data:`LOC_KEYS` present as a 0-based int64 array
        (the mat's indices are 1-based) into the dataset's image order.

    Raises:
        DatasetNotFoundError: no such file.
        ValueError: the file has no ``att``.
    """
    import scipy.io

    path = pathlib.Path(os.fspath(path)).expanduser()
    if path.is_dir():
        path = path / "att_splits.mat"
    if not path.is_file():
        raise DatasetNotFoundError(
            f"xlsa17 split file {path} not found. Put the dataset's att_splits.mat (from the "
            f"xlsa17 release, Xian et al. 2017) there, e.g. in "
            f"{where_to_put('zsl/awa2')} (zsl/cub for CUB)."
        )
    mat = scipy.io.loadmat(str(path))
    if "att" not in mat:
        raise ValueError(f"{path} has no 'att' array; its keys are {sorted(k for k in mat if not k.startswith('__'))}.")
    out = {"att": np.asarray(mat["att"], dtype=np.float32).T.copy()}
    if "original_att" in mat:
        out["original_att"] = np.asarray(mat["original_att"], dtype=np.float32).T.copy()
    if "allclasses_names" in mat:
        out["class_names"] = _mat_names(mat["allclasses_names"])
    for key in LOC_KEYS:
        if key in mat:
            out[key] = np.asarray(mat[key]).ravel().astype(np.int64) - 1
    return out


def _read_names(path: pathlib.Path) -> tuple:
    """Names of an ``<id> <name>`` file, one a line (AwA2 uses a tab, CUB a space)."""
    names = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts:
            names.append(parts[-1] if len(parts) > 1 else parts[0])
    return tuple(names)


def load_awa2(data_dir=None, *, missing_value: float | None = None) -> ClassAttributes:
    """AwA2's class attributes with the xlsa17 proposed split.

    Reads ``classes.txt``, ``predicates.txt`` and ``predicate-matrix-continuous.txt`` (50 x 85,
    rows in classes.txt order) from ``<DATA>/zsl/awa2`` (or ``data_dir`` itself, e.g. the
    ``Animals_with_Attributes2`` folder). ``unseen`` = :data:`XLSA17_AWA2_UNSEEN`, ``seen`` the
    other 40, ``validation`` = :data:`XLSA17_AWA2_VALIDATION`. When ``att_splits.mat`` is
    beside the files, its ``allclasses_names`` must equal classes.txt (else ValueError).

    Args:
        data_dir: see :func:`keras_apps.data.data_roots`.
        missing_value: ``None`` keeps the file's -1.00 entries (antelope's first four
            predicates; xlsa17 keeps them too); a number replaces every negative entry.
    """
    folder = _locate(data_dir, "zsl/awa2", _AWA2_FILES, "AwA2 class-attribute files")
    classes = _read_names(folder / "classes.txt")
    predicates = _read_names(folder / "predicates.txt")
    matrix = np.loadtxt(folder / "predicate-matrix-continuous.txt", dtype=np.float64).astype(np.float32)
    if missing_value is not None:
        matrix = np.where(matrix < 0, np.float32(missing_value), matrix).astype(np.float32)
    mat_path = _find_att_splits(folder, data_dir, "zsl/awa2")
    if mat_path is not None:
        names = load_att_splits(mat_path).get("class_names")
        if names is not None and tuple(names) != classes:
            raise ValueError(f"{mat_path} allclasses_names {names[:5]}... do not match "
                             f"{folder / 'classes.txt'} ({classes[:5]}...).")
    missing = [n for n in XLSA17_AWA2_UNSEEN + XLSA17_AWA2_VALIDATION if n not in classes]
    if missing:
        raise ValueError(f"{folder / 'classes.txt'} lacks the xlsa17 classes {missing}.")
    unseen = tuple(sorted(classes.index(n) for n in XLSA17_AWA2_UNSEEN))
    validation = tuple(sorted(classes.index(n) for n in XLSA17_AWA2_VALIDATION))
    seen = tuple(i for i in range(len(classes)) if i not in unseen)
    return ClassAttributes(classes, predicates, matrix, seen=seen, unseen=unseen, validation=validation)


def _cub_attribute_names(folder: pathlib.Path) -> tuple:
    path = folder / "attributes.txt"
    if not path.is_file():  # the CUB release keeps attributes.txt beside CUB_200_2011/
        path = folder.parent / "attributes.txt"
    return _read_names(path)


def cub_image_labels(folder: pathlib.Path) -> np.ndarray:
    """0-based class id (classes.txt order) of every image, in ``image_class_labels.txt``
    (= images.txt = xlsa17) order."""
    rows = np.loadtxt(folder / "image_class_labels.txt", dtype=np.int64, ndmin=2)
    order = np.argsort(rows[:, 0], kind="stable")
    return rows[order, 1] - 1


def load_cub(data_dir=None) -> ClassAttributes:
    """CUB-200-2011's class attributes with the xlsa17 proposed split.

    Reads ``classes.txt`` (200 ``NNN.Name`` names), ``attributes.txt`` (312 names) and
    ``attributes/class_attribute_labels_continuous.txt`` (200 x 312, percentages 0..100, rows
    in classes.txt order) from ``<DATA>/zsl/cub`` (or ``data_dir`` itself, e.g.
    ``CUB_200_2011/``). With ``att_splits.mat`` and ``image_class_labels.txt`` present, the
    split comes from the image labels: ``seen`` = classes of ``trainval_loc`` (150),
    ``unseen`` = classes of ``test_unseen_loc`` (50), ``validation`` = classes of ``val_loc``
    when the mat has it (else ``None``); checked: disjoint, 200 in all, ``test_seen_loc``
    classes within ``seen`` (ValueError otherwise). Without them ``seen``/``unseen`` are
    ``None``.
    """
    folder = _locate(data_dir, "zsl/cub", _CUB_FILES, "CUB class-attribute files")
    classes = _read_names(folder / "classes.txt")
    attributes = _cub_attribute_names(folder)
    matrix = np.loadtxt(folder / "attributes" / "class_attribute_labels_continuous.txt",
                        dtype=np.float64).astype(np.float32)
    seen = unseen = validation = None
    mat_path = _find_att_splits(folder, data_dir, "zsl/cub")
    if mat_path is not None and (folder / "image_class_labels.txt").is_file():
        splits = load_att_splits(mat_path)
        labels = cub_image_labels(folder)

        def classes_of(key):
            locs = splits[key]
            if locs.size and locs.max() >= len(labels):
                raise ValueError(f"{mat_path} {key} index {int(locs.max()) + 1} exceeds the "
                                 f"{len(labels)} images of {folder / 'image_class_labels.txt'}.")
            return set(np.unique(labels[locs]).tolist())

        seen_set, unseen_set = classes_of("trainval_loc"), classes_of("test_unseen_loc")
        problems = []
        if seen_set & unseen_set:
            problems.append(f"classes {sorted(seen_set & unseen_set)} are in both trainval and test_unseen")
        if len(seen_set | unseen_set) != len(classes):
            problems.append(f"{len(seen_set | unseen_set)} classes in trainval + test_unseen, not {len(classes)}")
        if "test_seen_loc" in splits and not classes_of("test_seen_loc") <= seen_set:
            problems.append("test_seen images of unseen classes")
        if problems:
            raise ValueError(f"{mat_path} does not fit {folder / 'image_class_labels.txt'}: "
                             + "; ".join(problems) + ".")
        seen, unseen = tuple(sorted(seen_set)), tuple(sorted(unseen_set))
        if "val_loc" in splits:
            validation = tuple(sorted(classes_of("val_loc")))
    return ClassAttributes(classes, attributes, matrix, seen=seen, unseen=unseen, validation=validation)


def _class_ids(spec, attributes: ClassAttributes) -> tuple:
    n = len(attributes.class_names)
    if spec is None:
        return tuple(range(n))
    if isinstance(spec, str):
        if spec not in ("seen", "unseen", "validation"):
            raise ValueError(f"class_ids={spec!r}: allowed names are 'seen', 'unseen', 'validation' (or ids).")
        ids = getattr(attributes, spec)
        if ids is None:
            raise ValueError(f"class_ids={spec!r}, but these attributes have no {spec} classes.")
        return tuple(ids)
    ids = tuple(int(i) for i in np.asarray(spec).ravel())
    bad = [i for i in ids if not 0 <= i < n]
    if bad or not ids or len(set(ids)) != len(ids):
        raise ValueError(f"class_ids {list(ids)}: need distinct ids in 0..{n - 1}, at least one.")
    return ids


def _image_folder(name: str, data_dir) -> pathlib.Path | None:
    """The class-folder image directory of AwA2 (``JPEGImages``) or CUB (``images``)."""
    sub = "JPEGImages" if name == "awa2" else "images"
    nested = "Animals_with_Attributes2" if name == "awa2" else "CUB_200_2011"
    bases = _candidates(data_dir, f"zsl/{'awa2' if name == 'awa2' else 'cub'}")
    for base in bases:
        for folder in (base / sub, base / nested / sub):
            if folder.is_dir():
                return folder
    return None


def zsl_images(
    name: str,
    split: str = "train",
    *,
    class_ids=None,
    attributes: ClassAttributes | None = None,
    data_dir=None,
    image_size=None,
    batch_size: int = 32,
    **load_kwargs,
):
    """AwA2 or CUB images as batches of ``(images, global class ids)``.

    Global id = the class's row in ``attributes`` (default :func:`load_awa2` /
    :func:`load_cub`, read from ``data_dir`` when it holds the attribute files, else from
    the data roots), so labels index the attribute matrix directly.

    Sources:
        - ``"awa2"``: an image folder ``JPEGImages/<class name>/*.jpg`` (AwA2's layout) found
          under ``data_dir`` (itself, ``data_dir/Animals_with_Attributes2``) or
          ``<DATA>/zsl/awa2``, read by :func:`keras_apps.data.load` as a folder: splits
          ``"train"``/``"test"`` are its stratified 80/20 per-class split (seed 0).
        - ``"cub"`` / ``"caltech_birds2011"``: a ``CUB_200_2011/images/<NNN.Name>/`` folder
          when found the same way (80/20 split as above), else tfds ``caltech_birds2011``
          through :func:`keras_apps.data.load` (splits ``"train"``/``"test"``: CUB's own
          per-image split; the tfds label is the classes.txt id minus 1).

    Args:
        name: one of :data:`ZSL_DATASETS`.
        split: a split of the source (see above).
        class_ids: global ids to keep (``None`` = all), or ``"seen"``, ``"unseen"``,
            ``"validation"`` (those of ``attributes``).
        attributes: the :class:`ClassAttributes` whose order defines the global ids.
        data_dir: where the images are (see above); for tfds, the tfds data dir.
        image_size, batch_size, **load_kwargs: passed to :func:`keras_apps.data.load`
            (``shuffle``, ``augment``, ``seed``, ``limit``, ``preprocessing``,
            ``validation_fraction``/``subset``, ``download``, ...).

    Returns:
        ``(dataset, info)``: the dataset yields float32 images [B, H, W, 3] and int32 global
        ids [B]; ``info`` is :func:`keras_apps.data.load`'s (its labels are the source's).

    Raises:
        DatasetNotFoundError: no images where they were looked for (the message says where
            to put which files).
        ValueError: unknown ``name``, bad ``class_ids``, or folder classes that are not in
            ``attributes``.
    """
    import tensorflow as tf

    from keras_apps import data as kdata
    from keras_apps.data import folder as folder_source

    if name not in ZSL_DATASETS:
        raise ValueError(f"zsl_images name {name!r}: allowed: {', '.join(ZSL_DATASETS)}.")
    kind = "awa2" if name == "awa2" else "cub"
    if "classes" in load_kwargs:
        raise ValueError("zsl_images selects classes with class_ids= (global ids), not classes=.")
    if attributes is None:
        loader = load_awa2 if kind == "awa2" else load_cub
        try:
            attributes = loader(data_dir)
        except DatasetNotFoundError:
            if data_dir is None:
                raise
            attributes = loader(None)
    ids = _class_ids(class_ids, attributes)
    images = _image_folder(kind, data_dir)
    if images is not None:
        folder_names, _, _ = folder_source.scan(images)
        unknown = [n for n in folder_names if n not in attributes.class_names]
        if unknown:
            raise ValueError(f"{images} has class folders {unknown[:5]} that are not classes of the "
                             f"attributes ({attributes.class_names[:3]}...).")
        missing = [attributes.class_names[i] for i in ids if attributes.class_names[i] not in folder_names]
        if missing:
            raise DatasetNotFoundError(f"{images} has no folder for the classes {missing[:10]}; put "
                                       f"their images in {images}/<class name>/.")
        source_ids = [folder_names.index(attributes.class_names[i]) for i in ids]
        ds, info = kdata.load(str(images), split, classes=source_ids, image_size=image_size,
                              batch_size=batch_size, **load_kwargs)
        # load relabels the kept classes 0..k-1 in the order of `classes`.
        to_global = tf.constant(ids, tf.int32)
    elif kind == "cub":
        try:
            ds, info = kdata.load("caltech_birds2011", split, data_dir=data_dir, classes=list(ids),
                                  image_size=image_size, batch_size=batch_size, **load_kwargs)
        except DatasetNotFoundError as error:
            raise DatasetNotFoundError(
                f"No CUB images: put CUB_200_2011/images/<NNN.Name>/*.jpg in "
                f"{where_to_put('zsl/cub')} (or pass data_dir= naming CUB_200_2011/), or prepare "
                f"tfds caltech_birds2011 ({error})"
            ) from None
        to_global = tf.constant(ids, tf.int32)
    else:
        looked = [str(p) for p in _candidates(data_dir, "zsl/awa2")]
        raise DatasetNotFoundError(
            f"No AwA2 images (looked for JPEGImages/ in: {', '.join(looked)}). Put AwA2's "
            f"JPEGImages/<class name>/*.jpg (Animals_with_Attributes2 from "
            f"https://cvml.ista.ac.at/AwA2/) in {where_to_put('zsl/awa2')}, or pass data_dir= "
            f"naming the folder that holds JPEGImages/."
        )
    ds = ds.map(lambda x, y: (x, tf.gather(to_global, tf.cast(y, tf.int32))))
    return ds, info
