"""Distinct points and their exact neighbours: the common first step of the kNN estimators.

Validation, duplicate handling and the neighbour search happen here once, so each
estimator module only does its own arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _duplicates as dup
from ._validate import CleanPoints, as_points, check_metric, check_on_duplicates
from .neighbors import _Geometry, _knn_internal, _prepare, _to_user_distances


@dataclass(frozen=True)
class Neighborhoods:
    """Exact k-NN of the distinct points used by an estimator."""

    distances: np.ndarray  # (n, k) float64, user units, ascending
    indices: np.ndarray  # (n, k) int64, indices into ``points`` (the distinct points)
    points: np.ndarray  # (n, D) the distinct points, in the input's float dtype
    point_index: np.ndarray  # (n,) row of X each distinct point came from
    n_duplicates: int  # rows of X dropped as repeats
    metric: str


def _drop(points: CleanPoints, keep: np.ndarray) -> CleanPoints:
    X = np.ascontiguousarray(points.X[keep])
    return CleanPoints(X, float(np.abs(X).max()) if X.size else 0.0)


def neighborhoods(
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
    N - 1). ``min_points`` is the fewest distinct points ``method`` accepts; with an integer
    k it must exceed k. ``k_name`` names k in error messages (None: not a user option).
    """
    k_of = k if callable(k) else (lambda n, k=k: k)
    points = as_points(X)
    metric = check_metric(metric)
    on_duplicates = check_on_duplicates(on_duplicates)
    n_input = points.X.shape[0]
    index = np.arange(n_input)

    def check_size(n: int) -> None:
        if n >= min_points:
            return
        dropped = n_input - n
        note = f" after dropping {dropped} duplicated point(s)" if dropped else ""
        user_k = k_name is not None and not callable(k)  # k is the caller's parameter
        with_k = f" with {k_name}={k}" if user_k else ""
        smaller = f" or a smaller {k_name}" if user_k else ""
        raise ValueError(
            f"{method}{with_k} needs at least {min_points} distinct points; X has "
            f"{n}{note}. Pass more points{smaller}."
        )

    check_size(n_input)
    if metric == "euclidean":
        repeats = dup.repeated_rows(points.X)
        if repeats.any():
            _refuse_if_asked(on_duplicates, repeats)
            index = index[~repeats]
            points = _drop(points, ~repeats)
            check_size(index.size)

    zero = 0.0
    while True:
        geo: _Geometry = _prepare(points, metric)
        if metric == "cosine":
            zero = dup.COSINE_ZERO_SQ_CHORD
        d2, idx = _knn_internal(geo, k_of(index.size))
        repeats = dup.zero_distance_repeats(d2, idx, zero)
        if not repeats.any():
            break
        _refuse_if_asked(on_duplicates, repeats, index)
        index = index[~repeats]
        points = _drop(points, ~repeats)
        check_size(index.size)

    return Neighborhoods(
        distances=_to_user_distances(d2, geo),
        indices=idx,
        points=points.X,
        point_index=index,
        n_duplicates=n_input - index.size,
        metric=metric,
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
