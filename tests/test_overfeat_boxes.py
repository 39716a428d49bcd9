"""Boxes (IoU, intersection, checks) and OverFeat's greedy merge against hand-computed cases
and a naive re-implementation of the paper's loop."""

import math
import time

import numpy as np
import pytest

from keras_apps.overfeat.boxes import area, centers, check_boxes, clip_boxes, intersection, iou
from keras_apps.overfeat.merge import greedy_merge, match_score, pairwise_match_scores


def test_area_intersection_iou_hand_values():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 25]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    np.testing.assert_allclose(area(a), [100, 200])
    # a0 & b0: x 5..10, y 0..10 -> 50; a1 & b0: x 5..15, y 5..10 -> 50; a1 & b2: 5 x 5
    np.testing.assert_allclose(intersection(a, b), [[50, 0, 100], [50, 0, 25]])
    np.testing.assert_allclose(
        iou(a, b), [[50 / 150, 0, 1], [50 / 250, 0, 25 / 275]], rtol=1e-6
    )
    np.testing.assert_allclose(centers(a), [[5, 5], [10, 15]])
    assert iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_check_boxes_names_the_bad_row():
    good = check_boxes([[0, 0, 2, 3]], image_size=(3, 2))
    assert good.dtype == np.float32 and good.shape == (1, 4)
    with pytest.raises(ValueError, match=r"row 1 .*x2 <= x1"):
        check_boxes([[0, 0, 2, 2], [5, 0, 5, 2]])
    with pytest.raises(ValueError, match=r"row 0 .*y2 <= y1"):
        check_boxes([[0, 3, 2, 1]])
    with pytest.raises(ValueError, match="not finite"):
        check_boxes([[0, 0, np.nan, 1]])
    with pytest.raises(ValueError, match=r"outside the 10x20"):
        check_boxes([[0, 0, 22, 5]], image_size=(10, 20))
    check_boxes([[-1, 0, 21, 10]], image_size=(10, 20))  # within the 1-pixel tolerance
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        check_boxes([[0, 0, 1]])
    np.testing.assert_array_equal(
        clip_boxes([[-3, 2, 25, 12]], 10, 20), [[0, 2, 20, 10]]
    )


def test_match_score_formula_hand_values():
    square = [0, 0, 4, 4]
    assert match_score(square, square) == 0.0
    # shifted by a quarter of the side: distance 1 / side 4 + (1 - 12 / 16)
    assert match_score(square, [1, 0, 5, 4]) == pytest.approx(0.25 + 0.25)
    # nested: same centre, the smaller inside -> 0 + (1 - 4 / 4)
    assert match_score(square, [1, 1, 3, 3]) == pytest.approx(0.0)
    # disjoint: distance 10 / mean side (4 + 2) / 2, intersection term 1
    assert match_score(square, [11, 1, 13, 3]) == pytest.approx(10 / 3 + 1)
    with pytest.raises(ValueError, match="not a valid box"):
        match_score(square, [2, 2, 2, 5])


def test_greedy_merge_hand_case():
    boxes = np.array(
        [[0, 0, 10, 10], [1, 0, 11, 10], [100, 100, 110, 110], [0, 0, 10, 10], [0.5, 0, 10.5, 10]],
        np.float32,
    )
    scores = np.array([0.5, 0.25, 0.9, 0.4, 0.125], np.float32)
    classes = np.array([0, 0, 0, 1, 1])
    out_boxes, out_scores, out_classes = greedy_merge(boxes, scores, classes, threshold=0.5)
    # class 0: boxes 0 and 1 (score 1/10 + 1 - 90/100 = 0.2) merge into their mean, the
    # far box stays;
    # class 1: boxes 3 and 4 merge (class-1 boxes never merge with class-0 ones)
    np.testing.assert_allclose(out_scores, [0.9, 0.75, 0.525])
    np.testing.assert_array_equal(out_classes, [0, 0, 1])
    np.testing.assert_allclose(
        out_boxes, [[100, 100, 110, 110], [0.5, 0, 10.5, 10], [0.25, 0, 10.25, 10]]
    )
    # a tight threshold keeps them all (the closest pair scores 0.05 + 0.05 = 0.1)
    _, kept, _ = greedy_merge(boxes, scores, classes, threshold=0.09)
    assert len(kept) == 5


def test_merged_box_is_the_mean_of_all_originals():
    # three boxes in a row: (0, 1) score 0.2, (1, 2) 0.3, (0, 2) 0.5; (0, 1) merge first,
    # then the third joins (0.2 + 0.2 against their mean);
    # the final box is the mean of the three originals, not the mean of (mean01, box2)
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [2.5, 0, 12.5, 10]], np.float32)
    out, scores, _ = greedy_merge(boxes, [1.0, 2.0, 4.0], threshold=0.6)
    np.testing.assert_allclose(out, [[3.5 / 3, 0, 33.5 / 3, 10]], rtol=1e-6)
    np.testing.assert_allclose(scores, [7.0])


def _score(b1, b2):
    """The documented match score, written out with floats."""
    side = (math.sqrt((b1[2] - b1[0]) * (b1[3] - b1[1])) + math.sqrt((b2[2] - b2[0]) * (b2[3] - b2[1]))) / 2
    distance = math.hypot((b1[0] + b1[2] - b2[0] - b2[2]) / 2, (b1[1] + b1[3] - b2[1] - b2[3]) / 2)
    inter = max(min(b1[2], b2[2]) - max(b1[0], b2[0]), 0) * max(min(b1[3], b2[3]) - max(b1[1], b2[1]), 0)
    smaller = min((b1[2] - b1[0]) * (b1[3] - b1[1]), (b2[2] - b2[0]) * (b2[3] - b2[1]))
    return distance / side + 1 - inter / smaller


def _naive_merge(boxes, scores, classes, threshold):
    """The paper's loop as written: clusters of original boxes; each step scans every pair
    of clusters of one class for the lowest match score (first pair in scan order on ties)."""
    clusters = [([i], int(c)) for i, c in enumerate(classes)]
    while True:
        best, pair = np.inf, None
        means = [boxes[m].mean(0).tolist() for m, _ in clusters]
        for p in range(len(clusters)):
            for q in range(p + 1, len(clusters)):
                if clusters[p][1] != clusters[q][1]:
                    continue
                s = _score(means[p], means[q])
                if s < best:
                    best, pair = s, (p, q)
        if pair is None or best > threshold:
            break
        p, q = pair
        clusters[p] = (clusters[p][0] + clusters[q][0], clusters[p][1])
        del clusters[q]
    out = [(boxes[m].mean(0), scores[m].sum(), c) for m, c in clusters]
    out.sort(key=lambda t: -t[1])
    return (np.array([o[0] for o in out]), np.array([o[1] for o in out]),
            np.array([o[2] for o in out]))


def test_greedy_merge_matches_the_naive_loop():
    rng = np.random.default_rng(0)
    centres = rng.uniform(20, 200, size=(4, 2))
    jitter = rng.normal(0, 4, size=(40, 4))
    which = rng.integers(0, 4, size=40)
    half = rng.uniform(10, 20, size=(40, 1))
    boxes = np.concatenate(
        [centres[which] - half, centres[which] + half], axis=1
    ) + jitter
    boxes = boxes.astype(np.float64)
    scores = rng.uniform(0, 1, size=40)
    classes = rng.integers(0, 2, size=40)
    for threshold in (0.3, 1.5):
        got = greedy_merge(boxes, scores, classes, threshold=threshold)
        want = _naive_merge(boxes, scores, classes, threshold)
        assert len(got[0]) == len(want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-5)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(got[2], want[2])


def test_greedy_merge_filters_and_edge_cases():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    out, scores, classes = greedy_merge(boxes, [0.1, 0.2, 0.3], min_score=0.15)
    np.testing.assert_allclose(scores, [0.3, 0.2])
    out, scores, _ = greedy_merge(boxes, [0.1, 0.2, 0.3], max_boxes=1)
    np.testing.assert_allclose(out, [[50, 50, 60, 60]])
    out, scores, classes = greedy_merge(np.zeros((0, 4)), [])
    assert out.shape == (0, 4) and scores.shape == (0,) and classes.dtype == np.int32
    with pytest.raises(ValueError, match="scores"):
        greedy_merge(boxes, [0.1, 0.2])
    with pytest.raises(ValueError, match="row 1"):
        greedy_merge([[0, 0, 1, 1], [3, 3, 1, 5]], [1, 1])
    with pytest.raises(ValueError, match="max_boxes"):
        greedy_merge(boxes, [0.1, 0.2, 0.3], max_boxes=0)


def test_greedy_merge_two_thousand_boxes_is_fast():
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 400, size=(2000, 2))
    half = rng.uniform(10, 40, size=(2000, 2))
    boxes = np.concatenate([centres - half, centres + half], axis=1)
    start = time.perf_counter()
    given = rng.uniform(size=2000)
    out, scores, _ = greedy_merge(boxes, given, threshold=0.5)
    elapsed = time.perf_counter() - start
    assert 0 < len(out) < 2000
    assert scores.sum() == pytest.approx(given.sum(), rel=1e-5)  # merging sums the scores
    assert (np.diff(scores) <= 0).all()
    assert elapsed < 3.0, elapsed
    # no two remaining boxes score <= t against each other
    matrix = pairwise_match_scores(out, out)
    np.fill_diagonal(matrix, np.inf)
    assert matrix.min() > 0.5
