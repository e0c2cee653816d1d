"""The exact neighbour engine against a float64 brute force (idest.knn)."""

import numpy as np
import pytest

import idest
import idest.neighbors as neighbors
from idest._validate import as_points


def brute_force(X, k, metric="euclidean"):
    """float64 reference: every pairwise distance from the differences (no Gram trick),
    ties ordered by index (lexsort is stable on the index key)."""
    X = np.asarray(X, dtype=np.float64)
    if metric == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    diff = X[:, None, :] - X[None, :, :]
    d2 = np.einsum("ijk,ijk->ij", diff, diff)
    dist = 0.5 * d2 if metric == "cosine" else np.sqrt(d2)
    np.fill_diagonal(dist, np.inf)
    n = len(X)
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), dist), axis=1)[:, :k]
    return np.take_along_axis(dist, order, axis=1), order


def gpt2_like(n, d=64, seed=0, offset=1000.0, dtype=np.float32):
    """A curved low-dimensional cloud far from the origin, as GPT-2 residual streams are."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 5))
    X = np.tanh(z @ rng.standard_normal((5, 24))) @ rng.standard_normal((24, d))
    return (X + offset).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 7])
def test_matches_brute_force_far_from_origin(dtype, k):
    # +1000 on every coordinate: float32 Gram products alone would lose the neighbours
    X = gpt2_like(300, dtype=dtype)
    dist, idx = idest.knn(X, k)
    ref_d, ref_i = brute_force(X, k)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-12)


def test_float32_products_alone_would_fail_here():
    # guards the test above: without centring and exact recomputation, float32 distances
    # of this data are wrong by far more than our tolerance
    X = gpt2_like(300).astype(np.float32)
    sq = (X.astype(np.float32) ** 2).sum(1)
    approx = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0))
    ref_d, _ = brute_force(X, 1)
    np.fill_diagonal(approx, np.inf)
    assert np.max(np.abs(approx.min(1) - ref_d[:, 0]) / ref_d[:, 0]) > 1e-3


def test_cosine_matches_brute_force():
    X = gpt2_like(250, offset=0.5, dtype=np.float64)
    dist, idx = idest.knn(X, 5, metric="cosine")
    ref_d, ref_i = brute_force(X, 5, metric="cosine")
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-9)


def test_ties_on_a_lattice_are_ordered_by_index():
    # integer grid: every point has many neighbours at exactly the same distance
    g = np.arange(6.0)
    X = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) + 1000.0
    dist, idx = idest.knn(X, 8)
    ref_d, ref_i = brute_force(X, 8)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_array_equal(dist, ref_d)


def test_duplicates_show_as_zero_distance():
    X = gpt2_like(50, dtype=np.float64)
    X = np.vstack([X, X[:3]])
    dist, idx = idest.knn(X, 1)
    assert np.all(dist[:3, 0] == 0) and np.all(dist[-3:, 0] == 0)
    np.testing.assert_array_equal(idx[-3:, 0], [0, 1, 2])


def test_many_tiles_workers_and_repairs(monkeypatch):
    # small blocks and panels: many tiles, both workers, row and column heaps
    monkeypatch.setattr(neighbors, "_MAX_BLOCK", 40)
    monkeypatch.setattr(neighbors, "_PANEL", 24)
    X = gpt2_like(333, seed=3)
    ref_d, ref_i = brute_force(X, 6)
    geo = neighbors._prepare(as_points(X), "euclidean")
    results = [neighbors._knn_internal(geo, 6, workers=w) for w in (1, 2, 3)]
    for d2, idx in results:
        np.testing.assert_array_equal(idx, ref_i)
        np.testing.assert_allclose(np.sqrt(d2) / geo.unit, ref_d, rtol=1e-12)
    # bit-identical whatever the number of workers
    for d2, idx in results[1:]:
        np.testing.assert_array_equal(d2, results[0][0])
    # no margin at all: certification fails for most rows, the exact repair fixes them
    monkeypatch.setattr(neighbors, "_candidate_count", lambda k, n: k)
    d2, idx = neighbors._knn_internal(geo, 6, workers=2)
    np.testing.assert_array_equal(idx, ref_i)


def test_deterministic_and_unchanged_input():
    X = gpt2_like(400, seed=5)
    before = X.copy()
    a = idest.knn(X, 4)
    b = idest.knn(X, 4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(X, before)


def test_tiny_and_huge_magnitudes():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((80, 6))
    for scale in (1e-30, 1e30):
        dist, idx = idest.knn(base * scale, 3)
        ref_d, ref_i = brute_force(base, 3)
        np.testing.assert_array_equal(idx, ref_i)
        np.testing.assert_allclose(dist, ref_d * scale, rtol=1e-12)


def test_k_must_be_below_n():
    X = gpt2_like(10)
    with pytest.raises(ValueError, match="k=10 neighbours need at least k \\+ 1 = 11 points"):
        idest.knn(X, 10)
    with pytest.raises(ValueError, match="k must be at least 1"):
        idest.knn(X, 0)
    d, i = idest.knn(X, 9)  # every other point
    assert d.shape == (10, 9)
