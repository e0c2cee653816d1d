"""Exact k-nearest neighbours at the speed of a float32 matrix product.

How (and why it is exact):

1. The data are scaled by a power of two (exact) and centred in float64, then rounded
   to a float32 copy x~. Centring matters: the error of a float32 product grows with the
   points' norms, and GPT-2 residual streams sit thousands of units from the origin.
2. BLAS computes the Gram products g_ij = <x~_i, x~_j> tile by tile, only for the upper
   triangle j >= i (the distance matrix is symmetric: half the multiply-adds). A tile is
   1024 rows x 256 columns (1 MiB): memory is O(tile + N k), never N x N.
3. Each worker thread (one per core) runs single-threaded BLAS on its share of the tiles
   and scans each tile at once, while it is in that core's cache, with a Numba kernel
   that finds for every point the kc = k + margin smallest values of a *lower bound* of
   the squared distance, L_ij = (1 - c)(|x~_i|^2 + |x~_j|^2) - 2 g_ij, in buffers owned by
   that worker: the row points' and, by symmetry, the column points'. A buffer takes the
   values below its point's threshold, which drops to the kc-th smallest value seen
   whenever the buffer is full; all diagonal tiles come first, and each of their rows
   selects its kc smallest values at once, so thresholds start tight. The
   constant c covers the rounding of the data to float32 (4u), the worst-case error of a
   float32 dot product of length D (gamma_D = D u / (1 - D u), u = 2^-24) and the
   rounding of the keys (4u), with a 25% cushion; so L_ij <= the exact squared distance.
   A cloud of at most one block (N <= 1024) is a single tile, whose rows hold all their
   products: there the per-row selection of the kc smallest keys is the whole scan.
4. The candidates' distances are recomputed exactly in float64 from the original
   coordinates (by increasing L, stopping once L exceeds the k-th exact distance) and
   sorted by (distance, index). A row is *certified* when the smallest bound among the
   points left out exceeds its k-th exact distance (for the cosine metric, by a slack that
   covers the float64 rounding of the unit rows; see geometry.certification_slack); otherwise it
   is repaired by an exact rescan (one BLAS row of products plus exact recomputation of
   every point the bound cannot exclude). Results therefore equal a float64 brute force
   with ties broken by index, whatever the float32 errors, and are bit-identical for any
   number of threads.

Distances returned: Euclidean, or with ``metric="cosine"`` the cosine distance
1 - cos(x_i, x_j) (as scikit-learn, scipy and DADApy define it). Note that
1 - cos ~ angle^2 / 2 near zero, so ratio-based ID estimates (TwoNN, MLE, GRIDE) under the
cosine distance are half those under an angular or chord distance; for an angle-consistent
ID, normalise the rows (X / |X|) and use the Euclidean metric.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache

import numba as nb
import numpy as np

from . import kernels as kk
from .geometry import Geometry, certification_slack

# Rows per block and columns per panel of float32 products: a 1024 x 256 panel (1 MiB)
# stays in cache between the BLAS call that writes it and the kernel that reads it, and
# BLAS runs such shapes as fast as large ones.
_MAX_BLOCK = 1024
_PANEL = 256
# Memory for repairing uncertified rows (rare): bounds that pass at O(rows x N).
_REPAIR_BYTES = 64 * 2**20


def _candidate_count(k: int, n: int) -> int:
    """How many candidates each point keeps before the exact recomputation: a margin
    beyond k so that float32 near-ties almost never force a repair."""
    return min(n - 1, k + 4 + k // 8)


def _block_rows(n: int) -> int:
    return int(min(n, _MAX_BLOCK))


def _tiles(n: int) -> list[tuple[int, int, int, int]]:
    """(row0, rows, col0, width) of every tile of the upper triangle, in a fixed order:
    every block's diagonal tile, then each block's strip to the right in cache-sized
    panels. Diagonal tiles first: each point's first products are then with its own
    block, all at once, from which it selects its first candidates (see kk.scan_tile)."""
    b = _block_rows(n)
    diagonal = [(row0, min(b, n - row0), row0, min(b, n - row0)) for row0 in range(0, n, b)]
    panels = [
        (row0, rows, col0, min(_PANEL, n - col0))
        for row0, rows, _, _ in diagonal
        for col0 in range(row0 + rows, n, _PANEL)
    ]
    return diagonal + panels


def _worker_count(n_tiles: int) -> int:
    return max(1, min(nb.get_num_threads(), n_tiles))


def _buffer_size(kc: int) -> int:
    """Keys a point's buffer holds before the kc smallest are kept and its threshold
    drops: larger means fewer selections but looser thresholds between them. Sizes from
    2 kc to 4 kc measured alike (kc = 6 and 76, N = 9,335); the smallest saves memory."""
    return 2 * kc + 32


def _scan_all_tiles(geo: Geometry, kc: int, workers: int, select: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-worker candidates (see kernels) after every tile has been computed and
    scanned; ``select=False`` scans diagonal tiles like the others (for the tests).

    Worker w takes tiles w, w + W, w + 2W, ... (a static split: which worker sees which
    pair never depends on timing). Each runs single-threaded BLAS on its tile and scans it
    at once, from its own cache, into buffers only it writes: no locks, no shared state.
    """
    n = geo.X.shape[0]
    tiles = _tiles(n)
    cand_keys = np.empty((workers, n, kc), dtype=np.float32)
    cand_ids = np.empty((workers, n, kc), dtype=np.int64)
    x = geo.xf32
    b = _block_rows(n)

    def work(w: int) -> None:
        buf = np.empty(b * max(b, _PANEL), dtype=np.float32)
        size = _buffer_size(kc)
        tops = np.full(n, kk.EMPTY_KEY, dtype=np.float32)
        counts = np.zeros(n, dtype=np.int64)
        buf_keys = np.empty((n, size), dtype=np.float32)
        buf_ids = np.empty((n, size), dtype=np.int32)
        for row0, rows, col0, width in tiles[w::workers]:
            tile = buf[: rows * width].reshape(rows, width)
            block = x[row0 : row0 + rows]
            np.matmul(block, x[col0 : col0 + width].T, out=tile)
            kk.scan_tile(tile, row0, col0, col0 == row0, select, geo.half_lb, kc, tops, counts, buf_keys, buf_ids)
        kk.buffers_to_candidates(counts, tops, buf_keys, buf_ids, cand_keys[w], cand_ids[w])

    with _single_threaded_blas():
        _in_threads(lambda w, _: work(w), workers, workers)  # one slice per worker index
    return cand_keys, cand_ids


def _select_one_tile(geo: Geometry, kc: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """The candidates of a cloud that is a single tile (N <= the block size), in the
    layout ``_scan_all_tiles`` returns (one worker's, largest key in slot 0).

    The tile is then the whole N x N product matrix, so each row holds all its keys at
    once: a per-row selection of the kc smallest is cheaper than offering them to a
    buffer whose threshold is still loose (see kk.scan_tile, which does the same for
    the diagonal tiles of larger clouds). The candidate sets can differ from the scan's
    only among keys tied with the kc-th, and both pass the same certification, so the
    neighbours returned are the same, bit for bit.
    """
    n = geo.X.shape[0]
    x = geo.xf32
    products = np.empty((n, n), dtype=np.float32)  # at most the scan's tile buffer
    with _single_threaded_blas():
        np.matmul(x, x.T, out=products)
    cand_keys = np.empty((1, n, kc), dtype=np.float32)
    cand_ids = np.empty((1, n, kc), dtype=np.int64)

    def select(lo: int, hi: int) -> None:
        kk.select_rows(products, lo, hi, geo.half_lb, cand_keys[0], cand_ids[0])

    _in_threads(select, n, workers)
    return cand_keys, cand_ids


def _in_threads(task, n_items: int, workers: int) -> None:
    """Run task(lo, hi) on ``workers`` contiguous slices of range(n_items), one per thread
    (the kernels release the GIL); results never depend on which thread runs what."""
    bounds = np.linspace(0, n_items, workers + 1).astype(int)
    if workers == 1:
        task(0, n_items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(task, bounds[w], bounds[w + 1]) for w in range(workers)]:
            future.result()


@contextmanager
def _single_threaded_blas():
    """BLAS limited to one thread while the workers run: parallelism comes from the
    workers, and a multi-threaded BLAS would fight them for the two cores."""
    controller = _blas_controller()
    if controller is None:  # pragma: no cover - threadpoolctl is a declared dependency
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


@cache
def _blas_controller():
    """threadpoolctl's handle on the loaded thread pools, found once: finding them costs
    about 0.5 ms a call (``threadpool_limits`` looks again every time), as much as the
    whole search of a 100-point cloud. The BLAS that np.matmul uses is loaded with NumPy,
    so it is among those found."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        return None
    return ThreadpoolController()


def nearest(
    geo: Geometry, k: int, workers: int | None = None, *, select: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (self excluded) as internal squared distances, indices.
    A single-tile cloud gets its candidates by selection, and a larger one selects those
    of its diagonal tiles, unless ``select=False`` (which forces the buffered scan of
    every key: the tests compare the two)."""
    n = geo.X.shape[0]
    kc = _candidate_count(k, n)
    n_tiles = len(_tiles(n))
    if workers is None:
        workers = _worker_count(n_tiles)
    if select and n_tiles == 1:
        cand_keys, cand_ids = _select_one_tile(geo, kc, workers)
    else:
        cand_keys, cand_ids = _scan_all_tiles(geo, kc, workers, select)

    d2 = np.empty((n, k), dtype=np.float64)
    idx = np.empty((n, k), dtype=np.int64)
    certified = np.empty(n, dtype=np.bool_)

    slack = certification_slack(geo)

    def refine(lo: int, hi: int, keys=cand_keys, ids=cand_ids) -> None:
        kk.refine_candidates(geo.X, geo.s, geo.half_lb, keys, ids, k, d2, idx, certified, lo, hi, *slack)

    _in_threads(refine, n, workers)
    del refine, cand_keys, cand_ids  # free the candidates before any repair

    todo = np.flatnonzero(~certified)
    if todo.size:
        x = geo.xf32
        rows_per_pass = max(1, min(todo.size, _REPAIR_BYTES // (4 * n)))
        strip_buf = np.empty(rows_per_pass * n, dtype=np.float32)
        for start in range(0, todo.size, rows_per_pass):
            rows = todo[start : start + rows_per_pass]
            strip = strip_buf[: rows.size * n].reshape(rows.size, n)
            np.matmul(x[rows], x.T, out=strip)
            kk.rescan_rows(strip, rows, geo.X, geo.s, geo.half_lb, d2, idx, *slack)
    return d2, idx
