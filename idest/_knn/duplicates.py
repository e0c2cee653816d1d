"""Detecting duplicated points (distance 0), which make neighbour-distance ratios 0 or inf,
and near-duplicates (rows equal up to their last bits), which make them huge.

Three stages, each keeping the first copy (lowest row index) of each group:

* exact repeats of a row, found by hashing rows (O(N D), before any neighbour search);
* zero distances the neighbour search still finds: under ``metric="cosine"`` rows that
  point the same way (x and 2x), which no row hash can see;
* near-duplicates among the remaining points: pairs closer than ``near_duplicate_tol``
  machine epsilons (of the input's dtype) relative to the larger of their two norms (see
  ``near_pairs``). The groups are the connected components of *all* such pairs (found by
  searching more neighbours until every row's last one is beyond the tolerance), so they
  do not depend on how many neighbours the estimator asked for.
"""

from __future__ import annotations

import numpy as np

from . import row_kernels as rk
from .geometry import Geometry, stored_sq_norms
from .search import nearest

# Squared chord between unit vectors below which two rows count as the same direction:
# far above the ~1e-32 left by rounding when normalising parallel rows, far below any
# real angle (chord 1e-14, i.e. a cosine distance of 5e-29).
COSINE_ZERO_SQ_CHORD = 1e-28


def repeated_rows(X: np.ndarray) -> np.ndarray:
    """Boolean mask of rows equal to an earlier row."""
    hashes = rk.row_hashes(X)
    order = np.argsort(hashes, kind="stable")
    return rk.mark_repeated_rows(X, order, hashes)


# Default near-duplicate tolerance, in machine epsilons of the input dtype, relative to the
# points' norms. Measured: a token's GPT-2 hidden states computed alone and inside a padded
# batch (transformers, float32, 12 layers) differ by up to 6 eps |x|; real first neighbours
# lie at >= 7e4 eps |x| (a GPT-2-like cloud, 10,000 x 768, far from the origin) and
# >= 5e6 eps |x| (random-weight GPT-2 small). 64 leaves a factor 10 above the first and
# three orders of magnitude below the second.
NEAR_DUPLICATE_TOL = 64.0


def zero_distance_repeats(d2: np.ndarray, idx: np.ndarray, zero: float) -> np.ndarray:
    """Mask of points to drop given neighbour lists: union the pairs at (squared, internal)
    distance <= zero and keep the lowest index of each group."""
    rows, cols = np.nonzero(d2 <= zero)
    return first_of_each_group(d2.shape[0], rows, idx[rows, cols])


def near_pairs(d2: np.ndarray, idx: np.ndarray, sq_norms: np.ndarray, tol_sq: float) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (i, j = idx[i, c]) of neighbour lists that are near-duplicates:
    d2[i, c] <= tol_sq * max(|x_i|^2, |x_j|^2), with d2 and the squared norms in the same
    (internal) units and tol_sq = (near_duplicate_tol * eps)^2. Relative to the points' own
    norms, because rounding changes a coordinate by a fraction of its magnitude: scale-
    invariant, and a tiny but real cluster near the origin is not mistaken for copies."""
    limit = tol_sq * np.maximum(sq_norms[:, None], sq_norms[idx])  # (n, k)
    rows, cols = np.nonzero(d2 <= limit)
    return rows, idx[rows, cols]


def first_of_each_group(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mask of the points to drop when the pairs (a, b) join points into groups (connected
    components): all but the lowest index of each group."""
    if a.size == 0:
        return np.zeros(n, dtype=bool)
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in zip(a.tolist(), b.tolist()):
        ra, rb = find(i), find(j)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the root is the group's lowest index
    roots = np.array([find(x) for x in range(n)])
    return roots != np.arange(n)


def near_duplicates(geo: Geometry, d2: np.ndarray, idx: np.ndarray, tol_sq: float, search=nearest) -> np.ndarray:
    """Mask of the near-duplicates to drop among distinct points, given their k-NN (d2, idx):
    every point of a group (connected by pairs within the tolerance, near_pairs) but
    its lowest index.

    The groups are those of *all* pairs within the tolerance, whatever k: while some row's
    k-th neighbour is still within reach of it, the search is repeated with twice the
    neighbours (rare: a point with k or more near-copies). Then no pair of the points kept
    is within the tolerance (it would have joined their groups), and an estimator asking
    for 2 neighbours drops the same points as a shared search for 64. ``search(geo, k)``
    is the search repeated (the row-block tasks of idest.blocked_knn give the same)."""
    n, k = d2.shape
    if tol_sq == 0.0:
        return np.zeros(n, dtype=bool)
    # the stored rows have |coordinates| < 1 (see geometry.stored_sq_norms): a first neighbour
    # beyond tol_sq * D is no near-duplicate, so clean data cost one comparison per point
    if not np.any(d2[:, 0] <= tol_sq * geo.X.shape[1]):
        return np.zeros(n, dtype=bool)
    sq_norms = stored_sq_norms(geo)
    reach = tol_sq * float(sq_norms.max())
    while k < n - 1 and np.any(d2[:, k - 1] <= reach):
        k = min(n - 1, 2 * k)
        d2, idx = search(geo, k)
    a, b = near_pairs(d2, idx, sq_norms, tol_sq)
    return first_of_each_group(n, a, b)


def describe(mask: np.ndarray, limit: int = 8, near_duplicate_tol: float | None = None) -> str:
    """'3 duplicated point(s) (rows 60, 61, 62 repeat earlier rows)', or for near-duplicates
    (``near_duplicate_tol`` given) what makes them near."""
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:limit])
    more = ", ..." if rows.size > limit else ""
    if near_duplicate_tol is None:
        return f"{rows.size} duplicated point(s) (rows {shown}{more} repeat earlier rows)"
    return (
        f"{rows.size} near-duplicated point(s) (rows {shown}{more} lie within near_duplicate_tol="
        f"{near_duplicate_tol:g} eps of an earlier row, relative to their norms)"
    )
