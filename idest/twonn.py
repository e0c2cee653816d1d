"""TwoNN (Facco, d'Errico, Rodriguez & Laio 2017) and its scale analysis.

mu_i = r2 / r1 follows a Pareto(1, d) law when the density is locally constant, so
-log(1 - F(mu)) = d log(mu). ``method="linear"`` fits that line through the origin by least
squares on the sorted mu with the empirical F(mu_(i)) = i / N, after discarding the largest
fraction ``discard_fraction`` (DADApy ``compute_id_2NN``, skdim ``TwoNN``).
``method="mle"`` is the maximum-likelihood form: (N - 1) / sum(log mu) with
``discard_fraction=0`` (DADApy's ``algorithm="ml"``); with a discarded fraction the kept
ratios are Type-II censored data and the estimate is (k - 1) / (sum_{i<=k} log mu_(i) +
(N - k) log mu_(k)), as skdim 0.5 ``TwoNN(method="mle")``.
"""

from __future__ import annotations

import numpy as np

from . import _knn as engine
from ._estimator_input import for_estimator
from ._validate import CleanPoints, abs_max, check_choice, check_fraction, check_int
from .results import TwoNNResult, TwoNNScalingResult

METHODS = ("linear", "mle")
_LINEAR_NEEDS_DISCARD = (
    "method='linear' with discard_fraction=0 puts the largest ratio at F = 1, where "
    "-log(1 - F) is infinite. Use discard_fraction > 0 or method='mle'."
)


def _fit(mu: np.ndarray, discard_fraction: float, method: str) -> tuple[float, float, int]:
    """(dimension, standard error, number of ratios fitted) from the ratios mu."""
    n = mu.size
    n_fit = int(n * (1 - discard_fraction))
    if n_fit < 3:
        raise ValueError(
            f"TwoNN keeps int(N * (1 - discard_fraction)) = {n_fit} ratios of N={n} points; it "
            "needs at least 3. Pass more points or a smaller discard_fraction."
        )
    log_mu = np.log(np.sort(mu)[:n_fit])
    if method == "linear":
        if n_fit == n:
            raise ValueError(_LINEAR_NEEDS_DISCARD)
        y = -np.log1p(-np.arange(1, n_fit + 1) / n)
        denominator = float(np.dot(log_mu, log_mu))
        numerator = float(np.dot(log_mu, y))
    else:
        denominator = float(log_mu.sum() + (n - n_fit) * log_mu[-1])
        numerator = float(n_fit - 1)
    if denominator == 0.0:
        raise ValueError(
            "All kept ratios r2/r1 equal 1 (every point's first two neighbours are equidistant, "
            "as on a lattice), so TwoNN's estimate is infinite. TwoNN needs data whose "
            "neighbour distances vary."
        )
    dimension = numerator / denominator
    return float(dimension), float(dimension / np.sqrt(n_fit - 2)), n_fit


def _check_options(discard_fraction, method):
    discard_fraction = check_fraction("discard_fraction", discard_fraction)
    method = check_choice("method", method, METHODS)
    if method == "linear" and discard_fraction == 0.0:
        raise ValueError(_LINEAR_NEEDS_DISCARD)
    return discard_fraction, method


def twonn(
    X,
    metric: str | None = None,
    discard_fraction: float = 0.1,
    *,
    method: str = "linear",
    on_duplicates: str | None = None,
    near_duplicate_tol: float | None = None,
) -> TwoNNResult:
    """TwoNN intrinsic dimension of the point cloud X (N, D).

    Parameters
    ----------
    X : the (N, D) array, or ``idest.neighborhoods(X, k)`` with k >= 2 (same result).
    metric : "euclidean" (default) or "cosine" (1 - cos; halves ratio-based IDs, see
        ``idest.knn``). With Neighborhoods: theirs (give it only to check it).
    discard_fraction : fraction of the largest ratios left out of the fit (default 0.1,
        DADApy's mu_fraction=0.9).
    method : "linear" (default; DADApy/skdim) or "mle".
    on_duplicates : "drop" (default: keep one copy of each repeated point, count the rest in
        ``n_duplicates``) or "raise". With Neighborhoods: theirs.
    near_duplicate_tol : near-duplicates, points within this many machine epsilons (of X's
        dtype) of an earlier point relative to their norms, are handled as duplicates
        (default 64; 0 turns it off; see ``idest.neighborhoods``). With Neighborhoods: theirs.

    Needs N >= 4 distinct points with the default fraction (3 ratios must be fitted).
    """
    discard_fraction, method = _check_options(discard_fraction, method)
    min_points = max(3, int(np.ceil(3 / max(1e-12, 1 - discard_fraction))))
    nb = for_estimator(
        X, 2, metric=metric, on_duplicates=on_duplicates, near_duplicate_tol=near_duplicate_tol,
        min_points=min_points, method="TwoNN", k_name=None,
    )
    mu = nb.distances[:, 1] / nb.distances[:, 0]
    dimension, error, n_fit = _fit(mu, discard_fraction, method)
    return TwoNNResult(
        dimension=dimension,
        error=error,
        method=method,
        discard_fraction=discard_fraction,
        n_fit=n_fit,
        n_points=mu.size,
        n_duplicates=nb.n_duplicates,
        n_near_duplicates=nb.n_near_duplicates,
        metric=nb.metric,
        scale=float(np.mean(nb.distances)),
        mu=mu,
        point_index=nb.point_index,
    )


def twonn_scaling(
    X,
    metric: str | None = None,
    discard_fraction: float = 0.1,
    *,
    method: str = "linear",
    n_min: int = 10,
    seed: int = 42,
    on_duplicates: str | None = None,
    near_duplicate_tol: float | None = None,
) -> TwoNNScalingResult:
    """TwoNN at growing length scales by decimation (DADApy ``return_id_scaling_2NN``).

    X, metric, discard_fraction, method, on_duplicates, near_duplicate_tol: as ``idest.twonn`` (X may be
    ``idest.neighborhoods(X, k)`` with k >= 2: the full level reads its neighbours, the
    subsets are searched from its distinct points).

    Level i uses round(N / 2**i) points (i = 0, 1, ... while floor(log2 N) - 1 levels remain
    and the size exceeds ``n_min``), drawn round(N / size) times without replacement from
    ``numpy.random.default_rng(seed)``, one generator for the whole call. With the same seed
    (DADApy's default is 42) and no duplicates the subsets, and so the numbers, are DADApy's.
    """
    discard_fraction, method = _check_options(discard_fraction, method)
    n_min = check_int("n_min", n_min, minimum=3)
    seed = check_int("seed", seed, minimum=0)
    full = for_estimator(
        X, 2, metric=metric, on_duplicates=on_duplicates, near_duplicate_tol=near_duplicate_tol,
        min_points=max(4, n_min + 1), method="TwoNN scaling", k_name=None,
    )
    n = full.n_points
    levels = max(0, n.bit_length() - 2)  # DADApy: int(log2(N)) - 1
    sizes = np.round(n / 2.0 ** np.arange(levels)).astype(int)
    sizes = sizes[sizes > n_min]
    if sizes.size == 0:
        raise ValueError(f"No subset size above n_min={n_min} for N={n} points; lower n_min.")

    rng = np.random.default_rng(seed)
    dims, errs, scales, counts = [], [], [], []
    for size in sizes:
        if size == n:
            mu = full.distances[:, 1] / full.distances[:, 0]
            dims.append(_fit(mu, discard_fraction, method)[0])
            errs.append(0.0)
            scales.append(float(np.mean(full.distances)))
            counts.append(1)
            continue
        n_iter = int(np.rint(n / size))
        ids, rs = np.empty(n_iter), np.empty(n_iter)
        for it in range(n_iter):
            subset = full.points[rng.choice(n, size=size, replace=False)]
            d = _subset_distances(subset, full.metric)
            ids[it] = _fit(d[:, 1] / d[:, 0], discard_fraction, method)[0]
            rs[it] = np.mean(d)
        dims.append(float(ids.mean()))
        errs.append(float(ids.std() / np.sqrt(n_iter)))
        scales.append(float(rs.mean()))
        counts.append(n_iter)
    return TwoNNScalingResult(
        sizes=sizes,
        dimensions=np.array(dims),
        errors=np.array(errs),
        scales=np.array(scales),
        n_subsets=np.array(counts),
        method=method,
        discard_fraction=discard_fraction,
        seed=seed,
        n_points=n,
        n_duplicates=full.n_duplicates,
        n_near_duplicates=full.n_near_duplicates,
        metric=full.metric,
    )


def _subset_distances(points: np.ndarray, metric: str) -> np.ndarray:
    """First two neighbour distances within a subset of already-validated distinct points
    (no near-duplicates either: no pair of them was within the tolerance)."""
    clean = CleanPoints(np.ascontiguousarray(points), abs_max(points), eps=0.0)  # eps: not used
    geo = engine.prepare(clean, metric)
    d2, _ = engine.nearest(geo, 2)
    return engine.user_distances(d2, geo)
