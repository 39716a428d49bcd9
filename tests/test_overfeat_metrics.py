"""OverFeat's metrics against hand-computed PR curves and matchings, and against the VOC
devkit's ``voc_ap`` / ``voc_eval`` loops written out independently here."""

import numpy as np
import pytest

from keras_apps.overfeat.metrics import (
    average_precision,
    detection_ap,
    localization_error,
    top_k_error,
)


def test_top_k_error_hand_values():
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    labels = np.array([2, 1, 1])
    assert top_k_error(scores, labels, k=1) == pytest.approx(1.0)  # argmax 1, 0, 2
    # top-2: {1, 2} has 2; {0, 1} has 1; {2, 0} (tie 0/1 goes to class 0) lacks 1
    assert top_k_error(scores, labels, k=2) == pytest.approx(1 / 3)
    assert top_k_error(scores, labels, k=3) == 0.0
    with pytest.raises(ValueError, match="at most the number of classes 3"):
        top_k_error(scores, labels, k=4)
    with pytest.raises(ValueError, match="class ids in 0..2"):
        top_k_error(scores, [0, 1, 3], k=1)


def test_average_precision_hand_pr_curve():
    # ranked: TP FP TP FP TP, 4 positives. precision 1, 1/2, 2/3, 1/2, 3/5 at recall
    # 1/4, 1/4, 1/2, 1/2, 3/4; envelope at the recall steps: 1, 2/3, 3/5
    tp = [True, False, True, False, True]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    want = 0.25 * (1 + 2 / 3 + 3 / 5)
    assert average_precision(scores, tp, 4) == pytest.approx(want)
    shuffled = [3, 0, 4, 1, 2]
    assert average_precision(
        np.take(scores, shuffled), np.take(tp, shuffled), 4
    ) == pytest.approx(want)
    # a later high precision lifts the earlier, lower one (monotone envelope):
    # FP TP TP: precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> envelope 2/3 on both steps
    assert average_precision([3, 2, 1], [False, True, True], 2) == pytest.approx(2 / 3)
    assert average_precision([1, 2], [True, True], 2) == 1.0
    assert average_precision([1, 2], [False, False], 3) == 0.0
    assert np.isnan(average_precision([], [], 0))
    with pytest.raises(ValueError, match="exceed num_positives"):
        average_precision([1, 2], [True, True], 1)


def _devkit_voc_ap(rec, prec):
    """py-faster-rcnn's ``voc_ap(rec, prec, use_07_metric=False)`` (VOC 2010+)."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def test_average_precision_matches_the_devkit_loop():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(1, 40))
        scores = rng.permutation(n).astype(float)  # distinct: the devkit's sort is unstable
        tp = rng.uniform(size=n) < 0.5
        npos = int(tp.sum() + rng.integers(0, 5)) or 1
        order = np.argsort(-scores)
        tp_cum = np.cumsum(tp[order])
        fp_cum = np.cumsum(~tp[order])
        rec = tp_cum / npos
        prec = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        assert average_precision(scores, tp, npos) == pytest.approx(_devkit_voc_ap(rec, prec))


def _hand_case():
    a, a2, d = [0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 10, 10]
    ground_truths = [
        {"boxes": [a, a2, [0, 0, 10, 10]], "classes": [0, 0, 1], "difficult": [False, False, True]},
        {"boxes": [d, [20, 20, 40, 40]], "classes": [0, 1]},
    ]
    detections = [
        {
            # 0.95 hits nothing; 0.9 = A; 0.8 overlaps A (IoU 80/120) best and A2 (70/130)
            "boxes": [[50, 50, 60, 60], [0, 0, 10, 10], [2, 0, 12, 10], [0, 0, 10, 10]],
            "classes": [0, 0, 0, 1],
            "scores": [0.95, 0.9, 0.8, 0.5],
        },
        {"boxes": [[0, 0, 10, 10], [20, 20, 40, 40]], "classes": [0, 1], "scores": [0.7, 0.4]},
    ]
    return detections, ground_truths


def test_detection_ap_hand_matching():
    detections, ground_truths = _hand_case()
    result = detection_ap(detections, ground_truths, num_classes=3)
    # class 0 (VOC rule): FP TP FP(best box A taken) TP over 3 positives:
    # precision 1/2 at recall 1/3 and 2/3 (envelope) -> AP 1/3
    # class 1: the 0.5 detection sits on a difficult box (ignored), 0.4 is a TP -> AP 1
    # class 2: no ground truth -> nan, left out of the mean
    np.testing.assert_allclose(result["ap"][:2], [1 / 3, 1.0])
    assert np.isnan(result["ap"][2])
    assert result["mAP"] == pytest.approx(2 / 3)
    np.testing.assert_array_equal(result["num_positives"], [3, 1, 0])
    # COCO's rule gives the 0.8 detection the free box A2: FP TP TP TP -> 3/4 at every step
    coco = detection_ap(detections, ground_truths, num_classes=3, matching="unmatched")
    np.testing.assert_allclose(coco["ap"][:2], [0.75, 1.0])
    # IoU 70/130 < 0.6: A2 is no longer a match either way
    strict = detection_ap(detections, ground_truths, 3, iou_threshold=0.6, matching="unmatched")
    assert strict["ap"][0] == pytest.approx(1 / 3)


def test_detection_ap_errors():
    detections, ground_truths = _hand_case()
    with pytest.raises(ValueError, match="one entry per image"):
        detection_ap(detections[:1], ground_truths, 3)
    with pytest.raises(ValueError, match=r"outside 0..0: \[1\]"):
        detection_ap(detections, ground_truths, 1)
    with pytest.raises(ValueError, match="'scores'"):
        detection_ap([{"boxes": [[0, 0, 1, 1]], "classes": [0]}], ground_truths[:1], 3)
    with pytest.raises(ValueError, match="iou_threshold"):
        detection_ap(detections, ground_truths, 3, iou_threshold=0)


def _devkit_voc_eval(detections, ground_truths, c, threshold):
    """py-faster-rcnn's ``voc_eval`` for class ``c`` (continuous areas instead of its +1)."""
    class_recs = {}
    npos = 0
    for i, g in enumerate(ground_truths):
        keep = np.asarray(g["classes"]) == c
        bbox = np.asarray(g["boxes"], float).reshape(-1, 4)[keep]
        difficult = np.asarray(g.get("difficult", np.zeros(len(keep), bool)), bool)[keep]
        npos += int((~difficult).sum())
        class_recs[i] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(bbox)}
    image_ids, confidence, BB = [], [], []
    for i, d in enumerate(detections):
        for box, cls, score in zip(d["boxes"], d["classes"], d["scores"]):
            if cls == c:
                image_ids.append(i)
                confidence.append(score)
                BB.append(box)
    if npos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(confidence), kind="stable")
    BB = np.asarray(BB, float).reshape(-1, 4)[order]
    image_ids = [image_ids[x] for x in order]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d]
        ovmax = -np.inf
        BBGT = R["bbox"]
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin, 0.0)
            ih = np.maximum(iymax - iymin, 0.0)
            inters = iw * ih
            uni = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (BBGT[:, 2] - BBGT[:, 0]) * (
                BBGT[:, 3] - BBGT[:, 1]
            ) - inters
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax >= threshold:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return _devkit_voc_ap(rec, prec)


def test_detection_ap_matches_the_devkit_eval():
    rng = np.random.default_rng(3)
    ground_truths, detections = [], []
    for _ in range(6):
        m = int(rng.integers(0, 5))
        xy = rng.uniform(0, 60, size=(m, 2))
        wh = rng.uniform(8, 30, size=(m, 2))
        gt = np.concatenate([xy, xy + wh], axis=1)
        classes = rng.integers(0, 3, size=m)
        ground_truths.append(
            {"boxes": gt, "classes": classes, "difficult": rng.uniform(size=m) < 0.2}
        )
        n = int(rng.integers(0, 8))
        src = rng.integers(0, max(m, 1), size=n)
        base = gt[src] if m else rng.uniform(0, 60, size=(n, 4))
        boxes = base + rng.normal(0, 3, size=(n, 4))
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 2)
        det_classes = np.where(rng.uniform(size=n) < 0.8, classes[src] if m else 0, rng.integers(0, 3, size=n))
        detections.append(
            {"boxes": boxes, "classes": det_classes, "scores": rng.permutation(100)[:n] / 100}
        )
    result = detection_ap(detections, ground_truths, num_classes=3, iou_threshold=0.5)
    for c in range(3):
        want = _devkit_voc_eval(detections, ground_truths, c, 0.5)
        if np.isnan(want):
            assert np.isnan(result["ap"][c])
        else:
            assert result["ap"][c] == pytest.approx(want, abs=1e-6)


def test_localization_error_hand_cases():
    truth = [
        {"classes": [3], "boxes": [[0, 0, 10, 10]]},
        {"classes": [1, 2], "boxes": [[0, 0, 10, 10], [20, 20, 30, 30]]},
        {"classes": [0], "boxes": [[0, 0, 10, 10]]},
    ]
    predictions = [
        # right class, IoU 50/150 < 0.5 first; right class and box (IoU 1) fifth
        {"classes": [3, 0, 0, 0, 3], "boxes": [[5, 0, 15, 10]] + [[0, 0, 10, 10]] * 4},
        # class 1 on the class-2 box (wrong pair), then class 2 on it (right)
        {"classes": [1, 2], "boxes": [[20, 20, 30, 30], [21, 20, 31, 30]]},
        # right box, wrong class
        {"classes": [1], "boxes": [[0, 0, 10, 10]]},
    ]
    assert localization_error(predictions, truth, top_k=5) == pytest.approx(1 / 3)
    assert localization_error(predictions, truth, top_k=1) == pytest.approx(1.0)
    assert localization_error(predictions, truth, top_k=2) == pytest.approx(2 / 3)
    # ranked by scores: the fifth guess first
    scored = [dict(predictions[0], scores=[0.1, 0.2, 0.2, 0.2, 0.9])] + predictions[1:]
    assert localization_error(scored, truth, top_k=1) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="top_k"):
        localization_error(predictions, truth, top_k=0)
