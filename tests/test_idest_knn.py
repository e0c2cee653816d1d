"""The exact neighbour engine against a float64 brute force (idest.knn)."""

import numpy as np
import pytest

import idest
from idest._knn import geometry, search
from idest._knn import kernels as kk
from idest._validate import as_points


def brute_force(X, k, metric="euclidean"):
    """float64 reference: every pairwise distance from the differences (no Gram trick),
    ties ordered by index (lexsort is stable on the index key). Rows by blocks, so that
    clouds of a few thousand points fit in memory."""
    X = np.asarray(X, dtype=np.float64)
    if metric == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    n = len(X)
    dists, orders = [], []
    for lo in range(0, n, 128):
        diff = X[lo : lo + 128, None, :] - X[None, :, :]
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
        dist = 0.5 * d2 if metric == "cosine" else np.sqrt(d2)
        rows = np.arange(len(dist))
        dist[rows, lo + rows] = np.inf
        order = np.lexsort((np.broadcast_to(np.arange(n), dist.shape), dist), axis=1)[:, :k]
        dists.append(np.take_along_axis(dist, order, axis=1))
        orders.append(order)
    return np.concatenate(dists), np.concatenate(orders)


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
    # small blocks and panels: many tiles, both workers, row and column buffers
    monkeypatch.setattr(search, "_MAX_BLOCK", 40)
    monkeypatch.setattr(search, "_PANEL", 24)
    X = gpt2_like(333, seed=3)
    ref_d, ref_i = brute_force(X, 6)
    geo = geometry.prepare(as_points(X), "euclidean")
    results = [search.nearest(geo, 6, workers=w) for w in (1, 2, 3)]
    for d2, idx in results:
        np.testing.assert_array_equal(idx, ref_i)
        np.testing.assert_allclose(np.sqrt(d2) / geo.unit, ref_d, rtol=1e-12)
    # bit-identical whatever the number of workers
    for d2, idx in results[1:]:
        np.testing.assert_array_equal(d2, results[0][0])
        np.testing.assert_array_equal(idx, results[0][1])
    # no margin at all: certification fails for most rows, the exact repair fixes them
    monkeypatch.setattr(search, "_candidate_count", lambda k, n: k)
    d2, idx = search.nearest(geo, 6, workers=2)
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


# --- single-tile clouds: per-row selection instead of the tile scan -------------------


def both_paths(X, k, metric="euclidean", workers=None):
    """The engine's internal result with the selection (default) and with the buffered
    scan of every key forced, for the same prepared geometry."""
    geo = geometry.prepare(as_points(X), metric)
    new = search.nearest(geo, k, workers=workers)
    old = search.nearest(geo, k, workers=workers, select=False)
    return geo, new, old


def assert_same(new, old):
    np.testing.assert_array_equal(new[1], old[1])
    np.testing.assert_array_equal(new[0], old[0])  # bit for bit, not just close


def grid(*sides, offset=1000.0):
    axes = [np.arange(float(s)) for s in sides]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(sides)) + offset


SIZES = [2, 3, 5, 17, 64, 65, 66, 77, 78, 129, 130, 153, 154, 300, 513, 1023, 1024, 1025]


@pytest.mark.parametrize("n", SIZES)
def test_selection_matches_tile_scan_at_every_size(n):
    # k = 1, the study's k = 64 (capped at N - 1), and k = N - 1 (every other point); the
    # sizes cross kc = N - 1, the sampled path (N - 1 > max(2 kc, 128)) and the block size
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, 24)).astype(np.float32)
    for k in sorted({1, min(64, n - 1), n - 1}):
        _, new, old = both_paths(X, k)
        assert_same(new, old)


@pytest.mark.parametrize(
    "cloud",
    [
        pytest.param(lambda: gpt2_like(700, d=96, seed=7), id="far-from-origin-f32"),
        pytest.param(lambda: gpt2_like(400, d=64, seed=8, dtype=np.float64), id="far-from-origin-f64"),
        pytest.param(lambda: np.repeat(gpt2_like(150, seed=9), 4, axis=0), id="each-point-4-times"),
        pytest.param(lambda: grid(6, 6, 6), id="lattice-216"),
        pytest.param(lambda: grid(32, 32), id="lattice-1024-at-block-size"),
        pytest.param(lambda: grid(31, 33), id="lattice-1023"),
        pytest.param(lambda: np.zeros((90, 5)) + 3.0, id="all-equal"),
    ],
)
def test_selection_matches_tile_scan_on_hard_clouds(cloud):
    X = cloud()
    n = len(X)
    for k in sorted({1, 8, min(64, n - 1), n - 2, n - 1}):
        _, new, old = both_paths(X, k)
        assert_same(new, old)
    if n <= 400:  # the last k is n - 1: every other point, by (distance, index)
        ref_d, ref_i = brute_force(X, n - 1)
        np.testing.assert_array_equal(new[1], ref_i)


def test_selection_matches_tile_scan_cosine_and_brute_force():
    X = gpt2_like(500, d=80, offset=0.5, seed=11, dtype=np.float64)
    geo, new, old = both_paths(X, 64, metric="cosine")
    assert_same(new, old)
    ref_d, ref_i = brute_force(X, 64, metric="cosine")
    np.testing.assert_array_equal(new[1], ref_i)
    np.testing.assert_allclose(geometry.user_distances(new[0], geo), ref_d, rtol=1e-9)


def test_selection_rows_split_among_workers():
    # a single tile with several workers: the rows of the selection (and of the
    # refinement) are split among threads; nothing may change
    X = gpt2_like(600, d=48, seed=12)
    _, one, _ = both_paths(X, 64, workers=1)
    for w in (2, 3):
        _, new, old = both_paths(X, 64, workers=w)
        assert_same(new, one)
        assert_same(old, one)


def reference_selection(G, half_lb, kc):
    """The kc smallest keys of every row (self excluded), ties by index, from NumPy."""
    n = len(G)
    keys = half_lb[None, :] - G
    np.fill_diagonal(keys, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), keys), axis=1)[:, :kc]
    return np.take_along_axis(keys, order, axis=1), order


@pytest.mark.parametrize("case", ["random", "ties", "sample-misled"])
def test_select_rows_kernel(case):
    rng = np.random.default_rng(13)
    n, kc = 700, 76
    if case == "random":
        G = rng.standard_normal((n, n)).astype(np.float32)
        half_lb = rng.standard_normal(n).astype(np.float32)
    elif case == "ties":
        # few distinct key values (half-integers: never a signed zero), many tied with
        # the kc-th: the lowest indices must be kept
        G = rng.integers(-3, 4, (n, n)).astype(np.float32)
        half_lb = np.full(n, 0.5, dtype=np.float32)
    else:
        # kc - 1 points near everyone, all at positions the last row samples; every other
        # point equally far. The sample's threshold (its rank, about 24 here, is below
        # kc - 1) is then a near key and keeps fewer than kc keys: the kernel must take
        # its second pass, with every key
        G = np.zeros((n, n), dtype=np.float32)
        half_lb = np.full(n, 100.0, dtype=np.float32)
        sampled = [q * (n - 1) // kk._SAMPLE for q in range(kk._SAMPLE)]
        half_lb[sampled[: kc - 1]] = 1.0 + rng.random(kc - 1).astype(np.float32)
    cand_keys = np.empty((n, kc), dtype=np.float32)
    cand_ids = np.empty((n, kc), dtype=np.int64)
    kk.select_rows(G, 0, n, half_lb, cand_keys, cand_ids)
    ref_keys, ref_ids = reference_selection(G, half_lb, kc)
    # the same (key, id) pairs, the largest key in slot 0
    order = np.lexsort((cand_ids, cand_keys), axis=1)
    np.testing.assert_array_equal(np.take_along_axis(cand_ids, order, axis=1), ref_ids)
    np.testing.assert_array_equal(np.take_along_axis(cand_keys, order, axis=1), ref_keys)
    np.testing.assert_array_equal(cand_keys[:, 0], ref_keys[:, -1])


def test_refine_reuses_distances_bit_for_bit():
    # refining all rows in one call reuses the distances of earlier rows (Euclidean, and
    # rows of X over 5 x 8 k bytes); one call per row cannot: both must agree exactly
    X = gpt2_like(300, d=300, seed=14, dtype=np.float64)
    geo = geometry.prepare(as_points(X), "euclidean")
    n, k = len(X), 40
    assert X.shape[1] * X.itemsize > 5 * 8 * k
    kc = search._candidate_count(k, n)
    cand_keys, cand_ids = search._select_one_tile(geo, kc, 1)
    results = []
    for rows in ([(0, n)], [(i, i + 1) for i in range(n)]):
        d2 = np.empty((n, k))
        idx = np.empty((n, k), dtype=np.int64)
        certified = np.empty(n, dtype=np.bool_)
        for lo, hi in rows:
            kk.refine_candidates(geo.X, geo.s, geo.half_lb, cand_keys, cand_ids, k, d2, idx, certified, lo, hi)
        results.append((d2, idx, certified))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# --- multi-tile clouds: buffered scan of the tiles, diagonal tiles selected -------------

MULTI_TILE_CLOUDS = {
    # just past one block: the second block is a single row, so with 3 workers one
    # worker sees a single key of most points (fewer than kc: the sentinel slot 0)
    "random-1025": lambda: np.random.default_rng(21).standard_normal((1025, 24)).astype(np.float32),
    "far-from-origin-2100": lambda: gpt2_like(2100, d=48, seed=22),
    "each-point-3-times-2100": lambda: np.repeat(gpt2_like(700, d=32, seed=23), 3, axis=0),
    "lattice-2197": lambda: grid(13, 13, 13),  # every distance tied many times over
    "random-3000": lambda: np.random.default_rng(24).standard_normal((3000, 16)),
}


@pytest.mark.parametrize("name", MULTI_TILE_CLOUDS)
def test_multi_tile_clouds_match_brute_force(name):
    # several blocks of 1024 rows: diagonal tiles selected, panels offered to the row and
    # column buffers; the same neighbours as a float64 brute force, bit-identical whatever
    # the number of workers and with the diagonal tiles scanned instead of selected
    X = MULTI_TILE_CLOUDS[name]()
    assert len(search._tiles(len(X))) > 2
    geo = geometry.prepare(as_points(X), "euclidean")
    ref_d, ref_i = brute_force(X, 64)
    for k in (1, 20, 64):
        first = search.nearest(geo, k, workers=1)
        np.testing.assert_array_equal(first[1], ref_i[:, :k])
        np.testing.assert_allclose(np.sqrt(first[0]) / geo.unit, ref_d[:, :k], rtol=1e-12)
        for workers in (2, 3):
            assert_same(search.nearest(geo, k, workers=workers), first)
        assert_same(search.nearest(geo, k, workers=1, select=False), first)


def test_multi_tile_cosine_matches_brute_force():
    X = gpt2_like(1500, d=40, offset=0.5, seed=25, dtype=np.float64)
    geo = geometry.prepare(as_points(X), "cosine")
    ref_d, ref_i = brute_force(X, 64, metric="cosine")
    for k in (1, 20, 64):
        first = search.nearest(geo, k, workers=1)
        np.testing.assert_array_equal(first[1], ref_i[:, :k])
        np.testing.assert_allclose(geometry.user_distances(first[0], geo), ref_d[:, :k], rtol=1e-9)
        for workers in (2, 3):
            assert_same(search.nearest(geo, k, workers=workers), first)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_all_other_points_as_neighbours_certify_without_a_rescan(monkeypatch, metric):
    # k = N - 1: every point is a candidate, none is left out, so no row needs the repair
    X = gpt2_like(62, d=48, seed=27)
    geo = geometry.prepare(as_points(X), metric)

    def no_rescan(*args):
        raise AssertionError("a row was rescanned")

    monkeypatch.setattr(kk, "rescan_rows", no_rescan)
    d2, idx = search.nearest(geo, 61)
    ref_d, ref_i = brute_force(X, 61, metric=metric)
    np.testing.assert_array_equal(idx, ref_i)


def engine_distance_brute_force(geo, k):
    """Every pair's distance by the engine's own exact_sq_dist, ties by index: the reference
    where distances sit at rounding level and formulas disagree in their last bits."""
    n = geo.X.shape[0]
    d2 = np.array([[kk.exact_sq_dist(geo.X, geo.s, i, j) if i != j else np.inf for j in range(n)] for i in range(n)])
    order = np.lexsort((np.broadcast_to(np.arange(n), d2.shape), d2), axis=1)[:, :k]
    return np.take_along_axis(d2, order, axis=1), order


@pytest.mark.parametrize("n, width, seed", [(1099, 3, 0), (1219, 2, 1), (1403, 3, 2)])
def test_cosine_nearly_parallel_rows_are_not_certified_wrongly(n, width, seed):
    # rows along one direction plus float32 noise: cosine distances near 1e-32, where the
    # stored unit rows (rounded) and exact_sq_dist's differences disagree by rounding; the
    # certification's slack must cover it (without it these clouds lost neighbours)
    rng = np.random.default_rng(seed)
    X = (0.5 * rng.standard_normal((n, 1)) + 300.0 * np.ones((1, width))).astype(np.float32)
    geo = geometry.prepare(as_points(X), "cosine")
    ref_d2, ref_i = engine_distance_brute_force(geo, 64)
    for select in (True, False):
        d2, idx = search.nearest(geo, 64, workers=2, select=select)
        np.testing.assert_array_equal(idx, ref_i)
        np.testing.assert_array_equal(d2, ref_d2)


@pytest.mark.parametrize("size", [lambda kc: kc + 1, lambda kc: 6 * kc + 200], ids=["kc+1", "6kc+200"])
def test_buffer_size_changes_nothing(monkeypatch, size):
    # a buffer one key larger than kc selects at almost every key; a large one rarely
    X = gpt2_like(2100, d=40, seed=26)
    geo = geometry.prepare(as_points(X), "euclidean")
    expected = [search.nearest(geo, k, workers=2) for k in (3, 40)]
    monkeypatch.setattr(search, "_buffer_size", size)
    for k, ref in zip((3, 40), expected):
        assert_same(search.nearest(geo, k, workers=2), ref)
        assert_same(search.nearest(geo, k, workers=2, select=False), ref)


@pytest.mark.parametrize("case", ["random", "ties", "signed-zeros"])
def test_keep_smallest_kernel(case):
    rng = np.random.default_rng(27)
    kc, cap = 30, 100
    scratch = np.empty(3 * cap, dtype=np.int32)
    for m in (kc, kc + 1, 64, cap):
        if case == "random":
            keys = rng.standard_normal(m).astype(np.float32)
        elif case == "ties":
            keys = rng.integers(-3, 4, m).astype(np.float32) + np.float32(0.5)
        else:  # -0.0 and +0.0 are equal keys with different bits
            keys = rng.choice(np.array([-1.0, -0.0, 0.0, 1.0], dtype=np.float32), m)
        buf_keys = np.full(cap, np.nan, dtype=np.float32)
        buf_ids = np.full(cap, -1, dtype=np.int32)
        buf_keys[:m] = keys
        buf_ids[:m] = np.arange(m)
        top = kk.keep_smallest(buf_keys, buf_ids, m, kc, scratch)
        kept_keys, kept_ids = buf_keys[:kc], buf_ids[:kc]
        # the kc smallest values, each with its own id, the largest in slot 0
        np.testing.assert_array_equal(np.sort(kept_keys), np.sort(keys)[:kc])
        np.testing.assert_array_equal(kept_keys, keys[kept_ids])
        assert len(set(kept_ids.tolist())) == kc
        assert top == kept_keys[0] == kept_keys.max()
        left_out = np.setdiff1d(np.arange(m), kept_ids)
        assert np.all(keys[left_out] >= top)
