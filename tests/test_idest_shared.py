"""idest.neighborhoods: one exact neighbour search shared by the estimators.

The contract checked here: every estimator given ``idest.neighborhoods(X, k)`` returns
exactly (bit for bit, every field) what it returns for X itself, or raises the same error;
the object holds the engine's exact neighbours of the distinct points; asking it for more
neighbours than it holds, or for another metric or duplicate policy, is a clear error.
"""

import dataclasses

import numpy as np
import pytest

import idest


def curved(n, d=48, seed=0, offset=1000.0, dtype=np.float64):
    """A curved 5-dimensional cloud far from the origin, as GPT-2 residual streams are."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 5))
    X = np.tanh(z @ rng.standard_normal((5, 24))) @ rng.standard_normal((24, d))
    return (X + offset).astype(dtype)


def with_duplicates():
    """Exact repeats, one of them repeated twice, interleaved with the other rows."""
    X = curved(300, seed=1)
    return np.insert(X, [10, 100, 100, 250], X[[3, 7, 7, 50]], axis=0)


def with_parallel_rows():
    """Rows that are positive multiples of earlier rows: duplicates for the cosine distance
    only (no row hash sees them)."""
    X = curved(300, seed=2, offset=0.5)
    return np.vstack([X, 2.5 * X[:5], 0.25 * X[[40]]])


NEAR_COPY_AT = [10, 10, 100, 130, 290, 290, 290, 290, 290, 299, 299]
NEAR_COPY = np.insert(np.zeros(300, dtype=bool), NEAR_COPY_AT, True)  # rows that are near-copies


def with_near_duplicates(dtype):
    """Rows equal to earlier rows up to their last bits (a few of dtype's epsilon): pairs, a
    group of six (more than TwoNN's two neighbours see at once) and a chain whose ends are
    farther apart than the tolerance (64 eps)."""
    X = curved(300, seed=3, dtype=dtype)
    eps = np.finfo(dtype).eps
    near = [X[[3, 7, 50]] * dtype(1 + 2 * eps), X[[120]] * dtype(1 - 3 * eps)]
    near += [X[[200]] * dtype(1 + q * 4 * eps) for q in range(1, 6)]
    near += [X[[250]] * dtype(1 + 40 * eps), X[[250]] * dtype(1 + 80 * eps)]
    return np.insert(X, NEAR_COPY_AT, np.vstack(near), axis=0)


def lattice():
    """A 5 x 5 x 5 integer grid far from the origin: ties at every distance."""
    g = np.arange(5.0)
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) + 1000.0


CLOUDS = {
    "curved_float32": lambda: curved(400, dtype=np.float32),
    "curved_float64": lambda: curved(400),
    "duplicates_float32": lambda: with_duplicates().astype(np.float32),
    "duplicates_float64": with_duplicates,
    "parallel_rows": with_parallel_rows,
    "near_duplicates_float32": lambda: with_near_duplicates(np.float32),
    "near_duplicates_float64": lambda: with_near_duplicates(np.float64),
    "lattice": lattice,
}

ESTIMATORS = {
    "twonn": lambda src, m: idest.twonn(src, metric=m),
    "twonn_mle": lambda src, m: idest.twonn(src, metric=m, discard_fraction=0.0, method="mle"),
    "mle_20": lambda src, m: idest.mle(src, k=20, metric=m),
    "mle_range": lambda src, m: idest.mle(src, k=(5, 12), metric=m),
    "mle_median_unbiased": lambda src, m: idest.mle(src, k=10, comb="median", unbiased=True, metric=m),
    "gride_64": lambda src, m: idest.gride(src, range_max=64, metric=m),
    "gride_20": lambda src, m: idest.gride(src, range_max=20, metric=m),
    "twonn_scaling": lambda src, m: idest.twonn_scaling(src, metric=m, n_min=40),
    "local_pca": lambda src, m: idest.local_pca(src, k=12, rule="Fan", metric=m),
}


def outcome(call):
    """The result of call(), or the type and message of the ValueError it raises: both
    paths must agree on failures too (a lattice makes TwoNN's ratios all 1)."""
    try:
        return call()
    except ValueError as err:
        return ("ValueError", str(err))


def assert_identical(a, b):
    """Same type and every field equal bit for bit (arrays: values, dtype, shape)."""
    assert type(a) is type(b)
    if not dataclasses.is_dataclass(a):
        assert a == b
        return
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, f.name
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        elif isinstance(x, float):
            assert x == y or (np.isnan(x) and np.isnan(y)), f.name
        else:
            assert x == y, f.name


@pytest.fixture(scope="module", params=[(c, m) for c in CLOUDS for m in ("euclidean", "cosine")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def shared(request):
    """(X, metric, Neighborhoods with k = 64) for each cloud and metric."""
    name, metric = request.param
    X = CLOUDS[name]()
    return X, metric, idest.neighborhoods(X, k=64, metric=metric)


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_estimators_on_neighborhoods_are_bit_identical(shared, estimator):
    X, metric, nb = shared
    run = ESTIMATORS[estimator]
    assert_identical(outcome(lambda: run(nb, None)), outcome(lambda: run(X, metric)))


def test_the_object_holds_the_engines_neighbours_of_the_distinct_points(shared):
    X, metric, nb = shared
    distinct = X[nb.point_index]
    distances, indices = idest.knn(distinct, 64, metric=metric)
    np.testing.assert_array_equal(nb.distances, distances)
    np.testing.assert_array_equal(nb.indices, indices)
    np.testing.assert_array_equal(nb.points, distinct)
    assert nb.k == 64 and nb.n_points == len(distinct)
    assert nb.n_points + nb.n_duplicates + nb.n_near_duplicates == len(X)
    assert nb.metric == metric and nb.on_duplicates == "drop" and nb.near_duplicate_tol == 64
    # the property the sharing rests on: a k search is the first k columns of a larger one
    d8, i8 = idest.knn(distinct, 8, metric=metric)
    np.testing.assert_array_equal(nb.distances[:, :8], d8)
    np.testing.assert_array_equal(nb.indices[:, :8], i8)
    # no zero distance is left among the distinct points
    assert np.all(nb.distances[:, 0] > 0)


def test_duplicates_dropped_keep_the_first_copy():
    X = with_duplicates()
    nb = idest.neighborhoods(X, k=10)
    first_copies = np.sort(np.unique(X, axis=0, return_index=True)[1])
    np.testing.assert_array_equal(nb.point_index, first_copies)
    assert nb.n_duplicates == 4
    # under the cosine distance the multiples of earlier rows go too, and only they
    Y = with_parallel_rows()
    assert idest.neighborhoods(Y, k=10).n_duplicates == 0
    cos = idest.neighborhoods(Y, k=10, metric="cosine")
    assert cos.n_duplicates == 6
    np.testing.assert_array_equal(cos.point_index, np.arange(300))


def test_near_duplicates_are_dropped_as_the_estimators_drop_them():
    for dtype in (np.float32, np.float64):
        X = with_near_duplicates(dtype)
        nb = idest.neighborhoods(X, k=64)
        # every near-copy comes after its original, so the originals are the rows kept
        np.testing.assert_array_equal(nb.point_index, np.flatnonzero(~NEAR_COPY))
        assert (nb.n_points, nb.n_duplicates, nb.n_near_duplicates) == (300, 0, 11)
    # off, and so loose that real neighbours merge (the closest lie at 4e3 eps |x| here)
    X = with_near_duplicates(np.float32)
    for tol in (0, 2e4):
        nb = idest.neighborhoods(X, k=8, near_duplicate_tol=tol)
        assert nb.near_duplicate_tol == float(tol)
        assert (nb.n_near_duplicates == 0) if tol == 0 else (nb.n_near_duplicates > 11)
        assert_identical(idest.twonn(nb), idest.twonn(X, near_duplicate_tol=tol))


def test_refusing_duplicates_reads_as_the_estimators_do():
    X = with_duplicates()
    expected = outcome(lambda: idest.twonn(X, on_duplicates="raise"))
    assert expected[0] == "ValueError" and "duplicated point(s)" in expected[1]
    assert outcome(lambda: idest.neighborhoods(X, k=5, on_duplicates="raise")) == expected
    Y = with_parallel_rows()
    expected = outcome(lambda: idest.mle(Y, k=5, metric="cosine", on_duplicates="raise"))
    assert outcome(lambda: idest.neighborhoods(Y, k=5, metric="cosine", on_duplicates="raise")) == expected
    # built with "raise" (no duplicates present), the object serves estimators as usual
    Z = curved(200)
    nb = idest.neighborhoods(Z, k=20, on_duplicates="raise")
    assert nb.on_duplicates == "raise"
    assert_identical(idest.mle(nb, k=20), idest.mle(Z, k=20, on_duplicates="raise"))
    assert_identical(idest.mle(nb, k=20, on_duplicates="raise"), idest.mle(Z, k=20))


SMALL = np.random.default_rng(0).standard_normal((60, 5))


@pytest.mark.parametrize(
    "X,metric,call",
    [
        (SMALL[:3], "euclidean", lambda src: idest.twonn(src)),
        (SMALL[:9], "euclidean", lambda src: idest.twonn(src, discard_fraction=0.7)),
        (SMALL[:15], "euclidean", lambda src: idest.mle(src, k=20)),
        (np.vstack([SMALL[:15]] * 3), "euclidean", lambda src: idest.mle(src, k=20)),
        (np.vstack([SMALL[:15]] * 3), "euclidean", lambda src: idest.mle(src, k=(5, 20))),
        (SMALL[:2], "euclidean", lambda src: idest.gride(src)),
        (np.vstack([SMALL[:2]] * 4), "euclidean", lambda src: idest.gride(src)),
        (SMALL[:8], "euclidean", lambda src: idest.twonn_scaling(src)),
        (SMALL[:10], "euclidean", lambda src: idest.local_pca(src, k=10)),
        (np.full((30, 4), 2.5), "euclidean", lambda src: idest.twonn(src)),
        (SMALL[:1], "euclidean", lambda src: idest.mle(src, k=5)),
        (np.vstack([SMALL[:4], 3.0 * SMALL[:4]]), "cosine", lambda src: idest.mle(src, k=5, metric="cosine")),
    ],
    ids=["twonn", "twonn_fraction", "mle", "mle_after_dropping", "mle_range", "gride", "gride_after_dropping",
         "twonn_scaling", "local_pca", "constant", "one_point", "cosine_after_dropping"],
)
def test_too_few_points_reads_the_same(X, metric, call):
    # the object is built for any cloud (k capped at n_points - 1); the estimator then
    # refuses it in the words it uses for X
    nb = idest.neighborhoods(X, k=64, metric=metric)
    assert nb.k == nb.n_points - 1 and nb.distances.shape == (nb.n_points, nb.k)
    expected = outcome(lambda: call(X))
    assert expected[0] == "ValueError" and "needs at least" in expected[1]
    assert outcome(lambda: call(nb)) == expected


def test_too_few_neighbours_says_which_k_to_compute():
    X = curved(300)
    nb = idest.neighborhoods(X, k=8)
    with pytest.raises(ValueError, match=r"MLE with k=20 needs the 20 nearest neighbours of each point; the "
                                         r"Neighborhoods passed hold k=8\. Compute them with "
                                         r"idest\.neighborhoods\(X, k=20\)"):
        idest.mle(nb, k=20)
    with pytest.raises(ValueError, match=r"GRIDE with range_max=64 needs the 64 nearest .* hold k=8"):
        idest.gride(nb, range_max=64)
    with pytest.raises(ValueError, match=r"GRIDE with range_max=31 needs the 16 nearest .*k=16\)"):
        idest.gride(nb, range_max=31)
    with pytest.raises(ValueError, match=r"local PCA with k=10 needs the 10 nearest"):
        idest.local_pca(nb, k=10)
    with pytest.raises(ValueError, match=r"TwoNN needs the 2 nearest neighbours of each point; .* hold k=1"):
        idest.twonn(idest.neighborhoods(X, k=1))
    # what fits is served: range_max=15 needs n2 = 8
    assert_identical(idest.gride(nb, range_max=15), idest.gride(X, range_max=15))
    assert_identical(idest.mle(nb, k=(3, 8)), idest.mle(X, k=(3, 8)))


def test_k_needed_is_enough_and_no_more():
    X = curved(300)
    k = idest.k_needed(twonn=True, mle=(5, 30), gride=100)
    assert k == 64  # GRIDE's largest order below range_max=100 is 64 > k2 = 30
    nb = idest.neighborhoods(X, k=k)
    assert_identical(idest.gride(nb, range_max=100), idest.gride(X, range_max=100))
    assert_identical(idest.mle(nb, k=(5, 30)), idest.mle(X, k=(5, 30)))
    with pytest.raises(ValueError, match="needs the 64 nearest"):
        idest.gride(idest.neighborhoods(X, k=k - 1), range_max=100)
    assert idest.k_needed(twonn=True) == 2
    assert idest.k_needed(mle=20, local_pca=25, gride=16) == 25
    with pytest.raises(ValueError, match="name at least one estimator"):
        idest.k_needed()
    with pytest.raises(ValueError, match="range_max must be at least 2"):
        idest.k_needed(gride=1)


def test_options_must_agree_with_the_search():
    X = curved(200)
    nb = idest.neighborhoods(X, k=20)
    with pytest.raises(ValueError, match=r"metric='cosine' disagrees with the Neighborhoods passed, which were "
                                         r"computed with metric='euclidean'.*neighborhoods\(X, k, metric='cosine'\)"):
        idest.twonn(nb, metric="cosine")
    with pytest.raises(ValueError, match=r"on_duplicates='raise' disagrees .* on_duplicates='drop'"):
        idest.mle(nb, k=10, on_duplicates="raise")
    with pytest.raises(ValueError, match=r"near_duplicate_tol=0.0 disagrees .* near_duplicate_tol=64.0"):
        idest.gride(nb, range_max=16, near_duplicate_tol=0)
    assert_identical(idest.twonn(nb, near_duplicate_tol=64), idest.twonn(X))
    with pytest.raises(ValueError, match="metric must be one of"):
        idest.gride(nb, metric="manhattan")
    cos = idest.neighborhoods(X, k=20, metric="cosine")
    with pytest.raises(ValueError, match=r"metric='euclidean' disagrees"):
        idest.local_pca(cos, k=10, metric="euclidean")
    # the same setting, given explicitly, is accepted
    assert_identical(idest.twonn(cos, metric="cosine"), idest.twonn(X, metric="cosine"))


def test_the_object_is_frozen_and_leaves_x_alone():
    X = curved(200)
    before = X.copy()
    nb = idest.neighborhoods(X, k=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        nb.k = 3
    for name in ("distances", "indices", "points", "point_index"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(nb, name)[0] = 0
    assert X.flags.writeable
    np.testing.assert_array_equal(X, before)
    # estimators' results own their arrays, as they do when given X
    assert idest.twonn(nb).point_index.flags.writeable


def test_bad_input():
    X = curved(50)
    with pytest.raises(ValueError, match="k must be at least 1"):
        idest.neighborhoods(X, k=0)
    with pytest.raises(TypeError, match="k must be an integer"):
        idest.neighborhoods(X, k=2.5)
    with pytest.raises(ValueError, match="metric must be one of"):
        idest.neighborhoods(X, k=5, metric="l1")
    with pytest.raises(ValueError, match="on_duplicates must be one of"):
        idest.neighborhoods(X, k=5, on_duplicates="keep")
    nb = idest.neighborhoods(X, k=5)
    for call in (idest.pca, idest.spectrum, lambda src: idest.knn(src, 3)):
        with pytest.raises(TypeError, match="X is an idest.Neighborhoods; this function needs the point cloud"):
            call(nb)


def test_wrappers_and_repeats():
    X = curved(300, dtype=np.float32)
    nb = idest.neighborhoods(X, k=idest.k_needed(twonn=True, mle=20, gride=64))
    assert idest.TwoNN().fit(nb).dimension_ == idest.twonn(X).dimension
    assert idest.MLE(k=20).fit(nb).dimension_ == idest.mle(X, k=20).dimension
    np.testing.assert_array_equal(idest.GRIDE().fit(nb).dimensions_, idest.gride(X).dimensions)
    again = idest.neighborhoods(X, k=64)
    np.testing.assert_array_equal(again.distances, nb.distances)
    np.testing.assert_array_equal(again.indices, nb.indices)
