"""Distinct points and their exact neighbours: the common first step of the kNN estimators.

Validation, duplicate handling and the neighbour search happen here once, so each
estimator module only does its own arithmetic. ``for_estimator`` is what the estimators
call: given an array it searches; given the ``Neighborhoods`` of ``idest.neighborhoods``
it checks that they can serve the estimator and hands over their first columns, which are
exactly what a search with the smaller k returns (the engine is exact and breaks ties by
index), so results are bit-identical either way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import _duplicates as dup
from ._validate import CleanPoints, abs_max, as_points, check_metric, check_on_duplicates
from .neighbors import _Geometry, _knn_internal, _prepare, _to_user_distances
from .results import Neighborhoods

_DEFAULT_METRIC = "euclidean"
_DEFAULT_ON_DUPLICATES = "drop"


def _drop(points: CleanPoints, keep: np.ndarray) -> CleanPoints:
    X = np.ascontiguousarray(points.X[keep])
    return CleanPoints(X, abs_max(X))


def _user_k(k_name: str | None, k) -> str | None:
    """The k name when k is the caller's own integer option (for messages), else None."""
    return k_name if k_name is not None and not callable(k) else None


def _check_size(n: int, n_input: int, *, min_points: int, method: str, k_name: str | None, k) -> None:
    """Refuse fewer than ``min_points`` distinct points (n of the caller's n_input rows).

    ``k_name`` names the caller's k in the message (None if k is not a user option).
    Shared by the search and by ``for_estimator`` so both read the same."""
    if n >= min_points:
        return
    dropped = n_input - n
    note = f" after dropping {dropped} duplicated point(s)" if dropped else ""
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
    min_points: int,
    method: str,
    k_name: str | None = "k",
) -> Neighborhoods:
    """Validate X, drop (or refuse) duplicated points, and return exact k-NN.

    ``k`` may be a function of the number of distinct points (GRIDE caps its range at
    N - 1); a function may return 0 for a single point, which then gets no neighbours.
    ``min_points`` is the fewest distinct points ``method`` accepts; with an integer k it
    must exceed k. ``k_name`` names k in error messages (None: not a user option).
    """
    k_of = k if callable(k) else (lambda n, k=k: k)
    points = as_points(X)
    metric = check_metric(metric)
    on_duplicates = check_on_duplicates(on_duplicates)
    n_input = points.X.shape[0]
    index = np.arange(n_input)
    user_k = _user_k(k_name, k)

    def check_size(n: int) -> None:
        _check_size(n, n_input, min_points=min_points, method=method, k_name=user_k, k=k)

    check_size(n_input)
    if metric == "euclidean":
        repeats = dup.repeated_rows(points.X)
        if repeats.any():
            _refuse_if_asked(on_duplicates, repeats)
            index = index[~repeats]
            points = _drop(points, ~repeats)
            check_size(index.size)

    while True:
        k_now = k_of(index.size)
        if k_now == 0:  # one distinct point: nothing to search (nor to drop)
            distances = np.empty((index.size, 0))
            idx = np.empty((index.size, 0), dtype=np.int64)
            break
        geo: _Geometry = _prepare(points, metric)
        zero = dup.COSINE_ZERO_SQ_CHORD if metric == "cosine" else 0.0
        d2, idx = _knn_internal(geo, k_now)
        repeats = dup.zero_distance_repeats(d2, idx, zero)
        if not repeats.any():
            distances = _to_user_distances(d2, geo)
            break
        _refuse_if_asked(on_duplicates, repeats, index)
        index = index[~repeats]
        points = _drop(points, ~repeats)
        check_size(index.size)

    return Neighborhoods(
        distances=distances,
        indices=idx,
        points=points.X,
        point_index=index,
        k=idx.shape[1],
        n_points=index.size,
        n_duplicates=n_input - index.size,
        metric=metric,
        on_duplicates=on_duplicates,
    )


def for_estimator(
    source,
    k: int | Callable[[int], int],
    *,
    metric: str | None,
    on_duplicates: str | None,
    min_points: int,
    method: str,
    k_name: str | None = "k",
    setting: str | None = None,
) -> Neighborhoods:
    """The distinct points and their first k neighbours, from X or from a Neighborhoods.

    ``metric`` / ``on_duplicates`` None mean the default for an array and "as the
    Neighborhoods were computed" for one; anything else must agree with them.
    ``setting`` ("range_max=64") names the option that fixes k in the message saying the
    Neighborhoods hold too few neighbours (default: ``k_name=k``).
    """
    if not isinstance(source, Neighborhoods):
        return search(
            source,
            k,
            metric=_DEFAULT_METRIC if metric is None else metric,
            on_duplicates=_DEFAULT_ON_DUPLICATES if on_duplicates is None else on_duplicates,
            min_points=min_points,
            method=method,
            k_name=k_name,
        )
    _check_agrees(source, metric, on_duplicates)
    user_k = _user_k(k_name, k)
    # the same two checks, in the same order, as the search makes on X
    n_input = source.n_points + source.n_duplicates
    for n in (n_input, source.n_points):
        _check_size(n, n_input, min_points=min_points, method=method, k_name=user_k, k=k)
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
    return Neighborhoods(
        distances=source.distances[:, :need].copy(),
        indices=source.indices[:, :need].copy(),
        points=source.points,
        point_index=source.point_index.copy(),
        k=need,
        n_points=source.n_points,
        n_duplicates=source.n_duplicates,
        metric=source.metric,
        on_duplicates=source.on_duplicates,
    )


def _check_agrees(nb: Neighborhoods, metric: str | None, on_duplicates: str | None) -> None:
    """An option given together with Neighborhoods must be the one they were computed with:
    the estimator cannot re-search, and silently using other settings would mislead."""
    given = {
        "metric": None if metric is None else check_metric(metric),
        "on_duplicates": None if on_duplicates is None else check_on_duplicates(on_duplicates),
    }
    for name, value in given.items():
        built = getattr(nb, name)
        if value is not None and value != built:
            raise ValueError(
                f"{name}={value!r} disagrees with the Neighborhoods passed, which were computed "
                f"with {name}={built!r}. Leave {name} out (the Neighborhoods' setting is used), "
                f"or compute idest.neighborhoods(X, k, {name}={value!r})."
            )


def _refuse_if_asked(policy: str, repeats: np.ndarray, index: np.ndarray | None = None) -> None:
    if policy != "raise":
        return
    mask = repeats
    if index is not None:  # report rows of the caller's X
        mask = np.zeros(int(index.max()) + 1, dtype=bool)
        mask[index[repeats]] = True
    raise ValueError(
        f"X contains {dup.describe(mask)}; their zero distances make neighbour ratios "
        "infinite. Remove them, or pass on_duplicates='drop' to keep one copy of each."
    )
