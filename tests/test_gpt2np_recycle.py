"""The memory of kept tensors is reused by later runs only once nothing refers to it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import gpt2np
from gpt2np.recycle import MIN_BYTES, BufferPool

T = 600  # the tiny model's (4, T, T) scores and patterns are 5.5 MiB: pooled
PATTERN = "blocks.0.attn.hook_pattern"


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return gpt2np.load_model(tiny_model_dir)


def _ids(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 50257, size=T)


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_a_live_cache_is_never_written_by_a_later_run(model):
    _, first = model.run_with_cache(_ids(0))
    saved = {name: np.array(a) for name, a in first.items()}
    _, second = model.run_with_cache(_ids(1))
    for name, a in first.items():
        np.testing.assert_array_equal(a, saved[name], err_msg=name)
        assert not np.shares_memory(a, second[name]), name
    assert not np.array_equal(first[PATTERN], second[PATTERN])


def test_a_slice_kept_from_a_dropped_cache_keeps_its_memory(model):
    _, cache = model.run_with_cache(_ids(0), names=PATTERN)
    head = cache[PATTERN][1:3, 100:]  # a view: the cache itself is dropped below
    saved = head.copy()
    del cache
    _, other = model.run_with_cache(_ids(1), names=PATTERN)
    np.testing.assert_array_equal(head, saved)
    assert not np.shares_memory(head, other[PATTERN])


def test_a_dropped_cache_is_reused_and_the_results_are_unchanged(model):
    logits, cache = model.run_with_cache(_ids(2))
    addresses = {_address(a) for a in cache.values() if a.nbytes >= MIN_BYTES}
    assert len(addresses) >= 4  # scores and patterns of both blocks at least
    expected = {name: np.array(a) for name, a in cache.items()}
    held = model._pool.nbytes
    del cache
    again, cache = model.run_with_cache(_ids(2))
    assert {_address(a) for a in cache.values() if a.nbytes >= MIN_BYTES} == addresses
    assert model._pool.nbytes == held
    np.testing.assert_array_equal(again, logits)
    for name, a in cache.items():
        np.testing.assert_array_equal(a, expected[name], err_msg=name)


def test_a_free_block_two_runs_leave_unused_is_released(model):
    small = "*hook_resid_post"  # (T, 64) arrays, too small to be pooled; the logits and scores are
    model.release_memory()
    model.run_with_cache(_ids(3), names=small)
    baseline = model._pool.nbytes
    logits, cache = model.run_with_cache(_ids(3))
    # both blocks' scores and patterns are kept; the small run's room for scores holds one of them
    assert model._pool.nbytes == baseline + 3 * 4 * T * T * 4
    del logits, cache
    model.run_with_cache(_ids(3), names=small)
    model.run_with_cache(_ids(3), names=small)
    assert model._pool.nbytes > baseline  # kept for a later run like the full one
    model.run_with_cache(_ids(3), names=small)
    assert model._pool.nbytes == baseline


def test_release_memory_gives_back_only_what_no_array_uses(model):
    logits, cache = model.run_with_cache(_ids(4), names=PATTERN)
    saved = np.array(cache[PATTERN])
    model.release_memory()
    assert model._pool.nbytes == cache[PATTERN].nbytes + logits.nbytes  # the scores' room is gone
    np.testing.assert_array_equal(cache[PATTERN], saved)
    del cache, logits
    model.release_memory()
    assert model._pool.nbytes == 0


def test_pool_keep_copies_outside_arrays_and_passes_its_own():
    pool = BufferPool()
    outside = np.arange(MIN_BYTES, dtype=np.float64)
    kept = pool.keep(outside)
    assert kept is not outside and not np.shares_memory(kept, outside) and pool.owns(kept)
    np.testing.assert_array_equal(kept, outside)
    assert pool.keep(kept) is kept
    small = np.ones(10)
    assert pool.keep(small) is small


def test_shorter_runs_reuse_the_blocks_of_longer_ones(model):
    model.release_memory()
    logits, cache = model.run_with_cache(_ids(5))
    addresses = {_address(a) for a in [logits, *cache.values()] if a.nbytes >= MIN_BYTES}
    held = model._pool.nbytes
    del logits, cache
    for t in (560, 520, 480):  # (t / T)^2 >= 1/2: every block is at most twice the request
        logits, cache = model.run_with_cache(_ids(5)[:t])
        pooled = [a for a in [logits, *cache.values()] if a.nbytes >= MIN_BYTES]
        assert {_address(a) for a in pooled} == addresses and model._pool.nbytes == held, t
        assert all(a.flags.c_contiguous and a.flags.writeable for a in pooled)
        del logits, cache, pooled


def test_the_pool_picks_the_smallest_free_block_that_fits():
    pool = BufferPool()
    big, mid = pool.empty((4 * MIN_BYTES,), np.uint8), pool.empty((2 * MIN_BYTES,), np.uint8)
    big_at, mid_at = _address(big), _address(mid)
    del big, mid  # (holding their .base would keep the blocks in use)
    pool.start_run()
    a = pool.empty((2 * MIN_BYTES - 8,), np.uint8)
    assert _address(a) == mid_at  # not the 4 MiB block, though it fits too
    b = pool.empty((2 * MIN_BYTES,), np.uint8)
    assert _address(b) == big_at  # 4 MiB is at most twice the request
    c = pool.empty((MIN_BYTES,), np.uint8)
    assert _address(c) not in (big_at, mid_at) and pool.nbytes == 7 * MIN_BYTES


def test_runs_in_several_threads_never_share_memory(model):
    from concurrent.futures import ThreadPoolExecutor

    seeds = [10, 11, 12, 13, 14, 15]
    expected = {s: model.run_with_cache(_ids(s), names=PATTERN)[1][PATTERN].copy() for s in seeds}

    def run(seed):
        return seed, model.run_with_cache(_ids(seed), names=PATTERN)[1][PATTERN]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible while they share the pool
    try:
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(run, seeds * 2))
    finally:
        sys.setswitchinterval(interval)
    for seed, pattern in results:
        np.testing.assert_array_equal(pattern, expected[seed])
    for a in range(len(results)):
        for b in range(a):
            assert not np.shares_memory(results[a][1], results[b][1])
