"""GRIDE with the cosine metric, the way the README recommends: idest.gride on the rows scaled to
unit length, with the Euclidean metric.

On the unit sphere |u - v|^2 = 2 (1 - cos(u, v)): the Euclidean distance is a monotone function
of the cosine distance, so the neighbour order (what GRIDE's ratios of the n1-th and n2-th
neighbour distances read) is the same, and the distances are chords of the angles, which for
small angles grow like the angle itself. idest's own metric="cosine" (1 - cos, which grows like
the angle squared over 2) would give about half this dimension for the same order.
"""

from __future__ import annotations

import numpy as np

import idest


def unit_rows(X: np.ndarray) -> np.ndarray:
    """X's rows divided by their norms (computed in float64), in X's dtype; a zero row is an
    error (it has no direction)."""
    X64 = np.asarray(X, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", X64, X64))
    if np.any(norms == 0):
        raise ValueError(f"{int(np.count_nonzero(norms == 0))} rows are zero: they have no direction for the cosine metric")
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    return (X64 / norms[:, None]).astype(dtype)


def gride_cosine(X: np.ndarray, range_max: int) -> list[tuple[str, int, float, float]]:
    """(quantity "id_gride_cosine", n1, ID, error) at every GRIDE scale of X's unit rows."""
    r = idest.gride(unit_rows(X), range_max=range_max)
    return [("id_gride_cosine", int(n1), float(d), float(e))
            for n1, d, e in zip(r.scales.tolist(), r.dimensions.tolist(), r.errors.tolist())]
