"""Numba kernels of the k-nearest-neighbour engine (driven by ``search.py``).

Vocabulary shared by the kernels (all values in the engine's internal, power-of-two
scaled units; see ``geometry.py``):

* ``G``      a float32 strip of Gram products g_ij = <x~_i, x~_j> of the centred, float32
             copy x~ of the data (computed by BLAS).
* ``half_lb`` float32 (1 - c) * ||x~_j||^2 / 2. With it L_ij = 2 (half_lb_i + half_lb_j - g_ij)
             is a *lower bound* of the exact squared distance, where c bounds every float32
             error (input rounding, the worst-case dot-product error, the key's own rounding;
             see geometry.py).
* keys       the key of candidate j for point i is half_lb_j - g_ij = L_ij / 2 - half_lb_i
             (half_lb_i is constant along a row, so it is added back only when certifying).
* buffers    per point (and worker) during the scan: an unsorted buffer of keys below the
             point's threshold, with their points. When it is full, the kc smallest are
             kept and the threshold drops to the largest of them (keep_smallest), so every
             key left out is >= the threshold, which only decreases.
* candidates per point (and worker) after the scan: the kc smallest keys it was offered,
             in any order but the largest in slot 0 (or, if it was offered fewer, the
             sentinel EMPTY_KEY in slot 0 and id -1 in unfilled slots). Every key left out
             is >= slot 0, the only property refine_candidates needs (it sorts the
             candidates itself). A single-tile cloud gets them from a selection
             (select_rows), a larger one from the buffers of the tile scan (scan_tile).
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
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def _trailing_zeros(typingctx, x):
    """Trailing zero bits of an integer: LLVM's cttz, one instruction (written with Numba's
    public extension API; a loop over the bits would cost more than the work they index)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))  # defined for 0 too

    return x(x), codegen


# Reassociation lets LLVM vectorise the float64 reduction; no finite-math assumptions.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


# Thresholds start at this sentinel instead of +inf (and unfilled candidate slots hold
# it), so the scan kernels may be compiled with full fast-math (no NaN or Inf can occur
# in them: the data were checked finite).
EMPTY_KEY = np.float32(3.0e38)
# Products tested at once by vectorised comparisons: an 'any' test, then, if some key is
# below the threshold, a bit mask of those keys, the only ones that get scalar work.
_CHUNK = 64


# Selection (single-tile clouds, diagonal tiles, full buffers) works on the keys' bit
# patterns mapped to int32 of the same order, where the keys between two bounds can be
# counted by a vectorised compare.
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


@nb.njit(cache=True, nogil=True, inline="always")
def _sort_bracket(bits, ids, size):
    """Stable insertion sort of the pairs (bits, ids)[:size] by bits: a bracket holds a
    few keys, or one key repeated (then it is already in order)."""
    for a in range(1, size):
        ba = bits[a]
        ia = ids[a]
        c = a - 1
        while c >= 0 and bits[c] > ba:
            bits[c + 1] = bits[c]
            ids[c + 1] = ids[c]
            c -= 1
        bits[c + 1] = ba
        ids[c + 1] = ia


# Keys per row sampled to set the selection's threshold, and the size of the final
# bracket (the keys next to the kc-th one) sorted outright.
_SAMPLE = 128
_SLACK = 16


@nb.njit(cache=True, nogil=True, fastmath=True)
def select_rows(G, r_lo, r_hi, half_lb, cand_keys, cand_ids, first=0):
    """For a square tile ``G`` of all the products among points first..first+n-1 (the
    whole Gram matrix of a single-tile cloud, or a diagonal tile): the kc smallest keys
    half_lb[j] - g_ij of every row point i in r_lo..r_hi-1 (tile rows), j != i, found by a
    selection rather than one by one, written to cand_keys[first + i] and cand_ids[first + i]
    (kc = cand_keys.shape[1] <= n - 1; ids are global, first + j) with the largest kept key
    in slot 0. ``half_lb`` is that of the tile's points. Ties at the kc-th key are kept by
    index; the rest of the order is arbitrary but fixed.

    With every key of a row at hand, a scan does scalar work for most of them (its
    threshold is loose until it has seen much of the row). Here an evenly spaced sample
    of the row sets a threshold a little above the kc-th key, one pass keeps the keys at
    or below it (about 2 kc of them; bit masks of chunks, as in _offer_rows), vectorised
    counts narrow those down to a bracket of a few keys around the kc-th, and only that
    bracket is sorted.
    """
    n = G.shape[0]
    kc = cand_keys.shape[1]
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
            # the keys at or below the threshold (in index order), by chunks as in
            # _offer_rows: a bit mask of each chunk, scalar work for its set bits only
            t = np.int32(threshold)
            m = 0
            for c0 in range(0, n, _CHUNK):
                mask = np.uint64(0)
                if c0 + _CHUNK <= n:  # (a constant trip count vectorises best)
                    for q in range(_CHUNK):
                        kept = _ordered_bits(row_bits[_index(c0 + q)]) <= t
                        mask |= (np.uint64(1) << np.uint64(q)) if kept else np.uint64(0)
                else:
                    for q in range(n - c0):
                        kept = _ordered_bits(row_bits[_index(c0 + q)]) <= t
                        mask |= (np.uint64(1) << np.uint64(q)) if kept else np.uint64(0)
                while mask != 0:
                    q, mask = _next_bit(mask)
                    j = c0 + q
                    bits[m] = _ordered_bits(row_bits[j])
                    ids[m] = j
                    m += 1 if j != i else 0
            if m >= kc:
                break
            threshold = highest  # an unlucky sample: keep every other key
        lo, hi, n_lo, n_hi = _narrow(bits, m, kc, lowest, threshold, 0, m, _SLACK)
        out_ids = cand_ids[first + i]
        # keys <= lo are kept; the kc - n_lo smallest of the bracket (lo, hi] fill the
        # rest: gathered in index order and sorted stably, so ties are kept by index
        q = 0
        size = 0
        for p in range(m):  # branch-free: write both, advance where the key belongs
            b = bits[p]
            j = ids[p]
            out_ids[q] = first + j  # q <= n_lo < kc
            q += 1 if b <= lo else 0
            bits[size] = b  # size <= p: the bracket is written behind the reads
            ids[size] = j
            size += 1 if lo < b <= hi else 0
        _sort_bracket(bits, ids, size)
        for p in range(kc - 1 - n_lo):
            out_ids[q] = first + ids[p]
            q += 1
        # the largest kept key, the last taken from the sorted bracket, into slot 0
        out_ids[q] = out_ids[0]
        out_ids[0] = first + ids[kc - 1 - n_lo]
        for p in range(kc):
            cand_keys[first + i, p] = row_keys[out_ids[p] - first]


@nb.njit(cache=True, nogil=True, fastmath=True)
def keep_smallest(keys, ids, m, kc, scratch):
    """Reorder keys[:m] and ids[:m] (m >= kc) so that the kc smallest keys come first,
    the largest of them in slot 0, and return that key: every key left out is >= it.
    Ties at the kc-th key are broken arbitrarily (refine_candidates needs no more).
    ``scratch`` is int32 of at least 3 m: mapped keys, and the bracket's keys and ids.
    The selection of select_rows: vectorised counts narrow a bracket around the kc-th key,
    only the bracket is sorted."""
    bits = keys.view(np.int32)
    mapped = scratch[:m]
    br_bits = scratch[m : 2 * m]
    br_ids = scratch[2 * m : 3 * m]
    lowest = _NOT_A_KEY
    highest = -_NOT_A_KEY - 1
    for q in range(m):
        b = _ordered_bits(bits[q])
        mapped[q] = b
        lowest = min(lowest, b)
        highest = max(highest, b)
    lo, hi, n_lo, _ = _narrow(mapped, m, kc, np.int64(lowest) - 1, np.int64(highest), 0, m, _SLACK)
    # keys <= lo stay, moved to the front (written behind the reads); the bracket (lo, hi]
    # is sorted aside and its kc - n_lo smallest follow them
    front = 0
    size = 0
    for p in range(m):  # branch-free: write both, advance where the key belongs
        b = mapped[p]
        key = keys[p]
        j = ids[p]
        keys[front] = key  # front <= p
        ids[front] = j
        front += 1 if b <= lo else 0
        br_bits[size] = b
        br_ids[size] = j
        size += 1 if lo < b <= hi else 0
    _sort_bracket(br_bits, br_ids, size)
    for p in range(kc - n_lo):
        b = br_bits[p]
        bits[front] = _ordered_bits(b)  # the mapping is its own inverse
        ids[front] = br_ids[p]
        front += 1
    # the largest kept key, the last taken from the bracket, into slot 0
    top = keys[kc - 1]
    keys[kc - 1] = keys[0]
    keys[0] = top
    j = ids[kc - 1]
    ids[kc - 1] = ids[0]
    ids[0] = j
    return top


@nb.njit(cache=True, nogil=True, inline="always")
def _index(c):
    """An index known to be >= 0, as unsigned: an array indexed by c0 + q with c0 >= 0
    unproven is indexed with a wraparound check, which turns the vectorised loads of a
    chunk into gathers (several times slower). Slicing the chunk would avoid it too, but
    each slice costs a reference count."""
    return np.uint64(c)


@nb.njit(cache=True, nogil=True, inline="always")
def _next_bit(mask):
    """Index of the lowest set bit of a nonzero mask, and the mask without it."""
    return _trailing_zeros(mask), mask & (mask - np.uint64(1))


@nb.njit(cache=True, nogil=True, fastmath=True)
def _offer_rows(G, row0, col0, half_lb, kc, tops, counts, buf_keys, buf_ids, scratch):
    """Offer products G[r, :] to the buffer of row point i = row0 + r, key half_lb[j] - g_ij.

    A vectorised 'any' test skips each chunk of 64 keys with none below the threshold;
    in the others (with kc = 76 among N = 9,335 points, most chunks early in the scan),
    a vectorised comparison yields a bit mask and only its set bits get scalar work: each
    such key is appended to the buffer (no heap to sift, no branch on keys that fail)."""
    m = G.shape[1]
    cap = buf_keys.shape[1]
    # (no views of rows in the loops: each costs a reference count, about as much as
    # the vectorised test of a hundred keys)
    for r in range(G.shape[0]):
        i = row0 + r
        top = tops[i]
        size = counts[i]
        for c0 in range(0, m, _CHUNK):
            mask = np.uint64(0)
            if c0 + _CHUNK <= m:  # (a constant trip count vectorises best)
                hit = False
                for q in range(_CHUNK):
                    hit |= half_lb[_index(col0 + c0 + q)] - G[_index(r), _index(c0 + q)] < top
                if not hit:
                    continue
                for q in range(_CHUNK):
                    below = half_lb[_index(col0 + c0 + q)] - G[_index(r), _index(c0 + q)] < top
                    mask |= (np.uint64(1) << np.uint64(q)) if below else np.uint64(0)
            else:
                for q in range(m - c0):
                    below = half_lb[_index(col0 + c0 + q)] - G[_index(r), _index(c0 + q)] < top
                    mask |= (np.uint64(1) << np.uint64(q)) if below else np.uint64(0)
            while mask != 0:
                q, mask = _next_bit(mask)
                j = col0 + c0 + q
                if j == i:
                    continue
                if size == cap:
                    # (the mask's later keys may then exceed the new threshold: kept
                    # anyway, harmless, as any key in a buffer)
                    top = keep_smallest(buf_keys[i], buf_ids[i], size, kc, scratch)
                    size = kc
                buf_keys[i, size] = half_lb[j] - G[r, c0 + q]
                buf_ids[i, size] = j
                size += 1
        tops[i] = top
        counts[i] = size


@nb.njit(cache=True, nogil=True, fastmath=True)
def _offer_cols(G, c_lo, c_hi, row0, col0, half_lb, kc, tops, counts, buf_keys, buf_ids, scratch):
    """Offer products G[:, c] to the buffer of column point j = col0 + c, key
    half_lb[i] - g_ij (the symmetry g_ij = g_ji: each off-diagonal tile is computed once).
    The columns' thresholds and buffer sizes sit in small local arrays, so a row of the
    strip is compared with them by vectorised comparisons, as a chunk in _offer_rows."""
    w = c_hi - c_lo
    cap = buf_keys.shape[1]
    col_tops = np.empty(_CHUNK, dtype=np.float32)
    sizes = np.empty(_CHUNK, dtype=np.int64)
    for q in range(_CHUNK):
        # padding columns get a threshold no key can pass
        col_tops[q] = tops[col0 + c_lo + q] if q < w else -EMPTY_KEY
        sizes[q] = counts[col0 + c_lo + q] if q < w else 0
    for r in range(G.shape[0]):
        hlbi = half_lb[row0 + r]
        mask = np.uint64(0)
        if w == _CHUNK:
            hit = False
            for q in range(_CHUNK):
                hit |= hlbi - G[_index(r), _index(c_lo + q)] < col_tops[q]
            if not hit:
                continue
            for q in range(_CHUNK):
                below = hlbi - G[_index(r), _index(c_lo + q)] < col_tops[q]
                mask |= (np.uint64(1) << np.uint64(q)) if below else np.uint64(0)
        else:
            for q in range(w):
                below = hlbi - G[_index(r), _index(c_lo + q)] < col_tops[q]
                mask |= (np.uint64(1) << np.uint64(q)) if below else np.uint64(0)
        while mask != 0:
            q, mask = _next_bit(mask)
            key = hlbi - G[r, c_lo + q]
            j = col0 + c_lo + q
            size = sizes[q]
            # (the append is written out here and in _offer_rows: one inline helper for
            # both, returning (size, top), made the scan three times slower)
            if size == cap:
                col_tops[q] = keep_smallest(buf_keys[j], buf_ids[j], size, kc, scratch)
                size = kc
            buf_keys[j, size] = key
            buf_ids[j, size] = row0 + r
            sizes[q] = size + 1
    for q in range(w):
        tops[col0 + c_lo + q] = col_tops[q]
        counts[col0 + c_lo + q] = sizes[q]


@nb.njit(cache=True, nogil=True)
def scan_tile(G, row0, col0, diagonal, select, half_lb, kc, tops, counts, buf_keys, buf_ids):
    """Offer a tile of products (rows row0.., columns col0..) to the buffers (with their
    thresholds ``tops`` and sizes ``counts``, all owned by the calling worker): every
    row's, and, for an off-diagonal tile, every column's (a diagonal tile already holds
    both g_ij and g_ji). Single-threaded on purpose: each worker thread scans the tile its
    own BLAS call just wrote, while it is still in that core's cache.

    A diagonal tile holds all the products among its points. When those points' buffers
    are still empty (the engine computes every diagonal tile before any other), and
    ``select`` is set, each row's kc smallest keys are selected at once (select_rows)
    and its threshold starts at the largest of them: tighter than the loose early
    thresholds of a scan, and cheaper than offering the first keys one by one."""
    b, m = G.shape
    scratch = np.empty(3 * buf_keys.shape[1], dtype=np.int32)
    if diagonal and select and b > kc and counts[row0 : row0 + b].max() == 0:
        select_rows(G, 0, b, half_lb[row0 : row0 + b], buf_keys[:, :kc], buf_ids[:, :kc], row0)
        for i in range(row0, row0 + b):
            tops[i] = buf_keys[i, 0]
            counts[i] = kc
        return
    _offer_rows(G, row0, col0, half_lb, kc, tops, counts, buf_keys, buf_ids, scratch)
    if not diagonal:
        for c_lo in range(0, m, _CHUNK):
            c_hi = min(m, c_lo + _CHUNK)
            _offer_cols(G, c_lo, c_hi, row0, col0, half_lb, kc, tops, counts, buf_keys, buf_ids, scratch)


@nb.njit(cache=True, nogil=True)
def buffers_to_candidates(counts, tops, buf_keys, buf_ids, cand_keys, cand_ids):
    """The candidates (kc = cand_keys.shape[1] smallest keys, the largest in slot 0; see
    the module docstring) of every point from its buffer after the scan."""
    kc = cand_keys.shape[1]
    scratch = np.empty(3 * buf_keys.shape[1], dtype=np.int32)
    for i in range(buf_keys.shape[0]):
        size = counts[i]
        if size >= kc:
            keep_smallest(buf_keys[i], buf_ids[i], size, kc, scratch)
            for q in range(kc):
                cand_keys[i, q] = buf_keys[i, q]
                cand_ids[i, q] = buf_ids[i, q]
            continue
        # fewer keys than kc got below the point's threshold, which therefore never moved
        # from where the scan started it: every key left out is at least that. Slot 0
        # holds it as the bound, with no point (id -1): the sentinel (a bound that
        # excludes nothing) for a scan started without one, else the threshold it was
        # given (a row-block task seeded with what the point's own block found)
        cand_keys[i, 0] = tops[i]
        cand_ids[i, 0] = -1
        for q in range(size):
            cand_keys[i, q + 1] = buf_keys[i, q]
            cand_ids[i, q + 1] = buf_ids[i, q]
        for q in range(size + 1, kc):
            cand_keys[i, q] = EMPTY_KEY
            cand_ids[i, q] = -1


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


# The candidates of a row are visited by increasing (key, id) until the bound proves the rest
# farther: usually about k of them. Of the candidates every worker (or, in the row-block search,
# every task that touched the row) kept, refine_candidates keeps the kc smallest (a linear
# selection: a row-block task's row has several hundred), then orders them: up to SORT_MAX
# an insertion sort is fastest (measured: 0.36 s against a heap's 0.56 s for 9,335 points with
# k = 64, kc = 76); beyond (k over about 220), a binary heap, O(kc) to build and O(log kc) per
# visit, beats the sort's O(kc^2) (0.63 s against 0.75 s for 4,300 rows of 532).
SORT_MAX = 256


@nb.njit(cache=True, nogil=True)
def _sort_by_key(keys, ids):
    """Insertion sort of (key, id) pairs by key, then id."""
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


@nb.njit(cache=True, nogil=True, inline="always")
def _before(keys, ids, a, b):
    """Entry a comes before entry b: by key, then by id."""
    return keys[a] < keys[b] or (keys[a] == keys[b] and ids[a] < ids[b])


@nb.njit(cache=True, nogil=True)
def _sift_down(keys, ids, root, size):
    while True:
        child = 2 * root + 1
        if child >= size:
            return
        if child + 1 < size and _before(keys, ids, child + 1, child):
            child += 1
        if not _before(keys, ids, child, root):
            return
        keys[root], keys[child] = keys[child], keys[root]
        ids[root], ids[child] = ids[child], ids[root]
        root = child


@nb.njit(cache=True, nogil=True)
def _heapify(keys, ids, size):
    """Order keys[:size], ids[:size] as a min-heap of (key, id)."""
    for root in range(size // 2 - 1, -1, -1):
        _sift_down(keys, ids, root, size)


@nb.njit(cache=True, nogil=True)
def _pop_smallest(keys, ids, size):
    """(key, id) of the heap's first entry, removed (the heap then holds size - 1)."""
    key, j = keys[0], ids[0]
    keys[0], ids[0] = keys[size - 1], ids[size - 1]
    _sift_down(keys, ids, 0, size - 1)
    return key, j


@nb.njit(cache=True, nogil=True, inline="always")
def _beyond(lower, dk, slack_rel, slack_abs):
    """Whether a lower bound ``lower`` of a squared distance proves the point farther than
    the exact squared distance ``dk``. The bounds are of distances between the rows as the
    engine stores them (s_i x_i rounded to float64), exact_sq_dist computes those between
    the unrounded s_i x_i: the same thing when s is a power of two (Euclidean: no slack), up
    to an absolute slack_abs in distance (plus slack_rel for its summation) when s_i x_i
    are unit vectors (cosine), which matters only among nearly parallel rows."""
    if slack_abs == 0.0:
        return lower > dk
    r = np.sqrt(dk * (1.0 + slack_rel)) + slack_abs
    return lower > r * r


@nb.njit(cache=True, nogil=True)
def refine_candidates(X, s, half_lb, cand_keys, cand_ids, k, out_d2, out_idx, certified, row_lo, row_hi,
                      slack_rel=0.0, slack_abs=0.0):
    """Exact distances for the candidates of every worker (cand_keys has shape
    (workers, N, kc)), keeping the k smallest (ties by index).

    Candidates are visited by increasing lower bound L = 2 (key + half_lb_i); once L
    exceeds the current k-th exact distance no later candidate can enter, so usually only
    about k exact distances are computed. The row is *certified* when every point left
    out is provably farther than the k-th exact distance: a point left out by worker w has
    a key >= w's slot 0, so its L is at least 2 (min_w slot0_w + half_lb_i); of all the
    workers' candidates only the kc smallest are visited, and the largest of them joins
    that minimum (what a single worker's buffer would have left out). Each pair (i, j) was
    offered to exactly one worker, so no point appears twice.
    Rows row_lo..row_hi-1 only: callers split the rows among threads.

    Euclidean distances are symmetric bit for bit (see _one_scale), so a candidate j whose
    row this call has already refined (row_lo <= j < i) and which kept i among its
    neighbours gives its distance from there: about a third of the exact distances (in
    GPT-2 clouds), each a pass over a row of X, for a scan of row j's k indices. That
    pays only when a row of X is much longer than that row of indices (measured with
    k = 64, i.e. 512 bytes of indices: rows of X of 1 to 2 KiB break even), so it is done
    only for rows of X over 5 times as long.
    """
    n_workers, n, kc = cand_keys.shape
    m = n_workers * kc
    keys = np.empty(m, dtype=np.float32)
    ids = np.empty(m, dtype=np.int64)
    scratch = np.empty(3 * m, dtype=np.int32)
    d = np.empty(k, dtype=np.float64)
    ix = np.empty(k, dtype=np.int64)
    reuse = X.shape[1] * X.itemsize > 5 * 8 * k
    kth = np.empty(row_hi - row_lo, dtype=np.float64)  # rows done here: k-th distance
    for i in range(row_lo, row_hi):
        # the row's points from every worker; slots without one (id -1: unfilled, or a
        # bound) are left out here, their keys counting only in the bound
        bound = np.float32(EMPTY_KEY)
        size = 0
        for w in range(n_workers):
            bound = min(bound, cand_keys[w, i, 0])
            for q in range(kc):
                if cand_ids[w, i, q] >= 0:
                    keys[size] = cand_keys[w, i, q]
                    ids[size] = cand_ids[w, i, q]
                    size += 1
        if size > kc:
            # the kc smallest are enough: every point left out is then at least the largest
            # of them, as in a single worker's buffer, which the bound takes in
            bound = min(bound, keep_smallest(keys, ids, size, kc, scratch))
            size = kc
        small = size <= SORT_MAX
        if small:
            _sort_by_key(keys[:size], ids[:size])
        else:
            _heapify(keys, ids, size)
        hlbi = np.float64(half_lb[i])
        filled = 0
        for q in range(size):
            if small:
                key, j = keys[q], ids[q]
            else:
                key, j = _pop_smallest(keys, ids, size - q)
            lower = 2.0 * (np.float64(key) + hlbi)
            if filled == k and _beyond(lower, d[k - 1], slack_rel, slack_abs):
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
        # a worker offered fewer than kc keys below its starting threshold left out only keys
        # at least that (slot 0, the sentinel when it started without one); with kc = n - 1
        # every point is a candidate, so none was left out either
        certified[i] = kc >= n - 1 or _beyond(2.0 * (np.float64(bound) + hlbi), d[k - 1], slack_rel, slack_abs)


@nb.njit(cache=True, nogil=True)
def rescan_rows(G, rows, X, s, half_lb, out_d2, out_idx, slack_rel=0.0, slack_abs=0.0):
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
            if _beyond(2.0 * (hlbi + np.float64(half_lb[j]) - np.float64(G[r, j])), dk, slack_rel, slack_abs):
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
