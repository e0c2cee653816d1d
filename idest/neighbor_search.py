"""The exact neighbour search, public: ``knn`` itself, and one search for several estimators.

    d, i = idest.knn(X, k)              # exact k-NN, self excluded, ties by index
    nb = idest.neighborhoods(X, k=idest.k_needed(twonn=True, mle=20, gride=64))
    idest.twonn(nb); idest.mle(nb, k=20); idest.gride(nb, range_max=64)

The neighbour search is most of the cost of TwoNN, MLE and GRIDE. ``neighborhoods`` runs it
once, with the largest k any of them needs, and each estimator reads the first columns it
needs. Because the engine is exact and orders equal distances by index, the first k
columns of a search for more neighbours are exactly a k search, so the results are
bit-identical to calling each estimator on X.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _knn as engine
from ._estimator_input import search
from ._validate import as_points, check_int, check_metric
from .gride import largest_order
from .mle import parse_k
from .results import Neighborhoods


def neighborhoods(
    X,
    k: int,
    *,
    metric: str = "euclidean",
    on_duplicates: str = "drop",
    near_duplicate_tol: float = engine.NEAR_DUPLICATE_TOL,
) -> Neighborhoods:
    """Exact k nearest neighbours of the distinct points of X (N, D), to pass to
    ``idest.twonn``, ``twonn_scaling``, ``mle``, ``gride`` and ``local_pca`` in place of X.

    X is validated and duplicated points are dropped (first copy kept) or refused
    (``on_duplicates="raise"``) exactly as the estimators do, and so are near-duplicates:

    * points i, j are near-duplicates when |x_i - x_j| <= near_duplicate_tol * eps *
      max(|x_i|, |x_j|), eps the machine epsilon of X's dtype (float16 9.8e-4, float32
      1.2e-7, float64 2.2e-16; integers count as float64) and |x| the norm of the row as
      given (not centred: rounding changes a coordinate by a fraction of its own magnitude).
      Under ``metric="cosine"``: the chord between the unit rows <= near_duplicate_tol * eps.
    * The default, 64, is ten times the differences measured between a token's GPT-2 hidden
      states computed alone and in a padded batch (float32: up to 6 eps |x|), and three
      orders of magnitude below the closest real neighbours measured in a GPT-2-like cloud.
      The rule is scale-invariant and does not depend on the other points, so a tiny but
      real cluster (spacing well above the rounding of its coordinates) is kept. 0 turns it off.
    * Groups are the connected components of all near pairs; the first row of each is kept
      (as for exact duplicates), and the rest are counted in ``n_near_duplicates``
      (exact repeats in ``n_duplicates``). ``k`` (>= 1) is capped at the
    number of distinct points minus one, so one k serves clouds of every size: an estimator
    that needs more neighbours than a small cloud has then refuses it with the message it
    gives for X itself. Use ``idest.k_needed`` for the k of several estimators.

    An estimator given the result uses its metric and duplicate policy; passing a different
    ``metric`` or ``on_duplicates`` to it is an error, and so is asking for more neighbours
    than the result holds (the message says which k to compute).
    """
    return _neighborhoods(X, k, metric, on_duplicates, near_duplicate_tol)


def _neighborhoods(X, k, metric, on_duplicates, near_duplicate_tol, nearest=None) -> Neighborhoods:
    """neighborhoods, with the exact search `nearest(geo, rows, k)` to use (None: idest's own in
    this process; idest.neighborhoods_blocked passes its row-block search)."""
    k = check_int("k", k, minimum=1)
    nb = search(
        X,
        lambda n: min(k, n - 1),  # a single distinct point gets no neighbours (k = 0)
        metric=metric,
        on_duplicates=on_duplicates,
        near_duplicate_tol=near_duplicate_tol,
        min_points=1,
        method="idest.neighborhoods",
        k_name=None,
        nearest=nearest,
    )
    return _read_only(nb)


def _read_only(nb: Neighborhoods) -> Neighborhoods:
    """Freeze the arrays too: the estimators trust them. ``points`` may be a view of the
    caller's X, so it gets a read-only view and X's own flags are left alone."""
    points = nb.points.view()
    arrays = {"distances": nb.distances, "indices": nb.indices, "point_index": nb.point_index, "points": points}
    for array in arrays.values():
        array.flags.writeable = False
    return dataclasses.replace(nb, **arrays)


def k_needed(*, twonn: bool = False, mle=None, gride=None, local_pca=None) -> int:
    """The k for ``idest.neighborhoods(X, k)`` that serves every estimator named, on a cloud
    of any size (``neighborhoods`` caps k for small clouds).

    twonn : True if ``idest.twonn`` or ``idest.twonn_scaling`` will read the result (2).
    mle : the ``k`` that will be given to ``idest.mle`` (an integer, or (k1, k2): k2).
    gride : the ``range_max`` that will be given to ``idest.gride`` (its largest order
        n2: the largest power of two <= range_max).
    local_pca : the ``k`` that will be given to ``idest.local_pca``.
    """
    needs = []
    if twonn:
        needs.append(2)
    if mle is not None:
        needs.append(parse_k(mle)[1])
    if gride is not None:
        range_max = check_int("range_max", gride, minimum=2)
        # the order GRIDE needs on a cloud large enough not to cap it (N - 1 >= range_max)
        needs.append(largest_order(range_max)(range_max + 1))
    if local_pca is not None:
        needs.append(check_int("k", local_pca, minimum=2))
    if not needs:
        raise ValueError("k_needed: name at least one estimator (twonn=True, mle=k, gride=range_max, local_pca=k).")
    return max(needs)


def knn(X, k: int, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every point, the point itself excluded.

    Parameters
    ----------
    X : (N, D) float32 or float64 array (integers and float16 are widened exactly).
    k : number of neighbours, 1 <= k < N.
    metric : ``"euclidean"`` or ``"cosine"`` (1 - cosine similarity).

    Returns
    -------
    distances : (N, k) float64, ascending along each row.
    indices : (N, k) int64; equal distances are ordered by index.

    The result equals a float64 brute force (see ``idest._knn.search`` for how the float32
    matrix products are made exact). Duplicated points are *not* removed here: they show
    up as zero distances.
    """
    points = as_points(X)
    metric = check_metric(metric)
    n = points.X.shape[0]
    k = check_int("k", k, minimum=1)
    if k >= n:
        raise ValueError(f"k={k} neighbours need at least k + 1 = {k + 1} points; X has {n}. Use a smaller k.")
    geo = engine.prepare(points, metric)
    d2, idx = engine.nearest(geo, k)
    return engine.user_distances(d2, geo), idx
