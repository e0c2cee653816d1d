"""Numba kernels of the kNN engine that make one pass over the raw (N, D) data: row hashes
for the duplicates, scaled norms, means and the centred float32 copy for the geometry.
Each is small and compiled once (``cache=True``) for float32 and float64 inputs.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def row_hashes(X):
    """64-bit FNV-1a hash of each row's values (as float64, with -0.0 folded into 0.0).

    Equal rows get equal hashes; the caller confirms candidate pairs by comparing values,
    so collisions cost time, never correctness.
    """
    n, d = X.shape
    out = np.empty(n, dtype=np.uint64)
    prime = np.uint64(1099511628211)
    buf = np.empty(1, dtype=np.float64)
    bits = buf.view(np.uint64)
    for i in range(n):
        h = np.uint64(14695981039346656037)
        for j in range(d):
            buf[0] = np.float64(X[i, j]) + 0.0  # -0.0 + 0.0 == +0.0: equal values, equal bits
            h = (h ^ bits[0]) * prime
        out[i] = h
    return out


@nb.njit(cache=True, nogil=True)
def mark_repeated_rows(X, order, hashes):
    """Flag rows equal (value by value) to an earlier row.

    ``order`` sorts ``hashes`` stably, so within a run of equal hashes rows appear by
    increasing index and the first copy of each distinct row is the one kept.
    """
    n, d = X.shape
    repeated = np.zeros(n, dtype=np.bool_)
    start = 0
    while start < n:
        stop = start + 1
        while stop < n and hashes[order[stop]] == hashes[order[start]]:
            stop += 1
        if stop - start > 1:
            for a in range(start + 1, stop):
                ia = order[a]
                for b in range(start, a):
                    ib = order[b]
                    if repeated[ib]:
                        continue  # compare only against kept representatives
                    same = True
                    for j in range(d):
                        if X[ia, j] != X[ib, j]:
                            same = False
                            break
                    if same:
                        repeated[ia] = True
                        break
        start = stop
    return repeated


@nb.njit(cache=True, nogil=True)
def row_sq_norms(A):
    """Squared Euclidean norm of each row, accumulated in float64."""
    n, d = A.shape
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        s = 0.0
        for j in range(d):
            v = np.float64(A[i, j])
            s += v * v
        out[i] = s
    return out


@nb.njit(cache=True, nogil=True)
def scaled_centered_f32(X, row_scale, mean, out):
    """out[i] = float32(row_scale[i] * X[i] - mean), computed in float64 before rounding.

    Centring before the float32 cast is what keeps the Gram-trick distances accurate for
    data far from the origin (the error of a float32 product scales with the norms).
    """
    n, d = X.shape
    for i in range(n):
        s = row_scale[i]
        for j in range(d):
            out[i, j] = np.float32(s * np.float64(X[i, j]) - mean[j])


@nb.njit(cache=True, nogil=True)
def scaled_column_mean(X, row_scale):
    """Column means of row_scale[:, None] * X in float64, without the (N, D) temporary."""
    n, d = X.shape
    acc = np.zeros(d, dtype=np.float64)
    for i in range(n):
        s = row_scale[i]
        for j in range(d):
            acc[j] += s * np.float64(X[i, j])
    return acc / n


@nb.njit(cache=True, nogil=True)
def scaled_row_norms(X, scale):
    """Euclidean norm of each row of scale * X in float64 (scale is a power of two)."""
    n, d = X.shape
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        s = 0.0
        for j in range(d):
            v = scale * np.float64(X[i, j])
            s += v * v
        out[i] = np.sqrt(s)
    return out
