"""The estimators on one partition of one site, the automatic GRIDE scale, and the summary
across partitions.

    settings = ScaleSettings()                      # the token study's estimator settings + k_overlap
    result = analyse_partition(X, settings)         # X: the partition's rows of one site, (n, D) as stored
    result.items                                    # [(quantity, param, value, error), ...]
    result.neighbours                               # (n, k_overlap) int32: rows of X, for the overlap
    summarise([result_p0.items, result_p1.items, ...])   # mean, error = std (ddof=1) across partitions

What analyse_partition runs, exactly as a user would call idest on the same array X (float32 as
stored; idest works in float64 inside): one exact neighbour search
``nb = idest.neighborhoods(X, k=max(idest.k_needed(twonn=True, mle=20, gride=64), k_overlap))``,
which drops duplicated and near-duplicated rows by idest's policy (first copy kept), then
``idest.twonn(nb, discard_fraction=0.1)``, ``idest.mle(nb, k=20)``, ``idest.gride(nb,
range_max=64)`` (bit-identical to passing X to each), and ``idest.pca(X_distinct,
variance=[0.75, ..., 0.95], solver="covariance")`` on the same distinct points
``X_distinct = X[nb.point_index]`` (Cheng et al. remove identical points before estimating; idest's
PCA on X itself would keep them, so the distinct points are passed). ``n_points`` is the number of
distinct points, nb.n_points.

Quantities (as the token study's tables): id_twonn (error: asymptotic standard error), id_mle
(error: standard error across points), id_gride per scale n1 (param n1, n2 = 2 n1, error: Fisher
information), id_gride_auto (param: the scale auto_gride_scale chose on this partition's curve),
pca_components (param: variance level), pca_participation_ratio.

Neighbour lists for the overlap come from the same search, as rows: row i of ``neighbours`` lists
the k_overlap rows of X nearest to row i (itself left out), ties in distance broken by row index.
The rows that are copies of row i's point (exact duplicates, and near-duplicates within idest's
tolerance, 64 eps relative) are at distance 0 and come first; then every row of the nearest other
distinct point, of the next, and so on (``nb.indices`` orders the distinct points). So a cloud in
which many sequences share a point (the last token's embedding is the same for every sequence
ending in that token) gives each row those sequences as its neighbours, which another site can
share or not; naming each distinct point by one row instead would make such sites look unrelated
to every other. A dropped row's point is the kept row with identical bytes; for a near-duplicate
(no identical bytes), the nearest kept row in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numba
import numpy as np

import idest

from ..errors import StudyError
from ..measure.estimators import add_gride, add_mle, add_twonn
from .compare import cka_matrix, linear_cka, neighbourhood_overlap, overlap_matrix

__all__ = [
    "PCA_LEVELS",
    "PartitionResult",
    "ScaleSettings",
    "analyse_partition",
    "auto_gride_scale",
    "cka_matrix",
    "linear_cka",
    "neighbourhood_overlap",
    "overlap_matrix",
    "summarise",
]

PCA_LEVELS = (0.75, 0.8, 0.85, 0.9, 0.95)


@dataclass(frozen=True)
class ScaleSettings:
    twonn_discard_fraction: float = 0.1
    mle_k: int = 20
    gride_range_max: int = 64  # scales n1 = 1, 2, 4, ..., 32 (n2 = 2 n1 <= 64), DADApy's default
    pca_levels: tuple[float, ...] = PCA_LEVELS
    pca_solver: str = "covariance"  # as the token study: several times faster than an SVD on 10,000 x 3,072
    # Neighbourhood overlap uses small k: Valeriani et al. (NeurIPS 2023) and Doimo et al. (2020)
    # compare neighbourhoods of a few tens of points at most; the search tool did not return the
    # methods text with their exact k, so 10 is our choice (chance overlap for n = 10,000 is k/n = 0.1 %).
    k_overlap: int = 10
    # Linear CKA's products in float32 (the centring and the sums stay float64): 0.55x the CPU time
    # of float64 products, the largest cost of the analyses at Cheng et al.'s size, for CKA values
    # that differ by at most 1.2e-9 (geostudy/scale/compare.py)
    cka_dtype: str = "float32"

    def as_dict(self) -> dict:
        return {
            "twonn_discard_fraction": self.twonn_discard_fraction,
            "mle_k": self.mle_k,
            "gride_range_max": self.gride_range_max,
            "pca_levels": list(self.pca_levels),
            "pca_solver": self.pca_solver,
            "k_overlap": self.k_overlap,
            "cka_dtype": self.cka_dtype,
        }


@dataclass
class PartitionResult:
    """What the estimators said about one partition of one site."""

    items: list = field(default_factory=list)  # (quantity, param, value, error)
    spectrum: np.ndarray | None = None  # covariance eigenvalues (ddof=1) of the distinct points, descending
    neighbours: np.ndarray | None = None  # (n_rows, k_overlap) int32, rows of X; None if the cloud is too small
    n_rows: int = 0  # rows given
    n_points: int = 0  # distinct points after idest dropped duplicates and near-duplicates
    n_duplicates: int = 0
    n_near_duplicates: int = 0
    skipped: list = field(default_factory=list)  # (estimator, idest's message)


def _no_timer(stage):
    return nullcontext()


def analyse_partition(X: np.ndarray, settings: ScaleSettings, timer=None) -> PartitionResult:
    """TwoNN, MLE, GRIDE (every scale, and the automatic one), PCA and the overlap's neighbour
    lists of one partition X (n, D); see the module docstring. An estimator idest refuses (a
    ValueError, e.g. too few distinct points) is recorded in .skipped with idest's message.
    `timer(stage)`, a context manager, times each step."""
    timer = timer or _no_timer
    out = PartitionResult(n_rows=int(np.shape(X)[0]) if np.ndim(X) == 2 else 0)
    k = max(idest.k_needed(twonn=True, mle=settings.mle_k, gride=settings.gride_range_max), settings.k_overlap)
    with timer("neighbours"):
        try:
            nb = idest.neighborhoods(X, k=k)
        except ValueError as err:
            out.skipped += [(e, str(err)) for e in ("twonn", "mle", "gride", "pca", "overlap")]
            return out
    out.n_points, out.n_duplicates, out.n_near_duplicates = nb.n_points, nb.n_duplicates, nb.n_near_duplicates
    with timer("twonn, mle, gride"):
        add_twonn(nb, settings, out)
        add_mle(nb, settings, out)
        _gride(nb, settings, out)
    with timer("pca"):
        _pca(nb.points, settings, out)
    with timer("overlap neighbours"):
        if nb.k >= settings.k_overlap:
            out.neighbours = row_neighbours(np.asarray(X), nb, settings.k_overlap)
        else:
            out.skipped.append(("overlap", f"{nb.n_points} distinct points give {nb.k} neighbours each; k_overlap={settings.k_overlap}"))
    return out


def _gride(nb, settings, out):
    """GRIDE at every scale (as the token study), then the scale auto_gride_scale chooses."""
    add_gride(nb, settings, out)
    curve = [(n1, d, e) for q, n1, d, e in out.items if q == "id_gride"]
    if curve:
        scales, dims, errs = (list(c) for c in zip(*curve))
        chosen = auto_gride_scale(scales, dims, errs)
        i = scales.index(chosen)
        out.items.append(("id_gride_auto", int(chosen), float(dims[i]), float(errs[i])))


def _pca(points, settings, out):
    try:
        r = idest.pca(points, variance=list(settings.pca_levels), solver=settings.pca_solver)
    except ValueError as err:
        out.skipped.append(("pca", str(err)))
        return
    for level, n in zip(r.variance_levels, r.dimensions.tolist()):
        out.items.append(("pca_components", float(level), int(n), None))
    out.items.append(("pca_participation_ratio", None, float(r.participation_ratio), None))
    out.spectrum = r.spectrum


# ---------------------------------------------------------------- neighbour lists by row


def kept_position(X: np.ndarray, point_index: np.ndarray) -> np.ndarray:
    """For every row of X, the position (in point_index) of the kept row standing for it: itself
    when kept; the kept row with identical bytes for an exact repeat; else the nearest kept row."""
    n = X.shape[0]
    pos = np.full(n, -1, dtype=np.int64)
    pos[point_index] = np.arange(point_index.size)
    dropped = np.flatnonzero(pos < 0)
    if dropped.size == 0:
        return pos
    rows = np.ascontiguousarray(X)
    first = {rows[r].tobytes(): p for p, r in enumerate(point_index.tolist())}
    for r in dropped.tolist():
        pos[r] = first.get(rows[r].tobytes(), -1)
    # near-duplicates (and -0.0 against 0.0): the nearest kept row, in float64 (squares stay finite
    # for every scale idest accepts, |x| <= 1e150)
    near = np.flatnonzero(pos < 0)
    if near.size:
        kept = rows[point_index].astype(np.float64)
        kept_sq = np.einsum("ij,ij->i", kept, kept)
        for lo in range(0, near.size, 256):
            q = rows[near[lo : lo + 256]].astype(np.float64)
            d2 = kept_sq[None, :] - 2.0 * (q @ kept.T)  # + |q|^2, the same for every kept row
            pos[near[lo : lo + 256]] = np.argmin(d2, axis=1)
    return pos


def row_neighbours(X: np.ndarray, nb: idest.Neighborhoods, k: int) -> np.ndarray:
    """(n_rows, k) int32: the k nearest other rows of each row of X (module docstring)."""
    pos = kept_position(X, np.asarray(nb.point_index))
    # the rows of each distinct point, in increasing row order: point p's are rows[start[p]:start[p + 1]]
    rows = np.argsort(pos, kind="stable").astype(np.int64)
    start = np.concatenate([[0], np.cumsum(np.bincount(pos, minlength=nb.n_points))]).astype(np.int64)
    out = np.empty((X.shape[0], k), dtype=np.int32)
    _expand_to_rows(pos, rows, start, np.ascontiguousarray(nb.indices, dtype=np.int64), k, out)
    return out


@numba.njit(cache=True)
def _expand_to_rows(pos, rows, start, indices, k, out):
    """out[r] = the other rows of r's own point, then the rows of its nearest distinct points."""
    for r in range(pos.size):
        p, m = pos[r], 0
        for t in range(start[p], start[p + 1]):
            if m == k:
                break
            if rows[t] != r:
                out[r, m] = rows[t]
                m += 1
        j = 0
        while m < k:
            q = indices[p, j]
            j += 1
            for t in range(start[q], start[q + 1]):
                if m == k:
                    break
                out[r, m] = rows[t]
                m += 1


# ---------------------------------------------------------------- the automatic GRIDE scale


def auto_gride_scale(scales, ids, errors) -> int:
    """The GRIDE scale n1 where the ID-against-scale curve is flattest.

    Rule: on a log2 scale axis, each scale with a neighbour on both sides gets the mean of the
    absolute ID changes to its two neighbours per doubling of scale, relative to its own ID,
        flatness(n1_i) = (|d_i - d_{i-1}| / log2(n1_i / n1_{i-1}) + |d_{i+1} - d_i| / log2(n1_{i+1} / n1_i)) / (2 d_i);
    the scale with the smallest value wins, ties to the smaller scale. With GRIDE's default scales
    (1 ... 32) the candidates are 2, 4, 8 and 16. Scales whose ID is not finite are left out; with
    one or two usable scales (no interior one) the smallest is returned.

    Why this rule: Denti et al. (Sci. Rep. 2022) show ID against scale inflated by noise at short
    range and approximately scale-independent beyond it, and recommend reading the ID where the
    curve is flat; Cheng et al. (ICLR 2025) pick the scale where it plateaus. Neither gives a
    numerical rule (the search tool did not return one), so this one is ours. Comparing each
    scale with both neighbours rejects the ends of the curve, where the short-range noise or the
    large-range curvature act; relative changes make the rule independent of the ID's size.
    `errors` (GRIDE's Fisher standard errors) are checked but do not weigh the changes: the
    estimates at neighbouring scales share their neighbour distances, so their differences are far
    more precise than the errors suggest, and weighting by them would favour noisy scales.
    """
    s = np.asarray(scales, dtype=np.float64)
    d = np.asarray(ids, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or d.shape != s.shape or e.shape != s.shape:
        raise StudyError(f"auto_gride_scale needs equally long 1-D scales, ids and errors, not {s.shape}, {d.shape}, {e.shape}")
    if not (np.isfinite(s).all() and (s > 0).all() and (np.diff(s) > 0).all()):
        raise StudyError(f"auto_gride_scale needs increasing positive scales, not {s.tolist()}")
    if np.any(e[np.isfinite(e)] < 0):
        raise StudyError("auto_gride_scale: standard errors must not be negative")
    usable = np.flatnonzero(np.isfinite(d) & (d > 0))
    if usable.size == 0:
        raise StudyError("auto_gride_scale: no scale has a finite positive ID")
    if usable.size < 3:
        return int(s[usable[0]])
    su, du = np.log2(s[usable]), d[usable]
    slope = np.abs(np.diff(du)) / np.diff(su)
    flatness = (slope[:-1] + slope[1:]) / (2.0 * du[1:-1])
    return int(s[usable[1 + int(np.argmin(flatness))]])  # argmin: the first (smallest scale) of equal ones


# ---------------------------------------------------------------- summary across partitions


def summarise(per_partition_items: Sequence[Sequence[tuple]]) -> list[tuple]:
    """(quantity, param, mean, error) per (quantity, param), in the order they first appear.

    error = the standard deviation across partitions with ddof=1: the partitions are a sample of
    the disjoint sets of n points the corpus could give, and the spread to report is that of the
    estimate on one such set, of which the n - 1 form is the unbiased variance (the per-partition
    error bars Cheng et al. plot); None with a single partition. A quantity an estimator skipped
    on some partitions is averaged over the others. id_gride_auto is chosen again on the mean
    GRIDE curve (auto_gride_scale on the means, errors the spreads), and reported at that scale
    with the mean and spread of id_gride there, so it is one row even when partitions disagree."""
    values: dict[tuple, list[float]] = {}
    for items in per_partition_items:
        for quantity, param, value, _error in items:
            values.setdefault((quantity, param), []).append(float(value))
    rows, auto_done = [], False
    for (quantity, param), vs in values.items():
        if quantity == "id_gride_auto":
            if not auto_done:
                rows += _auto_row(values)
                auto_done = True
            continue
        rows.append((quantity, param, *_mean_std(vs)))
    return rows


def _mean_std(vs: list[float]) -> tuple[float, float | None]:
    a = np.asarray(vs, dtype=np.float64)
    return float(a.mean()), (float(a.std(ddof=1)) if a.size > 1 else None)


def _auto_row(values: dict) -> list[tuple]:
    curve = sorted((param, *_mean_std(vs)) for (q, param), vs in values.items() if q == "id_gride")
    if not curve:
        return []
    scales = [c[0] for c in curve]
    chosen = auto_gride_scale(scales, [c[1] for c in curve], [np.nan if c[2] is None else c[2] for c in curve])
    _, mean, std = curve[scales.index(chosen)]
    return [("id_gride_auto", int(chosen), mean, std)]
