"""The exact k-NN search cut into independent tasks over row groups, for engines that run
them in other processes or on other machines (``idest.blocked_knn`` is the public side).

The rows 0..N-1 are cut into groups g = [bounds[g], bounds[g+1]). The upper triangle of
the product matrix is cut along them:

* ``scan_pair(geo, bounds, g, h, kc)`` (g <= h) computes the tiles between group g's rows
  and group h's columns (for g == h the group's own upper triangle, diagonal tiles first,
  as ``search._tiles`` orders a whole cloud), scanning each tile into buffers owned by
  the task, exactly as one worker thread of ``search.nearest`` does. Every unordered pair
  of points is offered to exactly one task, so the candidates of all tasks together are
  what ``search.nearest`` gets from its worker threads.
* ``refine_group(geo, bounds, g, parts, k)`` takes the candidates of group g's rows from
  every pair task that touched them and runs the same exact recomputation, certification
  and repair (``kernels.refine_candidates``, ``kernels.rescan_rows``).

Why the merged result is bit-identical to ``search.nearest``: a certified or repaired row
holds the k smallest exact float64 distances with ties broken by index, whatever the
candidates were (see ``search``'s docstring); only the speed depends on how the triangle
is cut. Half the products of a full-row search are saved, as in process.
"""

from __future__ import annotations

import numpy as np

from . import kernels as kk
from .geometry import Geometry, certification_slack

# The same constants and sizes as the in-process search, so a task scans its tiles at the
# same speed as one of its worker threads.
from .search import _MAX_BLOCK, _PANEL, _REPAIR_BYTES, _buffer_size, _candidate_count, _single_threaded_blas


def candidate_count(k: int, n: int) -> int:
    """Candidates kept per point and task (the in-process margin beyond k)."""
    return _candidate_count(k, n)


def _local_tiles(n_rows: int, n_cols: int, diagonal: bool) -> list[tuple[int, int, int, int]]:
    """(row0, rows, col0, width) in the task's local numbering (rows 0..n_rows-1, columns
    after them when the pair is off the diagonal): for a diagonal pair every 1024-row
    block's diagonal tile, then its strip to the right; otherwise every block's panels."""
    b = min(n_rows, _MAX_BLOCK)
    blocks = [(row0, min(b, n_rows - row0)) for row0 in range(0, n_rows, b)]
    if diagonal:
        first = [(row0, rows, row0, rows) for row0, rows in blocks]
        rest = [(row0, rows, col0, min(_PANEL, n_rows - col0)) for row0, rows in blocks for col0 in range(row0 + rows, n_rows, _PANEL)]
        return first + rest
    return [(row0, rows, n_rows + c0, min(_PANEL, n_cols - c0)) for row0, rows in blocks for c0 in range(0, n_cols, _PANEL)]


def scan_pair(geo: Geometry, bounds: tuple[int, ...], g: int, h: int, kc: int,
              thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (keys float32, global ids int32; shape (rows of g [+ rows of h], kc), the
    largest key of each row in slot 0, see kernels) from the tiles between groups g <= h.

    ``thresholds`` (float32, one per row of g [+ h], in that order) start each point's
    buffer below the sentinel: keys at or above it are left out from the first tile, and a
    point that gets fewer than kc keys below it reports it as its bound (slot 0). Given the
    kc-th key each point found within its own group (``PairCandidates.thresholds()`` of
    the diagonal pairs), an off-diagonal pair does far less buffering than from scratch; the
    row's bound, and so its certification, is the same (the diagonal pair reports that
    threshold itself)."""
    a0, a1 = bounds[g], bounds[g + 1]
    b0, b1 = bounds[h], bounds[h + 1]
    diagonal = g == h
    if diagonal:
        x = geo.xf32[a0:a1]
        half_lb = np.ascontiguousarray(geo.half_lb[a0:a1])
        to_global = np.arange(a0, a1)
    else:
        x = np.concatenate([geo.xf32[a0:a1], geo.xf32[b0:b1]])
        half_lb = np.concatenate([geo.half_lb[a0:a1], geo.half_lb[b0:b1]])
        to_global = np.concatenate([np.arange(a0, a1), np.arange(b0, b1)])
    n_local = x.shape[0]
    n_rows = a1 - a0
    tiles = _local_tiles(n_rows, n_local - n_rows, diagonal)
    size = _buffer_size(kc)
    if thresholds is None:
        tops = np.full(n_local, kk.EMPTY_KEY, dtype=np.float32)
    elif thresholds.shape != (n_local,):
        raise ValueError(f"pair ({g}, {h}) needs {n_local} thresholds (its rows), got shape {thresholds.shape}.")
    else:
        tops = np.array(thresholds, dtype=np.float32)
    counts = np.zeros(n_local, dtype=np.int64)
    buf_keys = np.empty((n_local, size), dtype=np.float32)
    buf_ids = np.empty((n_local, size), dtype=np.int32)
    buf = np.empty(_MAX_BLOCK * max(_MAX_BLOCK, _PANEL), dtype=np.float32)
    with _single_threaded_blas():
        for row0, rows, col0, width in tiles:
            tile = buf[: rows * width].reshape(rows, width)
            np.matmul(x[row0 : row0 + rows], x[col0 : col0 + width].T, out=tile)
            kk.scan_tile(tile, row0, col0, diagonal and col0 == row0, True, half_lb, kc, tops, counts, buf_keys, buf_ids)
    keys = np.empty((n_local, kc), dtype=np.float32)
    ids = np.empty((n_local, kc), dtype=np.int64)
    kk.buffers_to_candidates(counts, tops, buf_keys, buf_ids, keys, ids)
    # local ids -> global (unfilled slots keep -1); int32 halves what travels between processes
    filled = ids >= 0
    ids[filled] = to_global[ids[filled]]
    return keys, ids.astype(np.int32)


def refine_group(geo: Geometry, bounds: tuple[int, ...], g: int, parts: list[tuple[np.ndarray, np.ndarray]],
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours (internal squared distances float64, indices int64; (rows of g, k))
    of group g's rows from ``parts``: for every pair task touching g, the (keys, ids) of
    g's rows, in any order.

    The kernels index candidates and results by global row, so the arrays are shaped for
    all N rows but only group g's are written: untouched pages of these large arrays are
    never given memory."""
    n = geo.X.shape[0]
    a0, a1 = bounds[g], bounds[g + 1]
    kc = parts[0][0].shape[1]
    cand_keys = np.empty((len(parts), n, kc), dtype=np.float32)
    cand_ids = np.empty((len(parts), n, kc), dtype=np.int64)
    for w, (keys, ids) in enumerate(parts):
        cand_keys[w, a0:a1] = keys
        cand_ids[w, a0:a1] = ids
    d2 = np.empty((n, k), dtype=np.float64)
    idx = np.empty((n, k), dtype=np.int64)
    certified = np.ones(n, dtype=np.bool_)
    slack = certification_slack(geo)
    kk.refine_candidates(geo.X, geo.s, geo.half_lb, cand_keys, cand_ids, k, d2, idx, certified, a0, a1, *slack)
    del cand_keys, cand_ids
    todo = a0 + np.flatnonzero(~certified[a0:a1])
    if todo.size:
        x = geo.xf32
        rows_per_pass = max(1, min(todo.size, _REPAIR_BYTES // (4 * n)))
        with _single_threaded_blas():
            for start in range(0, todo.size, rows_per_pass):
                rows = todo[start : start + rows_per_pass]
                strip = np.matmul(x[rows], x.T)
                kk.rescan_rows(strip, rows, geo.X, geo.s, geo.half_lb, d2, idx, *slack)
    return d2[a0:a1].copy(), idx[a0:a1].copy()
