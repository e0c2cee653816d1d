"""The engine's view of the data: per-row scales, the centred float32 copy the BLAS products
are taken of, and the norms of the lower bound (see ``search``'s docstring for how they make
the neighbours exact), plus the conversion of its internal distances to the user's.

Internal units: Euclidean rows are scaled by one power of two s (exact), so that every
|coordinate| is below 1; cosine rows by s_i = 1 / |x_i| to unit vectors. Internal distances
are squared distances between these scaled rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import CleanPoints, power_of_two_scale
from . import row_kernels as rk

_U32 = 2.0**-24


@dataclass(frozen=True)
class Geometry:
    """What the kernels need: the original X, per-row scales s (exact distances are
    computed on s_i x_i), the centred float32 copy, and the lower-bound norms."""

    X: np.ndarray
    s: np.ndarray
    xf32: np.ndarray
    half_lb: np.ndarray
    unit: float  # internal distances are user distances times this power of two
    metric: str


def prepare(points: CleanPoints, metric: str) -> Geometry:
    X = points.X
    n, dim = X.shape
    scale = power_of_two_scale(points.max_abs)
    if metric == "euclidean":
        s = np.full(n, scale, dtype=np.float64)
        unit = scale
    else:
        norms = rk.scaled_row_norms(X, scale)
        zero = np.flatnonzero(norms == 0.0)
        if zero.size:
            raise ValueError(
                f"metric='cosine' is undefined for all-zero rows; row(s) {zero[:10].tolist()} "
                f"{'(and more) ' if zero.size > 10 else ''}are zero. Drop them or use metric='euclidean'."
            )
        s = scale / norms  # s_i x_i is the unit vector along x_i
        unit = 1.0
    mean = rk.scaled_column_mean(X, s)
    xf32 = np.empty((n, dim), dtype=np.float32)
    rk.scaled_centered_f32(X, s, mean, xf32)
    return Geometry(X=X, s=s, xf32=xf32, half_lb=_half_lower_bound_norms(xf32), unit=unit, metric=metric)


def stored_sq_norms(geo: Geometry) -> np.ndarray:
    """Squared norms of the rows as the engine stores them, s_i x_i (uncentred; the units of
    the internal squared distances): Euclidean rows are scaled so that every |coordinate|
    is below 1, cosine rows are unit vectors."""
    if geo.metric == "cosine":
        return np.ones(geo.X.shape[0])
    return rk.scaled_row_norms(geo.X, float(geo.s[0])) ** 2


def _half_lower_bound_norms(xf32: np.ndarray) -> np.ndarray:
    """float32 (1 - c) |x~_j|^2 / 2, with c bounding, relative to |x~_i|^2 + |x~_j|^2:
    the rounding of the data to float32 (4u), the worst-case float32 dot product of length
    D (gamma_D), and the float32 rounding of these values and of the keys (4u); plus a 25%
    cushion. Then 2 (half_lb_i + half_lb_j - g_ij) <= exact squared distance, always."""
    dim = xf32.shape[1]
    gamma = dim * _U32 / (1.0 - dim * _U32)
    c = 1.25 * (gamma + 8.01 * _U32)
    return (0.5 * (1.0 - c) * rk.row_sq_norms(xf32)).astype(np.float32)


def certification_slack(geo: Geometry) -> tuple[float, float]:
    """(relative, absolute) slack of the certification (kernels._beyond). Euclidean: none, the
    stored rows s x are exact (s is a power of two). Cosine: the stored unit rows are
    s_i x_i rounded to float64, within u ||s_i x_i|| = u of those exact_sq_dist subtracts, and
    its differences round by u (|s_i x_it| + |s_j x_jt|) more: 4u in distance for the pair,
    doubled; and its sum of D squares, relative (D + 1) u, doubled. Without it, rows that are
    nearly parallel (distances near 1e-16) could be certified with a neighbour left out."""
    if geo.metric == "euclidean":
        return 0.0, 0.0
    u = 2.0**-53
    return 2.0 * (geo.X.shape[1] + 1) * u, 8.0 * u


def user_distances(d2: np.ndarray, geo: Geometry) -> np.ndarray:
    """Internal squared distances -> Euclidean distances or cosine distances (1 - cos)."""
    if geo.metric == "euclidean":
        return np.sqrt(d2) / geo.unit  # unit is a power of two: exact rescaling
    # internal: |x_i/|x_i| - x_j/|x_j||^2 = 2 (1 - cos)
    return 0.5 * d2
