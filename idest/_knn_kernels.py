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
             A single-tile cloud fills the same arrays by a selection (select_rows) that
             puts the largest key in slot 0, the only slot refine_candidates reads as a
             heap's (it sorts the candidates itself).
* exact      squared distances recomputed in float64 from the *original* coordinates,
             sum_t (s_i x_it - s_j x_jt)^2, with s a per-row scale (a power of two for
             Euclidean, that over the row norm for cosine).

Every point's result is computed by one thread from a fixed visiting order, so output
is bit-identical whatever the number of threads (refine_candidates may take a distance
from a row it refined earlier, but only one equal bit for bit to what it would compute).
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


# Selection (single-tile clouds) works on the keys' bit patterns mapped to int32 of the
# same order, where the keys between two bounds can be counted by a vectorised compare.
_NOT_A_KEY = np.int32(2**31 - 1)  # above every mapped key (it is the image of a NaN)


@nb.njit(cache=True, nogil=True, inline="always")
def _ordered_bits(b):
    """Bits of a float32 as an int32 ordered as the floats are (keeps the sign and
    reverses the magnitudes of negatives; -0 lands just below +0, which only refines the
    order)."""
    return b ^ np.int32(0x7FFFFFFF) if b < 0 else b


@nb.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _count_at_most(bits, m, t):
    count = 0
    for q in range(m):
        count += 1 if bits[q] <= t else 0
    return count


@nb.njit(cache=True, nogil=True, fastmath=True)
def _narrow(bits, m, r, lo, hi, n_lo, n_hi, slack):
    """Bisect the bracket (lo, hi] of the r-th smallest of bits[:m], given the counts
    n_lo < r <= n_hi of values <= lo and <= hi, until at most ``slack`` values lie in it
    (or it holds a single value). Returns lo, hi, n_lo, n_hi. Counting is vectorised,
    so a few passes over the values cost less than a partition's branches."""
    while n_hi - n_lo > slack and hi - lo > 1:
        mid = lo + (hi - lo) // 2
        n_mid = _count_at_most(bits, m, np.int32(mid))
        if n_mid >= r:
            hi = mid
            n_hi = n_mid
        else:
            lo = mid
            n_lo = n_mid
    return lo, hi, n_lo, n_hi


# Keys per row sampled to set the selection's threshold, and the size of the final
# bracket (the keys next to the kc-th one) sorted outright.
_SAMPLE = 128
_SLACK = 16


@nb.njit(cache=True, nogil=True, fastmath=True)
def select_rows(G, r_lo, r_hi, half_lb, heap_keys, heap_ids):
    """For a cloud whose products form a single tile (``G`` is the full N x N Gram
    matrix): the kc smallest keys half_lb[j] - g_ij of every row point i in r_lo..r_hi-1,
    j != i, found by a selection rather than heap insertions, written to heap_keys[i] and
    heap_ids[i] (shape (N, kc)) with the largest kept key in slot 0, as in a heap: every
    key left out is >= it, which is all refine_candidates needs of a heap (it sorts the
    candidates itself). Ties at the kc-th key are kept by index; the rest of the order
    is arbitrary but fixed.

    With every key of a row at hand, a heap scan does scalar heap work for most of them
    (its top is loose until it has seen much of the row). Here an evenly spaced sample
    of the row sets a threshold a little above the kc-th key, one branch-free pass keeps
    the keys at or below it (about 2 kc of them), vectorised counts narrow those down to
    a bracket of a few keys around the kc-th, and only that bracket is sorted.
    """
    n = G.shape[0]
    kc = heap_keys.shape[1]
    row_keys = np.empty(n, dtype=np.float32)
    row_bits = row_keys.view(np.int32)
    bits = np.empty(n, dtype=np.int32)  # kept keys (mapped) and their points
    ids = np.empty(n, dtype=np.int64)
    sample = np.empty(_SAMPLE, dtype=np.int32)
    others = n - 1
    # the sample rank of the kc-th key (expected rank, plus two standard deviations and
    # two): a threshold below the kc-th key is then rare, and only costs a second pass
    expected = kc * _SAMPLE / max(others, 1)
    rank = min(_SAMPLE, int(expected + 2.0 * np.sqrt(expected)) + 3)
    use_sample = others > 2 * kc and others > _SAMPLE
    for i in range(r_lo, r_hi):
        row = G[i]
        for j in range(n):
            row_keys[j] = half_lb[j] - row[j]
        key_i = row_keys[i]
        row_keys[i] = row_keys[1 if i == 0 else 0]  # out of the range below
        lowest = np.int64(_NOT_A_KEY)
        highest = np.int64(-_NOT_A_KEY - 1)
        for j in range(n):
            b = _ordered_bits(row_bits[j])
            lowest = min(lowest, np.int64(b))
            highest = max(highest, np.int64(b))
        lowest -= 1  # (lowest, highest] holds every other key
        row_keys[i] = key_i
        threshold = highest
        if use_sample:
            # evenly spaced points other than i: no randomness; a cloud whose order
            # correlates with distance just gets a looser threshold, or the second pass
            for q in range(_SAMPLE):
                u = q * others // _SAMPLE
                sample[q] = _ordered_bits(row_bits[u + 1 if u >= i else u])
            threshold = _narrow(sample, _SAMPLE, rank, lowest, highest, 0, _SAMPLE, 4)[1]
        while True:
            m = 0
            for j in range(n):  # branch-free: write every key, advance past kept ones
                b = _ordered_bits(row_bits[j])
                bits[m] = b
                ids[m] = j
                m += 1 if b <= threshold and j != i else 0
            if m >= kc:
                break
            threshold = highest  # an unlucky sample: keep every other key
        lo, hi, n_lo, n_hi = _narrow(bits, m, kc, lowest, threshold, 0, m, _SLACK)
        # keys <= lo are kept; the kc - n_lo smallest of the bracket (lo, hi] fill the
        # rest: gathered in index order and sorted stably, so ties are kept by index
        q = 0
        size = 0
        for p in range(m):
            b = bits[p]
            if b <= lo:
                heap_ids[i, q] = ids[p]
                q += 1
            elif b <= hi:
                bits[size] = b  # size <= p: the bracket is written behind the reads
                ids[size] = ids[p]
                size += 1
        for a in range(1, size):  # insertion sort: a few keys, or one key repeated
            ba = bits[a]
            ia = ids[a]
            c = a - 1
            while c >= 0 and bits[c] > ba:
                bits[c + 1] = bits[c]
                ids[c + 1] = ids[c]
                c -= 1
            bits[c + 1] = ba
            ids[c + 1] = ia
        for p in range(kc - 1 - n_lo):
            heap_ids[i, q] = ids[p]
            q += 1
        # the largest kept key, the last taken from the sorted bracket, into slot 0
        heap_ids[i, q] = heap_ids[i, 0]
        heap_ids[i, 0] = ids[kc - 1 - n_lo]
        for p in range(kc):
            heap_keys[i, p] = row_keys[heap_ids[i, p]]


_SCALE_LO, _SCALE_HI = 2.0**-60, 2.0**60


@nb.njit(cache=True, nogil=True, inline="always")
def _one_scale(si, sj):
    """Whether exact_sq_dist scales once, after summing (x_it - x_jt)^2 (Euclidean data).
    That sum is symmetric in i and j bit for bit: x_it - x_jt and x_jt - x_it round to
    opposite values, whose squares are equal, and are added in the same order."""
    return si == sj and _SCALE_LO <= si <= _SCALE_HI


@nb.njit(cache=True, nogil=True, fastmath=_FAST)
def exact_sq_dist(X, s, i, j):
    """sum_t (s_i x_it - s_j x_jt)^2 in float64 from the original coordinates."""
    si = s[i]
    sj = s[j]
    a = X[i]
    b = X[j]
    acc = 0.0
    if _one_scale(si, sj):
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

    Euclidean distances are symmetric bit for bit (see _one_scale), so a candidate j whose
    row this call has already refined (row_lo <= j < i) and which kept i among its
    neighbours gives its distance from there: about a third of the exact distances (in
    GPT-2 clouds), each a pass over a row of X, for a scan of row j's k indices. That
    pays only when a row of X is much longer than that row of indices (measured with
    k = 64, i.e. 512 bytes of indices: rows of X of 1 to 2 KiB break even), so it is done
    only for rows of X over 5 times as long.
    """
    n_workers, n, kc = heap_keys.shape
    m = n_workers * kc
    keys = np.empty(m, dtype=np.float32)
    ids = np.empty(m, dtype=np.int64)
    d = np.empty(k, dtype=np.float64)
    ix = np.empty(k, dtype=np.int64)
    reuse = X.shape[1] * X.itemsize > 5 * 8 * k
    kth = np.empty(row_hi - row_lo, dtype=np.float64)  # rows done here: k-th distance
    for i in range(row_lo, row_hi):
        bound = np.float32(EMPTY_KEY)
        for w in range(n_workers):
            bound = min(bound, heap_keys[w, i, 0])
            for q in range(kc):
                keys[w * kc + q] = heap_keys[w, i, q]
                ids[w * kc + q] = heap_ids[w, i, q]
        _sort_by_key(keys, ids)
        hlbi = np.float64(half_lb[i])
        filled = 0
        for q in range(m):
            j = ids[q]
            if j < 0:
                break  # unfilled slots (sentinel keys) sort last
            lower = 2.0 * (np.float64(keys[q]) + hlbi)
            if filled == k and lower > d[k - 1]:
                break  # keys ascend: every remaining candidate is provably farther
            known = False
            # (lower > row j's k-th distance: i is provably not among j's neighbours)
            if reuse and row_lo <= j < i and lower <= kth[j - row_lo] and _one_scale(s[i], s[j]):
                for p in range(k):
                    if out_idx[j, p] == i:
                        e = out_d2[j, p]
                        known = True
                        break
            if not known:
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
        kth[i - row_lo] = d[k - 1]
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
