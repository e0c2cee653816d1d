"""Levina-Bickel maximum-likelihood ID (Levina & Bickel 2004; MacKay & Ghahramani 2005).

Per point, with r_1 <= ... <= r_k its neighbour distances (the point itself excluded, as
skdim's ``MLE`` via scikit-learn's ``kneighbors()``):

    m_i(k) = (k - 1) / sum_{j<k} log(r_k / r_j)        ((k - 2) with ``unbiased=True``)

combined over points by ``comb``: "mle" (default, as skdim) is 1 / mean(1 / m_i), the
MacKay-Ghahramani correction; "mean" and "median" are the plain statistics. With
``k=(k1, k2)`` the combined estimates for k1..k2 are averaged (Levina & Bickel), and the
local values are the per-point averages over the same range.
"""

from __future__ import annotations

import numbers

import numba as nb
import numpy as np

from ._estimator_input import for_estimator
from ._validate import check_choice, check_int
from .results import MLEResult

COMBINATIONS = ("mle", "mean", "median")


@nb.njit(cache=True, nogil=True, error_model="numpy")  # x / 0 -> inf, as NumPy
def _local_estimates(distances, k1, k2, unbiased):
    """(n, k2 - k1 + 1) per-point estimates m_i(k), summing log(r_k / r_j) directly (no
    cumulative sums: they would cancel digits when log r is large)."""
    n = distances.shape[0]
    out = np.empty((n, k2 - k1 + 1))
    for i in range(n):
        for k in range(k1, k2 + 1):
            rk = distances[i, k - 1]
            s = 0.0
            for j in range(k - 1):
                s += np.log(rk / distances[i, j])
            out[i, k - k1] = ((k - 2) if unbiased else (k - 1)) / s
    return out


def parse_k(k) -> tuple[int, int]:
    if isinstance(k, (tuple, list)):
        if len(k) != 2:
            raise ValueError(f"k must be an integer or a (k1, k2) pair; got {k!r}.")
        k1 = check_int("k1", k[0], minimum=2)
        k2 = check_int("k2", k[1], minimum=2)
        if k2 < k1:
            raise ValueError(f"k=(k1, k2) needs k1 <= k2; got {k!r}.")
        return k1, k2
    if isinstance(k, numbers.Integral) and not isinstance(k, bool):
        k = check_int("k", k, minimum=2)
        return k, k
    raise TypeError(f"k must be an integer or a (k1, k2) pair of integers; got {k!r}.")


def _combine(local: np.ndarray, comb: str) -> tuple[float, np.ndarray]:
    """Combined estimate and each point's influence on it (for the standard error)."""
    if comb == "mle":
        inverse = 1.0 / local
        value = 1.0 / inverse.mean()
        return value, -value * value * (inverse - inverse.mean())
    if comb == "mean":
        return float(local.mean()), local - local.mean()
    # median: Gaussian-efficiency approximation of its influence
    return float(np.median(local)), 1.2533 * (local - local.mean())


def mle(
    X,
    k=20,
    *,
    comb: str = "mle",
    unbiased: bool = False,
    metric: str | None = None,
    on_duplicates: str | None = None,
    near_duplicate_tol: float | None = None,
) -> MLEResult:
    """Levina-Bickel MLE of the intrinsic dimension of X (N, D).

    Parameters
    ----------
    X : the (N, D) array, or ``idest.neighborhoods(X, k)`` holding at least k2 neighbours
        (same result).
    k : neighbours per point (default 20), or a pair (k1, k2) to average over k1..k2.
    comb : "mle" (default; 1 / mean(1 / local), as skdim), "mean" or "median".
    unbiased : use k - 2 instead of k - 1 in the numerator (skdim's ``unbiased=True``).
    metric : "euclidean" (default) or "cosine" (1 - cos; halves the estimate, see
        ``idest.knn``). With Neighborhoods: theirs (give it only to check it).
    on_duplicates : "drop" (default) or "raise"; with duplicates kept skdim returns 0.
        With Neighborhoods: theirs.
    near_duplicate_tol : near-duplicates, points within this many machine epsilons (of X's
        dtype) of an earlier point relative to their norms, are handled as duplicates
        (default 64; 0 turns it off; see ``idest.neighborhoods``). With Neighborhoods: theirs.

    Needs k2 + 1 distinct points. ``error`` is the standard error across points (delta
    method, points treated as independent). Local values are +inf where all k neighbours
    are equidistant (then 1/local = 0 and the "mle" combination stays finite).
    """
    k1, k2 = parse_k(k)
    if unbiased and k1 < 3:
        raise ValueError(f"unbiased=True uses k - 2 in the numerator, so it needs k >= 3; got k={k1}.")
    comb = check_choice("comb", comb, COMBINATIONS)
    nb_ = for_estimator(
        X, k2, metric=metric, on_duplicates=on_duplicates, near_duplicate_tol=near_duplicate_tol,
        min_points=k2 + 1, method="MLE",
    )
    with np.errstate(divide="ignore"):
        per_k = _local_estimates(nb_.distances, k1, k2, bool(unbiased))
    values, influences = zip(*(_combine(per_k[:, q], comb) for q in range(per_k.shape[1])))
    dimension = float(np.mean(values))
    influence = np.mean(np.stack(influences, axis=1), axis=1)
    n = influence.size
    error = float(np.std(influence, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return MLEResult(
        dimension=dimension,
        error=error,
        local=per_k.mean(axis=1),
        k1=k1,
        k2=k2,
        comb=comb,
        unbiased=bool(unbiased),
        n_points=n,
        n_duplicates=nb_.n_duplicates,
        n_near_duplicates=nb_.n_near_duplicates,
        metric=nb_.metric,
        point_index=nb_.point_index,
    )
