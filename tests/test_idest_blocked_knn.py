"""The row-block neighbour search (idest.blocked_knn) against idest's in-process search:
bit-identical arrays for every block size, metric and dtype, the same duplicates and
near-duplicates dropped, and a float64 brute force as an outside reference."""

import numpy as np
import pytest

import idest


def cloud(n, d=24, seed=0, offset=300.0, dtype=np.float32):
    """A curved low-dimensional cloud far from the origin (as GPT-2 residual streams)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4))
    X = np.tanh(z @ rng.standard_normal((4, 16))) @ rng.standard_normal((16, d))
    return (X + offset).astype(dtype)


def with_copies(X, seed=1):
    """Exact repeats, a row repeated many times (more copies than k), and near-duplicates
    (a relative change of a few eps), scattered through X."""
    rng = np.random.default_rng(seed)
    X = X.copy()
    n = len(X)
    eps = np.finfo(X.dtype).eps
    X[rng.choice(np.arange(n // 2, n), 20, replace=False)] = X[rng.choice(n // 2, 20, replace=False)]
    X[n - 15 : n - 3] = X[7]  # 12 exact copies of row 7
    near = rng.choice(np.arange(n // 2, n - 20), 30, replace=False)
    X[near] = X[near - 100] * (1 + 3 * eps)
    many = np.arange(200, 212)  # 12 near-copies of row 199: more than k, the search is repeated with more
    X[many] = X[199] * (1 + 4 * eps * np.arange(1, 13)[:, None] / 12)
    return X


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("block_rows", [97, 300, 1024, 1500, 2999, 5000])
def test_knn_blocked_is_idest_knn_for_every_block_size(block_rows):
    X = cloud(2999)
    d, i = idest.knn(X, 9)
    db, ib = idest.knn_blocked(X, 9, block_rows=block_rows)
    assert same(d, db) and same(i, ib)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32])
def test_knn_blocked_every_metric_and_dtype(metric, dtype):
    X = cloud(2100, d=40, seed=3, offset=50.0, dtype=np.float64)
    X = (X * 20).astype(dtype)  # integers: whole numbers, with exact repeats among them
    d, i = idest.knn(X, 12, metric=metric)
    db, ib = idest.knn_blocked(X, 12, metric=metric, block_rows=700)
    assert same(d, db) and same(i, ib)


def test_knn_blocked_matches_a_float64_brute_force():
    X = cloud(1300, d=16, seed=5)
    d, i = idest.knn_blocked(X, 5, block_rows=400)
    Z = X.astype(np.float64)
    d2 = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(Z)), d2.shape), d2), axis=1)[:, :5]
    assert np.array_equal(i, order)
    np.testing.assert_allclose(d, np.sqrt(np.take_along_axis(d2, order, axis=1)), rtol=1e-12)


def test_ties_are_ordered_by_index_across_blocks():
    # a lattice: many equal distances, whose order must not depend on where the blocks fall
    g = np.arange(12, dtype=np.float64)
    X = np.stack(np.meshgrid(g, g, g), -1).reshape(-1, 3)
    d, i = idest.knn(X, 10)
    for block_rows in (144, 500, 1000):
        db, ib = idest.knn_blocked(X, 10, block_rows=block_rows)
        assert same(d, db) and same(i, ib)


def check_neighborhoods(nb, ref):
    for name in ("distances", "indices", "points", "point_index"):
        assert same(getattr(nb, name), getattr(ref, name)), name
    assert nb == ref  # the scalar fields: k, n_points, n_duplicates, n_near_duplicates, metric, ...
    assert not nb.distances.flags.writeable and not nb.indices.flags.writeable


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("block_rows", [333, 1024, 4000])
def test_neighborhoods_blocked_drops_the_same_duplicates(metric, block_rows):
    X = with_copies(cloud(2500, seed=7))
    if metric == "cosine":
        X[50] = 3 * X[40]  # the same direction: a zero cosine distance no row hash sees
    ref = idest.neighborhoods(X, 10, metric=metric)
    assert ref.n_duplicates >= 30 and ref.n_near_duplicates >= 30  # the cases are really there
    nb = idest.neighborhoods_blocked(X, 10, metric=metric, block_rows=block_rows)
    check_neighborhoods(nb, ref)


def test_neighborhoods_blocked_serves_the_estimators_as_neighborhoods_does():
    X = with_copies(cloud(3000, seed=11), seed=2)
    k = idest.k_needed(twonn=True, mle=20, gride=64)
    nb = idest.neighborhoods_blocked(X, k, block_rows=1100)
    assert idest.twonn(nb) == idest.twonn(X)
    assert idest.mle(nb, k=20) == idest.mle(X, k=20)
    g_ref, g = idest.gride(X, range_max=64), idest.gride(nb, range_max=64)
    assert same(g.dimensions, g_ref.dimensions) and same(g.errors, g_ref.errors)


def test_neighborhoods_blocked_options_pass_through():
    X = with_copies(cloud(1200, seed=13))
    check_neighborhoods(idest.neighborhoods_blocked(X, 6, near_duplicate_tol=0, block_rows=500),
                        idest.neighborhoods(X, 6, near_duplicate_tol=0))
    with pytest.raises(ValueError, match="duplicated point") as err:
        idest.neighborhoods_blocked(X, 6, on_duplicates="raise", block_rows=500)
    with pytest.raises(ValueError) as ref:
        idest.neighborhoods(X, 6, on_duplicates="raise")
    assert str(err.value) == str(ref.value)


def test_the_runner_does_every_search_on_the_rows_kept():
    X = with_copies(cloud(1800, seed=17))
    calls = []

    def runner(rows, plan, metric):
        calls.append((rows.copy(), plan))
        cloud_rows = idest.prepare_cloud(X, metric, rows)
        pairs = {p: idest.knn_pair(cloud_rows, plan, *p) for p in reversed(plan.pairs)}  # any order
        blocks = [idest.knn_group(cloud_rows, plan, g, [pairs[p].part(g) for p in plan.pairs_of(g)]) for g in range(plan.n_groups)]
        return blocks[::-1]  # merged by their rows, not by their order

    nb = idest.neighborhoods_blocked(X, 4, run=runner, block_rows=256)
    check_neighborhoods(nb, idest.neighborhoods(X, 4))
    # first all rows, then the rows left after the exact repeats, ... and the last search is on the points kept
    assert len(calls[0][0]) < len(X) and np.array_equal(calls[-1][0], nb.point_index)
    assert any(plan.k > 4 for _, plan in calls)  # the near-duplicate group larger than k: searched again with more


def test_plans_and_blocks_refuse_what_does_not_fit():
    X = cloud(600)
    c = idest.prepare_cloud(X)
    plan = idest.plan_blocks(600, 5, 250)
    assert plan.bounds == (0, 250, 500, 600) and plan.n_groups == 3 and len(plan.pairs) == 6
    assert plan.pairs_of(1) == [(0, 1), (1, 1), (1, 2)]
    with pytest.raises(ValueError, match="at least k"):
        idest.plan_blocks(6, 6)
    with pytest.raises(ValueError, match="plan is for 500 points"):
        idest.knn_pair(c, idest.plan_blocks(500, 5), 0, 0)
    with pytest.raises(ValueError, match="not one of the plan"):
        idest.knn_pair(c, plan, 2, 1)
    with pytest.raises(ValueError, match="needs the candidates of 3"):
        idest.knn_group(c, plan, 1, [idest.knn_pair(c, plan, 1, 1).part(1)])
    with pytest.raises(ValueError, match="blocks start at rows"):
        pairs = {p: idest.knn_pair(c, plan, *p) for p in plan.pairs}
        one = idest.knn_group(c, plan, 0, [pairs[p].part(0) for p in plan.pairs_of(0)])
        idest.merge_blocks(c, plan, [one, one])


@pytest.mark.parametrize("seeded", [False, True])
def test_off_diagonal_pairs_started_from_thresholds_give_the_same_neighbours(seeded):
    """Pair (g, h) may start from the thresholds its groups' diagonal pairs found: it then keeps
    fewer keys (none at or above a point's threshold), reports that threshold as the bound of a
    point that got fewer than kc keys below it, and the certified result is the same."""
    X = with_copies(cloud(3000, seed=23))
    c = idest.prepare_cloud(X)
    plan = idest.plan_blocks(3000, 16, 700)
    pairs = {(g, g): idest.knn_pair(c, plan, g, g) for g in range(plan.n_groups)}
    seeds = [pairs[g, g].thresholds() for g in range(plan.n_groups)]
    for g, h in plan.pairs:
        if g < h:
            pairs[g, h] = idest.knn_pair(c, plan, g, h, (seeds[g], seeds[h]) if seeded else None)
    if seeded:
        pair = pairs[0, plan.n_groups - 1]
        keys, ids = pair.part(0)
        bound_only = ids[:, 0] < 0  # points with fewer than kc keys below their threshold
        assert bound_only.any() and np.array_equal(keys[bound_only, 0], seeds[0][bound_only])
        real = ids >= 0
        assert np.all(keys[real] < np.repeat(seeds[0][:, None], keys.shape[1], axis=1)[real])
    blocks = [idest.knn_group(c, plan, g, [pairs[p].part(g) for p in plan.pairs_of(g)]) for g in range(plan.n_groups)]
    d, i = idest.merge_blocks(c, plan, blocks)
    d0, i0 = idest.knn(X, 16)
    assert same(d, d0) and same(i, i0)


def test_thresholds_come_from_diagonal_pairs_and_fit_their_pair():
    c = idest.prepare_cloud(cloud(600))
    plan = idest.plan_blocks(600, 5, 250)
    diag = [idest.knn_pair(c, plan, g, g) for g in range(plan.n_groups)]
    with pytest.raises(ValueError, match="come from a diagonal pair"):
        idest.knn_pair(c, plan, 0, 1).thresholds()
    with pytest.raises(ValueError, match="starts without thresholds"):
        idest.knn_pair(c, plan, 1, 1, (diag[1].thresholds(), diag[1].thresholds()))
    with pytest.raises(ValueError, match="needs 350 thresholds"):
        idest.knn_pair(c, plan, 1, 2, (diag[1].thresholds(), diag[1].thresholds()))
