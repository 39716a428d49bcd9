"""Product quantization of a weight matrix (HD-CNN, Yan et al. 2015, "Parameter compression";
after Gong et al., "Compressing Deep Convolutional Networks using Vector Quantization", 2014).

A matrix ``W`` of shape ``(m, n)`` is split column-wise into ``n / s`` segments of width ``s``.
In each segment the ``m`` rows (``s``-dimensional vectors) are clustered by k-means into ``k``
centres. What is stored:

- ``Q``, the codes: an 8-bit matrix of shape ``(m, n / s)``; ``Q[i, j]`` is the centre of row
  ``i`` in segment ``j``;
- ``C``, the codebooks: a float32 matrix of shape ``(k, n)``, segment-major: the ``k``
  centres of segment ``j`` are ``C[:, j*s:(j+1)*s]``.

The reconstruction is ``W_hat[i, j*s:(j+1)*s] = C[Q[i, j], j*s:(j+1)*s]`` and the memory ratio
of ``W`` (float32) to ``Q`` plus ``C`` is

    compression factor = (32 m n) / (32 k n + 8 m n / s).

8-bit codes hold at most 256 centres, so ``1 <= k <= 256``; k-means needs ``k <= m`` points.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

__all__ = ["MAX_CODEBOOK_SIZE", "compression_factor", "product_quantize", "reconstruct"]

#: Centres per segment that an 8-bit code can index.
MAX_CODEBOOK_SIZE = 256


def compression_factor(m: int, n: int, s: int, k: int) -> float:
    """``(32 m n) / (32 k n + 8 m n / s)``: bits of the float32 matrix over the bits of its
    8-bit codes and float32 codebooks (computed in integers, rounded once).

    Raises ValueError, as :func:`product_quantize` does, for a non-positive ``m`` or ``n``, an
    ``s`` that does not divide ``n``, ``k`` outside ``[1, 256]`` or ``k > m``.
    """
    m = _check_dimension("m", m)
    n = _check_dimension("n", n)
    s, k = _check_s_k(m, n, s, k)
    return (32 * m * n * s) / (32 * k * n * s + 8 * m * n)


def product_quantize(W, s: int, k: int, *, seed: int = 0, n_init: int = 1):
    """Product-quantizes ``W`` (``m x n``): ``(codes, codebooks)``, ``codes`` uint8 of shape
    ``(m, n // s)`` and ``codebooks`` float32 of shape ``(k, n)`` (see the module docstring).

    Each segment is clustered by ``sklearn.cluster.KMeans(n_clusters=k, n_init=n_init,
    random_state=seed)`` (k-means++ seeding, Lloyd iterations) in float64, so a segment with at
    most ``k`` distinct rows is reproduced exactly (each centre is then the mean of identical
    rows); scikit-learn's warning that fewer than ``k`` distinct clusters exist is expected
    there and not shown.

    Args:
        W: a finite 2-D real array ``(m, n)``.
        s: segment width, a positive divisor of ``n`` (the paper's files use 2 or 3).
        k: centres per segment, ``1 <= k <= min(256, m)`` (the paper's files: 64 on CIFAR,
            128 or 256 on ImageNet).
        seed: ``random_state`` of every segment's k-means.
        n_init: k-means runs per segment (the best inertia is kept).
    """
    W = _check_matrix(W)
    m, n = W.shape
    s, k = _check_s_k(m, n, s, k)
    if isinstance(n_init, bool) or not isinstance(n_init, numbers.Integral) or n_init < 1:
        raise ValueError(f"`n_init` must be a positive integer, got {n_init!r}.")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"`seed` must be an integer, got {seed!r}.")
    segments = n // s
    codes = np.empty((m, segments), np.uint8)
    codebooks = np.empty((k, n), np.float32)
    for segment in range(segments):
        columns = slice(segment * s, (segment + 1) * s)
        kmeans = KMeans(n_clusters=k, n_init=int(n_init), random_state=int(seed))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Number of distinct clusters", category=ConvergenceWarning)
            codes[:, segment] = kmeans.fit_predict(W[:, columns])
        codebooks[:, columns] = kmeans.cluster_centers_
    return codes, codebooks


def reconstruct(codes, codebooks, s: int) -> np.ndarray:
    """``W_hat`` (float32, ``m x n``) with ``W_hat[i, j*s:(j+1)*s] = codebooks[codes[i, j],
    j*s:(j+1)*s]``.

    Raises ValueError when ``codes`` is not a 2-D integer array with values in
    ``[0, k)``, ``codebooks`` not a 2-D array ``(k, n)`` or ``n != s * codes.shape[1]``.
    """
    codes = np.asarray(codes)
    codebooks = np.asarray(codebooks)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(
            f"`codes` must be a 2-D integer array (m, n/s), got dtype {codes.dtype} and shape {codes.shape}."
        )
    if codebooks.ndim != 2 or not np.issubdtype(codebooks.dtype, np.floating):
        raise ValueError(
            f"`codebooks` must be a 2-D float array (k, n), got dtype {codebooks.dtype} and shape {codebooks.shape}."
        )
    k, n = codebooks.shape
    m, segments = codes.shape
    if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 or s * segments != n:
        raise ValueError(
            f"`s` must be the segment width: codebooks have n={n} columns and codes {segments} "
            f"segments, so s must be {n / segments if segments else 'undefined'}, got {s!r}."
        )
    if codes.size and (codes.min() < 0 or codes.max() >= k):
        raise ValueError(
            f"`codes` must index the k={k} centres (values in [0, {k})), got values in "
            f"[{codes.min()}, {codes.max()}]."
        )
    centres = codebooks.astype(np.float32).reshape(k, segments, s)
    return centres[codes, np.arange(segments)[None, :], :].reshape(m, n)


# -- validation ---------------------------------------------------------------------------------


def _check_dimension(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def _check_s_k(m, n, s, k):
    """Validates segment width ``s`` and codebook size ``k`` for an ``(m, n)`` matrix."""
    if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 or n % s:
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        shown = ", ".join(map(str, divisors[:12])) + (", ..." if len(divisors) > 12 else "")
        raise ValueError(
            f"`s` (segment width) must be a positive divisor of n={n} (the number of columns), "
            f"got {s!r}; allowed: {shown}."
        )
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= MAX_CODEBOOK_SIZE:
        raise ValueError(
            f"`k` (centres per segment) must be an integer in [1, {MAX_CODEBOOK_SIZE}] (8-bit codes), got {k!r}."
        )
    if k > m:
        raise ValueError(
            f"`k`={k} centres need at least k rows to cluster, but the matrix has m={m} rows; use k <= {m}."
        )
    return int(s), int(k)


def _check_matrix(W):
    array = np.asarray(W)
    if array.ndim != 2:
        raise ValueError(f"`W` must be a 2-D matrix (m, n), got shape {array.shape}.")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)) or array.dtype == bool:
        raise ValueError(f"`W` must hold real numbers, got dtype {array.dtype}.")
    if array.size == 0:
        raise ValueError(f"`W` must not be empty, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(f"`W` must be finite, got {array[bad]} at index {bad}.")
    return array.astype(np.float64)
