"""Numba kernels of the k-nearest-neighbour engine (driven by ``neighbors.py``).

Vocabulary shared by the kernels (all values in the engine's internal, power-of-two
scaled units; see ``neighbors.py``):

* ``G``      a float32 strip of Gram products g_ij = <x~_i, x~_j> of the centred, float32
             copy x~ of the data (computed by BLAS).
* ``half_lb`` float32 (1 - c) * ||x~_j||^2 / 2. With it L_ij = 2 (half_lb_i + half_lb_j - g_ij)
             is a *lower bound* of the exact squared distance, where c bounds every float32
             error (input rounding, the worst-case dot-product error, the key's own rounding;
             see neighbors.py).
* heaps      per point, a max-heap (float32 keys) of the ``kc`` smallest keys seen so far;
             the key of candidate j for point i is half_lb_j - g_ij = L_ij / 2 - half_lb_i
             (half_lb_i is constant along a row, so it is added back only when certifying).
* exact      squared distances recomputed in float64 from the *original* coordinates,
             sum_t (s_i x_it - s_j x_jt)^2, with s a per-row scale (a power of two for
             Euclidean, that over the row norm for cosine).

Every point's result is computed by one thread from a fixed visiting order, so output
is bit-identical whatever the number of threads.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# Reassociation lets LLVM vectorise the float64 reduction; no finite-math assumptions.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


@nb.njit(cache=True, nogil=True, inline="always")
def _heap_replace_top(keys, ids, key, j):
    """Replace the root (largest key) of a max-heap by (key, j) and restore the heap."""
    size = keys.shape[0]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and keys[right] > keys[child]:
            child = right
        if keys[child] <= key:
            break
        keys[pos] = keys[child]
        ids[pos] = ids[child]
        pos = child
    keys[pos] = key
    ids[pos] = j


# Heaps start full of this sentinel instead of +inf, so the scan kernels may be compiled
# with full fast-math (no NaN or Inf can occur in them: the data were checked finite).
EMPTY_KEY = np.float32(3.0e38)
# Products tested at once by one vectorised comparison before any scalar heap work.
# (LLVM vectorises this 64-wide 'any' about 6x better than 16- or 32-wide ones here.)
_CHUNK = 64


@nb.njit(cache=True, nogil=True, fastmath=True)
def _scan_rows(G, r_lo, r_hi, row0, col0, half_lb, heap_keys, heap_ids):
    """Offer products G[r, :] to the heap of row point i = row0 + r, key half_lb[j] - g_ij.
    Most chunks hold no key below the heap's top: a vectorised test rejects them before
    any scalar work."""
    m = G.shape[1]
    full = m - m % _CHUNK
    lbs = half_lb[col0 : col0 + m]
    chunk_keys = np.empty(_CHUNK, dtype=np.float32)
    for r in range(r_lo, r_hi):
        i = row0 + r
        keys = heap_keys[i]
        ids = heap_ids[i]
        top = keys[0]
        row = G[r]
        for c0 in range(0, full, _CHUNK):
            hit = False  # an 'any' of comparisons vectorises; a running min does not
            for q in range(_CHUNK):
                hit |= lbs[c0 + q] - row[c0 + q] < top
            if not hit:
                continue
            for q in range(_CHUNK):
                chunk_keys[q] = lbs[c0 + q] - row[c0 + q]
            for q in range(_CHUNK):
                if chunk_keys[q] < top and col0 + c0 + q != i:
                    _heap_replace_top(keys, ids, chunk_keys[q], col0 + c0 + q)
                    top = keys[0]
        for c in range(full, m):
            key = lbs[c] - row[c]
            if key < top and col0 + c != i:
                _heap_replace_top(keys, ids, key, col0 + c)
                top = keys[0]


@nb.njit(cache=True, nogil=True, fastmath=True)
def _scan_cols(G, c_lo, c_hi, row0, col0, half_lb, heap_keys, heap_ids):
    """Offer products G[:, c] to the heap of column point j = col0 + c, key
    half_lb[i] - g_ij (the symmetry g_ij = g_ji: each off-diagonal tile is computed once).
    The columns' heap tops sit in a small local array for a vectorised test."""
    b = G.shape[0]
    w = c_hi - c_lo
    tops = np.empty(_CHUNK, dtype=np.float32)
    for q in range(_CHUNK):
        # padding columns get a top no key can beat
        tops[q] = heap_keys[col0 + c_lo + q, 0] if q < w else -EMPTY_KEY
    for r in range(b):
        hlbi = half_lb[row0 + r]
        row = G[r]
        hit = False
        if w == _CHUNK:
            for q in range(_CHUNK):
                hit |= hlbi - row[c_lo + q] < tops[q]
        else:
            for q in range(w):
                hit |= hlbi - row[c_lo + q] < tops[q]
        if not hit:
            continue
        for q in range(w):
            key = hlbi - row[c_lo + q]
            if key < tops[q]:
                j = col0 + c_lo + q
                _heap_replace_top(heap_keys[j], heap_ids[j], key, row0 + r)
                tops[q] = heap_keys[j, 0]


@nb.njit(cache=True, nogil=True)
def scan_tile(G, row0, col0, diagonal, half_lb, heap_keys, heap_ids):
    """Offer a tile of products (rows row0.., columns col0..) to the heaps: every row's,
    and, for an off-diagonal tile, every column's (a diagonal tile already holds both
    g_ij and g_ji). Single-threaded on purpose: each worker thread owns its heaps and
    scans the tile its own BLAS call just wrote, while it is still in that core's cache."""
    b, m = G.shape
    _scan_rows(G, 0, b, row0, col0, half_lb, heap_keys, heap_ids)
    if not diagonal:
        for c_lo in range(0, m, _CHUNK):
            _scan_cols(G, c_lo, min(m, c_lo + _CHUNK), row0, col0, half_lb, heap_keys, heap_ids)


_SCALE_LO, _SCALE_HI = 2.0**-60, 2.0**60


@nb.njit(cache=True, nogil=True, fastmath=_FAST)
def exact_sq_dist(X, s, i, j):
    """sum_t (s_i x_it - s_j x_jt)^2 in float64 from the original coordinates."""
    si = s[i]
    sj = s[j]
    a = X[i]
    b = X[j]
    acc = 0.0
    if si == sj and _SCALE_LO <= si <= _SCALE_HI:
        # Euclidean: s is one power of two, so s (a - b) is exact and the scale can be
        # applied once at the end (same value, two fewer products per coordinate); the
        # range check keeps (a - b)^2 and s^2 clear of underflow and overflow
        for t in range(a.shape[0]):
            diff = np.float64(a[t]) - np.float64(b[t])
            acc += diff * diff
        return acc * (si * si)
    for t in range(a.shape[0]):
        diff = si * np.float64(a[t]) - sj * np.float64(b[t])
        acc += diff * diff
    return acc


@nb.njit(cache=True, nogil=True, inline="always")
def _lex_less(d_a, i_a, d_b, i_b):
    return d_a < d_b or (d_a == d_b and i_a < i_b)


@nb.njit(cache=True, nogil=True)
def _sort_by_key(keys, ids):
    """Insertion sort of (key, id) pairs by key, then id: a few dozen entries."""
    for a in range(1, keys.size):
        ka = keys[a]
        ia = ids[a]
        b = a - 1
        while b >= 0 and (keys[b] > ka or (keys[b] == ka and ids[b] > ia)):
            keys[b + 1] = keys[b]
            ids[b + 1] = ids[b]
            b -= 1
        keys[b + 1] = ka
        ids[b + 1] = ia


@nb.njit(cache=True, nogil=True)
def refine_candidates(X, s, half_lb, heap_keys, heap_ids, k, out_d2, out_idx, certified, row_lo, row_hi):
    """Exact distances for the candidates of every worker's heap (heap_keys has shape
    (workers, N, kc)), keeping the k smallest (ties by index).

    Candidates are visited by increasing lower bound L = 2 (key + half_lb_i); once L
    exceeds the current k-th exact distance no later candidate can enter, so usually only
    about k exact distances are computed. The row is *certified* when every point left
    out is provably farther than the k-th exact distance: a point left out by worker w has
    a key >= the top of w's heap, so its L is at least 2 (min_w top_w + half_lb_i). Each
    pair (i, j) was offered to exactly one worker, so no point appears twice.
    Rows row_lo..row_hi-1 only: callers split the rows among threads.
    """
    n_workers, n, kc = heap_keys.shape
    m = n_workers * kc
    keys = np.empty(m, dtype=np.float32)
    ids = np.empty(m, dtype=np.int64)
    for i in range(row_lo, row_hi):
        bound = np.float32(EMPTY_KEY)
        for w in range(n_workers):
            bound = min(bound, heap_keys[w, i, 0])
            for q in range(kc):
                keys[w * kc + q] = heap_keys[w, i, q]
                ids[w * kc + q] = heap_ids[w, i, q]
        _sort_by_key(keys, ids)
        hlbi = np.float64(half_lb[i])
        d = np.empty(k, dtype=np.float64)
        ix = np.empty(k, dtype=np.int64)
        filled = 0
        for q in range(m):
            j = ids[q]
            if j < 0:
                break  # unfilled slots (sentinel keys) sort last
            if filled == k and 2.0 * (np.float64(keys[q]) + hlbi) > d[k - 1]:
                break  # keys ascend: every remaining candidate is provably farther
            e = exact_sq_dist(X, s, i, j)
            if filled == k and not _lex_less(e, j, d[k - 1], ix[k - 1]):
                continue
            pos = filled if filled < k else k - 1
            while pos > 0 and _lex_less(e, j, d[pos - 1], ix[pos - 1]):
                d[pos] = d[pos - 1]
                ix[pos] = ix[pos - 1]
                pos -= 1
            d[pos] = e
            ix[pos] = j
            if filled < k:
                filled += 1
        for q in range(k):
            out_d2[i, q] = d[q]
            out_idx[i, q] = ix[q]
        # a heap that never filled evicted nothing; its top is the sentinel
        certified[i] = 2.0 * (np.float64(bound) + hlbi) > d[k - 1]


@nb.njit(cache=True, nogil=True)
def rescan_rows(G, rows, X, s, half_lb, out_d2, out_idx):
    """Exact repair of rows that could not be certified (``G`` holds their products with
    all points). Any j whose lower bound L_ij does not exceed the current k-th distance
    is recomputed exactly and merged; the k-th distance only shrinks, so a j skipped
    earlier stays provably out."""
    n_rows, n = G.shape
    k = out_d2.shape[1]
    for r in range(n_rows):
        i = rows[r]
        dk = out_d2[i, k - 1]
        ik = out_idx[i, k - 1]
        hlbi = np.float64(half_lb[i])
        for j in range(n):
            if j == i:
                continue
            if 2.0 * (hlbi + np.float64(half_lb[j]) - np.float64(G[r, j])) > dk:
                continue
            known = False
            for q in range(k):
                if out_idx[i, q] == j:
                    known = True
                    break
            if known:
                continue
            e = exact_sq_dist(X, s, i, j)
            if not _lex_less(e, j, dk, ik):
                continue
            pos = k - 1
            while pos > 0 and _lex_less(e, j, out_d2[i, pos - 1], out_idx[i, pos - 1]):
                out_d2[i, pos] = out_d2[i, pos - 1]
                out_idx[i, pos] = out_idx[i, pos - 1]
                pos -= 1
            out_d2[i, pos] = e
            out_idx[i, pos] = j
            dk = out_d2[i, k - 1]
            ik = out_idx[i, k - 1]
