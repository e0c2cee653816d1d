"""Distinct points and their exact neighbours: the common first step of the kNN estimators.

Validation, duplicate handling and the neighbour search happen here once, so each
estimator module only does its own arithmetic. ``for_estimator`` is what the estimators
call: given an array it searches; given the ``Neighborhoods`` of ``idest.neighborhoods``
it checks that they can serve the estimator and hands over their first columns, which are
exactly what a search with the smaller k returns (the engine is exact and breaks ties by
index), so results are bit-identical either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from . import _knn as engine
from ._validate import (
    CleanPoints,
    abs_max,
    as_points,
    check_metric,
    check_near_duplicate_tol,
    check_on_duplicates,
)
from .results import Neighborhoods

_DEFAULT_METRIC = "euclidean"
_DEFAULT_ON_DUPLICATES = "drop"
_DEFAULT_NEAR_DUPLICATE_TOL = engine.NEAR_DUPLICATE_TOL


def _drop(points: CleanPoints, keep: np.ndarray) -> CleanPoints:
    X = np.ascontiguousarray(points.X[keep])
    return CleanPoints(X, abs_max(X), points.eps)


def _user_k(k_name: str | None, k) -> str | None:
    """The k name when k is the caller's own integer option (for messages), else None."""
    return k_name if k_name is not None and not callable(k) else None


def _check_size(
    n: int, *, n_duplicates: int, n_near_duplicates: int, min_points: int, method: str, k_name: str | None, k
) -> None:
    """Refuse fewer than ``min_points`` distinct points (n left of the caller's rows after
    dropping the duplicates and near-duplicates counted so far).

    ``k_name`` names the caller's k in the message (None if k is not a user option).
    Shared by the search and by ``for_estimator`` so both read the same."""
    if n >= min_points:
        return
    dropped = [f"{n_duplicates} duplicated"] if n_duplicates else []
    dropped += [f"{n_near_duplicates} near-duplicated"] if n_near_duplicates else []
    note = f" after dropping {' and '.join(dropped)} point(s)" if dropped else ""
    with_k = f" with {k_name}={k}" if k_name else ""
    smaller = f" or a smaller {k_name}" if k_name else ""
    raise ValueError(
        f"{method}{with_k} needs at least {min_points} distinct points; X has "
        f"{n}{note}. Pass more points{smaller}."
    )


def search(
    X,
    k: int | Callable[[int], int],
    *,
    metric: str,
    on_duplicates: str,
    near_duplicate_tol: float,
    min_points: int,
    method: str,
    k_name: str | None = "k",
    nearest: Callable[[engine.Geometry, np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None,
) -> Neighborhoods:
    """Validate X, drop (or refuse) duplicated and near-duplicated points, and return
    exact k-NN.

    ``k`` may be a function of the number of distinct points (GRIDE caps its range at
    N - 1); a function may return 0 for a single point, which then gets no neighbours.
    ``min_points`` is the fewest distinct points ``method`` accepts; with an integer k it
    must exceed k. ``k_name`` names k in error messages (None: not a user option).
    ``nearest(geo, rows, k)`` -> (internal squared distances, indices) replaces the
    in-process search of the points kept so far (rows of X): idest.blocked_knn runs it as
    row-block tasks elsewhere (it must give what ``engine.nearest(geo, k)`` gives).
    """
    if nearest is None:
        nearest = lambda geo, rows, k: engine.nearest(geo, k)  # noqa: E731
    k_of = k if callable(k) else (lambda n, k=k: k)
    points = as_points(X)
    metric = check_metric(metric)
    on_duplicates = check_on_duplicates(on_duplicates)
    near_duplicate_tol = check_near_duplicate_tol(near_duplicate_tol)
    tol_sq = (near_duplicate_tol * points.eps) ** 2
    n_input = points.X.shape[0]
    index = np.arange(n_input)
    dropped = {"exact": 0, "near": 0}
    user_k = _user_k(k_name, k)

    def check_size() -> None:
        _check_size(index.size, n_duplicates=dropped["exact"], n_near_duplicates=dropped["near"],
                    min_points=min_points, method=method, k_name=user_k, k=k)

    def drop(repeats: np.ndarray, kind: str) -> None:
        nonlocal index, points
        _refuse_if_asked(on_duplicates, repeats, index, near_duplicate_tol if kind == "near" else None)
        index = index[~repeats]
        points = _drop(points, ~repeats)
        dropped[kind] += int(repeats.sum())
        check_size()

    check_size()
    if metric == "euclidean":
        repeats = engine.repeated_rows(points.X)
        if repeats.any():
            drop(repeats, "exact")

    while True:
        k_now = k_of(index.size)
        if k_now == 0:  # one distinct point: nothing to search (nor to drop)
            distances = np.empty((index.size, 0))
            idx = np.empty((index.size, 0), dtype=np.int64)
            break
        geo = engine.prepare(points, metric)
        zero = engine.COSINE_ZERO_SQ_CHORD if metric == "cosine" else 0.0
        d2, idx = nearest(geo, index, k_now)
        # exact repeats first, until none is left; then near-duplicates, found once among
        # the distinct points (after dropping them none is left: see engine.near_duplicates)
        repeats = engine.zero_distance_repeats(d2, idx, zero)
        if repeats.any():
            drop(repeats, "exact")
            continue
        repeats = engine.near_duplicates(geo, d2, idx, tol_sq, search=lambda geo, k: nearest(geo, index, k))
        if repeats.any():
            drop(repeats, "near")
            continue
        distances = engine.user_distances(d2, geo)
        break

    return Neighborhoods(
        distances=distances,
        indices=idx,
        points=points.X,
        point_index=index,
        k=idx.shape[1],
        n_points=index.size,
        n_duplicates=dropped["exact"],
        n_near_duplicates=dropped["near"],
        metric=metric,
        on_duplicates=on_duplicates,
        near_duplicate_tol=near_duplicate_tol,
    )


def for_estimator(
    source,
    k: int | Callable[[int], int],
    *,
    metric: str | None,
    on_duplicates: str | None,
    near_duplicate_tol: float | None,
    min_points: int,
    method: str,
    k_name: str | None = "k",
    setting: str | None = None,
) -> Neighborhoods:
    """The distinct points and their first k neighbours, from X or from a Neighborhoods.

    ``metric`` / ``on_duplicates`` / ``near_duplicate_tol`` None mean the default for an
    array and "as the Neighborhoods were computed" for one; anything else must agree with
    them. ``setting`` ("range_max=64") names the option that fixes k in the message saying
    the Neighborhoods hold too few neighbours (default: ``k_name=k``).
    """
    if not isinstance(source, Neighborhoods):
        return search(
            source,
            k,
            metric=_DEFAULT_METRIC if metric is None else metric,
            on_duplicates=_DEFAULT_ON_DUPLICATES if on_duplicates is None else on_duplicates,
            near_duplicate_tol=_DEFAULT_NEAR_DUPLICATE_TOL if near_duplicate_tol is None else near_duplicate_tol,
            min_points=min_points,
            method=method,
            k_name=k_name,
        )
    _check_agrees(source, metric=metric, on_duplicates=on_duplicates, near_duplicate_tol=near_duplicate_tol)
    user_k = _user_k(k_name, k)
    # the same checks, in the same order, as the search makes on X: all rows, after the
    # exact duplicates, after the near-duplicates
    n_exact, n_near = source.n_duplicates, source.n_near_duplicates
    for n, exact, near in (
        (source.n_points + n_exact + n_near, 0, 0),
        (source.n_points + n_near, n_exact, 0),
        (source.n_points, n_exact, n_near),
    ):
        _check_size(n, n_duplicates=exact, n_near_duplicates=near, min_points=min_points, method=method,
                    k_name=user_k, k=k)
    need = k(source.n_points) if callable(k) else k
    if source.k < need:
        label = setting or (f"{user_k}={k}" if user_k else None)
        with_setting = f" with {label}" if label else ""
        raise ValueError(
            f"{method}{with_setting} needs the {need} nearest neighbours of each point; the "
            f"Neighborhoods passed hold k={source.k}. Compute them with "
            f"idest.neighborhoods(X, k={need}) or a larger k (idest.k_needed gives the k "
            "that serves several estimators)."
        )
    # fresh C-ordered copies: the estimators then see exactly what a search with this k
    # returns (same array types for the Numba kernels, writable result arrays)
    return dataclasses.replace(
        source,
        distances=source.distances[:, :need].copy(),
        indices=source.indices[:, :need].copy(),
        point_index=source.point_index.copy(),
        k=need,
    )


def _check_agrees(nb: Neighborhoods, **given) -> None:
    """An option given together with Neighborhoods must be the one they were computed with:
    the estimator cannot re-search, and silently using other settings would mislead."""
    checks = {
        "metric": check_metric,
        "on_duplicates": check_on_duplicates,
        "near_duplicate_tol": check_near_duplicate_tol,
    }
    for name, value in given.items():
        if value is None:
            continue
        value = checks[name](value)
        built = getattr(nb, name)
        if value != built:
            raise ValueError(
                f"{name}={value!r} disagrees with the Neighborhoods passed, which were computed "
                f"with {name}={built!r}. Leave {name} out (the Neighborhoods' setting is used), "
                f"or compute idest.neighborhoods(X, k, {name}={value!r})."
            )


def _refuse_if_asked(policy: str, repeats: np.ndarray, index: np.ndarray, near_duplicate_tol: float | None) -> None:
    """Raise if the policy is "raise", naming the rows of the caller's X (``index`` maps
    the current points to them); ``near_duplicate_tol`` is given for near-duplicates."""
    if policy != "raise":
        return
    mask = np.zeros(int(index.max()) + 1, dtype=bool)
    mask[index[repeats]] = True
    if near_duplicate_tol is None:
        why, keep = "their zero distances make neighbour ratios infinite", ""
    else:
        why = "their tiny distances make neighbour ratios huge"
        keep = ", or near_duplicate_tol=0 to treat them as distinct points"
    raise ValueError(
        f"X contains {engine.describe(mask, near_duplicate_tol=near_duplicate_tol)}; {why}. Remove them, "
        f"or pass on_duplicates='drop' to keep one copy of each{keep}."
    )
