"""Zero-shot baselines on fixed image features, for comparison with NIWT on the same
features (the network's penultimate activations).

- :class:`AttributeRegression`: direct attribute prediction as regression (the "DAP"
  family of Lampert et al., CVPR 2009 / TPAMI 2014, in its continuous form): ridge
  regression from an image's features ``x`` to the attribute vector ``k_y`` of its class,
  fitted on seen-class images; a test image is given the class whose attribute vector is
  most cosine-similar to the predicted one.
- :class:`ALE`: attribute label embedding (Akata et al., "Label-Embedding for Image
  Classification", TPAMI 2016), the bilinear compatibility ``F(x, y) = x^T W phi(y)`` with
  ``phi(y)`` the class's attribute vector l2-normalised (as in the xlsa17 release of Xian
  et al., TPAMI 2018), trained by SGD on the weighted approximate ranking objective over
  the seen classes; a test image is given ``argmax_y F(x, y)``.

Both score any set of class attribute rows, so the classes need not be those of training:
that is the zero-shot transfer. Both are numpy only and deterministic.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["AttributeRegression", "ALE"]


def _features(X, n_features: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"features `X` must have shape (n, D), got {X.shape}.")
    if X.shape[0] == 0:
        raise ValueError("features `X` are empty: there are no images.")
    if not np.all(np.isfinite(X)):
        raise ValueError("features `X` hold NaN or infinite values.")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"features `X` have {X.shape[1]} dimensions; the model was fitted on {n_features}.")
    return X


def _attributes(attributes, n_attributes: int | None = None) -> np.ndarray:
    S = np.asarray(attributes, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] == 0 or S.shape[1] == 0:
        raise ValueError(f"`attributes` must have shape (C, A) with C, A >= 1, got {S.shape}.")
    if not np.all(np.isfinite(S)):
        raise ValueError("`attributes` hold NaN or infinite values.")
    if n_attributes is not None and S.shape[1] != n_attributes:
        raise ValueError(f"`attributes` have {S.shape[1]} columns; the model was fitted on {n_attributes}.")
    return S


def _labels(y, n: int, classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"`y` must hold one class id per image ({n}), got shape {y.shape}.")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"`y` must hold integer class ids, got dtype {y.dtype}.")
    bad = sorted(set(y[(y < 0) | (y >= classes)].tolist()))
    if bad:
        raise ValueError(f"`y` holds class ids {bad} that index no row of the {classes} rows of `attributes`.")
    return y.astype(np.int64)


def _l2_rows(S: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(S, axis=1, keepdims=True)
    return S / np.maximum(norms, 1e-12)


def _positive(name: str, value, *, integer: bool = False, zero: bool = False):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not np.isfinite(value) or (
        value < 0 if zero else value <= 0
    ):
        what = "integer" if integer else "number"
        raise ValueError(f"`{name}` must be a {'non-negative' if zero else 'positive'} {what}, got {value!r}.")
    return int(value) if integer else float(value)


class AttributeRegression:
    """Ridge regression from image features to class attributes (closed form, with
    intercept), the direct attribute-prediction baseline.

    ``fit`` solves ``min_{W, b} sum_n ||x_n W + b - k_{y_n}||^2 + alpha ||W||_F^2`` (the
    intercept ``b`` is not penalised): with centred ``X_c``, ``T_c``,
    ``W = (X_c^T X_c + alpha I)^{-1} X_c^T T_c`` (or the equal dual form
    ``X_c^T (X_c X_c^T + alpha I)^{-1} T_c`` when there are fewer images than dimensions;
    the minimum-norm least-squares solution when ``alpha == 0``), ``b = mean(T) - mean(X) W``.
    Scores of a class are the cosine similarity between the predicted attribute vector and
    the class's attribute row.

    Attributes (after ``fit``): ``coef_`` (D, A), ``intercept_`` (A,).
    """

    def __init__(self, alpha: float = 1.0):
        self.alpha = _positive("alpha", alpha, zero=True)
        self.coef_ = None
        self.intercept_ = None

    def fit(self, X, y, attributes) -> "AttributeRegression":
        """Fits on features ``X`` (n, D) of images with class ids ``y`` (n,), which index the
        rows of ``attributes`` (C, A); only the rows ``y`` names (the seen classes) are used."""
        X = _features(X)
        S = _attributes(attributes)
        y = _labels(y, X.shape[0], S.shape[0])
        T = S[y]
        x_mean, t_mean = X.mean(axis=0), T.mean(axis=0)
        Xc, Tc = X - x_mean, T - t_mean
        n, d = Xc.shape
        if self.alpha == 0:
            W = np.linalg.lstsq(Xc, Tc, rcond=None)[0]
        elif d <= n:
            W = np.linalg.solve(Xc.T @ Xc + self.alpha * np.eye(d), Xc.T @ Tc)
        else:
            W = Xc.T @ np.linalg.solve(Xc @ Xc.T + self.alpha * np.eye(n), Tc)
        self.coef_ = W
        self.intercept_ = t_mean - x_mean @ W
        return self

    def _check_fitted(self):
        if self.coef_ is None:
            raise ValueError("AttributeRegression is not fitted: call `fit(X, y, attributes)` first.")

    def predict_attributes(self, X) -> np.ndarray:
        """(n, A) predicted attribute vectors ``x W + b``."""
        self._check_fitted()
        X = _features(X, self.coef_.shape[0])
        return X @ self.coef_ + self.intercept_

    def scores(self, X, attributes) -> np.ndarray:
        """(n, C) cosine similarity between each predicted attribute vector and each row of
        ``attributes`` (C, A) (any classes: seen, unseen or both)."""
        self._check_fitted()
        S = _attributes(attributes, self.coef_.shape[1])
        return _l2_rows(self.predict_attributes(X)) @ _l2_rows(S).T

    def predict(self, X, attributes) -> np.ndarray:
        """(n,) index of the row of ``attributes`` with the highest score."""
        return np.argmax(self.scores(X, attributes), axis=1)


class ALE:
    """Attribute label embedding (Akata et al., TPAMI 2016): ``F(x, y) = x^T W phi(y)``.

    ``phi(y)`` is the class's attribute row, l2-normalised (``normalize_attributes=True``,
    as xlsa17's ``att``). Training minimises the weighted approximate ranking (WAR)
    objective of the paper (its eq. for ``R(W)``, after Usunier et al. 2009 / Weston et
    al.'s WSABIE), over the seen classes only::

        l(x_n, y_n, y) = Delta(y_n, y) + F(x_n, y) - F(x_n, y_n),  Delta = margin * [y != y_n]
        r_n = #{y in seen : l(x_n, y_n, y) > 0}               (the rank of the true class)
        R(W) = 1/N sum_n beta_{r_n} / r_n * sum_y max(0, l(x_n, y_n, y)) + l2/2 ||W||^2
        beta_r = sum_{i=1}^{r} 1 / i                            (beta_0 = 0)

    by minibatch SGD. The paper's SGD draws one violating class per step and estimates
    ``r_n`` from the number of draws (WARP sampling); with a few hundred classes at most,
    every seen score is computed anyway, so this implementation uses the exact rank and all
    violators (the expectation of the sampled step): the step for one image is
    ``beta_r / r * sum_{violators y} x_n (phi(y) - phi(y_n))^T``, the rank weight held
    constant as in WARP. ``W`` starts from N(0, 1/D) (seeded), images are shuffled each
    epoch (seeded): the same ``seed`` gives the same ``W``.

    Attributes (after ``fit``): ``W_`` (D, A), ``loss_history_`` (the objective's data term
    per epoch, averaged over the epoch's minibatches).
    """

    def __init__(
        self,
        learning_rate: float = 0.01,
        epochs: int = 20,
        margin: float = 1.0,
        seed: int = 0,
        *,
        batch_size: int = 32,
        l2: float = 0.0,
        normalize_attributes: bool = True,
    ):
        self.learning_rate = _positive("learning_rate", learning_rate)
        self.epochs = _positive("epochs", epochs, integer=True)
        self.margin = _positive("margin", margin, zero=True)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}.")
        self.seed = int(seed)
        self.batch_size = _positive("batch_size", batch_size, integer=True)
        self.l2 = _positive("l2", l2, zero=True)
        self.normalize_attributes = bool(normalize_attributes)
        self.W_ = None
        self.loss_history_ = []

    def _phi(self, S: np.ndarray) -> np.ndarray:
        return _l2_rows(S) if self.normalize_attributes else S

    def fit(self, X, y, attributes, seen) -> "ALE":
        """Fits on features ``X`` (n, D) of seen-class images with class ids ``y`` (n,)
        (rows of ``attributes`` (C, A)); ``seen`` names the classes ranked against each
        other (every id of ``y`` must be in it)."""
        X = _features(X)
        S = _attributes(attributes)
        y = _labels(y, X.shape[0], S.shape[0])
        seen = np.asarray(seen)
        if seen.ndim != 1 or seen.size < 2 or seen.dtype == bool or not np.issubdtype(seen.dtype, np.integer):
            raise ValueError(f"`seen` must be at least 2 integer class ids, got {seen!r}.")
        if len(set(seen.tolist())) != seen.size:
            raise ValueError(f"`seen` repeats class ids: {seen.tolist()}.")
        bad = sorted(set(seen[(seen < 0) | (seen >= S.shape[0])].tolist()))
        if bad:
            raise ValueError(
                f"`seen` holds class ids {bad} that index no row of the {S.shape[0]} rows of `attributes`."
            )
        outside = sorted(set(y.tolist()) - set(seen.tolist()))
        if outside:
            raise ValueError(f"`y` holds class ids {outside} that are not in `seen`.")
        phi = self._phi(S[seen])                      # (Cs, A)
        position = {int(c): k for k, c in enumerate(seen)}
        target = np.array([position[int(c)] for c in y])  # index into `seen`
        n, d = X.shape
        cs = phi.shape[0]
        beta = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, cs + 1))])
        rng = np.random.default_rng(self.seed)
        W = rng.normal(0.0, 1.0 / np.sqrt(d), size=(d, phi.shape[1]))
        delta = self.margin * (1.0 - np.eye(cs))       # Delta(y_n, y)
        self.loss_history_ = []
        for _ in range(self.epochs):
            order = rng.permutation(n)
            epoch_loss = []
            for start in range(0, n, self.batch_size):
                batch = order[start:start + self.batch_size]
                xb, tb = X[batch], target[batch]
                scores = xb @ W @ phi.T                # (b, Cs)
                true = scores[np.arange(batch.size), tb][:, None]
                violation = delta[tb] + scores - true  # l(x_n, y_n, y); 0 - 0 on the true class
                violation[np.arange(batch.size), tb] = 0.0
                active = violation > 0
                rank = active.sum(axis=1)
                weight = np.where(rank > 0, beta[rank] / np.maximum(rank, 1), 0.0)   # (b,)
                epoch_loss.append(float(np.mean(weight * np.where(active, violation, 0.0).sum(axis=1))))
                # dR/dW for one image: weight * x (sum_{active y} phi(y) - r phi(y_n))^T
                coeff = active * weight[:, None]
                coeff[np.arange(batch.size), tb] -= weight * rank
                grad = xb.T @ (coeff @ phi) / batch.size + self.l2 * W
                W = W - self.learning_rate * grad
            self.loss_history_.append(float(np.mean(epoch_loss)))
        self.W_ = W
        return self

    def scores(self, X, attributes) -> np.ndarray:
        """(n, C) compatibilities ``F(x, y) = x^T W phi(y)`` for each row of ``attributes``."""
        if self.W_ is None:
            raise ValueError("ALE is not fitted: call `fit(X, y, attributes, seen)` first.")
        X = _features(X, self.W_.shape[0])
        S = _attributes(attributes, self.W_.shape[1])
        return X @ self.W_ @ self._phi(S).T

    def predict(self, X, attributes) -> np.ndarray:
        """(n,) index of the row of ``attributes`` with the highest compatibility."""
        return np.argmax(self.scores(X, attributes), axis=1)
