"""The public API contract: names, result attributes, options, wrappers, determinism."""

import dataclasses

import numpy as np
import pytest

import idest


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(11)
    z = rng.standard_normal((700, 6))
    return (np.tanh(z @ rng.standard_normal((6, 40))) @ rng.standard_normal((40, 768)) + 300).astype(np.float32)


def test_exports():
    for name in ("twonn", "mle", "pca", "gride", "knn", "local_pca", "twonn_scaling", "n_components_for_variance",
                 "TwoNN", "MLE", "PCA", "LocalPCA", "GRIDE", "TwoNNResult", "MLEResult", "PCAResult", "GrideResult"):
        assert hasattr(idest, name), name


def test_contract_attributes(X):
    t = idest.twonn(X, metric="euclidean", discard_fraction=0.1)
    assert isinstance(t.dimension, float) and isinstance(t.error, float) and t.error > 0
    assert t.n_points == 700 and t.n_fit == 630 and t.n_duplicates == 0 and t.metric == "euclidean"
    m = idest.mle(X, k=20)
    assert isinstance(m.dimension, float) and np.isfinite(m.error) and m.error > 0
    assert m.local.shape == (700,) and np.all(m.local > 0)
    p = idest.pca(X, variance=0.9)
    assert isinstance(p.dimension, int)
    assert p.spectrum.shape == (700,) and np.all(np.diff(p.spectrum) <= 0)
    np.testing.assert_allclose(p.explained_variance_ratio.sum(), 1.0)
    assert isinstance(p.participation_ratio, float)
    g = idest.gride(X, range_max=64)
    np.testing.assert_array_equal(g.scales, [1, 2, 4, 8, 16, 32])
    assert g.dimensions.shape == g.errors.shape == g.radii.shape == (6,)
    assert np.all(np.diff(g.radii) > 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.dimension = 3.0


def test_variance_levels_from_one_decomposition(X):
    levels = [0.75, 0.8, 0.85, 0.9, 0.95]
    p = idest.pca(X, variance=levels)
    assert p.variance_levels == tuple(levels)
    assert p.dimension == p.dimensions[0]
    np.testing.assert_array_equal(p.dimensions, idest.n_components_for_variance(p.spectrum, levels))
    for v, n in zip(levels, p.dimensions):
        assert idest.pca(X, variance=v).dimension == n
        # the definition: first count whose cumulative ratio exceeds v
        cumulative = np.cumsum(p.explained_variance_ratio)
        assert cumulative[n - 1] > v and (n == 1 or cumulative[n - 2] <= v)


def test_variance_counts_match_scikit_learn(X):
    sklearn_decomposition = pytest.importorskip("sklearn.decomposition")
    X64 = X.astype(np.float64)
    p = idest.pca(X64, variance=[0.75, 0.9, 0.95])
    for v, n in zip(p.variance_levels, p.dimensions):
        assert sklearn_decomposition.PCA(n_components=v).fit(X64).n_components_ == n
    ref = sklearn_decomposition.PCA().fit(X64).explained_variance_
    np.testing.assert_allclose(p.spectrum[:50], ref[:50], rtol=1e-8)


def test_wrappers_are_thin(X):
    assert idest.TwoNN().fit(X).dimension_ == idest.twonn(X).dimension
    m = idest.MLE(k=10, comb="mean").fit(X)
    assert m.dimension_ == idest.mle(X, k=10, comb="mean").dimension
    np.testing.assert_array_equal(m.dimension_pw_, m.result_.local)
    assert idest.PCA(variance=0.8).fit_transform(X) == idest.pca(X, variance=0.8).dimension
    assert idest.LocalPCA(k=20, rule="ratio").fit(X).dimension_ == idest.local_pca(X, k=20, rule="ratio").dimension
    g = idest.GRIDE(range_max=16).fit(X)
    np.testing.assert_array_equal(g.dimensions_, idest.gride(X, range_max=16).dimensions)
    assert "range_max=16" in repr(idest.GRIDE(range_max=16))


def test_bit_identical_repeats(X):
    for f in (
        lambda: idest.twonn(X).dimension,
        lambda: idest.mle(X, k=20).local,
        lambda: idest.gride(X).errors,
        lambda: idest.pca(X).spectrum,
        lambda: idest.twonn_scaling(X).dimensions,
        lambda: idest.local_pca(X, k=30, rule="Fan").local,
    ):
        np.testing.assert_array_equal(f(), f())


def test_float32_and_float64_agree(X):
    # exact float64 distances from either dtype: only the input rounding differs
    X64 = X.astype(np.float64)
    assert idest.twonn(X).dimension == idest.twonn(X64).dimension
    assert idest.mle(X, k=20).dimension == idest.mle(X64, k=20).dimension
    np.testing.assert_allclose(idest.pca(X).spectrum[:20], idest.pca(X64).spectrum[:20], rtol=1e-10)


def test_cosine_distance_halves_ratio_estimates(X):
    # 1 - cos is half the squared chord between unit vectors: every ratio mu is squared,
    # so TwoNN and GRIDE at n1 = 1 report exactly half of the chord-distance value
    unit = X.astype(np.float64) / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    cos = idest.twonn(X, metric="cosine")
    assert cos.metric == "cosine"
    assert cos.dimension == pytest.approx(idest.twonn(unit).dimension / 2, rel=1e-9)
    assert idest.gride(X, metric="cosine").dimensions[0] == pytest.approx(idest.gride(unit).dimensions[0] / 2, rel=1e-9)
    d, i = idest.knn(X, 3, metric="cosine")
    dd, ii = idest.knn(unit, 3)
    np.testing.assert_array_equal(i, ii)
    np.testing.assert_allclose(d, dd**2 / 2, rtol=1e-9)


def test_mle_options(X):
    single = [idest.mle(X, k=k).dimension for k in range(8, 13)]
    assert idest.mle(X, k=(8, 12)).dimension == pytest.approx(np.mean(single), rel=1e-12)
    m = idest.mle(X, k=20, comb="mle")
    assert m.dimension == pytest.approx(1 / np.mean(1 / m.local), rel=1e-12)
    assert idest.mle(X, k=20, comb="median").dimension == pytest.approx(np.median(m.local), rel=1e-12)
    # a standard error of a mean over 700 points: a few percent of the spread
    assert m.error < np.std(m.local) / 10


def test_twonn_scaling_levels(X):
    s = idest.twonn_scaling(X, n_min=40)
    np.testing.assert_array_equal(s.sizes, [700, 350, 175, 88, 44])
    np.testing.assert_array_equal(s.n_subsets, [1, 2, 4, 8, 16])
    assert s.errors[0] == 0 and np.all(s.errors[1:] > 0)
    assert s.dimensions[0] == idest.twonn(X).dimension
    assert np.all(np.diff(s.scales) > 0)
    other_seed = idest.twonn_scaling(X, n_min=40, seed=1)
    assert other_seed.dimensions[0] == s.dimensions[0] and not np.array_equal(other_seed.dimensions, s.dimensions)


def test_gride_first_scale_is_twonn_mle_after_the_outlier_cut(X):
    g = idest.gride(X)
    mu = idest.twonn(X, discard_fraction=0, method="mle").mu
    q95, q50 = np.percentile(mu, [95, 50])
    kept = mu[mu < 20 * (q95 - q50) + q50]
    assert g.n_used[0] == kept.size
    assert g.dimensions[0] == pytest.approx((kept.size - 1) / np.log(kept).sum(), rel=1e-12)


def test_local_pca_and_rules(X):
    lp = idest.local_pca(X, k=40, rule="FO", comb="median")
    assert lp.local.shape == (700,) and lp.dimension == np.median(lp.local)
    spectrum = idest.pca(X).spectrum
    assert idest.pca_rule(spectrum, "participation_ratio") == pytest.approx(idest.pca(X).participation_ratio, rel=1e-12)
    assert set(idest.PCA_RULES) == {"FO", "Fan", "maxgap", "ratio", "Kaiser", "broken_stick", "participation_ratio"}
