"""Agreement with numbers computed by the reference implementations themselves.

1. scikit-dimension 0.5 ships cross-implementation reference values in
   skdim/tests/reference/fixtures.json (R intrinsicDimension 1.2.0 for MLE and PCA;
   DADApy for TwoNN and GRIDE's six scales), on datasets rebuilt by
   skdim/tests/reference/data.py. We use those datasets and numbers as they are.
2. DADApy numbers that fixtures.json lacks (the decimation scale analysis of TwoNN, GRIDE's
   radii, a 768-dimensional cloud far from the origin) were computed by DADApy 0.3.4
   (numpy 1.26.4) in its own venv with
       /tmp/dadapy-venv/bin/python scripts/bench_idest_dadapy.py reference \
           ball5_in10.npy sphere4_in5.npy curved6_in768.npy
   on the arrays built by ``skdim_datasets()`` / ``curved6_in768()`` below, saved with np.save.

Tolerances: rtol 1e-6 for continuous values (DADApy bisects GRIDE to 1e-7 absolute),
exact equality for integer PCA rules and subset sizes.
"""

import json
import os
import sys

import numpy as np
import pytest

import idest

skdim = pytest.importorskip("skdim")
REFERENCE_DIR = os.path.join(os.path.dirname(skdim.__file__), "tests", "reference")
FIXTURES = os.path.join(REFERENCE_DIR, "fixtures.json")


def skdim_datasets():
    sys.path.insert(0, REFERENCE_DIR)
    try:
        from data import id_datasets
    finally:
        sys.path.remove(REFERENCE_DIR)
    return id_datasets()


def curved6_in768():
    """A curved 6-dimensional manifold in R^768, 1000 units from the origin."""
    rs = np.random.RandomState(7)
    z = rs.standard_normal((600, 6))
    a1 = rs.standard_normal((6, 32))
    a2 = rs.standard_normal((32, 768))
    return np.tanh(z @ a1) @ a2 + 1000.0


@pytest.fixture(scope="module")
def fx():
    if not os.path.exists(FIXTURES):  # the 0.5.0 wheel ships it; fail loudly if it goes
        pytest.fail(f"skdim reference fixtures not found at {FIXTURES}")
    with open(FIXTURES) as f:
        return json.load(f)


DATASETS = skdim_datasets()


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_r_intrinsicdimension_mle(fx, name):
    X, ref = DATASETS[name], fx["intrinsicDimension"][name]
    assert idest.mle(X, k=20).dimension == pytest.approx(ref["mle_k20"], rel=1e-6)
    assert idest.mle(X, k=20, unbiased=True).dimension == pytest.approx(ref["mle_k20_unbiased"], rel=1e-6)
    assert idest.mle(X, k=5).dimension == pytest.approx(ref["mle_k5"], rel=1e-6)
    assert idest.mle(X, k=20, comb="mean").dimension == pytest.approx(ref["mle_k20_mean"], rel=1e-6)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_r_intrinsicdimension_pca_rules(fx, name):
    X, ref = DATASETS[name], fx["intrinsicDimension"][name]
    result = idest.pca(X)
    assert result.rule("FO") == ref["pca_FO"]
    assert result.rule("Fan") == ref["pca_fan"]
    assert result.rule("maxgap") == ref["pca_maxgap"]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dadapy_twonn_and_gride_from_skdim_fixtures(fx, name):
    X, ref = DATASETS[name], fx["dadapy"][name]
    assert idest.twonn(X).dimension == pytest.approx(ref["twonn_base_mu0.9"], rel=1e-6)
    assert idest.twonn(X, discard_fraction=0.0, method="mle").dimension == pytest.approx(ref["twonn_ml"], rel=1e-6)
    g = idest.gride(X, range_max=64)
    np.testing.assert_array_equal(g.scales, [1, 2, 4, 8, 16, 32])
    np.testing.assert_allclose(g.dimensions, ref["gride_range64_ids"], rtol=1e-6)
    np.testing.assert_allclose(g.errors, ref["gride_range64_errs"], rtol=1e-6)


# DADApy 0.3.4 outputs (see module docstring for how they were produced)
DADAPY = {
    "ball5_in10": {
        "twonn_base_mu0.9": 4.362176532651822,
        "twonn_ml": 4.113138917297787,
        "scaling_2nn_ids": [4.362176532651822, 4.163121702485441, 4.137324626733281, 5.03463217512831, 5.114484862191569],
        "scaling_2nn_errs": [0.0, 0.25625065071617, 0.2707732332398287, 0.47757953052137314, 0.26418723741420064],
        "scaling_2nn_scales": [0.34495124363379454, 0.3984121755178221, 0.46524738228128404, 0.5621686343142973, 0.656850429942945],
        "scaling_2nn_sizes": [300, 150, 75, 38, 19],
        "gride_radii": [
            0.34495124363379454, 0.4168173050255835, 0.4950524605957164, 0.5857075615817406, 0.6907829301025015, 0.8224494849846796,
        ],
    },
    "sphere4_in5": {
        "twonn_base_mu0.9": 3.221205130470665,
        "twonn_ml": 3.3280716110069095,
        "scaling_2nn_ids": [3.221205130470665, 3.9109939669364433, 3.667090621997272, 3.960237360354911, 4.439383135705681],
        "scaling_2nn_errs": [0.0, 0.20734278527863148, 0.1753277008474244, 0.2601261604440808, 0.37020685901059264],
        "scaling_2nn_scales": [0.36851011824177476, 0.4474750590216016, 0.5325047034139715, 0.6342040034430391, 0.765073382510655],
        "scaling_2nn_sizes": [300, 150, 75, 38, 19],
        "gride_radii": [
            0.3685101182417747, 0.461869683477506, 0.5600614549170471, 0.6766153864037601, 0.8171046374508982, 0.9898268676398428,
        ],
    },
    "curved6_in768": {
        "twonn_base_mu0.9": 5.685210257749383,
        "twonn_ml": 5.531010249202409,
        "scaling_2nn_ids": [
            5.685210257749383, 5.945013473243049, 5.415633089076415, 5.376543765336052, 5.629489059518977, 5.468653835238415,
        ],
        "scaling_2nn_errs": [0.0, 0.0006961383569421902, 0.2904527932308522, 0.383923198285648, 0.2696411567965097, 0.20665850704575647],
        "scaling_2nn_scales": [
            57.062387780647626, 64.61913140256667, 72.83598709659664, 82.4559049871699, 95.15583744062607, 108.34784276738115,
        ],
        "scaling_2nn_sizes": [600, 300, 150, 75, 38, 19],
        "gride_ids": [5.531010239166005, 5.590550854181376, 5.343598522242886, 5.1686073764155465, 5.191422602994919, 5.1533259598543815],
        "gride_errs": [
            0.22580254746776438, 0.164501433097636, 0.1114608919313038, 0.07624399553652227, 0.054105964329176325, 0.03796223036644723,
        ],
        "gride_radii": [57.06238778047007, 66.32506366817036, 76.341474158902, 87.6669353591131, 100.48919587972453, 115.05611976391224],
    },
}


def dadapy_data(name):
    return curved6_in768() if name == "curved6_in768" else DATASETS[name]


@pytest.mark.parametrize("name", sorted(DADAPY))
def test_dadapy_twonn_scaling(name):
    # same seed (42) and generator calls as DADApy: the random subsets coincide
    X, ref = dadapy_data(name), DADAPY[name]
    s = idest.twonn_scaling(X)
    np.testing.assert_array_equal(s.sizes, ref["scaling_2nn_sizes"])
    np.testing.assert_allclose(s.dimensions, ref["scaling_2nn_ids"], rtol=1e-6)
    np.testing.assert_allclose(s.errors, ref["scaling_2nn_errs"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(s.scales, ref["scaling_2nn_scales"], rtol=1e-6)


@pytest.mark.parametrize("name", sorted(DADAPY))
def test_dadapy_twonn_gride_radii(name):
    X, ref = dadapy_data(name), DADAPY[name]
    assert idest.twonn(X).dimension == pytest.approx(ref["twonn_base_mu0.9"], rel=1e-6)
    assert idest.twonn(X, discard_fraction=0, method="mle").dimension == pytest.approx(ref["twonn_ml"], rel=1e-6)
    g = idest.gride(X)
    np.testing.assert_allclose(g.radii, ref["gride_radii"], rtol=1e-6)
    if "gride_ids" in ref:
        np.testing.assert_allclose(g.dimensions, ref["gride_ids"], rtol=1e-6)
        np.testing.assert_allclose(g.errors, ref["gride_errs"], rtol=1e-6)
