"""The three (T, T) steps of causal attention, done without the wasted half.

A query at position t sees only keys 0..t, so the upper triangle of every (T, T) head is known in
advance (scores −inf, pattern 0). Each head is processed in blocks of `ROWS` queries, each
against only the keys up to the block's last row; the rest of the block is filled, not computed.
At T = 1024 that skips 3/8 of the products and of the softmax, and keeps every block small enough
to stay in the CPU cache between its steps. The results equal the whole-array computation up to
the rounding of a sum taken in another order (the skipped terms are exact zeros).

Sequences of at most ROWS tokens are one row block per head, so nothing is skipped: the three
steps are then taken for every head of the batch at once (stacked products, one softmax), since
a batch of short sequences (B = 64, T = 20: 768 heads of 20 x 20) otherwise spends more time in
the per-head Python loop than in the arithmetic. The same products, the same values.

`full=True` computes every entry: needed when a hook has edited the scores or the pattern, since
the edit may have put something into the upper triangle.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROWS = 256
SMALL = 1 << 20  # scores (B·H·T·T entries) small enough for one thread's softmax (about 1 ms)


def _row_blocks(t: int):
    for r0 in range(0, t, ROWS):
        yield r0, min(r0 + ROWS, t)


def scores(q: np.ndarray, k: np.ndarray, scale: float, mask: np.ndarray, out: np.ndarray) -> np.ndarray:
    """(q·kᵀ)·scale + mask: (B, H, T, E) x2 -> (B, H, T, T), into `out`. `mask` is additive and
    causal: (T, T), or (B, 1, T, T) when padded keys are hidden as well."""
    b, h, t, _ = q.shape
    scale = q.dtype.type(scale)
    # A power-of-two scale (1/8 for every GPT-2 size) is exact, so it can scale q (T x E) instead
    # of the scores (T x T) without changing a bit.
    pre_scaled = math.frexp(scale)[0] == 0.5
    if t <= ROWS:
        return _short_scores(q, k, scale, pre_scaled, mask, out)
    for i, j in np.ndindex(b, h):  # sequential: each product already uses every core (BLAS)
        head_q = q[i, j] * scale if pre_scaled else q[i, j]
        for r0, r1 in _row_blocks(t):
            block = out[i, j, r0:r1, :r1]
            np.matmul(head_q[r0:r1], k[i, j, :r1].T, out=block)
            if not pre_scaled:
                block *= scale
            if mask.ndim == 2:  # causal alone: left of the diagonal square the mask is all 0
                block[:, r0:] += mask[r0:r1, r0:r1]
            else:
                block += mask[i, 0, r0:r1, :r1]
            out[i, j, r0:r1, r1:] = -np.inf
    return out


def _short_scores(q: np.ndarray, k: np.ndarray, scale, pre_scaled: bool, mask: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`scores` when every head is one row block (T <= ROWS): the same products, taken for all
    heads of the batch in one stacked matmul. A batch of short sequences (B = 64, T = 20: 768
    heads of 20 x 20) spent more time in the per-head Python loop than in the products."""
    np.matmul(q * scale if pre_scaled else q, k.swapaxes(-1, -2), out=out)
    if not pre_scaled:
        out *= scale
    out += mask  # (T, T) or (B, 1, T, T), broadcast over the heads
    return out


def softmax_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """ops.softmax written into `out` (which may be `x` itself), one pass at a time."""
    out = np.subtract(x, np.max(x, axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= np.sum(out, axis=-1, keepdims=True)
    return out


def pattern(scores: np.ndarray, out: np.ndarray, full: bool = False) -> np.ndarray:
    """Softmax over the keys, into `out`; `out=scores` overwrites the scores."""
    if full:
        return softmax_into(scores, out=out)
    t = scores.shape[-1]
    if t <= ROWS:  # one row block per head: whole heads at a time
        if scores.size <= SMALL:  # handing it to other threads would cost more than it saves
            return softmax_into(scores, out=out)
        _on_every_core(lambda part: [softmax_into(scores[i], out=out[i]) for i in part], list(range(scores.shape[0])))
        return out

    def heads(part: list[tuple[int, int]]) -> None:
        for i, j in part:
            for r0, r1 in _row_blocks(t):
                softmax_into(scores[i, j, r0:r1, :r1], out=out[i, j, r0:r1, :r1])
                out[i, j, r0:r1, r1:] = 0.0

    _on_every_core(heads, list(np.ndindex(scores.shape[:2])))
    return out


def _on_every_core(task, items: list) -> None:
    """task(part) for parts of `items` dealt round-robin, one per core, side by side. For
    NumPy's element-wise passes, which use one core each (unlike the BLAS products); each item
    is done by one thread in the same order, so results do not depend on the split."""
    global _executor
    workers = min(_CORES, len(items))
    if workers <= 1:
        task(items)
        return
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(_CORES, thread_name_prefix="gpt2np")
    for future in [_executor.submit(task, items[w::workers]) for w in range(workers)]:
        future.result()


_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def weighted_values(pattern: np.ndarray, v: np.ndarray, full: bool = False) -> np.ndarray:
    """pattern @ v: (B, H, T, T) x (B, H, T, E) -> (B, H, T, E)."""
    if full:
        return pattern @ v
    b, h, t, e = v.shape
    if t <= ROWS:
        return np.matmul(pattern, v)  # one row block per head: every head in one stacked product
    z = np.empty_like(v)
    for i, j in np.ndindex(b, h):
        for r0, r1 in _row_blocks(t):
            np.matmul(pattern[i, j, r0:r1, :r1], v[i, j, :r1], out=z[i, j, r0:r1])
    return z
