"""Train an OverFeat detector on a VOC-format set, the paper's way (Sec. 4.2, 4.6).

:func:`fit` runs the two phases on a detection set (``"bccd"``, or any PASCAL VOC folder):

1. the **classifier** -- a registered OverFeat network with the set's classes plus a
   background class -- on windows of the training images (:func:`sample_windows`: object
   windows at the scales where each box fills 30-100% of the field of view, kept when more
   than half of the box is inside; background windows), random horizontal flips;
2. the **box regressor** (:func:`regression_head`: FC layers on the frozen last pooled map,
   4 edges per class, :class:`BoxRegressionLoss`) on the object windows, flips moving the
   targets;

each a resumable ``keras_apps.training.fit`` run under ``output_dir`` (a finished phase is
read back, an interrupted one resumes from its last finished epoch), validation windows from
the ``validation_split``. With ``tune=True`` the detection score and merge thresholds are
then chosen on the validation images by mAP (:func:`choose_thresholds`), detections keeping
the boxes whose size lies in the regressor's training range (``size_range`` of the field of
view). The joint system is
saved as ``output_dir/system.keras`` with its settings (:func:`save_system`), ready for
``keras-apps overfeat detect``.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import pathlib

import keras
import numpy as np
import tensorflow as tf

from keras_apps.overfeat.dense import dense_geometry, to_dense
from keras_apps.overfeat.inference import (
    dense_predictions,
    detect_predictions,
    overfeat_system,
    save_system,
)
from keras_apps.overfeat.regression import (
    BoxRegressionLoss,
    flip_targets,
    regression_head,
    regression_targets,
)
from keras_apps.overfeat.windows import crop_windows, sample_windows

__all__ = ["OverFeatResult", "choose_thresholds", "fit", "window_dataset"]

#: Training scales of :func:`fit` (factors of the image size): BCCD's cells (platelets ~40 px,
#: red cells ~110, white cells ~200 on 640x480 images) each fill 30-100% of the 221-px window
#: at one or more of them.
DEFAULT_SCALES = (0.7, 1.0, 1.4, 2.0)


@dataclasses.dataclass
class OverFeatResult:
    """What :func:`fit` returns: the joint ``system`` (outputs ``scores``, ``boxes``), the
    ``classifier`` and ``regressor`` it joins, the object ``class_names`` (the background is
    the classifier's last class), the chosen settings (scales, thresholds), the training
    windows per class, both phases' final metrics and the run folder."""

    system: keras.Model
    classifier: keras.Model
    regressor: keras.Model
    class_names: list
    settings: dict
    windows: dict
    metrics: dict
    output_dir: pathlib.Path


def window_dataset(crops, targets, *, batch_size, preprocessing="torch", shuffle=False, seed=0,
                   flip_boxes=False) -> tf.data.Dataset:
    """Batches of ``(preprocessed crops, targets)``; with ``shuffle``, reshuffled every epoch
    and each crop mirrored with probability 1/2 (``flip_boxes``: targets are rows ``[class,
    t1..t4]`` whose edges mirror with the crop, :func:`flip_targets`)."""
    from keras_apps.data.preprocessing import preprocess_images

    ds = tf.data.Dataset.from_tensor_slices((crops, targets))
    if shuffle:
        ds = ds.shuffle(len(crops), seed=seed, reshuffle_each_iteration=True)

    def prepare(image, target):
        image = preprocess_images(image, preprocessing)
        if shuffle:
            flip = tf.random.uniform((), seed=None) < 0.5
            image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
            if flip_boxes:
                target = tf.cond(flip, lambda: tf.concat([target[:1], flip_targets(target[1:])], 0),
                                 lambda: target)
        return image, target

    return ds.map(prepare, num_parallel_calls=2).batch(batch_size).prefetch(2)


def _fit_once(model, data, output_dir: pathlib.Path, **kwargs):
    """``training.fit`` into ``output_dir``, or the finished run there read back."""
    from keras_apps import training

    if (output_dir / "metrics.json").exists() and (output_dir / "model.keras").exists():
        return training.load_model(output_dir / "model.keras"), json.loads((output_dir / "metrics.json").read_text())
    result = training.fit(model, data, output_dir=output_dir, **kwargs)
    return result.model, result.metrics


def choose_thresholds(system, images, records, num_classes, *, scales, score_thresholds=(0.3, 0.5, 0.7),
                      merge_thresholds=(0.25, 0.5, 1.0), offset_pooling=False, preprocess=None,
                      predictions=None, box_size_range=None, max_boxes=2000):
    """``(mAP, score_threshold, merge_threshold)``: the pair of the grid with the best
    detection mAP on ``images`` (held-out validation images, never the test split); the
    network runs once (``predictions``: reuse a :func:`dense_predictions` result)."""
    from keras_apps.overfeat.metrics import detection_ap

    if predictions is None:
        predictions = dense_predictions(system, images, scales, preprocess=preprocess,
                                        offset_pooling=offset_pooling)
    best = None
    for score_threshold in score_thresholds:
        for merge_threshold in merge_thresholds:
            found = detect_predictions(predictions, score_threshold=score_threshold,
                                       merge_threshold=merge_threshold, background_class=num_classes,
                                       box_size_range=box_size_range, max_boxes=max_boxes)
            value = detection_ap(found, records, num_classes)["mAP"]  # records carry boxes, classes, difficult
            value = -1.0 if not np.isfinite(value) else value
            if best is None or value > best[0]:
                best = (float(value), float(score_threshold), float(merge_threshold))
    return best


def _positive(name, value, kind=numbers.Integral):
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise ValueError(f"`{name}` must be a positive {'integer' if kind is numbers.Integral else 'number'}, got {value!r}.")
    return value


def fit(
    model="overfeat_accurate_small",
    data="bccd",
    *,
    data_dir=None,
    output_dir="runs/overfeat",
    train_split: str = "train",
    validation_split: str | None = "auto",
    scales=DEFAULT_SCALES,
    epochs: int = 10,
    regressor_epochs: int = 4,
    batch_size: int = 64,
    learning_rate: float = 0.02,
    max_per_class: int | None = 2,
    background_per_image: int = 2,
    size_range=(0.3, 1.0),
    limit: int | None = None,
    preprocessing: str = "torch",
    tune: bool = True,
    offset_pooling: bool = True,
    seed: int = 0,
    images=None,
    download: bool = False,
    verbose=0,
) -> OverFeatResult:
    """Trains the classifier and the box regressor on ``data`` (see the module docstring).

    Args:
        model: a registered OverFeat name (built with the set's classes + background) or an
            untrained classifier with that many classes.
        data: ``"bccd"``, ``"voc_folder"`` (with ``data_dir``), a VOC folder path, the tfds
            PASCAL VOC ``"voc"`` / ``"voc/2012"`` (``download`` lets tfds prepare it), or an
            object with ``class_names``, ``splits``, ``records(split)`` and ``image(record)``
            (:func:`keras_apps.data.detection_folder`).
        scales: image scales of the training windows and of the saved system's evaluation.
        epochs, regressor_epochs, batch_size, learning_rate: the two phases (SGD momentum 0.9,
            cosine schedule; weight decay 5e-4 for the classifier, 1e-5 for the regressor).
        max_per_class: object windows per class, image and scale (BCCD: ~11 red cells each).
        limit: use only the first ``limit`` images of each split.
        preprocessing: the input mode (:data:`keras_apps.data.PREPROCESSING_MODES`; "torch" =
            ImageNet mean / std, the usual choice for images without own statistics).
        tune: choose the detection thresholds on the validation images (at ``scales``,
            ``offset_pooling``) and save them with the system.
        validation_split: the split of the validation windows and the threshold choice
            ("auto": ``val`` or ``validation``, whichever the set has; None: none).
        images: ``{split: list of images}`` already decoded (else read from ``data``).
    """
    import keras_apps
    from keras_apps import data as kdata
    from keras_apps.data.preprocessing import check_mode, preprocess_images

    for name, value in (("epochs", epochs), ("regressor_epochs", regressor_epochs), ("batch_size", batch_size)):
        _positive(name, value)
    _positive("learning_rate", learning_rate, numbers.Real)
    if limit is not None:
        _positive("limit", limit)
    preprocessing = check_mode(preprocessing, channels=3)
    folder = data if hasattr(data, "records") and hasattr(data, "image") else kdata.detection_folder(
        data, data_dir=data_dir, download=download)
    if validation_split == "auto":
        validation_split = next((s for s in ("val", "validation") if s in folder.splits), None)
    for split in (train_split, validation_split):
        if split is not None and split not in folder.splits:
            raise ValueError(f"Split {split!r} is not one of {folder.root}'s: {', '.join(folder.splits)}.")
    images = dict(images or {})

    def split_data(split):
        records = folder.records(split)[: limit or None]
        if split not in images:
            images[split] = [folder.image(r) for r in records]
        return records, images[split][: len(records)]

    output_dir = pathlib.Path(output_dir)
    class_names = list(folder.class_names)
    num_classes = len(class_names)
    keras.utils.set_random_seed(seed)
    if isinstance(model, str):
        classifier = keras_apps.build(model, classes=num_classes + 1)
    elif isinstance(model, keras.Model):
        classifier = model
        if classifier.outputs[0].shape[-1] != num_classes + 1:
            raise ValueError(
                f"The classifier has {classifier.outputs[0].shape[-1]} outputs; {data!r} needs "
                f"{num_classes} classes + background = {num_classes + 1}."
            )
    else:
        raise TypeError(f"`model` must be a registry name or a keras.Model, got {type(model).__name__}.")
    geometry = dense_geometry(to_dense(classifier))
    fov, stride = int(geometry.field_of_view[0]), int(geometry.stride[0])

    def windows_of(split, window_seed):
        records, split_images = split_data(split)
        windows = sample_windows(records, num_classes=num_classes, field_of_view=fov, stride=stride,
                                 scales=scales, size_range=size_range, max_per_class=max_per_class,
                                 background_per_image=background_per_image, seed=window_seed)
        if len(windows) == 0:
            raise ValueError(f"No training windows in split {split!r} of {folder.root}: no boxes fit the scales {scales}.")
        return windows, crop_windows(split_images, windows, fov)

    train_windows, train_crops = windows_of(train_split, seed)
    val = windows_of(validation_split, 10_000 + seed) if validation_split else None
    common = dict(batch_size=batch_size, preprocessing=preprocessing)
    cls_data = (
        window_dataset(train_crops, train_windows["label"], shuffle=True, seed=seed, **common),
        None if val is None else window_dataset(val[1], val[0]["label"], **common),
    )
    classifier, classifier_metrics = _fit_once(
        classifier, cls_data, output_dir / "classifier", epochs=epochs, learning_rate=learning_rate,
        lr_schedule="cosine", weight_decay=5e-4, seed=seed, verbose=verbose,
    )

    def box_rows(windows):
        objects = windows["label"] < num_classes
        return objects, regression_targets(windows["label"][objects], windows["box"][objects],
                                           windows["window"][objects])

    objects, targets = box_rows(train_windows)
    regressor = regression_head(classifier, num_classes)
    reg_val = None
    if val is not None:
        val_objects, val_targets = box_rows(val[0])
        reg_val = window_dataset(val[1][val_objects], val_targets, **common)
    reg_data = (
        window_dataset(train_crops[objects], targets, shuffle=True, seed=seed, flip_boxes=True, **common),
        reg_val,
    )
    trained, regressor_metrics = _fit_once(
        regressor, reg_data, output_dir / "regressor", epochs=regressor_epochs,
        learning_rate=learning_rate, lr_schedule="cosine", weight_decay=1e-5,
        loss=BoxRegressionLoss(), metrics=[], seed=seed, verbose=verbose,
    )
    # A finished run read back from disk no longer shares the classifier's feature layers:
    # its head's weights go into the regressor built on the classifier.
    for name in ("reg_fc1", "reg_fc2", "boxes"):
        regressor.get_layer(name).set_weights(trained.get_layer(name).get_weights())
    system = overfeat_system(classifier, regressor)
    settings = {"scales": list(scales), "offset_pooling": bool(offset_pooling), "preprocessing": preprocessing,
                "score_threshold": 0.5, "merge_threshold": 0.5, "box_size_range": list(size_range)}
    if tune and validation_split:
        records, split_images = split_data(validation_split)
        val_map, settings["score_threshold"], settings["merge_threshold"] = choose_thresholds(
            system, split_images, records, num_classes, scales=scales, offset_pooling=offset_pooling,
            preprocess=lambda x: preprocess_images(x, preprocessing), box_size_range=size_range,
        )
        settings["validation_mAP"] = val_map
    save_system(system, output_dir / "system.keras", class_names=class_names, background=True,
                preprocessing=preprocessing, scales=scales, offset_pooling=offset_pooling,
                score_threshold=settings["score_threshold"], merge_threshold=settings["merge_threshold"],
                box_size_range=size_range, overwrite=True)
    counts = {name: int(np.sum(train_windows["label"] == c)) for c, name in enumerate([*class_names, "background"])}
    return OverFeatResult(
        system=system, classifier=classifier, regressor=regressor, class_names=class_names,
        settings={**settings, "field_of_view": fov, "stride": stride},
        windows={"train": counts, "validation": 0 if val is None else int(len(val[0]))},
        metrics={"classifier": classifier_metrics, "regressor": regressor_metrics},
        output_dir=output_dir,
    )
