"""Localization and detection at every location and scale (Sec. 4.3-4.6).

The classifier and the box regressor share the feature extractor; :func:`overfeat_system`
joins them in one functional model with outputs ``{"scores", "boxes"}`` and
:func:`dense_system` turns it into the fully convolutional network (optionally with offset
max pooling) that runs on whole images. At each scale the network gives, per window of the
dense grid, class probabilities and one box per class; :func:`localize` and :func:`detect`
map those back to the original image (regressed boxes with crossed edges are put in order,
narrower than a pixel widened to one) and combine them with the paper's greedy merge
(:func:`keras_apps.overfeat.merge.greedy_merge`):

* ``localize`` (ILSVRC localization): at each scale ``s`` the top-k classes ``C_s`` by their
  spatial maximum, the boxes predicted for them at all locations (confidence = the class's
  probability there); merged over the union of scales; the ``top_k`` best (class, box) guesses.
* ``detect``: every location and class (not the background) whose probability reaches
  ``score_threshold``; merged per class; all merged boxes with their summed confidence.

Images are raw pixels (H, W, 3) in [0, 255] (uint8 or float), any size at or above the
network's input size at every scale; ``preprocess`` maps resized raw pixels to the network's
input (e.g. ``lambda x: keras_apps.data.normalize(x, info)``).
"""

from __future__ import annotations

import numbers
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_apps.overfeat.dense import to_dense, window_boxes
from keras_apps.overfeat.merge import greedy_merge
from keras_apps.overfeat.regression import decode_boxes

__all__ = [
    "dense_predictions",
    "dense_system",
    "detect",
    "detect_predictions",
    "localize",
    "load_system",
    "localize_predictions",
    "save_system",
    "overfeat_system",
]


def overfeat_system(classifier: keras.Model, regressor: keras.Model, *, name: str = "overfeat") -> keras.Model:
    """One model, outputs ``{"scores": classifier probabilities, "boxes": regressor output}``,
    sharing the feature extractor (``regressor`` must be built on ``classifier`` by
    :func:`keras_apps.overfeat.regression.regression_head`)."""
    for role, model in (("classifier", classifier), ("regressor", regressor)):
        if not isinstance(model, keras.Model):
            raise TypeError(f"`{role}` must be a keras.Model, got {type(model).__name__}.")
    if classifier.inputs[0] is not regressor.inputs[0]:
        raise ValueError(
            f"The regressor {regressor.name!r} does not read the classifier {classifier.name!r}'s input; "
            "build it with keras_apps.overfeat.regression_head(classifier, classes) so that both share "
            "the feature extractor."
        )
    scores = keras.layers.Identity(name="scores")(classifier.outputs[0])
    boxes = keras.layers.Identity(name="boxes_out")(regressor.outputs[0])
    return keras.Model(classifier.inputs[0], {"scores": scores, "boxes": boxes}, name=name)


def dense_system(system: keras.Model, *, offset_pooling: bool = False) -> keras.Model:
    """:func:`keras_apps.overfeat.dense.to_dense` of a system (or of a classifier alone)."""
    return to_dense(system, offset_pooling=offset_pooling)


def _is_dense(model: keras.Model) -> bool:
    shape = model.inputs[0].shape
    return shape[1] is None and shape[2] is None


def _as_dense(model, offset_pooling):
    if _is_dense(model):
        return model
    return to_dense(model, offset_pooling=offset_pooling)


def _scale_size(scale, height: int, width: int) -> tuple[int, int]:
    if isinstance(scale, numbers.Real) and not isinstance(scale, bool):
        if not scale > 0:
            raise ValueError(f"A scale must be > 0 (a factor) or (height, width), got {scale!r}.")
        return max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    try:
        h, w = scale
    except (TypeError, ValueError):
        raise ValueError(f"A scale must be a factor > 0 or (height, width), got {scale!r}.") from None
    if not (isinstance(h, numbers.Integral) and isinstance(w, numbers.Integral) and h > 0 and w > 0):
        raise ValueError(f"A scale given as (height, width) needs two positive integers, got {scale!r}.")
    return int(h), int(w)


def _check_images(images) -> list[np.ndarray]:
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    images = [np.asarray(image) for image in images]
    if not images:
        raise ValueError("`images` is empty: pass at least one (H, W, 3) image.")
    for i, image in enumerate(images):
        if image.ndim != 3:
            raise ValueError(f"Image {i} must be (H, W, C), got shape {image.shape}.")
    return images


def _proper(boxes: np.ndarray) -> np.ndarray:
    """Regressed edges as valid boxes: crossed edges (x2 < x1) swapped, and an edge pair
    closer than 1 pixel widened to 1 pixel about its middle (an untrained regressor can
    predict either)."""
    out = boxes.copy()
    for lo, hi in ((0, 2), (1, 3)):
        a, b = np.minimum(boxes[..., lo], boxes[..., hi]), np.maximum(boxes[..., lo], boxes[..., hi])
        middle, half = (a + b) / 2, np.maximum((b - a) / 2, 0.5)
        out[..., lo], out[..., hi] = middle - half, middle + half
    return out


def _outputs(prediction):
    if isinstance(prediction, dict):
        return np.asarray(prediction["scores"]), (
            np.asarray(prediction["boxes"]) if "boxes" in prediction else None
        )
    return np.asarray(prediction), None


def dense_predictions(
    model: keras.Model,
    images,
    scales=(1.0,),
    *,
    preprocess: Callable | None = None,
    offset_pooling: bool = False,
    flip: bool = False,
    batch_size: int = 8,
) -> list[list[dict]]:
    """Per image, per scale: ``{"requested": the scale as given, "input_size": (H, W) the
    network ran on, "scale": (sy, sx) that size over the image's, "scores": (h, w, K),
    "windows": (h, w, 4), "boxes": (h, w, C, 4) or None}``; windows and boxes in the original image's pixels
    (``boxes`` decoded from the regressor's window-normalised edges; C = its classes).

    ``model`` is a system, a classifier (no boxes) or their dense form; ``scales`` factors of
    the image size or (height, width) sizes; ``flip`` runs the mirrored image instead (its
    windows and boxes mapped back to the unmirrored image).
    """
    dense = _as_dense(model, offset_pooling)
    images = _check_images(images)
    results = [[] for _ in images]
    for scale in scales:
        groups: dict = {}
        for i, image in enumerate(images):
            size = _scale_size(scale, *image.shape[:2])
            groups.setdefault((size, image.shape[:2]), []).append(i)
        for (size, original), members in groups.items():
            try:
                windows = window_boxes(dense, *size)
            except ValueError as error:
                raise ValueError(
                    f"Scale {scale!r} gives a {size[0]}x{size[1]} input for {original[0]}x{original[1]} "
                    f"images, which the network cannot evaluate: {error}"
                ) from None
            sy, sx = size[0] / original[0], size[1] / original[1]
            for start in range(0, len(members), batch_size):
                chunk = members[start:start + batch_size]
                batch = np.stack([images[i] for i in chunk]).astype(np.float32)
                batch = tf.image.resize(batch, size, method="bilinear").numpy()
                if flip:
                    batch = batch[:, :, ::-1]
                if preprocess is not None:
                    batch = np.asarray(preprocess(batch), np.float32)
                scores, targets = _outputs(dense.predict_on_batch(batch))
                for k, i in enumerate(chunk):
                    s = scores[k]
                    win = windows.copy()
                    boxes = None
                    if targets is not None:
                        t = targets[k].reshape(*targets[k].shape[:2], -1, 4)
                        boxes = _proper(decode_boxes(t, win[..., None, :]))
                    if flip:
                        s = s[:, ::-1]
                        win = win[:, ::-1].copy()
                        win[..., [0, 2]] = size[1] - win[..., [2, 0]]
                        if boxes is not None:
                            boxes = boxes[:, ::-1].copy()
                            boxes[..., [0, 2]] = size[1] - boxes[..., [2, 0]]
                    factor = np.array([sx, sy, sx, sy], np.float32)
                    results[i].append({
                        "requested": scale,
                        "input_size": size,
                        "scale": (sy, sx),
                        "scores": s,
                        "windows": (win / factor).astype(np.float32),
                        "boxes": None if boxes is None else (boxes / factor).astype(np.float32),
                    })
    return results


def _object_classes(scores: np.ndarray, background_class) -> np.ndarray:
    classes = np.arange(scores.shape[-1])
    if background_class is not None:
        classes = classes[classes != background_class]
    return classes


def _check_background(background_class, per_scale):
    """``background_class`` as a non-negative index of the classifier's K classes (-1: last).
    With boxes, the regressor has a box per object class: K - 1 with a background (which must
    then be the last class), K without."""
    count = per_scale[0]["scores"].shape[-1]
    boxes = per_scale[0]["boxes"]
    if background_class is None:
        background = None
    elif isinstance(background_class, bool) or not isinstance(background_class, numbers.Integral):
        raise ValueError(f"`background_class` must be a class index or None, got {background_class!r}.")
    elif not -count <= background_class < count:
        raise ValueError(f"`background_class` {background_class!r} is not a class of this {count}-class model.")
    else:
        background = int(background_class) % count
    if boxes is not None:
        box_classes = boxes.shape[-2]
        expected = count if background is None else count - 1
        if box_classes != expected or (background is not None and background != count - 1):
            raise ValueError(
                f"The regressor predicts boxes for {box_classes} classes and the classifier scores {count}: "
                f"with background_class={background_class!r} it needs {expected}"
                + ("" if background is None or background == count - 1 else " and the background last")
                + " (a detection classifier has its object classes first and the background last)."
            )
    return background


def _empty():
    return {"boxes": np.zeros((0, 4), np.float32), "classes": np.zeros(0, np.int32), "scores": np.zeros(0, np.float32)}


def _check_size_range(box_size_range):
    if box_size_range is None:
        return None
    try:
        lo, hi = (float(v) for v in box_size_range)
    except (TypeError, ValueError):
        raise ValueError(f"`box_size_range` must be None or (lo, hi), got {box_size_range!r}.") from None
    if not 0 <= lo < hi:
        raise ValueError(f"`box_size_range` must have 0 <= lo < hi, got {box_size_range!r}.")
    return lo, hi


def _candidates(per_scale, pick, max_boxes, box_size_range=None):
    boxes, scores, classes = [], [], []
    for prediction in per_scale:
        if prediction["boxes"] is None:
            raise ValueError(
                "This model has no box regressor output; build one with "
                "keras_apps.overfeat.overfeat_system(classifier, regression_head(classifier, classes))."
            )
        if box_size_range is not None:
            predicted = prediction["boxes"]
            longer = np.maximum(predicted[..., 2] - predicted[..., 0], predicted[..., 3] - predicted[..., 1])
            side = (prediction["windows"][..., 2] - prediction["windows"][..., 0])[..., None]
            in_range = (longer >= box_size_range[0] * side) & (longer <= box_size_range[1] * side)
        for c, mask in pick(prediction):
            if box_size_range is not None:
                mask = mask & in_range[..., c]
            boxes.append(prediction["boxes"][..., c, :][mask])
            scores.append(prediction["scores"][..., c][mask])
            classes.append(np.full(int(mask.sum()), c, np.int32))
    if not boxes:
        return None
    boxes, scores, classes = np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)
    if max_boxes is not None and len(scores) > max_boxes:
        keep = np.argsort(-scores, kind="stable")[:max_boxes]
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    return boxes, scores, classes


def localize_predictions(
    predictions,
    *,
    top_k: int = 5,
    classes_per_scale: int | None = None,
    merge_threshold: float = 0.5,
    background_class: int | None = None,
    min_score: float = 0.0,
    max_boxes: int | None = 2000,
    box_size_range=None,
    distinct_classes: bool = False,
) -> list[dict]:
    """:func:`localize` on the output of :func:`dense_predictions` (so that several merge
    settings can be tried on one network run)."""
    box_size_range = _check_size_range(box_size_range)
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive integer, got {top_k!r}.")
    k_s = top_k if classes_per_scale is None else classes_per_scale
    if isinstance(k_s, bool) or not isinstance(k_s, numbers.Integral) or k_s < 1:
        raise ValueError(f"`classes_per_scale` must be a positive integer, got {classes_per_scale!r}.")
    out = []
    for per_scale in predictions:
        background = _check_background(background_class, per_scale)

        def pick(prediction):
            scores = prediction["scores"]
            classes = _object_classes(scores, background)
            peak = scores.reshape(-1, scores.shape[-1]).max(axis=0)[classes]
            chosen = classes[np.argsort(-peak, kind="stable")[:k_s]]
            return [(int(c), scores[..., c] >= min_score) for c in chosen]

        found = _candidates(per_scale, pick, max_boxes, box_size_range)
        if found is None or len(found[1]) == 0:
            out.append(_empty())
            continue
        boxes, scores, classes = greedy_merge(*found, threshold=merge_threshold)
        if distinct_classes:
            first = np.sort(np.unique(classes, return_index=True)[1])
            boxes, scores, classes = boxes[first], scores[first], classes[first]
        out.append({"boxes": boxes[:top_k], "classes": classes[:top_k], "scores": scores[:top_k]})
    return out


def localize(
    model: keras.Model,
    images,
    *,
    scales=(1.0,),
    top_k: int = 5,
    classes_per_scale: int | None = None,
    merge_threshold: float = 0.5,
    background_class: int | None = None,
    preprocess: Callable | None = None,
    offset_pooling: bool = False,
    flip: bool = False,
    min_score: float = 0.0,
    max_boxes: int | None = 2000,
    box_size_range=None,
    distinct_classes: bool = False,
) -> list[dict]:
    """The paper's localization: per image ``{"boxes" (k, 4), "classes" (k,), "scores" (k,)}``,
    the ``top_k`` merged (class, box) guesses by summed confidence, in original pixels.

    ``model``: a system of :func:`overfeat_system` or its dense form. ``classes_per_scale``
    is the k of C_s (default ``top_k``); ``background_class`` (a detection classifier's
    background index, -1 for the last) is never a guess; ``min_score`` drops windows below
    that probability before merging, ``max_boxes`` keeps the most confident ones;
    ``box_size_range=(lo, hi)`` keeps only the boxes whose longer side is ``lo`` to ``hi``
    times their window's side (the sizes the regressor was trained on: at other scales a
    window sees part of a larger object or a speck of a smaller one and its box is a guess;
    :func:`keras_apps.overfeat.fit` saves its ``size_range``). The guesses are the merged
    boxes with the highest summed confidence (the paper's rule; a class may repeat, as the
    instances of a crowded class each get a box); ``distinct_classes=True`` keeps each class's
    best box only (ILSVRC's five guesses as five classes).
    """
    predictions = dense_predictions(
        model, images, scales, preprocess=preprocess, offset_pooling=offset_pooling, flip=flip
    )
    return localize_predictions(
        predictions, top_k=top_k, classes_per_scale=classes_per_scale,
        merge_threshold=merge_threshold, background_class=background_class,
        min_score=min_score, max_boxes=max_boxes, box_size_range=box_size_range,
        distinct_classes=distinct_classes,
    )


def detect_predictions(
    predictions,
    *,
    score_threshold: float = 0.5,
    merge_threshold: float = 0.5,
    background_class: int | None = -1,
    max_boxes: int | None = 2000,
    max_detections: int | None = 300,
    box_size_range=None,
) -> list[dict]:
    """:func:`detect` on the output of :func:`dense_predictions`."""
    box_size_range = _check_size_range(box_size_range)
    if not 0 <= score_threshold <= 1:
        raise ValueError(f"`score_threshold` must be in [0, 1], got {score_threshold!r}.")
    out = []
    for per_scale in predictions:
        background = _check_background(background_class, per_scale)

        def pick(prediction):
            scores = prediction["scores"]
            return [
                (int(c), scores[..., c] >= score_threshold)
                for c in _object_classes(scores, background)
            ]

        found = _candidates(per_scale, pick, max_boxes, box_size_range)
        if found is None or len(found[1]) == 0:
            out.append(_empty())
            continue
        boxes, scores, classes = greedy_merge(*found, threshold=merge_threshold)
        if max_detections is not None:
            boxes, scores, classes = boxes[:max_detections], scores[:max_detections], classes[:max_detections]
        out.append({"boxes": boxes, "classes": classes, "scores": scores})
    return out


def detect(
    model: keras.Model,
    images,
    *,
    scales=(1.0,),
    score_threshold: float = 0.5,
    merge_threshold: float = 0.5,
    background_class: int | None = -1,
    preprocess: Callable | None = None,
    offset_pooling: bool = False,
    flip: bool = False,
    max_boxes: int | None = 2000,
    max_detections: int | None = 300,
    box_size_range=None,
) -> list[dict]:
    """The paper's detection: per image ``{"boxes", "classes", "scores"}`` of every merged box
    (summed confidence, highest first) of the windows whose probability of an object class
    reaches ``score_threshold``. ``background_class`` defaults to the last class (-1), the
    background of a detection classifier; None treats every class as an object;
    ``box_size_range`` as in :func:`localize`."""
    predictions = dense_predictions(
        model, images, scales, preprocess=preprocess, offset_pooling=offset_pooling, flip=flip
    )
    return detect_predictions(
        predictions, score_threshold=score_threshold, merge_threshold=merge_threshold,
        background_class=background_class, max_boxes=max_boxes, max_detections=max_detections,
        box_size_range=box_size_range,
    )


#: What :func:`save_system` records beside the model (``<name>.json``), read by
#: :func:`load_system` and the ``keras-apps overfeat`` command.
SYSTEM_FIELDS = (
    "class_names", "background", "preprocessing", "scales", "offset_pooling",
    "score_threshold", "merge_threshold", "box_size_range",
)


def save_system(
    system: keras.Model,
    path,
    *,
    class_names: Sequence[str],
    background: bool = True,
    preprocessing: str = "torch",
    scales=(1.0,),
    offset_pooling: bool = False,
    score_threshold: float = 0.5,
    merge_threshold: float = 0.5,
    box_size_range=None,
    overwrite: bool = False,
):
    """Writes ``system`` to ``path`` (``.keras``) and its settings to ``path`` with ``.json``
    (class names -- object classes, the background not listed --, whether the classifier's
    last class is a background, the input preprocessing mode of
    :data:`keras_apps.data.PREPROCESSING_MODES` applied to raw [0, 255] pixels, the evaluation
    scales, offset pooling, the thresholds chosen on validation data and the regressor's box
    size range). Both files are
    written atomically; existing ones only with ``overwrite``."""
    import json
    import pathlib

    from keras_apps._atomic import atomic_file
    from keras_apps.data.preprocessing import PREPROCESSING_MODES

    path = pathlib.Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"`path` must end in .keras, got {str(path)!r}.")
    meta_path = path.with_suffix(".json")
    for target in (path, meta_path):
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it.")
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(
            f"`preprocessing` must be one of {', '.join(PREPROCESSING_MODES)}, got {preprocessing!r}."
        )
    count = system.outputs[0].shape[-1] if not isinstance(system.output, dict) else system.output["scores"].shape[-1]
    expected = len(class_names) + (1 if background else 0)
    if count != expected:
        raise ValueError(
            f"The classifier scores {count} classes; {len(class_names)} class names"
            f"{' + a background' if background else ''} make {expected}."
        )
    meta = {
        "class_names": list(class_names), "background": bool(background), "preprocessing": preprocessing,
        "scales": [s if isinstance(s, (int, float)) else list(s) for s in scales],
        "offset_pooling": bool(offset_pooling), "score_threshold": float(score_threshold),
        "merge_threshold": float(merge_threshold),
        "box_size_range": None if box_size_range is None else list(_check_size_range(box_size_range)),
    }
    with atomic_file(path, suffix=".keras") as tmp:
        system.save(tmp)
    with atomic_file(meta_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    return path


def load_system(path) -> tuple[keras.Model, dict]:
    """The model and settings :func:`save_system` wrote (``safe_mode=True``); a ``.keras``
    file without its ``.json`` gives the settings ``{}``."""
    import json
    import pathlib

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {path}.")
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    unknown = set(meta) - set(SYSTEM_FIELDS)
    if unknown:
        raise ValueError(f"{meta_path}: unknown settings {sorted(unknown)}; known: {', '.join(SYSTEM_FIELDS)}.")
    return model, meta
