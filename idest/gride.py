"""GRIDE, the generalised ratios ID estimator (Denti, Doimo, Laio & Mira 2022), multiscale,
following DADApy's ``return_id_scaling_gride``.

For neighbour orders n1 < n2, mu = r_{n2} / r_{n1} has density
    f(mu) = d (mu^d - 1)^(n2 - n1 - 1) / (mu^((n2 - 1) d + 1) B(n2 - n1, n1)),   mu > 1,
so the score of the log-likelihood in d is
    S(d) = (N - 1) / d + (n2 - n1 - 1) sum log(mu) / (1 - mu^-d) - (n2 - 1) sum log(mu).
DADApy's conventions are kept: (N - 1) instead of N (unbiased at n1 = 1, where the root is
(N - 1) / sum log mu), ratios mu >= q50 + 20 (q95 - q50) dropped as outliers before the fit,
and the error 1 / sqrt(I(d)) with the observed information
    I(d) = N / d^2 + (n2 - n1 - 1) sum (log mu)^2 mu^-d / (1 - mu^-d)^2
evaluated on *all* ratios. S is strictly decreasing, so its root is unique; it is found
to full float64 precision (DADApy bisects on [0.001, 1000] to 1e-7). At ties (mu = 1) the
exact limits 1/d and 1/d^2 are used where DADApy adds 10 eps to mu.
Scales: n1 = 1, 2, 4, ..., n2 = 2 n1 <= min(range_max, N - 1).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ._estimator_input import for_estimator
from ._validate import check_int
from .results import GrideResult


@nb.njit(cache=True, nogil=True)
def _score_and_slope(d, log_mu, n1, n2):
    """S(d) and S'(d) (see module docstring); log_mu >= 0."""
    w = n2 - n1 - 1
    n = log_mu.size
    s = 0.0
    ds = 0.0
    total = 0.0
    for v in log_mu:
        total += v
        if w:
            x = d * v
            if x > 0.0:
                s += v / -math.expm1(-x)
                h = v / (2.0 * math.sinh(0.5 * x))
                ds += h * h
            else:  # tie, mu = 1: limits of the two terms
                s += 1.0 / d
                ds += 1.0 / (d * d)
    score = (n - 1) / d + w * s - (n2 - 1) * total
    slope = -(n - 1) / (d * d) - w * ds
    return score, slope


@nb.njit(cache=True, nogil=True)
def _root(log_mu, n1, n2):
    """Root of the strictly decreasing score: bracket by doubling, then Newton steps kept
    inside the bracket (bisection when a step would leave it)."""
    lo, hi = 0.0, 1.0
    while _score_and_slope(hi, log_mu, n1, n2)[0] > 0.0:
        lo = hi
        hi *= 2.0
        if hi > 1e12:
            return np.inf
    d = 0.5 * (lo + hi) if lo > 0.0 else 0.5 * hi
    for _ in range(200):
        score, slope = _score_and_slope(d, log_mu, n1, n2)
        if score > 0.0:
            lo = d
        else:
            hi = d
        step = d - score / slope
        new = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(new - d) <= 1e-15 * d or hi - lo <= 1e-15 * hi:
            return new
        d = new
    return d


@nb.njit(cache=True, nogil=True)
def _information(d, log_mu, n1, n2):
    """Observed Fisher information N / d^2 + (n2 - n1 - 1) sum (...)^2 over all ratios."""
    w = n2 - n1 - 1
    acc = 0.0
    if w:
        for v in log_mu:
            x = d * v
            if x > 0.0:
                h = v / (2.0 * math.sinh(0.5 * x))
                acc += h * h
            else:
                acc += 1.0 / (d * d)
    return log_mu.size / (d * d) + w * acc


def gride_single(distances: np.ndarray, n1: int, n2: int) -> tuple[float, float, int]:
    """(ID, error, points used) from neighbour distances (column j = (j+1)-th neighbour)."""
    mu = distances[:, n2 - 1] / distances[:, n1 - 1]
    q95, q50 = np.percentile(mu, [95, 50])
    kept = mu < 20.0 * (q95 - q50) + q50
    log_kept = np.log(mu[kept])
    if log_kept.size < 2:
        raise ValueError(f"GRIDE (n1={n1}, n2={n2}) has fewer than 2 ratios left after the outlier cut.")
    d = _root(log_kept, n1, n2)
    info = _information(d, np.log(mu), n1, n2)
    return float(d), float(1.0 / np.sqrt(info)), int(log_kept.size)


def largest_order(range_max: int):
    """n2 of the last scale: the largest power of two <= min(range_max, N - 1)."""

    def order(n_distinct: int) -> int:
        cap = min(range_max, n_distinct - 1)
        return 1 << (max(cap, 1).bit_length() - 1)

    return order


def gride(
    X,
    range_max: int = 64,
    *,
    metric: str | None = None,
    on_duplicates: str | None = None,
    near_duplicate_tol: float | None = None,
) -> GrideResult:
    """GRIDE intrinsic dimension of X (N, D) at neighbour orders n1 = 1, 2, 4, ... (n2 = 2 n1).

    ``range_max`` is the largest n2 considered (DADApy's default 64 gives six scales); it is
    capped at N - 1 (DADApy caps it at N, which fails when N is a power of two <= range_max).
    ``.scales`` holds the n1 values, ``.radii`` the mean of the n1-th and n2-th neighbour
    distances at each scale. Needs at least 3 distinct points.

    X may be ``idest.neighborhoods(X, k)`` instead of the array (same result) if k reaches
    the largest order, the largest power of two <= min(range_max, N - 1). ``metric``
    ("euclidean" by default, or "cosine"), ``on_duplicates`` ("drop" by default, or
    "raise") and ``near_duplicate_tol`` (64 by default) are as for ``idest.twonn``; with
    Neighborhoods, theirs.
    """
    range_max = check_int("range_max", range_max, minimum=2)
    nb_ = for_estimator(
        X,
        largest_order(range_max),
        metric=metric,
        on_duplicates=on_duplicates,
        near_duplicate_tol=near_duplicate_tol,
        min_points=3,
        method="GRIDE",
        setting=f"range_max={range_max}",
    )
    dist = nb_.distances
    n2_max = dist.shape[1]
    scales = 1 << np.arange(n2_max.bit_length() - 1)
    dims, errs, used, radii = [], [], [], []
    for n1 in scales.tolist():
        d, e, u = gride_single(dist, n1, 2 * n1)
        dims.append(d)
        errs.append(e)
        used.append(u)
        radii.append(float(np.mean(dist[:, [n1 - 1, 2 * n1 - 1]])))
    return GrideResult(
        scales=scales,
        dimensions=np.array(dims),
        errors=np.array(errs),
        radii=np.array(radii),
        n_used=np.array(used),
        range_max=range_max,
        n_points=dist.shape[0],
        n_duplicates=nb_.n_duplicates,
        n_near_duplicates=nb_.n_near_duplicates,
        metric=nb_.metric,
    )
