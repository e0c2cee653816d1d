"""The corpus-scale analyses (geostudy/scale/partitions.py, analyses.py, compare.py): partitions,
the per-partition estimators against idest called directly, the automatic GRIDE scale on curves
and on a manifold of known dimension, the summary against numpy, and neighbourhood overlap and
linear CKA against closed-form answers and the n x n HSIC form."""

from __future__ import annotations

import numpy as np
import pytest

import idest
from geostudy.errors import StudyError
from geostudy.scale.analyses import ScaleSettings, analyse_partition, auto_gride_scale, summarise
from geostudy.scale.compare import cka_matrix, linear_cka, neighbourhood_overlap, overlap_matrix
from geostudy.scale.partitions import MIN_PARTITION_SIZE, PartitionPlan, draw_partitions, partition_rows, plan_partitions

# ---------------------------------------------------------------- partitions


def test_plan_defaults_and_small_corpus():
    assert (plan_partitions(60_000, None, None).partitions, plan_partitions(60_000, None, None).size) == (5, 10_000)
    assert (plan_partitions(50_000, None, None).partitions, plan_partitions(50_000, None, None).size) == (5, 10_000)
    small = plan_partitions(3_003, None, None)
    assert (small.partitions, small.size) == (5, 600)  # 3003 // 5
    assert "50,000" in small.note and "3,003" in small.note
    assert (plan_partitions(3_000, 2, None).partitions, plan_partitions(3_000, 2, None).size) == (2, 1_500)
    assert (plan_partitions(3_000, None, 1_000).partitions, plan_partitions(3_000, None, 1_000).size) == (3, 1_000)
    assert (plan_partitions(30_000, 4, 7_000).partitions, plan_partitions(30_000, 4, 7_000).size) == (4, 7_000)


@pytest.mark.parametrize(
    "n, P, s, words",
    [
        (900, None, 1_000, "fewer than one partition of 1,000"),
        (10_000, 3, 4_000, "the corpus gives 10,000 sequences; 3 partitions of 4,000 need 12,000"),
        (5 * MIN_PARTITION_SIZE - 1, None, None, f"at least {MIN_PARTITION_SIZE} points"),
        (1_000, 0, None, "--partitions must be a positive integer"),
        (1_000, None, True, "--partition-size must be a positive integer"),
    ],
)
def test_plan_errors(n, P, s, words):
    with pytest.raises(StudyError, match=words):
        plan_partitions(n, P, s)


def test_draw_partitions_disjoint_seeded_and_ordered():
    plan = PartitionPlan(partitions=3, size=200, note="")
    a = draw_partitions(1_000, plan, seed=7)
    assert a.dtype == np.int32 and a.shape == (1_000,)
    assert np.bincount(a + 1).tolist() == [400, 200, 200, 200]
    assert np.array_equal(a, draw_partitions(1_000, plan, seed=7))
    assert not np.array_equal(a, draw_partitions(1_000, plan, seed=8))
    # the same as the permutation numpy's PCG64 gives: partition p takes its entries [200 p, 200 (p + 1))
    order = np.random.Generator(np.random.PCG64(7)).permutation(1_000)
    for p in range(3):
        rows = partition_rows(a, p)
        assert np.array_equal(rows, np.sort(order[200 * p : 200 * (p + 1)]))
        assert np.all(np.diff(rows) > 0)
    with pytest.raises(StudyError, match="need 1,200"):
        draw_partitions(1_000, PartitionPlan(partitions=6, size=200, note=""), seed=0)


# ---------------------------------------------------------------- analyse_partition against idest


def _cloud(n=600, d=5, D=32, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((D, d)))[0]
    return (rng.standard_normal((n, d)) @ basis.T + noise * rng.standard_normal((n, D))).astype(np.float32)


def _with_duplicates(X):
    X = X.copy()
    X[10:14] = X[3]  # exact repeats of row 3
    X[20] = X[5] * np.float32(1 + 2e-7)  # a near-duplicate of row 5 (about 2 eps relative)
    X[21] = -X[21] * 0  # -0.0 everywhere, and row 22 is +0.0: the same point, different bytes
    X[22] = 0.0
    return X


def _items(result):
    return {(q, p): (v, e) for q, p, v, e in result.items}


def test_partition_equals_idest_on_the_same_array():
    X = _with_duplicates(_cloud())
    s = ScaleSettings()
    r = analyse_partition(X, s)
    got = _items(r)
    t = idest.twonn(X, discard_fraction=0.1)
    m = idest.mle(X, k=20)
    g = idest.gride(X, range_max=64)
    assert got[("id_twonn", None)] == (t.dimension, t.error)
    assert got[("id_mle", None)] == (m.dimension, m.error)
    for n1, d, e in zip(g.scales.tolist(), g.dimensions.tolist(), g.errors.tolist()):
        assert got[("id_gride", n1)] == (d, e)
    assert r.n_points == t.n_points == g.n_points and r.n_rows == len(X)
    assert (r.n_duplicates, r.n_near_duplicates) == (t.n_duplicates, t.n_near_duplicates)
    assert r.n_duplicates == 5 and r.n_near_duplicates == 1  # rows 10-13 and 22 (== row 21); row 20
    # PCA on the distinct points idest kept
    keep = idest.neighborhoods(X, k=2).point_index
    p = idest.pca(X[keep], variance=[0.75, 0.8, 0.85, 0.9, 0.95], solver="covariance")
    for level, n in zip(p.variance_levels, p.dimensions.tolist()):
        assert got[("pca_components", level)] == (n, None)
    assert got[("pca_participation_ratio", None)] == (p.participation_ratio, None)
    assert np.array_equal(r.spectrum, p.spectrum)
    assert r.skipped == []


def _brute_neighbours(P, k):
    P = P.astype(np.float64)
    d2 = ((P[:, None, :] - P[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d2, np.inf)
    return np.argsort(d2, axis=1, kind="stable")[:, :k]


def _brute_row_neighbours(X, k):
    """The k nearest other rows of each row, float64 brute force, ties by row index."""
    P = X.astype(np.float64)
    d2 = ((P[:, None, :] - P[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d2, np.inf)
    return np.argsort(d2, axis=1, kind="stable")[:, :k]


def test_neighbour_lists_are_the_nearest_rows_copies_first():
    X = _with_duplicates(_cloud(n=300))
    r = analyse_partition(X, ScaleSettings())
    assert r.neighbours.shape == (300, 10) and r.neighbours.dtype == np.int32
    expected = _brute_row_neighbours(X, 10)
    for row in range(300):
        assert sorted(r.neighbours[row].tolist()) == sorted(expected[row].tolist()), row
    # a row with copies lists them first: row 3 has copies 10..13
    assert set(r.neighbours[3, :4].tolist()) == {10, 11, 12, 13}
    assert set(r.neighbours[10, :4].tolist()) == {3, 11, 12, 13}


def test_a_site_of_few_distinct_points_overlaps_a_site_that_separates_them():
    """Sequences sharing a point at one site (the last token's embedding) are each other's
    neighbours there; at a site that keeps those groups together the overlap is high."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((80, 16)).astype(np.float32)
    group = np.repeat(np.arange(80), 11)
    A = centres[group]  # 80 distinct points, 11 copies each
    B = A + 0.01 * rng.standard_normal(A.shape).astype(np.float32)  # the groups kept apart, copies spread
    nn_a = analyse_partition(A, ScaleSettings()).neighbours
    nn_b = analyse_partition(B, ScaleSettings()).neighbours
    assert neighbourhood_overlap(nn_a, nn_b) == 1.0  # each row's 10 neighbours: its group's other rows


def test_float64_near_duplicates_map_to_their_row_at_idests_largest_scale():
    X = _cloud(n=200).astype(np.float64) * 1e149
    X[20] = X[5] * (1 + 4e-16)  # within 64 float64 eps of row 5: dropped as its near-duplicate
    r = analyse_partition(X, ScaleSettings())
    assert r.n_near_duplicates == 1
    assert r.neighbours[20, 0] == 5 and r.neighbours[5, 0] == 20  # each other's copy, at distance 0
    assert np.array_equal(r.neighbours[20, 1:], r.neighbours[5, 1:])


def test_too_small_cloud_is_skipped_with_idests_message():
    r = analyse_partition(np.ones((5, 3), dtype=np.float32), ScaleSettings())
    assert r.items == [] and r.neighbours is None
    assert {name for name, _ in r.skipped} >= {"twonn", "mle", "gride", "pca"}


# ---------------------------------------------------------------- the automatic GRIDE scale

SCALES = [1, 2, 4, 8, 16, 32]


def test_auto_scale_on_curves():
    # noise-inflated at short range, a plateau around 8, curvature at the end
    assert auto_gride_scale(SCALES, [12.0, 8.0, 5.2, 5.0, 5.1, 4.0], [0.1] * 6) == 8
    # the rule is relative: multiplying the IDs changes nothing
    assert auto_gride_scale(SCALES, [36.0, 24.0, 15.6, 15.0, 15.3, 12.0], [0.3] * 6) == 8
    # a flat curve: every interior scale ties, the smallest wins; the ends are never candidates
    assert auto_gride_scale(SCALES, [5.0] * 6, [0.1] * 6) == 2
    assert auto_gride_scale(SCALES, [9.0, 5.0, 5.0, 5.0, 5.0, 5.0], [0.1] * 6) == 4
    # a scale without a finite estimate is left out (its neighbours become adjacent)
    assert auto_gride_scale(SCALES, [12.0, 8.0, np.nan, 5.0, 5.0, 5.0], [0.1] * 6) == 16
    # fewer than three usable scales: the smallest
    assert auto_gride_scale([1, 2], [7.0, 5.0], [0.1, 0.1]) == 1
    assert auto_gride_scale([4], [7.0], [0.1]) == 4
    # unequal spacing on the log2 axis: changes are per doubling
    assert auto_gride_scale([1, 2, 8, 16], [10.0, 6.0, 5.0, 4.0], [0.1] * 4) == 8


@pytest.mark.parametrize(
    "scales, ids, errors, words",
    [
        ([1, 2, 4], [5.0, 5.0], [0.1, 0.1, 0.1], "equally long"),
        ([1, 4, 2], [5.0, 5.0, 5.0], [0.1] * 3, "increasing positive"),
        ([1, 2, 4], [5.0, 5.0, 5.0], [0.1, -1.0, 0.1], "negative"),
        ([1, 2, 4], [np.nan] * 3, [0.1] * 3, "no scale"),
    ],
)
def test_auto_scale_errors(scales, ids, errors, words):
    with pytest.raises(StudyError, match=words):
        auto_gride_scale(scales, ids, errors)


def test_auto_scale_finds_the_dimension_of_a_gaussian_manifold():
    # a 5-D Gaussian linearly embedded in R^100 plus small isotropic noise: the noise inflates the
    # ID at the shortest scale; the automatic scale reads the plateau near 5
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.standard_normal((100, 5)))[0]
    X = (rng.standard_normal((4_000, 5)) @ basis.T + 0.01 * rng.standard_normal((4_000, 100))).astype(np.float32)
    got = _items(analyse_partition(X, ScaleSettings()))
    (auto,) = [(p, v) for (q, p), (v, _) in got.items() if q == "id_gride_auto"]
    assert auto[0] > 1 and abs(auto[1] - 5.0) < 0.35
    assert abs(auto[1] - 5.0) < abs(got[("id_gride", 1)][0] - 5.0)


# ---------------------------------------------------------------- the summary across partitions


def test_summarise_mean_and_sample_std():
    p0 = [("id_twonn", None, 10.0, 0.5), ("id_gride", 1, 9.0, 0.1), ("id_gride", 2, 8.0, 0.1), ("id_gride", 4, 8.1, 0.1),
          ("id_gride_auto", 2, 8.0, 0.1), ("pca_components", 0.9, 40, None)]
    p1 = [("id_twonn", None, 12.0, 0.5), ("id_gride", 1, 11.0, 0.1), ("id_gride", 2, 8.2, 0.1), ("id_gride", 4, 8.0, 0.1),
          ("id_gride_auto", 4, 8.0, 0.1), ("pca_components", 0.9, 43, None)]
    p2 = [("id_twonn", None, 14.0, 0.5), ("id_gride", 1, 10.0, 0.1), ("id_gride", 2, 8.4, 0.1), ("id_gride", 4, 8.2, 0.1),
          ("id_gride_auto", 2, 8.4, 0.1)]  # PCA skipped on this partition
    rows = {(q, p): (v, e) for q, p, v, e in summarise([p0, p1, p2])}
    assert list(rows)[0] == ("id_twonn", None)
    assert rows[("id_twonn", None)] == (pytest.approx(12.0), pytest.approx(np.std([10, 12, 14], ddof=1)))
    assert rows[("id_gride", 2)] == (pytest.approx(8.2), pytest.approx(np.std([8.0, 8.2, 8.4], ddof=1)))
    assert rows[("pca_components", 0.9)] == (pytest.approx(41.5), pytest.approx(np.std([40, 43], ddof=1)))
    # one auto row, chosen on the mean curve 10, 8.2, 8.1 (only scale 2 is interior)
    assert [k for k in rows if k[0] == "id_gride_auto"] == [("id_gride_auto", 2)]
    assert rows[("id_gride_auto", 2)] == rows[("id_gride", 2)]
    single = summarise([p0])
    assert ("id_twonn", None, 10.0, None) in single


# ---------------------------------------------------------------- neighbourhood overlap


def test_overlap_closed_form():
    a = np.array([[1, 2, 3, 4], [0, 2, 3, 4], [0, 1, 3, 4]])
    b = np.array([[4, 3, 2, 1], [0, 2, 9, 8], [5, 6, 7, 8]])  # shares 4, 2 and 0 of 4
    assert neighbourhood_overlap(a, b) == pytest.approx((4 + 2 + 0) / 12)
    assert neighbourhood_overlap(a, a) == 1.0
    with pytest.raises(StudyError, match="twice"):
        neighbourhood_overlap(np.array([[1, 1]]), np.array([[1, 2]]))
    with pytest.raises(StudyError, match="shapes"):
        neighbourhood_overlap(a, b[:2])


def test_overlap_of_a_cloud_with_itself_under_a_permutation():
    X = _cloud(n=500, D=16)
    perm = np.random.default_rng(3).permutation(500)
    nn = analyse_partition(X, ScaleSettings()).neighbours
    nn_perm = analyse_partition(X[perm], ScaleSettings()).neighbours  # rows of X[perm]
    back = np.empty_like(nn_perm)
    back[perm] = perm[nn_perm]  # relabel: row perm[i] of X, neighbours as rows of X
    assert neighbourhood_overlap(nn, back) == 1.0
    # an independent cloud shares neighbours only by chance: k / (n - 1) on average
    other = analyse_partition(_cloud(n=500, D=16, seed=9), ScaleSettings()).neighbours
    chance = neighbourhood_overlap(nn, other)
    assert abs(chance - 10 / 499) < 4 * np.sqrt(10 / 499 / (500 * 10))
    m = overlap_matrix([nn, back, other])
    assert np.array_equal(np.diag(m), np.ones(3)) and np.array_equal(m, m.T) and m[0, 1] == 1.0 and m[0, 2] == chance


# ---------------------------------------------------------------- linear CKA


def _hsic_cka(A, B):
    n = A.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ (A @ A.T) @ H, H @ (B @ B.T) @ H
    return np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L))


def test_cka_matches_the_hsic_form_and_its_invariances():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((60, 8))
    B = np.tanh(A @ rng.standard_normal((8, 12))) + 0.3 * rng.standard_normal((60, 12))
    value = linear_cka(A, B)
    assert value == pytest.approx(_hsic_cka(A, B), rel=1e-12) and 0 < value < 1
    Q = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    assert linear_cka(A, B @ Q) == pytest.approx(value, rel=1e-12)  # orthogonal transform
    assert linear_cka(A, 1e-3 * B + 5.0) == pytest.approx(value, rel=1e-12)  # isotropic scaling, translation
    assert linear_cka(1e140 * A, B) == pytest.approx(value, rel=1e-12)  # no overflow at idest's largest scale
    assert linear_cka(A, A) == pytest.approx(1.0, rel=1e-14)
    assert linear_cka(A.astype(np.float32), B.astype(np.float32)) == pytest.approx(
        _hsic_cka(A.astype(np.float32).astype(np.float64), B.astype(np.float32).astype(np.float64)), rel=1e-12)
    assert np.isnan(linear_cka(A, np.ones((60, 3))))
    with pytest.raises(StudyError, match="same points"):
        linear_cka(A, B[:50])
    with pytest.raises(StudyError, match="finite"):
        linear_cka(A, np.full((60, 2), np.inf))


def test_cka_of_independent_clouds_is_near_its_expectation():
    # independent Gaussian clouds (n, p), (n, q): E||B^T A||^2 = n p q, ||A^T A||_F^2 ~ n^2 p + n p^2,
    # so CKA ~ sqrt(p q) / n / sqrt((1 + p / n) (1 + q / n)) (n - 1 after centring)
    n, p, q = 1_000, 20, 30
    rng = np.random.default_rng(5)
    values = [linear_cka(rng.standard_normal((n, p)), rng.standard_normal((n, q))) for _ in range(5)]
    expected = np.sqrt(p * q) / (n - 1) / np.sqrt((1 + p / (n - 1)) * (1 + q / (n - 1)))
    assert np.mean(values) == pytest.approx(expected, rel=0.15)


def test_cka_matrix_blocks_and_loaders():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((200, 6))
    shapes = [(10, 0.1), (20, 1.0), (5, 3.0), (15, 0.5)]  # width, noise
    clouds = [base @ rng.standard_normal((6, w)) + s * rng.standard_normal((200, w)) for w, s in shapes]
    pairwise = np.array([[linear_cka(a, b) for b in clouds] for a in clouds])
    calls = [0] * 4

    def loader(i):
        def load():
            calls[i] += 1
            return clouds[i]

        return load

    whole = cka_matrix([loader(i) for i in range(4)])
    assert calls == [1, 1, 1, 1]  # everything fits: each site loaded once
    np.testing.assert_allclose(whole, pairwise, rtol=1e-12)
    assert np.array_equal(np.diag(whole), np.ones(4)) and np.array_equal(whole, whole.T)
    calls[:] = [0] * 4
    tiny = cka_matrix([loader(i) for i in range(4)], memory_budget=1)  # one site per block
    assert calls == [1, 2, 3, 4]
    np.testing.assert_allclose(tiny, pairwise, rtol=1e-12)
    assert np.array_equal(cka_matrix(clouds), whole)
    fast = cka_matrix(clouds, dtype="float32")  # float32 products: the same to ~1e-6
    assert np.abs(fast - whole).max() < 1e-5 and not np.array_equal(fast, whole)
    with pytest.raises(StudyError, match="float64, float32"):
        cka_matrix(clouds, dtype="float16")
    with pytest.raises(StudyError, match="same points"):
        cka_matrix([clouds[0], clouds[1][:100]])
