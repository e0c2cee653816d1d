"""Same arrays through idest and scikit-dimension 0.5: TwoNN, MLE (global and local),
the lPCA rules (global and per neighbourhood) and GRIDE.

Continuous values agree to rtol 1e-6 (in practice ~1e-12: both are exact float64
computations of the same formulas); integer rules agree exactly.
"""

import warnings

import numpy as np
import pytest

import idest

skdim = pytest.importorskip("skdim")
from skdim.datasets import hyperBall, hyperSphere  # noqa: E402


def embedded(n, d, D, seed):
    """A d-ball rotated into R^D and moved away from the origin (D > 25 exercises skdim's
    chunked full-sort TwoNN path)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    return hyperBall(n, d, random_state=seed) @ q[:d] + 50.0


DATA = {
    "ball5_in5": lambda: hyperBall(500, 5, random_state=0),
    "sphere3_in4": lambda: hyperSphere(400, 3, random_state=1),
    "ball6_in100": lambda: embedded(400, 6, 100, 2),
}


@pytest.fixture(scope="module", params=sorted(DATA))
def data(request):
    return request.param, DATA[request.param]()


def test_twonn(data):
    _, X = data
    assert idest.twonn(X).dimension == pytest.approx(skdim.id.TwoNN().fit(X).dimension_, rel=1e-6)
    for f in (0.0, 0.1, 0.25):
        ref = skdim.id.TwoNN(method="mle", discard_fraction=f).fit(X).dimension_
        assert idest.twonn(X, discard_fraction=f, method="mle").dimension == pytest.approx(ref, rel=1e-6)
    ref = skdim.id.TwoNN(discard_fraction=0.3).fit(X).dimension_
    assert idest.twonn(X, discard_fraction=0.3).dimension == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize(
    "k,comb,unbiased", [(20, "mle", False), (5, "mle", False), (20, "mean", False), (20, "median", False), (10, "mle", True)]
)
def test_mle(data, k, comb, unbiased):
    _, X = data
    ref = skdim.id.MLE(unbiased=unbiased).fit(X, n_neighbors=k, comb=comb)
    got = idest.mle(X, k=k, comb=comb, unbiased=unbiased)
    assert got.dimension == pytest.approx(ref.dimension_, rel=1e-6)
    np.testing.assert_allclose(got.local, ref.dimension_pw_, rtol=1e-6)


def test_mle_k_range_is_average_over_k(data):
    _, X = data
    refs = [skdim.id.MLE().fit(X, n_neighbors=k).dimension_ for k in range(10, 16)]
    assert idest.mle(X, k=(10, 15)).dimension == pytest.approx(np.mean(refs), rel=1e-6)


RULE_PARAMS = [
    ("FO", {}, {}),
    ("FO", {"alpha_fo": 0.2}, {"alphaFO": 0.2}),
    ("Fan", {}, {}),
    ("maxgap", {}, {}),
    ("ratio", {}, {}),
    ("ratio", {"alpha_ratio": 0.5}, {"alphaRatio": 0.5}),
    ("Kaiser", {}, {}),
    ("broken_stick", {}, {}),
    ("participation_ratio", {}, {}),
]


@pytest.mark.parametrize("rule,ours,theirs", RULE_PARAMS)
def test_global_pca_rules(data, rule, ours, theirs):
    _, X = data
    ref = skdim.id.lPCA(ver=rule, **theirs).fit(X)
    result = idest.pca(X)
    np.testing.assert_allclose(result.spectrum, ref.explained_var_, rtol=1e-9, atol=1e-12 * ref.explained_var_[0])
    assert result.rule(rule, **ours) == pytest.approx(ref.dimension_, rel=1e-6)


@pytest.mark.parametrize("rule,ours,theirs", RULE_PARAMS)
@pytest.mark.parametrize("k,D", [(40, 8), (30, 60)])  # neighbourhoods with k > D and k < D
def test_local_pca_rules(rule, ours, theirs, k, D):
    rng = np.random.default_rng(D)
    # a curved 4-dimensional cloud with a little noise in every direction
    z = rng.uniform(-1, 1, (150, 4))
    X = np.tanh(z @ rng.standard_normal((4, D))) + 0.05 * rng.standard_normal((150, D))
    ref = skdim.id.lPCA(ver=rule, **theirs).fit_pw(X, n_neighbors=k).dimension_pw_
    got = idest.local_pca(X, k=k, rule=rule, **ours)
    np.testing.assert_allclose(got.local, ref, rtol=1e-6)
    assert got.dimension == pytest.approx(np.mean(ref), rel=1e-6)


def test_gride_multiscale(data):
    _, X = data
    ref = skdim.id.GRIDE(multiscale=True, range_max=64).fit(X)
    got = idest.gride(X, range_max=64)
    np.testing.assert_array_equal(got.scales, ref.scales_)
    np.testing.assert_allclose(got.dimensions, ref.dimension_scales_, rtol=1e-6)
    # skdim evaluates the Fisher information on the ratios kept after the outlier cut,
    # DADApy (and idest) on all of them: equal wherever the cut removed nothing
    uncut = got.n_used == got.n_points
    assert uncut.any()
    np.testing.assert_allclose(got.errors[uncut], ref.error_scales_[uncut], rtol=1e-6)


def test_duplicates_dropped_give_skdim_numbers_on_the_distinct_points():
    X = hyperBall(300, 4, random_state=3)
    with_dups = np.vstack([X, X[:25]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert skdim.id.MLE().fit(with_dups, n_neighbors=20).dimension_ == 0  # skdim's failure mode
    got = idest.mle(with_dups, k=20)
    assert got.n_duplicates == 25 and got.n_points == 300
    assert got.dimension == pytest.approx(skdim.id.MLE().fit(X, n_neighbors=20).dimension_, rel=1e-6)
    np.testing.assert_array_equal(got.point_index, np.arange(300))
    t = idest.twonn(with_dups)
    assert t.n_duplicates == 25
    assert t.dimension == pytest.approx(skdim.id.TwoNN().fit(X).dimension_, rel=1e-6)
