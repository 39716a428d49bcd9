"""Zero-shot baselines: planted data where the features are a known linear function of the
class attributes plus noise; classes held out of `fit` must be recognised well above chance."""

import numpy as np
import pytest

from keras_apps.niwt.baselines import ALE, AttributeRegression

SEEN = np.arange(10)
UNSEEN = np.arange(10, 14)


def planted(seed, classes=14, attributes=6, dims=24, per_class=40, noise=0.5):
    """Class attributes S (C, A) in [0, 1); features x = S[y] M + noise, M (A, D) Gaussian."""
    rng = np.random.default_rng(seed)
    S = rng.random((classes, attributes))
    M = rng.normal(size=(attributes, dims))
    y = np.repeat(np.arange(classes), per_class)
    X = S[y] @ M + noise * rng.normal(size=(y.size, dims))
    return S, X, y


def zero_shot_accuracy(model, X, y, S):
    """Top-1 accuracy on unseen-class images among the unseen classes only (chance 1/4)."""
    test = np.isin(y, UNSEEN)
    predicted = UNSEEN[model.predict(X[test], S[UNSEEN])]
    return float(np.mean(predicted == y[test]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_baselines_transfer_to_classes_never_seen_in_fit(seed):
    S, X, y = planted(seed)
    train = np.isin(y, SEEN)
    regression = AttributeRegression(alpha=1.0).fit(X[train], y[train], S)
    ale = ALE(learning_rate=0.05, epochs=30, seed=0).fit(X[train], y[train], S, SEEN)
    for model in (regression, ale):
        accuracy = zero_shot_accuracy(model, X, y, S)
        assert accuracy >= 0.75, (type(model).__name__, accuracy)  # chance is 0.25
        # Control: give the unseen classes each other's attribute rows; the transfer
        # rests on the attributes, so accuracy collapses.
        swapped = S.copy()
        swapped[UNSEEN] = S[np.roll(UNSEEN, 1)]
        assert zero_shot_accuracy(model, X, y, swapped) <= 0.3, type(model).__name__
    # Scores cover whatever rows are given: (n, C) over the joint space.
    assert regression.scores(X[:5], S).shape == (5, 14)
    assert ale.scores(X[:5], S).shape == (5, 14)
    # ALE's ranking objective goes down.
    assert ale.loss_history_[-1] < 0.5 * ale.loss_history_[0]


def _ridge_reference(X, T, alpha):
    """Ridge with an unpenalised intercept as one augmented least-squares problem:
    [X 1; sqrt(alpha) I 0] [W; b] ~ [T; 0] (no centring), solved by numpy lstsq."""
    n, d = X.shape
    top = np.hstack([X, np.ones((n, 1))])
    bottom = np.hstack([np.sqrt(alpha) * np.eye(d), np.zeros((d, 1))])
    solution = np.linalg.lstsq(np.vstack([top, bottom]), np.vstack([T, np.zeros((d, T.shape[1]))]), rcond=None)[0]
    return solution[:d], solution[d]


@pytest.mark.parametrize("images, dims, alpha", [(60, 8, 2.5), (12, 30, 0.7), (60, 8, 0.0)])
def test_attribute_regression_closed_form_matches_lstsq(images, dims, alpha):
    # (60, 8): the primal solve; (12, 30): fewer images than dimensions, the dual form;
    # alpha = 0: ordinary least squares with intercept.
    rng = np.random.default_rng(3)
    S = rng.random((5, 4))
    y = rng.integers(0, 5, size=images)
    X = rng.normal(size=(images, dims))
    model = AttributeRegression(alpha=alpha).fit(X, y, S)
    W, b = _ridge_reference(X, S[y], alpha)
    np.testing.assert_allclose(model.coef_, W, atol=1e-9)
    np.testing.assert_allclose(model.intercept_, b, atol=1e-9)
    np.testing.assert_allclose(model.predict_attributes(X), X @ W + b, atol=1e-9)
    # scores: cosine similarity, by a loop.
    P = X @ W + b
    expected = np.array([[p @ s / np.linalg.norm(p) / np.linalg.norm(s) for s in S] for p in P])
    np.testing.assert_allclose(model.scores(X, S), expected, atol=1e-9)
    np.testing.assert_array_equal(model.predict(X, S), expected.argmax(axis=1))


def test_ale_is_deterministic_with_its_seed():
    S, X, y = planted(0, per_class=10)
    train = np.isin(y, SEEN)
    first = ALE(epochs=3, seed=5).fit(X[train], y[train], S, SEEN)
    second = ALE(epochs=3, seed=5).fit(X[train], y[train], S, SEEN)
    other = ALE(epochs=3, seed=6).fit(X[train], y[train], S, SEEN)
    np.testing.assert_array_equal(first.W_, second.W_)
    assert first.loss_history_ == second.loss_history_
    assert not np.allclose(first.W_, other.W_)


def test_ale_scores_are_the_bilinear_compatibility():
    S, X, y = planted(1, per_class=5)
    train = np.isin(y, SEEN)
    ale = ALE(epochs=2).fit(X[train], y[train], S, SEEN)
    phi = S / np.linalg.norm(S, axis=1, keepdims=True)
    expected = np.array([[x @ ale.W_ @ p for p in phi] for x in X[:7]])
    np.testing.assert_allclose(ale.scores(X[:7], S), expected, atol=1e-10)


def test_baseline_errors():
    S, X, y = planted(0, per_class=3)
    with pytest.raises(ValueError, match="`alpha` must be a non-negative number"):
        AttributeRegression(alpha=-1)
    with pytest.raises(ValueError, match="not fitted"):
        AttributeRegression().predict(X, S)
    with pytest.raises(ValueError, match=r"class ids \[14\] that index no row"):
        AttributeRegression().fit(X, np.where(y == 13, 14, y), S)
    with pytest.raises(ValueError, match="shape \\(n, D\\)"):
        AttributeRegression().fit(X[0], y[:1], S)
    fitted = AttributeRegression().fit(X, y, S)
    with pytest.raises(ValueError, match="5 columns; the model was fitted on 6"):
        fitted.scores(X, S[:, :5])
    with pytest.raises(ValueError, match="23 dimensions; the model was fitted on 24"):
        fitted.scores(X[:, :23], S)
    with pytest.raises(ValueError, match="`learning_rate` must be a positive number"):
        ALE(learning_rate=0)
    with pytest.raises(ValueError, match="`epochs` must be a positive integer"):
        ALE(epochs=1.5)
    with pytest.raises(ValueError, match=r"class ids \[10, 11, 12, 13\] that are not in `seen`"):
        ALE().fit(X, y, S, SEEN)
    with pytest.raises(ValueError, match="not fitted"):
        ALE().scores(X, S)
