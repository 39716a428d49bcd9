"""GZSL metrics against hand-computed values (the numbers in the comments are worked out by
hand, not by the code under test)."""

import numpy as np
import pytest

from keras_apps.niwt.metrics import gzsl_metrics, per_class_accuracy

# Joint label space of 3 classes: seen {0, 1}, unseen {2}.
Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 0, 2, 1, 0, 2, 0, 1]
# class 0: 3 of 4 right = 0.75; class 1: 1 of 2 = 0.5 -> acc_s = 0.625 (per instance it would
# be 4/6 = 0.667); class 2: 1 of 3 -> acc_u = 1/3;
# H = 2 * 5/8 * 1/3 / (5/8 + 1/3) = (5/12) / (23/24) = 10/23.


def test_per_class_accuracy_hand_computed():
    np.testing.assert_allclose(per_class_accuracy(Y_TRUE, Y_PRED, [0, 1, 2]), [0.75, 0.5, 1 / 3])
    # The order of `classes` is the order of the result.
    np.testing.assert_allclose(per_class_accuracy(Y_TRUE, Y_PRED, [2, 0]), [1 / 3, 0.75])


def test_gzsl_metrics_hand_computed_ids():
    result = gzsl_metrics(Y_TRUE, Y_PRED, seen=[0, 1], unseen=[2])
    assert set(result) == {"acc_s", "acc_u", "H"}
    assert all(isinstance(v, float) for v in result.values())
    assert result["acc_s"] == pytest.approx(0.625)
    assert result["acc_u"] == pytest.approx(1 / 3)
    assert result["H"] == pytest.approx(10 / 23)


def test_gzsl_metrics_scores_argmax_over_the_joint_space():
    # Scores whose argmax is Y_PRED; the runner-up is always the true class, so a metric
    # restricted to the seen (or unseen) columns would differ: the joint argmax counts.
    scores = np.zeros((9, 3))
    for row, (t, p) in enumerate(zip(Y_TRUE, Y_PRED)):
        scores[row, t] = 0.4
        scores[row, p] = 0.9
    result = gzsl_metrics(np.array(Y_TRUE), scores, seen=np.array([0, 1]), unseen=[2])
    assert result["acc_s"] == pytest.approx(0.625)
    assert result["acc_u"] == pytest.approx(1 / 3)
    assert result["H"] == pytest.approx(10 / 23)


def test_gzsl_metrics_non_contiguous_ids():
    # Joint space of 5: seen {1, 3}, unseen {0, 4}; class 2 is never a true class but may be
    # predicted (an error for every instance it takes).
    y_true = [3, 3, 1, 1, 1, 0, 0, 4]
    y_pred = [3, 2, 1, 1, 4, 0, 3, 4]
    # class 3: 1/2; class 1: 2/3 -> acc_s = 7/12; class 0: 1/2, class 4: 1/1 -> acc_u = 3/4;
    # H = 2 * 7/12 * 3/4 / (7/12 + 3/4) = (7/8) / (16/12) = 21/32.
    result = gzsl_metrics(y_true, y_pred, seen=[3, 1], unseen=[4, 0])
    assert result["acc_s"] == pytest.approx(7 / 12)
    assert result["acc_u"] == pytest.approx(3 / 4)
    assert result["H"] == pytest.approx(21 / 32)


def test_gzsl_metrics_harmonic_mean_zero_cases():
    # All unseen instances predicted as a seen class (the usual GZSL failure): acc_u = 0, H = 0.
    result = gzsl_metrics([0, 1, 2, 2], [0, 1, 0, 1], seen=[0, 1], unseen=[2])
    assert (result["acc_s"], result["acc_u"], result["H"]) == (1.0, 0.0, 0.0)
    # Nothing right: both 0, H defined as 0 (no division by zero).
    result = gzsl_metrics([0, 1, 2], [1, 2, 0], seen=[0, 1], unseen=[2])
    assert (result["acc_s"], result["acc_u"], result["H"]) == (0.0, 0.0, 0.0)
    # Everything right.
    result = gzsl_metrics([0, 1, 2], [0, 1, 2], seen=[0, 1], unseen=[2])
    assert (result["acc_s"], result["acc_u"], result["H"]) == (1.0, 1.0, 1.0)


def test_per_class_accuracy_errors():
    with pytest.raises(ValueError, match=r"classes \[5\] have no instances"):
        per_class_accuracy([0, 1], [0, 1], [0, 5])
    with pytest.raises(ValueError, match="repeats the ids"):
        per_class_accuracy([0, 1], [0, 1], [0, 0])
    with pytest.raises(ValueError, match="`classes` is empty"):
        per_class_accuracy([0, 1], [0, 1], [])
    with pytest.raises(ValueError, match="2 predictions for 3"):
        per_class_accuracy([0, 1, 1], [0, 1], [0, 1])
    with pytest.raises(ValueError, match=r"out of the range 0\.\.1"):
        per_class_accuracy([0, 2], np.eye(2), [0, 2])


def test_gzsl_metrics_errors():
    with pytest.raises(ValueError, match=r"disjoint; both hold the class ids \[1, 3\]"):
        gzsl_metrics([0, 1], [0, 1], seen=[0, 1, 3], unseen=[1, 2, 3])
    with pytest.raises(ValueError, match="`y_true` is empty"):
        gzsl_metrics([], [], seen=[0], unseen=[1])
    with pytest.raises(ValueError, match="`seen` is empty"):
        gzsl_metrics([1], [1], seen=[], unseen=[1])
    with pytest.raises(ValueError, match="`unseen` is empty"):
        gzsl_metrics([0], [0], seen=[0], unseen=[])
    with pytest.raises(ValueError, match="3 predictions for 4"):
        gzsl_metrics([0, 0, 1, 1], [0, 0, 1], seen=[0], unseen=[1])
    with pytest.raises(ValueError, match="3 rows of scores for 4"):
        gzsl_metrics([0, 0, 1, 1], np.zeros((3, 2)), seen=[0], unseen=[1])
    with pytest.raises(ValueError, match=r"`unseen` holds class ids \[2\] out of the range 0\.\.1"):
        gzsl_metrics([0, 2], np.zeros((2, 2)), seen=[0], unseen=[2])
    with pytest.raises(ValueError, match=r"\[7\] that are in neither"):
        gzsl_metrics([0, 1, 7], [0, 1, 7], seen=[0], unseen=[1])
    with pytest.raises(ValueError, match=r"classes \[2\] have no instances"):
        gzsl_metrics([0, 1], [0, 1], seen=[0], unseen=[1, 2])
    with pytest.raises(ValueError, match="class ids >= 0"):
        gzsl_metrics([0, -1], [0, 1], seen=[0], unseen=[1])
    with pytest.raises(ValueError, match="integer class ids"):
        gzsl_metrics([0, 1.5], [0, 1], seen=[0], unseen=[1])
