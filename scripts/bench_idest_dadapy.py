"""DADApy side of the idest benchmark and reference values; runs in DADApy's own venv.

DADApy 0.3.x needs numpy<2 (and pulls jax), so it cannot share the main interpreter.
Create its environment once (or run scripts/setup_dadapy_venv.sh):

    python -m venv /tmp/dadapy-venv
    /tmp/dadapy-venv/bin/pip install "numpy<2" dadapy       # installs dadapy 0.3.4 + jax

Modes (each prints one JSON object on stdout):

    /tmp/dadapy-venv/bin/python scripts/bench_idest_dadapy.py time DATA.npy twonn|gride
        one timed DADApy call on the saved array (Data(X).compute_id_2NN() or
        .return_id_scaling_gride(range_max=64)); reports seconds, estimate and ru_maxrss.
    /tmp/dadapy-venv/bin/python scripts/bench_idest_dadapy.py reference A.npy [B.npy ...]
        DADApy's numbers on saved arrays, used as reference values in
        tests/test_idest_reference.py: compute_id_2NN (base, mu_fraction=0.9),
        compute_id_2NN (ml, mu_fraction=1), return_id_scaling_2NN() and
        return_id_scaling_gride(range_max=64).
"""

import json
import resource
import sys
import time
import warnings

import numpy as np


def _data(X):
    import dadapy

    return dadapy.Data(X.copy(), verbose=False)


def time_one(path, what):
    X = np.load(path)
    _data(X[:200]).compute_id_2NN()  # import and first-call costs outside the timing
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    if what == "twonn":
        est = _data(X).compute_id_2NN(algorithm="base", mu_fraction=0.9)[0]
    elif what == "gride":
        est = list(_data(X).return_id_scaling_gride(range_max=64)[0])
    else:
        raise SystemExit(f"unknown estimator {what!r}")
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "estimate": est, "max_rss_bytes": rss, "baseline_rss_bytes": baseline}


def reference(paths):
    from importlib.metadata import version

    out = {"dadapy": version("dadapy"), "numpy": np.__version__}
    for path in paths:
        X = np.load(path)
        ids_s, errs_s, rs_s = _data(X).return_id_scaling_2NN()
        sizes = _data(X).return_id_scaling_2NN(return_sizes=True)[2]
        g_ids, g_errs, g_rs = _data(X).return_id_scaling_gride(range_max=64)
        base = _data(X).compute_id_2NN(algorithm="base", mu_fraction=0.9)
        out[path] = {
            "twonn_base_mu0.9": base[0],
            "twonn_base_scale": base[2],
            "twonn_ml": _data(X).compute_id_2NN(algorithm="ml", mu_fraction=1.0)[0],
            "scaling_2nn_ids": list(ids_s),
            "scaling_2nn_errs": list(errs_s),
            "scaling_2nn_scales": list(rs_s),
            "scaling_2nn_sizes": [int(s) for s in sizes],
            "gride_ids": list(g_ids),
            "gride_errs": list(g_errs),
            "gride_radii": list(g_rs),
        }
    return out


def main(argv):
    warnings.simplefilter("ignore")
    if len(argv) >= 3 and argv[0] == "time":
        result = time_one(argv[1], argv[2])
    elif len(argv) >= 2 and argv[0] == "reference":
        result = reference(argv[1:])
    else:
        raise SystemExit(__doc__)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
