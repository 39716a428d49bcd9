"""OverFeat's evaluation measures (Sermanet et al., 2014): top-k classification error, the
ILSVRC localization error and PASCAL VOC detection average precision.

- Top-k error: the share of images whose true class is not among the k highest scores.
- Localization error (ILSVRC 2012-13): an image is correct when one of its first ``top_k``
  guesses ``(class, box)`` names a class of the image and overlaps a ground-truth box of
  that class with IoU >= 0.5.
- Average precision (PASCAL VOC 2010+, Everingham et al. 2015): detections sorted by
  score, precision ``p(r)`` at every recall ``r``, made monotone (``p(r) = max_{r' >= r}
  p(r')``) and integrated as the area under that step curve (all points, no 11-point
  sampling). Detection AP matches detections to ground truth at IoU >= 0.5
  (:func:`detection_ap`); mAP is the mean over the classes that have ground truth.
"""

from __future__ import annotations

import numbers
from typing import Mapping, Sequence

import numpy as np

from keras_apps.overfeat.boxes import as_boxes, iou

__all__ = ["top_k_error", "average_precision", "detection_ap", "localization_error"]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def _threshold(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"`iou_threshold` must be a number in (0, 1], got {value!r}.")
    return float(value)


def top_k_error(scores, labels, k: int = 5) -> float:
    """Share of rows of ``scores`` (N, C) whose ``labels`` (N,) int class is not among the
    ``k`` highest scores (ties ranked by the lower class id, a stable sort of ``-scores``)."""
    scores = np.asarray(scores)
    labels = np.asarray(labels).reshape(-1)
    if scores.ndim != 2:
        raise ValueError(f"`scores` must have shape (N, C), got {scores.shape}.")
    if labels.shape[0] != scores.shape[0]:
        raise ValueError(f"`labels` holds {labels.shape[0]} values for {scores.shape[0]} rows.")
    k = _positive_int("k", k)
    if k > scores.shape[1]:
        raise ValueError(f"`k` must be at most the number of classes {scores.shape[1]}, got {k}.")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"`labels` must be class ids in 0..{scores.shape[1] - 1}.")
    if scores.shape[0] == 0:
        return float("nan")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(1.0 - np.mean((top == labels[:, None]).any(axis=1)))


def _ap_from_sorted(true_positive: np.ndarray, num_positives: int) -> float:
    """AP of detections already sorted by score: ``true_positive`` bool per detection."""
    if num_positives == 0:
        return float("nan")
    tp = np.cumsum(true_positive, dtype=np.float64)
    fp = np.cumsum(~true_positive, dtype=np.float64)
    recall = np.concatenate([[0.0], tp / num_positives, [1.0]])
    precision = np.concatenate([[0.0], tp / np.maximum(tp + fp, 1e-12), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def average_precision(scores, true_positive, num_positives: int) -> float:
    """VOC all-points average precision.

    Args:
        scores: (n,) detection confidences.
        true_positive: (n,) bool, whether each detection is a true positive (the rest are
            false positives).
        num_positives: ground-truth objects to find (recall's denominator, >= the number of
            true positives).

    The detections are ranked by descending score (ties: input order); precision and
    recall after each; precision made non-increasing from the right; AP = sum over the
    points where recall rises of (rise) x (precision there). ``nan`` when
    ``num_positives`` is 0 (undefined, as in the VOC devkit's 0/0).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    true_positive = np.asarray(true_positive).reshape(-1)
    if true_positive.shape != scores.shape:
        raise ValueError(
            f"`true_positive` holds {true_positive.shape[0]} values for {scores.shape[0]} scores."
        )
    true_positive = true_positive.astype(bool)
    if isinstance(num_positives, bool) or not isinstance(num_positives, numbers.Integral) or num_positives < 0:
        raise ValueError(f"`num_positives` must be a non-negative integer, got {num_positives!r}.")
    if true_positive.sum() > num_positives:
        raise ValueError(
            f"{int(true_positive.sum())} true positives exceed num_positives={num_positives}."
        )
    order = np.argsort(-scores, kind="stable")
    return _ap_from_sorted(true_positive[order], int(num_positives))


def _field(record: Mapping, key: str, index: int, what: str):
    if key not in record:
        raise ValueError(f"{what}[{index}] has no {key!r} entry; it holds {sorted(record)}.")
    return record[key]


def _image_arrays(record: Mapping, index: int, what: str, scores: bool):
    boxes = as_boxes(_field(record, "boxes", index, what), name=f"{what}[{index}]['boxes']")
    classes = np.asarray(_field(record, "classes", index, what)).reshape(-1).astype(np.int64)
    if classes.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"{what}[{index}] holds {boxes.shape[0]} boxes and {classes.shape[0]} classes."
        )
    extra = None
    if scores:
        extra = np.asarray(_field(record, "scores", index, what), np.float64).reshape(-1)
        if extra.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"{what}[{index}] holds {boxes.shape[0]} boxes and {extra.shape[0]} scores."
            )
    else:
        difficult = record.get("difficult")
        extra = (
            np.zeros(len(boxes), bool) if difficult is None
            else np.asarray(difficult).reshape(-1).astype(bool)
        )
        if extra.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"{what}[{index}] holds {boxes.shape[0]} boxes and {extra.shape[0]} difficult flags."
            )
    return boxes, classes, extra


def detection_ap(
    detections: Sequence[Mapping],
    ground_truths: Sequence[Mapping],
    num_classes: int,
    iou_threshold: float = 0.5,
    *,
    matching: str = "voc",
) -> dict:
    """PASCAL VOC detection AP per class and their mean.

    Args:
        detections: one dict per image, ``{"boxes" (n, 4), "classes" (n,) int, "scores" (n,)}``.
        ground_truths: one dict per image (same order), ``{"boxes" (m, 4), "classes" (m,)
            int, "difficult" (m,) bool (optional, default all False)}``.
        num_classes: C; class ids are ``0..C-1``.
        iou_threshold: a detection matches a ground-truth box at IoU >= this.
        matching: ``"voc"`` (the VOC devkit's rule): each detection, in descending score
            order over all images, takes the ground-truth box of its class in its image
            with the highest IoU; if that IoU >= threshold and the box is not difficult, the
            detection is a true positive when the box is still unmatched (then it is
            matched) and a false positive (a duplicate) when it is; a difficult best box
            makes the detection count as neither; below the threshold it is a false
            positive. ``"unmatched"`` (COCO's rule): the detection takes the still unmatched,
            non-difficult box with the highest IoU >= threshold (true positive); failing
            that, a difficult box with IoU >= threshold makes it neither; else a false
            positive. The two differ only when a detection's best box is already taken.

    Returns:
        ``{"ap": float64 (C,), "mAP": float, "num_positives": int64 (C,)}``: ``num_positives``
        counts the non-difficult ground-truth boxes per class; a class without any has AP
        ``nan`` and is left out of mAP (``nan`` when no class has ground truth).
    """
    num_classes = _positive_int("num_classes", num_classes)
    threshold = _threshold(iou_threshold)
    if matching not in ("voc", "unmatched"):
        raise ValueError(f"`matching` must be 'voc' or 'unmatched', got {matching!r}.")
    if len(detections) != len(ground_truths):
        raise ValueError(
            f"`detections` holds {len(detections)} images and `ground_truths` {len(ground_truths)}; "
            f"one entry per image in both."
        )
    gts = [_image_arrays(g, i, "ground_truths", scores=False) for i, g in enumerate(ground_truths)]
    dets = [_image_arrays(d, i, "detections", scores=True) for i, d in enumerate(detections)]
    for what, items in (("ground_truths", gts), ("detections", dets)):
        for i, (_, classes, _) in enumerate(items):
            if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
                raise ValueError(
                    f"{what}[{i}] has class ids outside 0..{num_classes - 1}: "
                    f"{sorted(set(classes.tolist()) - set(range(num_classes)))}."
                )
    num_positives = np.zeros(num_classes, np.int64)
    for _, classes, difficult in gts:
        np.add.at(num_positives, classes[~difficult], 1)
    ap = np.full(num_classes, np.nan)
    for c in range(num_classes):
        scores, image_ids, det_boxes = [], [], []
        for i, (boxes, classes, conf) in enumerate(dets):
            keep = classes == c
            scores.append(conf[keep])
            image_ids.append(np.full(int(keep.sum()), i))
            det_boxes.append(boxes[keep])
        scores = np.concatenate(scores)
        image_ids = np.concatenate(image_ids)
        det_boxes = np.concatenate(det_boxes) if det_boxes else np.zeros((0, 4), np.float32)
        order = np.argsort(-scores, kind="stable")
        gt_c = []
        for boxes, classes, difficult in gts:
            keep = classes == c
            gt_c.append((boxes[keep], difficult[keep], np.zeros(int(keep.sum()), bool)))
        overlaps = {}
        outcome = []  # True: TP, False: FP, None: ignored
        for d in order:
            image = int(image_ids[d])
            boxes, difficult, taken = gt_c[image]
            if len(boxes) == 0:
                outcome.append(False)
                continue
            if d not in overlaps:
                overlaps[d] = iou(det_boxes[d : d + 1], boxes)[0]
            ov = overlaps[d]
            if matching == "voc":
                best = int(np.argmax(ov))
                if ov[best] < threshold:
                    outcome.append(False)
                elif difficult[best]:
                    outcome.append(None)
                elif taken[best]:
                    outcome.append(False)
                else:
                    taken[best] = True
                    outcome.append(True)
            else:
                free = np.where(~difficult & ~taken & (ov >= threshold), ov, -1.0)
                best = int(np.argmax(free))
                if free[best] >= threshold:
                    taken[best] = True
                    outcome.append(True)
                elif (difficult & (ov >= threshold)).any():
                    outcome.append(None)
                else:
                    outcome.append(False)
        kept = np.array([o for o in outcome if o is not None], bool)
        ap[c] = _ap_from_sorted(kept, int(num_positives[c]))
    valid = ~np.isnan(ap)
    mean = float(ap[valid].mean()) if valid.any() else float("nan")
    return {"ap": ap, "mAP": mean, "num_positives": num_positives}


def localization_error(
    predictions: Sequence[Mapping],
    ground_truths: Sequence[Mapping],
    top_k: int = 5,
    iou_threshold: float = 0.5,
) -> float:
    """ILSVRC localization error: the share of images none of whose first ``top_k`` guesses
    is right.

    Args:
        predictions: one dict per image, ``{"classes" (k,) int, "boxes" (k, 4)}`` with the
            guesses best first, or with ``"scores" (k,)`` to rank them (descending, ties in
            the given order).
        ground_truths: one dict per image, ``{"classes" (m,) int, "boxes" (m, 4)}``.
        top_k: guesses considered per image (ILSVRC: 5).
        iou_threshold: a guess ``(c, box)`` is right when ``c`` is a ground-truth class of
            the image and ``box`` has IoU >= this with one of its boxes of class ``c``.
    """
    top_k = _positive_int("top_k", top_k)
    threshold = _threshold(iou_threshold)
    if len(predictions) != len(ground_truths):
        raise ValueError(
            f"`predictions` holds {len(predictions)} images and `ground_truths` "
            f"{len(ground_truths)}; one entry per image in both."
        )
    if not predictions:
        return float("nan")
    correct = 0
    for i, (pred, truth) in enumerate(zip(predictions, ground_truths)):
        boxes, classes, _ = _image_arrays(pred, i, "predictions", scores=False)
        if "scores" in pred:
            scores = np.asarray(pred["scores"], np.float64).reshape(-1)
            if scores.shape[0] != boxes.shape[0]:
                raise ValueError(
                    f"predictions[{i}] holds {boxes.shape[0]} boxes and {scores.shape[0]} scores."
                )
            order = np.argsort(-scores, kind="stable")
            boxes, classes = boxes[order], classes[order]
        boxes, classes = boxes[:top_k], classes[:top_k]
        gt_boxes, gt_classes, _ = _image_arrays(truth, i, "ground_truths", scores=False)
        if len(boxes) == 0 or len(gt_boxes) == 0:
            continue
        overlap = iou(boxes, gt_boxes)
        same = classes[:, None] == gt_classes[None, :]
        correct += bool(((overlap >= threshold) & same).any())
    return float(1.0 - correct / len(predictions))
