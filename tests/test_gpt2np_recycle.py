"""The memory of kept tensors is reused by later runs only once nothing refers to it."""

from __future__ import annotations

from collections import Counter

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


def test_a_run_first_releases_free_memory_it_will_not_use(model):
    _, cache = model.run_with_cache(_ids(3))
    assert model._pool.nbytes >= 4 * 4 * T * T * 4
    del cache
    _, resid = model.run_with_cache(_ids(3), names="*hook_resid_post")  # (T, 64) arrays: not pooled
    assert model._pool.nbytes == 0


def test_release_memory_gives_back_only_what_no_array_uses(model):
    _, cache = model.run_with_cache(_ids(4), names=PATTERN)
    saved = np.array(cache[PATTERN])
    model.release_memory()
    assert model._pool.nbytes == cache[PATTERN].nbytes
    np.testing.assert_array_equal(cache[PATTERN], saved)
    del cache
    model.release_memory()
    assert model._pool.nbytes == 0


def test_pool_keep_copies_outside_arrays_and_passes_its_own():
    pool = BufferPool()
    pool.plan(Counter({8 * MIN_BYTES: 1}))
    outside = np.arange(MIN_BYTES, dtype=np.float64)
    kept = pool.keep(outside)
    assert kept is not outside and not np.shares_memory(kept, outside) and pool.owns(kept)
    np.testing.assert_array_equal(kept, outside)
    assert pool.keep(kept) is kept
    small = np.ones(10)
    assert pool.keep(small) is small


def test_runs_of_changing_length_hold_only_the_last_runs_memory(model):
    for t in (600, 560, 520, 600):
        _, cache = model.run_with_cache(_ids(5)[:t])
        pooled = sum(a.nbytes for a in cache.values() if a.nbytes >= MIN_BYTES)
        assert model._pool.nbytes == pooled, t
        del cache
