"""The pieces of the study on their own: sites, geometry, logit lens, tables, atomic writes."""

from __future__ import annotations

import csv
import io
import json
import math
import sys

import numpy as np
import pytest

import gpt2np
import idest
from geostudy import StudyError
from geostudy.measure import geometry, lens
from geostudy.outputs.tables import read_csv, write_table
from geostudy.rundir.fsio import atomic_write_text, remove_stale_temporaries
from geostudy.sites import default_site_names, resolve_sites, site_info

CFG = gpt2np.PRESETS["gpt2"]


def test_default_sites_are_the_studied_sublayers_in_depth_order():
    sites = resolve_sites(None, CFG)
    assert [s.name for s in sites] == default_site_names(CFG)
    assert len(sites) == 1 + 6 * 12
    assert [s.depth for s in sites] == sorted(s.depth for s in sites)
    assert sites[0].name == "blocks.0.hook_resid_pre" and "embeddings" in sites[0].label
    assert site_info("blocks.5.hook_resid_mid", CFG).label == "after attention + residual, block 5"
    assert site_info("blocks.11.mlp.hook_post", CFG).label == "MLP hidden layer after GELU, block 11"


def test_site_selection_patterns_and_errors():
    assert [s.name for s in resolve_sites("blocks.1*.hook_resid_post", CFG)] == [
        "blocks.1.hook_resid_post", "blocks.10.hook_resid_post", "blocks.11.hook_resid_post"]
    names = [s.name for s in resolve_sites(["blocks.*.hook_resid_post", "hook_embed"], CFG)]
    assert names[0] == "hook_embed" and len(names) == 13
    with pytest.raises(StudyError, match="Did you mean"):
        resolve_sites("blocks.5.hook_resid_mdi", CFG)
    with pytest.raises(StudyError, match="not a token cloud"):
        resolve_sites("blocks.5.attn.hook_pattern", CFG)
    with pytest.raises(StudyError, match="matches no"):
        resolve_sites("blocks.99.*", CFG)
    # a pattern that also matches non-clouds keeps only the clouds
    assert all("pattern" not in s.name for s in resolve_sites("blocks.0.attn.*", CFG))


@pytest.mark.parametrize("n", [40, 1300])  # one chunk; 14 chunks of 100 rows, the last partial
def test_geometry_against_direct_formulas(n, monkeypatch):
    monkeypatch.setattr(geometry, "_CHUNK_BYTES", 100 * 7 * 8)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 7)) + 3.0
    d = geometry.describe(X.astype(np.float32))
    X64 = X.astype(np.float32).astype(np.float64)
    u = X64 / np.linalg.norm(X64, axis=1, keepdims=True)
    cos = u @ u.T
    assert d["mean_norm"] == pytest.approx(np.linalg.norm(X64, axis=1).mean(), rel=1e-12)
    assert d["mean_centred_norm"] == pytest.approx(np.linalg.norm(X64 - X64.mean(0), axis=1).mean(), rel=1e-12)
    assert d["cosine_to_last"] == pytest.approx(cos[:-1, -1].mean(), rel=1e-12)
    assert d["mean_pairwise_cosine"] == pytest.approx(cos[np.triu_indices(n, 1)].mean(), rel=1e-12)
    total, terms = geometry.cosine_to_last_sum(X.astype(np.float32))  # the pooled corpus' form
    assert terms == n - 1 and total == pytest.approx(cos[:-1, -1].sum(), rel=1e-12)


def test_cosine_to_last_is_nan_with_a_zero_row_and_empty_for_one_point():
    X = np.ones((4, 3), dtype=np.float32)
    X[1] = 0.0
    assert math.isnan(geometry.cosine_to_last_sum(X)[0]) and math.isnan(geometry.cosine_to_last(X))
    assert geometry.cosine_to_last_sum(X[:1]) == (0.0, 0)


@pytest.mark.parametrize("shape", [(30, 50), (200, 20)])
def test_log_volume_from_idest_spectrum_equals_svd_and_the_gram_determinant(shape):
    rng = np.random.default_rng(1)
    X = rng.standard_normal(shape) * np.linspace(1, 5, shape[1])
    n = shape[0]
    from_svd = geometry.log_volume(X)
    from_spectrum = geometry.log_volume_from_spectrum(idest.spectrum(X), n)
    assert from_spectrum[1] == from_svd[1] == min(n - 1, shape[1])
    assert from_spectrum[0] == pytest.approx(from_svd[0], rel=1e-10)
    if n <= shape[1]:  # here the Gram matrix of the centred cloud has rank n - 1: use the pseudo-determinant
        Xc = X - X.mean(0)
        ev = np.linalg.eigvalsh(Xc @ Xc.T)[1:]
        assert from_svd[0] == pytest.approx(0.5 * np.log(ev).sum() / n, rel=1e-9)
    else:
        Xc = X - X.mean(0)
        sign, logdet = np.linalg.slogdet(Xc.T @ Xc)  # same non-zero eigenvalues as the Gram matrix
        assert sign > 0 and from_svd[0] == pytest.approx(0.5 * logdet / n, rel=1e-9)


def test_log_volume_is_finite_where_the_determinant_underflows():
    X = np.random.default_rng(2).standard_normal((300, 200)) * 1e-3
    vol, rank = geometry.log_volume(X)
    assert math.isfinite(vol) and rank == 200
    assert np.linalg.det((X - X.mean(0)).T @ (X - X.mean(0))) == 0.0  # the naive way underflows


def test_lens_compare_kl_direction_rank_and_top_k():
    rng = np.random.default_rng(3)
    final = rng.standard_normal(50) * 2
    layer = rng.standard_normal((2, 50))
    layer[1] = final
    stats = lens.compare(layer, final, k=5)
    q = np.exp(final - final.max())
    q /= q.sum()
    p = np.exp(layer[0] - layer[0].max())
    p /= p.sum()
    assert stats[0]["kl_to_final"] == pytest.approx(np.sum(q * np.log(q / p)), rel=1e-12)
    assert stats[0]["entropy"] == pytest.approx(-np.sum(p * np.log(p)), rel=1e-12)
    assert stats[0]["cosine_to_final"] == pytest.approx(p @ q / np.linalg.norm(p) / np.linalg.norm(q), rel=1e-12)
    assert stats[0]["final_top_rank"] == 1 + int(np.sum(p > p[np.argmax(q)]))
    assert stats[0]["top_ids"] == list(np.argsort(-p, kind="stable")[:5])
    assert stats[1]["kl_to_final"] == pytest.approx(0, abs=1e-15) and stats[1]["final_top_rank"] == 1
    # all positions: the same KL through the fused formula
    fin = rng.standard_normal((4, 50)).astype(np.float32)
    lay = rng.standard_normal((4, 50)).astype(np.float32)
    kl, agree = lens.all_positions(lay, lens.FinalDistribution(fin))
    logq, logp = lens.log_softmax64(fin), lens.log_softmax64(lay)
    np.testing.assert_allclose(kl, (np.exp(logq) * (logq - logp)).sum(1), rtol=1e-10)
    np.testing.assert_array_equal(agree, lay.argmax(1) == fin.argmax(1))


def test_top_k_breaks_ties_by_token_id():
    logp = np.log(np.array([0.1, 0.3, 0.3, 0.2, 0.1]))
    ids, probs = lens.top_k(logp, 3)
    assert ids.tolist() == [1, 2, 3]


def test_sample_positions_spreads_and_keeps_both_ends():
    kept = np.arange(1, 101)
    s = lens.sample_positions(kept, 10)
    assert s[0] == 1 and s[-1] == 100 and len(s) == 10 and np.all(np.diff(s) > 0)
    assert lens.sample_positions(kept, None).tolist() == kept.tolist()
    assert lens.sample_positions(kept, 0).size == 0


def test_tables_csv_and_json_are_readable_without_our_code(tmp_path):
    rows = [["a", 1, 0.1, None, float("nan"), float("-inf"), 'quote "x", comma']]
    cols = ["id", "n", "x", "missing", "nan", "neginf", "text"]
    csv_path, json_path = write_table(tmp_path, "t", cols, rows)
    got = read_csv(csv_path)[0]
    assert got == {"id": "a", "n": "1", "x": "0.1", "missing": "", "nan": "NaN", "neginf": "-Inf", "text": 'quote "x", comma'}
    assert float(got["x"]) == 0.1 and math.isnan(float(got["nan"])) and float(got["neginf"]) == -math.inf
    records = json.loads(json_path.read_text())  # strict JSON: no NaN literals
    assert records == [{"id": "a", "n": 1, "x": 0.1, "missing": None, "nan": None, "neginf": None, "text": 'quote "x", comma'}]


def _csv_module(columns, rows):
    def cell(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float) and not math.isfinite(v):
            return "NaN" if v != v else ("Inf" if v > 0 else "-Inf")
        return "" if v is None else v

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[cell(v) for v in row] for row in rows])
    return buf.getvalue()


def _json_dumps(columns, rows):
    def cell(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return json.dumps([{c: cell(v) for c, v in zip(columns, row)} for row in rows],
                      ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def test_table_text_is_what_the_csv_module_and_json_dumps_write():
    from geostudy.outputs.tables import to_csv, to_json

    rng = np.random.default_rng(3)
    floats = (rng.standard_normal(50) * 10.0 ** rng.integers(-300, 300, 50)).tolist()
    # columns of one type each (the fast paths) and mixed ones (cell by cell)
    rows = [[f"p{i % 3}", i, f, f if i % 5 else None, [1.5, 2, None, float("nan"), float("inf"), -0.0, True][i % 7],
             ['a,b', 'q"x', "line\nbreak", "ünï", "", "tab\t", "plain"][i % 7], bool(i % 2), float(i)]
            for i, f in enumerate(floats)]
    cols = ["id", "n", "x", "x_or_none", "mixed", "text", "flag", "whole"]
    assert to_csv(cols, rows) == _csv_module(cols, rows)
    assert to_json(cols, rows) == _json_dumps(cols, rows)
    assert to_csv(cols, []) == _csv_module(cols, []) and to_json(cols, []) == "[]"
    with pytest.raises(TypeError, match="number, a string or None"):
        to_csv(["a"], [[object()]])
    # a carriage return is quoted too (the csv module leaves it bare when the line ends in
    # "\n", and most readers would end the line there)
    text = to_csv(["a", "b"], [["cr\rin", 1]])
    assert text == 'a,b\n"cr\rin",1\n'
    assert list(csv.reader(io.StringIO(text, newline=""))) == [["a", "b"], ["cr\rin", "1"]]


def test_atomic_write_leaves_no_temporary_and_cleans_stale_ones(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "hello")
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    (tmp_path / ".g.tmp-123.json").write_text("half")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_job_beside_writes_its_file_or_reports_its_failure(tmp_path):
    from geostudy.runtime.beside import Beside

    target = tmp_path / "table.csv"
    job = Beside(lambda: atomic_write_text(target, "a,b\n1,2\n"), "writing a table")
    job.wait()
    assert target.read_text() == "a,b\n1,2\n"
    failing = Beside(lambda: 1 / 0, "writing the tables")
    with pytest.raises(StudyError, match="writing the tables failed"):
        failing.wait()


def test_malloc_tuning_takes_on_glibc_and_is_a_no_op_elsewhere():
    import platform

    from geostudy.runtime.malloc import keep_freed_memory

    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is on_glibc
