"""Detecting duplicated points (distance 0), which make neighbour-distance ratios 0 or inf.

Two stages, both keeping the first copy (lowest row index) of each group:

* exact repeats of a row, found by hashing rows (O(N D), before any neighbour search);
* zero distances the neighbour search still finds: under ``metric="cosine"`` rows that
  point the same way (x and 2x), which no row hash can see.
"""

from __future__ import annotations

import numpy as np

from . import _array_kernels as ak

# Squared chord between unit vectors below which two rows count as the same direction:
# far above the ~1e-32 left by rounding when normalising parallel rows, far below any
# real angle (chord 1e-14, i.e. a cosine distance of 5e-29).
COSINE_ZERO_SQ_CHORD = 1e-28


def repeated_rows(X: np.ndarray) -> np.ndarray:
    """Boolean mask of rows equal to an earlier row."""
    hashes = ak.row_hashes(X)
    order = np.argsort(hashes, kind="stable")
    return ak.mark_repeated_rows(X, order, hashes)


def zero_distance_repeats(d2: np.ndarray, idx: np.ndarray, zero: float) -> np.ndarray:
    """Mask of points to drop given neighbour lists: union the pairs at (squared, internal)
    distance <= zero and keep the lowest index of each group."""
    n = d2.shape[0]
    rows, cols = np.nonzero(d2 <= zero)
    if rows.size == 0:
        return np.zeros(n, dtype=bool)
    parent = np.arange(n)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in zip(rows.tolist(), idx[rows, cols].tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the root is the group's lowest index
    roots = np.array([find(a) for a in range(n)])
    return roots != np.arange(n)


def describe(mask: np.ndarray, limit: int = 8) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:limit])
    more = ", ..." if rows.size > limit else ""
    return f"{rows.size} duplicated point(s) (rows {shown}{more} repeat earlier rows)"
