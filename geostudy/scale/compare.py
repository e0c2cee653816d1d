"""Sites compared with each other on the same points: neighbourhood overlap and linear CKA.

    neighbourhood_overlap(nn_a, nn_b)   # mean fraction of the k nearest neighbours two sites share
    overlap_matrix([nn_site0, nn_site1, ...])          # (S, S), from the estimators' neighbour lists
    linear_cka(Xa, Xb)                                 # Kornblith et al. 2019, centred, float64
    cka_matrix([X0, X1, ...] or [load0, load1, ...])   # (S, S), each site loaded and centred once per block

Neighbourhood overlap (Doimo et al. 2020; Valeriani et al., NeurIPS 2023): for point i with
k-nearest-neighbour sets A_i at one site and B_i at another, chi = mean_i |A_i & B_i| / k. It
reads the neighbour lists the estimators' search already gave (row indices of the partition, see
geostudy/scale/analyses.py), so it costs no search.

Linear CKA (Kornblith et al., ICML 2019): with the rows centred,
    CKA(A, B) = ||B^T A||_F^2 / (||A^T A||_F ||B^T B||_F),
the feature-space form of HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) for the linear kernels
K = A A^T and L = B B^T (the tests check the two agree). It is computed in float64 on the
centred rows, each cloud first divided by its Frobenius norm (CKA does not depend on the scale,
and this keeps every product far from overflow for any input idest accepts); dtype="float32"
takes the products (the cost: n Da Db per pair) in float32, about twice as fast. A cloud that is
constant (nothing left after centring) has no CKA: NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import StudyError

CKA_MEMORY_BUDGET = 1 << 30  # bytes of centred site copies cka_matrix keeps at once (plus two sites)
# The products' precision. float64 is the default (the clouds are centred and normalised in float64
# either way); float32 products take 0.55x the CPU time and changed CKA by at most 1.2e-9 on 13 sites
# x 10,000 x 768 synthetic GPT-2-like clouds (the tests ask < 1e-5 on a small case).
CKA_DTYPES = ("float64", "float32")


# ---------------------------------------------------------------- neighbourhood overlap


def _check_neighbours(nn: np.ndarray, name: str) -> np.ndarray:
    nn = np.asarray(nn)
    if nn.ndim != 2 or nn.shape[1] < 1 or not np.issubdtype(nn.dtype, np.integer):
        raise StudyError(f"{name}: neighbour lists must be a 2-D integer array (points, k >= 1), not {nn.dtype} {nn.shape}")
    ordered = np.sort(nn, axis=1)
    if nn.shape[1] > 1 and np.any(ordered[:, 1:] == ordered[:, :-1]):
        row = int(np.flatnonzero(np.any(ordered[:, 1:] == ordered[:, :-1], axis=1))[0])
        raise StudyError(f"{name}: row {row} lists a neighbour twice; each row must hold k distinct neighbours")
    return ordered


def _shared_counts(sorted_a: np.ndarray, sorted_b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """|A_i & B_i| per row, for rows of distinct entries (a k x k comparison per row, in chunks)."""
    counts = np.empty(sorted_a.shape[0], dtype=np.int64)
    for lo in range(0, sorted_a.shape[0], chunk):
        a, b = sorted_a[lo : lo + chunk], sorted_b[lo : lo + chunk]
        counts[lo : lo + chunk] = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
    return counts


def neighbourhood_overlap(nn_a: np.ndarray, nn_b: np.ndarray) -> float:
    """Mean over points of the fraction of the k nearest neighbours the two lists share.
    nn_a, nn_b: (n, k) integer arrays, row i = point i's neighbours (any ids, distinct per row)."""
    a, b = _check_neighbours(nn_a, "nn_a"), _check_neighbours(nn_b, "nn_b")
    if a.shape != b.shape:
        raise StudyError(f"neighbour lists of different shapes {a.shape} and {b.shape}: both must list k neighbours of the same points")
    return float(_shared_counts(a, b).mean() / a.shape[1])


def overlap_matrix(neighbours: Sequence[np.ndarray]) -> np.ndarray:
    """(S, S) float64 overlap between every pair of sites (symmetric, 1 on the diagonal)."""
    checked = [_check_neighbours(nn, f"site {i}") for i, nn in enumerate(neighbours)]
    shapes = {c.shape for c in checked}
    if len(shapes) > 1:
        raise StudyError(f"the sites' neighbour lists differ in shape {sorted(shapes)}: they must list k neighbours of the same points")
    S = len(checked)
    out = np.eye(S)
    for i in range(S):
        for j in range(i + 1, S):
            out[i, j] = out[j, i] = _shared_counts(checked[i], checked[j]).mean() / checked[i].shape[1]
    return out


# ---------------------------------------------------------------- linear CKA


def centred_unit(X: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """X (n, D) in float64, columns centred, divided by its Frobenius norm (all zeros if constant),
    then in `dtype` for the products."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 2:
        raise StudyError(f"CKA needs a 2-D cloud of at least 2 points, not shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise StudyError(f"CKA needs a real-valued cloud, not {X.dtype}")
    C = np.array(X, dtype=np.float64)  # a copy: the caller's array is left alone
    if not np.isfinite(C).all():
        raise StudyError("CKA needs finite values: the cloud holds NaN or infinity")
    # scale first (max |x|) so that the mean and the norm cannot overflow, then centre and normalise
    top = np.abs(C).max()
    if top > 0:
        C /= top
    C -= C.mean(axis=0)
    norm = np.linalg.norm(C)
    if norm > 0:
        C /= norm
    return C if dtype == "float64" else C.astype(dtype)


def _frobenius(P: np.ndarray) -> float:
    return float(np.linalg.norm(P.astype(np.float64, copy=False)))  # a float32 product summed in float64


def _self_norm(C: np.ndarray) -> float:
    return _frobenius(C.T @ C)


def _cross(Ca: np.ndarray, Cb: np.ndarray, norm_a: float, norm_b: float) -> float:
    if norm_a == 0.0 or norm_b == 0.0:
        return float("nan")
    return _frobenius(Cb.T @ Ca) ** 2 / (norm_a * norm_b)


def _check_dtype(dtype: str) -> str:
    if dtype not in CKA_DTYPES:
        raise StudyError(f"CKA products are computed in one of {', '.join(CKA_DTYPES)}, not {dtype!r}")
    return dtype


def linear_cka(Xa: np.ndarray, Xb: np.ndarray, *, dtype: str = "float64") -> float:
    """Linear CKA between two representations of the same n points (rows): (n, Da), (n, Db)."""
    dtype = _check_dtype(dtype)
    Ca, Cb = centred_unit(Xa, dtype), centred_unit(Xb, dtype)
    if Ca.shape[0] != Cb.shape[0]:
        raise StudyError(f"CKA compares the same points: {Ca.shape[0]} rows against {Cb.shape[0]}")
    return _cross(Ca, Cb, _self_norm(Ca), _self_norm(Cb))


Cloud = np.ndarray | Callable[[], np.ndarray]


def _load(cloud: Cloud, dtype: str) -> np.ndarray:
    return centred_unit(cloud() if callable(cloud) else cloud, dtype)


def cka_matrix(clouds: Sequence[Cloud], *, memory_budget: int = CKA_MEMORY_BUDGET, dtype: str = "float64") -> np.ndarray:
    """(S, S) float64 linear CKA between every pair of sites (symmetric, 1 on the diagonal, NaN
    for a constant cloud). `clouds`: arrays, or zero-argument callables that return a site's
    (n, D) array (so that 13 sites x 10,000 x 3,072 need not be in memory at once).

    Sites are taken in blocks whose float64 copies fit in `memory_budget` bytes: a block is
    loaded and centred once, its own pairs and self-terms ||X^T X||_F computed, then every later
    site is loaded one at a time and multiplied against the block. Memory: the budget plus two
    sites; a site is loaded once per block before it (once in all when everything fits).
    `dtype`: the products' precision (CKA_DTYPES; the centring is float64 either way)."""
    dtype = _check_dtype(dtype)
    S = len(clouds)
    out = np.full((S, S), np.nan)
    norms: list[float | None] = [None] * S  # ||X^T X||_F of the centred, normalised cloud
    n_rows = None
    start = 0
    while start < S:
        block, used = [], 0
        while start + len(block) < S and (not block or used < memory_budget):
            C = _load(clouds[start + len(block)], dtype)
            n_rows = C.shape[0] if n_rows is None else n_rows
            if C.shape[0] != n_rows:
                raise StudyError(f"CKA compares the same points: site {start + len(block)} has {C.shape[0]} rows, the first {n_rows}")
            if norms[start + len(block)] is None:
                norms[start + len(block)] = _self_norm(C)
            block.append(C)
            used += C.nbytes
        for a, Ca in enumerate(block):
            ia = start + a
            out[ia, ia] = 1.0 if norms[ia] > 0 else np.nan
            for b in range(a + 1, len(block)):
                ib = start + b
                out[ia, ib] = out[ib, ia] = _cross(Ca, block[b], norms[ia], norms[ib])
        for j in range(start + len(block), S):
            Cj = _load(clouds[j], dtype)
            if Cj.shape[0] != n_rows:
                raise StudyError(f"CKA compares the same points: site {j} has {Cj.shape[0]} rows, the first {n_rows}")
            if norms[j] is None:  # needed before site j's own block comes; kept for it
                norms[j] = _self_norm(Cj)
            for a, Ca in enumerate(block):
                out[start + a, j] = out[j, start + a] = _cross(Ca, Cj, norms[start + a], norms[j])
            del Cj
        start += len(block)
    return out
