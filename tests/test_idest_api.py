"""The public API contract: names, result attributes, options, wrappers, determinism."""

import dataclasses
import importlib
import inspect

import numpy as np
import pytest

import idest
from idest import pca_rules


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(11)
    z = rng.standard_normal((700, 6))
    return (np.tanh(z @ rng.standard_normal((6, 40))) @ rng.standard_normal((40, 768)) + 300).astype(np.float32)


def test_exports():
    for name in ("twonn", "mle", "pca", "gride", "knn", "local_pca", "twonn_scaling", "n_components_for_variance",
                 "neighborhoods", "k_needed", "Neighborhoods", "PCA_SOLVERS",
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


WRAPPERS = {
    idest.TwoNN: idest.twonn,
    idest.MLE: idest.mle,
    idest.PCA: idest.pca,
    idest.LocalPCA: idest.local_pca,
    idest.GRIDE: idest.gride,
}


@pytest.mark.parametrize("cls", WRAPPERS, ids=lambda c: c.__name__)
def test_wrappers_show_their_options_with_the_functions_defaults(cls):
    # the signature (what help() and completion show) lists every option explicitly, each
    # with the default the function uses; no hidden **options
    params = inspect.signature(cls).parameters
    function_params = inspect.signature(WRAPPERS[cls]).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    expected = {name: p.default for name, p in function_params.items() if name != "X" and p.kind is not p.VAR_KEYWORD}
    if cls is idest.LocalPCA:  # the rules' parameters, which local_pca takes as **rule_params
        expected.update(pca_rules.DEFAULTS)
    assert {name: p.default for name, p in params.items()} == expected
    assert set(cls().get_params()) == set(expected)
    for name in expected:
        assert name in (cls.__doc__ or ""), name


def test_wrappers_set_params_and_clone_as_scikit_learn_does(X):
    base = pytest.importorskip("sklearn.base")
    m = idest.MLE(k=10)
    assert m.set_params(k=12, comb="mean") is m
    assert m.get_params()["k"] == 12 and m.k == 12
    assert m.fit(X).dimension_ == idest.mle(X, k=12, comb="mean").dimension
    copy = base.clone(m)
    assert type(copy) is idest.MLE and copy.get_params() == m.get_params() and not hasattr(copy, "result_")
    levels = [0.75, 0.9]
    p = base.clone(idest.PCA(variance=levels, solver="svd"))
    assert p.variance == levels and p.solver == "svd"
    np.testing.assert_array_equal(p.fit(X).result_.dimensions, idest.pca(X, variance=levels, solver="svd").dimensions)
    lp = idest.LocalPCA(k=20, rule="Fan").set_params(alpha_fan=5.0)
    assert lp.fit(X).dimension_ == idest.local_pca(X, k=20, rule="Fan", alpha_fan=5.0).dimension
    assert repr(lp) == "LocalPCA(k=20, rule='Fan', alpha_fan=5.0)"
    with pytest.raises(ValueError, match=r"Invalid parameter 'kk' for MLE; its parameters are \['k', 'comb'"):
        m.set_params(kk=3)
    with pytest.raises(TypeError):
        idest.TwoNN(fraction=0.2)  # a misspelt option fails at once, not at fit
    with pytest.raises(ValueError, match="discard_fraction must lie in"):
        idest.TwoNN(discard_fraction=2.0).fit(X)  # values are checked by the function, at fit


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


def test_each_rule_name_runs_its_rule():
    # closed forms on a spectrum halving at every step (m = 6, total 15.75): a rule that ran
    # under another rule's name would give another number here
    ev = np.array([8.0, 4.0, 2.0, 1.0, 0.5, 0.25])
    expected = {
        "FO": 5,  # above 0.05 * 8
        "Kaiser": 2,  # above the mean, 2.625
        "maxgap": 1,  # every ratio is 2: the first
        "ratio": 4,  # cumulative shares .51, .76, .89 below alpha_ratio = 0.9, plus one
        "broken_stick": 2,  # shares .51, .25 above the stick's .41, .24; .13 below .16
        "participation_ratio": 15.75**2 / np.sum(ev**2),
    }
    for rule, value in expected.items():
        assert idest.pca_rule(ev, rule, alpha_ratio=0.9) == pytest.approx(value, rel=1e-12), rule
    assert set(expected) | {"Fan"} == set(idest.PCA_RULES)


def well_conditioned(n, d, seed):
    """Gaussian data with axis scales from 1 down to 0.2 (condition 25), rotated and moved
    away from the origin: eigenvalues well above any solver's resolution."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return rng.standard_normal((n, d)) * np.linspace(1.0, 0.2, d) @ q + 5.0


# N > D (the D x D covariance; "auto" would use the SVD here, N < 10 D) and N < D (the
# N x N Gram matrix of the centred rows)
SHAPES = [(600, 80), (60, 200)]


@pytest.mark.parametrize("n,d", SHAPES)
def test_pca_solvers_agree_with_scikit_learn(n, d):
    sklearn_decomposition = pytest.importorskip("sklearn.decomposition")
    X = well_conditioned(n, d, seed=n)
    ref = sklearn_decomposition.PCA(svd_solver="full").fit(X).explained_variance_
    levels = [0.5, 0.75, 0.9, 0.95]
    results = {solver: idest.pca(X, variance=levels, solver=solver) for solver in ("covariance", "svd")}
    for solver, p in results.items():
        assert p.solver == solver and p.spectrum.shape == (min(n, d),)
        np.testing.assert_allclose(p.spectrum[:50], ref[:50], rtol=1e-10)
        for v, count in zip(levels, p.dimensions):
            assert sklearn_decomposition.PCA(n_components=v, svd_solver="full").fit(X).n_components_ == count
    np.testing.assert_allclose(results["covariance"].spectrum[:50], results["svd"].spectrum[:50], rtol=1e-10)
    np.testing.assert_array_equal(results["covariance"].dimensions, results["svd"].dimensions)


@pytest.mark.parametrize("n,d", [(600, 80), (60, 200), (900, 80)])
def test_pca_auto_is_scikit_learns_choice(n, d):
    # bit-identical to the solver scikit-learn's rule picks: covariance when N >= 10 D
    X = well_conditioned(n, d, seed=1)
    expected = "covariance" if n >= 10 * d else "svd"
    auto = idest.pca(X)
    assert auto.solver == expected
    np.testing.assert_array_equal(auto.spectrum, idest.pca(X, solver=expected).spectrum)
    np.testing.assert_array_equal(idest.spectrum(X), auto.spectrum)
    np.testing.assert_array_equal(idest.spectrum(X, solver="svd"), idest.pca(X, solver="svd").spectrum)


@pytest.mark.parametrize("n,d", SHAPES)
def test_pca_covariance_chunks(monkeypatch, n, d):
    # a tiny chunk size: the covariance (or Gram matrix) is summed over many row (or
    # column) chunks; only the summation order changes
    X = well_conditioned(n, d, seed=2)
    whole = idest.pca(X, solver="covariance").spectrum
    pca_module = importlib.import_module("idest.pca")  # idest.pca is also the function
    monkeypatch.setattr(pca_module, "_CHUNK_BYTES", 8 * 7 * max(n, d))
    chunked = idest.pca(X, solver="covariance").spectrum
    np.testing.assert_allclose(chunked[:50], whole[:50], rtol=1e-12)


def test_pca_cleaning_follows_the_solver():
    # covariance eigenvalues exactly s^2 / (n - 1): X = Q diag(s) V^T with Q's columns
    # orthonormal and centred. The smallest, 1e-20 of the largest, lies below the
    # covariance solver's resolution (~max(N, D) eps = 4e-14 relative) and above the SVD's
    # (its square): the SVD keeps it, the covariance solver sets it to 0.
    rng = np.random.default_rng(5)
    n = 200
    z = rng.standard_normal((n, 3))
    q, _ = np.linalg.qr(z - z.mean(axis=0))
    v, _ = np.linalg.qr(rng.standard_normal((5, 3)))
    s = np.array([10.0, 1.0, 1e-9])
    X = (q * s) @ v.T
    exact = s**2 / (n - 1)
    svd = idest.pca(X, solver="svd").spectrum
    cov = idest.pca(X, solver="covariance").spectrum
    np.testing.assert_allclose(svd[:3], exact, rtol=1e-5)
    np.testing.assert_allclose(cov[:2], exact[:2], rtol=1e-12)
    assert np.all(cov[2:] == 0) and np.all(svd[3:] == 0)
    assert idest.pca(X).solver == "covariance" and idest.pca(X).spectrum[2] == 0  # N >= 10 D
