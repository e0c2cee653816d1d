"""Bad input gets a clear ValueError/TypeError (what was wrong, how to fix it) or the
documented handling; never a deep NumPy traceback or a silently wrong number."""

import numpy as np
import pytest

import idest

RNG = np.random.default_rng(0)
GOOD = RNG.standard_normal((60, 5))

ALL = {
    "twonn": lambda X: idest.twonn(X),
    "mle": lambda X: idest.mle(X, k=5),
    "pca": lambda X: idest.pca(X),
    "gride": lambda X: idest.gride(X),
    "local_pca": lambda X: idest.local_pca(X, k=5),
    "knn": lambda X: idest.knn(X, 3),
    "twonn_scaling": lambda X: idest.twonn_scaling(X),
    "neighborhoods": lambda X: idest.neighborhoods(X, 3),
}


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize(
    "bad,error,message",
    [
        (GOOD[:, 0], ValueError, r"must be 2-D .*got a 1-D array of shape \(60,\).*reshape\(-1, 1\)"),
        (GOOD.reshape(3, 20, 5), ValueError, r"got a 3-D array .*reshape\(-1, 5\)"),
        (np.float64(3.0), ValueError, "A scalar is not a point cloud"),
        (np.zeros((0, 5)), ValueError, "X is empty"),
        (np.where(np.arange(300).reshape(60, 5) == 17, np.nan, GOOD), ValueError,
         r"1 NaN or infinite value\(s\) \(first at row 3, column 2\)"),
        (np.where(np.arange(300).reshape(60, 5) == 4, np.inf, GOOD), ValueError, r"first at row 0, column 4"),
        (GOOD > 0, TypeError, "boolean"),
        (GOOD + 1j, TypeError, "complex"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "must hold real numbers"),
        ([[1.0, 2.0], [3.0]], TypeError, "could not convert"),
        (GOOD * 1e200, ValueError, "would overflow float64. Rescale it"),
    ],
    ids=["1d", "3d", "scalar", "empty", "nan", "inf", "bool", "complex", "strings", "ragged", "huge"],
)
def test_bad_arrays(name, bad, error, message):
    with pytest.raises(error, match=message):
        ALL[name](bad)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: idest.twonn(GOOD[:3]), "TwoNN needs at least 4 distinct points; X has 3"),
        (lambda: idest.mle(GOOD[:20], k=20), "MLE with k=20 needs at least 21 distinct points; X has 20. Pass more points or a smaller k"),
        (lambda: idest.mle(GOOD, k=60), "needs at least 61 distinct points"),
        (lambda: idest.gride(GOOD[:2]), "GRIDE needs at least 3 distinct points; X has 2"),
        (lambda: idest.pca(GOOD[:1]), "PCA needs at least 2 points; X has 1"),
        (lambda: idest.local_pca(GOOD[:10], k=10), "local PCA with k=10 needs at least 11 distinct points"),
        (lambda: idest.twonn_scaling(GOOD[:8]), "needs at least 11 distinct points"),
    ],
)
def test_too_few_points(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_too_few_after_dropping_duplicates():
    X = np.vstack([GOOD[:15]] * 3)
    with pytest.raises(ValueError, match="X has 15 after dropping 30 duplicated point"):
        idest.mle(X, k=20)


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda: idest.twonn(GOOD, metric="manhattan"), ValueError, "metric must be one of"),
        (lambda: idest.twonn(GOOD, discard_fraction=1.0), ValueError, r"discard_fraction must lie in \[0, 1\)"),
        (lambda: idest.twonn(GOOD, discard_fraction="0.1"), TypeError, "discard_fraction must be a number"),
        (lambda: idest.twonn(GOOD, discard_fraction=0.0), ValueError, "Use discard_fraction > 0 or method='mle'"),
        (lambda: idest.twonn(GOOD, method="fit"), ValueError, "method must be one of"),
        (lambda: idest.twonn(GOOD, on_duplicates="keep"), ValueError, "on_duplicates must be one of"),
        (lambda: idest.mle(GOOD, k=1), ValueError, "k must be at least 2"),
        (lambda: idest.mle(GOOD, k=2.5), TypeError, "k must be an integer or a"),
        (lambda: idest.mle(GOOD, k=True), TypeError, "k must be an integer"),
        (lambda: idest.mle(GOOD, k=(10, 5)), ValueError, "needs k1 <= k2"),
        (lambda: idest.mle(GOOD, k=2, unbiased=True), ValueError, "needs k >= 3"),
        (lambda: idest.mle(GOOD, comb="max"), ValueError, "comb must be one of"),
        (lambda: idest.pca(GOOD, variance=1.5), ValueError, r"must lie in \(0, 1\]"),
        (lambda: idest.pca(GOOD, variance=[]), ValueError, r"must lie in \(0, 1\]"),
        (lambda: idest.pca(GOOD, solver="eigh"), ValueError, r"solver must be one of \('auto', 'covariance', 'svd'\); got 'eigh'"),
        (lambda: idest.spectrum(GOOD, solver=None), ValueError, r"solver must be one of .*got None"),
        (lambda: idest.local_pca(GOOD, k=5, rule="elbow"), ValueError, "rule must be one of"),
        (lambda: idest.local_pca(GOOD, k=5, alpha=1), TypeError, "Unknown PCA-rule parameter"),
        (lambda: idest.gride(GOOD, range_max=1), ValueError, "range_max must be at least 2"),
        (lambda: idest.knn(GOOD, 60), ValueError, "need at least k \\+ 1 = 61 points"),
        (lambda: idest.pca_rule([1.0, 2.0], "FO"), ValueError, "descending"),
        (lambda: idest.pca_rule([0.0, 0.0], "FO"), ValueError, "positive sum"),
    ],
)
def test_bad_parameters(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_constant_data():
    X = np.full((30, 4), 2.5)
    with pytest.raises(ValueError, match="zero variance"):
        idest.pca(X)
    with pytest.raises(ValueError, match="X has 1 after dropping 29 duplicated point"):
        idest.twonn(X)


def test_cosine_zero_rows():
    X = GOOD.copy()
    X[7] = 0.0
    with pytest.raises(ValueError, match=r"undefined for all-zero rows; row\(s\) \[7\]"):
        idest.twonn(X, metric="cosine")


def test_duplicates_dropped_or_refused():
    X = np.vstack([GOOD, GOOD[[4, 9]], GOOD[[4]]])
    result = idest.twonn(X)
    assert result.n_duplicates == 3 and result.n_points == 60
    assert result.dimension == idest.twonn(GOOD).dimension
    with pytest.raises(ValueError, match=r"3 duplicated point\(s\) \(rows 60, 61, 62 repeat earlier rows\).*on_duplicates='drop'"):
        idest.twonn(X, on_duplicates="raise")
    # -0.0 and 0.0 are the same coordinate
    Y = np.vstack([GOOD, GOOD[:1]])
    Y[0, 0], Y[-1, 0] = 0.0, -0.0
    assert idest.mle(Y, k=5).n_duplicates == 1


def test_tiny_but_real_clusters_are_not_near_duplicates():
    # near-duplicates are judged against the rounding of the points' own coordinates, not
    # against the typical neighbour distance: clusters far tighter than the rest are kept
    # while their spacing is well above that rounding
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 8)) + 3.0
    tight = X[0] + 1e-9 * rng.standard_normal((40, 8))  # spacing ~1e-9 |x|: 1e6 float64 eps
    at_origin = 1e-12 * rng.standard_normal((40, 8))  # ~1e-12 next to points of norm ~9
    for cloud in (np.vstack([X, tight]), np.vstack([X, at_origin]), np.vstack([X, at_origin]).astype(np.float32)):
        nb = idest.neighborhoods(cloud, k=5)
        assert nb.n_near_duplicates == 0 and nb.n_points == len(cloud)
    float32_tight = (X[0] + 1e-4 * rng.standard_normal((40, 8))).astype(np.float32)  # ~500 float32 eps
    assert idest.twonn(np.vstack([X.astype(np.float32), float32_tight])).n_near_duplicates == 0


def test_near_duplicates_follow_the_input_dtype():
    # float16 data widened to float32 keep float16's precision: a row one float16 step
    # away from another is a near-duplicate; the same values given as float32 data would
    # be 8,192 float32 eps apart, real points
    X = RNG.standard_normal((60, 5)).astype(np.float16)
    step = np.nextafter(X[:3], np.float16(np.inf))
    half = np.vstack([X, step])
    assert idest.mle(half, k=5).n_near_duplicates == 3
    assert idest.mle(half.astype(np.float32), k=5).n_near_duplicates == 0
    with pytest.raises(ValueError, match=r"X has 20 after dropping 40 near-duplicated point\(s\)"):
        idest.mle(np.vstack([GOOD[:20], GOOD[:20] * (1 + 1e-15), GOOD[:20] * (1 - 1e-15)]), k=20)


@pytest.mark.parametrize(
    "tol,error,message",
    [(-1, ValueError, "near_duplicate_tol must be finite and >= 0"), (np.nan, ValueError, "finite and >= 0"),
     ("64", TypeError, "near_duplicate_tol must be a number"), (True, TypeError, "must be a number")],
)
def test_bad_near_duplicate_tol(tol, error, message):
    for call in (idest.twonn, lambda X, **kw: idest.neighborhoods(X, 5, **kw)):
        with pytest.raises(error, match=message):
            call(GOOD, near_duplicate_tol=tol)


def test_cosine_duplicates_are_directions():
    # x and 3x are the same point for the cosine distance
    X = np.vstack([GOOD, 3.0 * GOOD[:2]])
    result = idest.twonn(X, metric="cosine")
    assert result.n_duplicates == 2
    assert result.dimension == pytest.approx(idest.twonn(GOOD, metric="cosine").dimension, rel=1e-12)
    with pytest.raises(ValueError, match=r"rows 60, 61 repeat earlier rows"):
        idest.gride(X, metric="cosine", on_duplicates="raise")


def test_integer_and_float16_are_widened_exactly():
    ints = RNG.integers(-50, 50, size=(80, 6))
    assert idest.twonn(ints).dimension == idest.twonn(ints.astype(np.float64)).dimension
    assert idest.pca(ints.astype(np.int8)).participation_ratio == idest.pca(ints.astype(np.float64)).participation_ratio
    half = RNG.standard_normal((80, 6)).astype(np.float16)
    assert idest.mle(half, k=5).dimension == idest.mle(half.astype(np.float32), k=5).dimension
    with pytest.raises(ValueError, match="beyond 2\\*\\*53"):
        idest.twonn(np.full((10, 2), 2**60, dtype=np.int64))


def test_list_input_and_non_contiguous_views():
    X = RNG.standard_normal((50, 12))
    assert idest.twonn(X.tolist()).dimension == idest.twonn(X).dimension
    view = np.asfortranarray(X)[:, ::2]
    assert idest.twonn(view).dimension == idest.twonn(np.ascontiguousarray(view)).dimension


def test_twenty_points_work_everywhere():
    X = RNG.standard_normal((20, 768)).astype(np.float32)
    assert np.isfinite(idest.twonn(X).dimension)
    assert np.isfinite(idest.mle(X, k=10).dimension)
    assert idest.pca(X, variance=0.9).dimension >= 1
    g = idest.gride(X)
    np.testing.assert_array_equal(g.scales, [1, 2, 4, 8])  # n2 <= N - 1 = 19
    assert np.all(np.isfinite(g.dimensions))
