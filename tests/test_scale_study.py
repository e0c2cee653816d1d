"""The corpus-scale protocol end to end, on a tiny random-weight GPT-2 (2 blocks, width 64), the
real vocabulary and a generated corpus of a few thousand documents: every partition's numbers
equal idest run on the rows of activations.zarr that partitions.csv names; `last` and `mean`
equal run_with_cache sequence by sequence; the untrained control; kill -9 then the same command
gives byte-identical tables; bad input exits 2 with one line before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import gpt2np
import idest
from geostudy.cli import main
from geostudy.outputs.tables import read_csv

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
WORDS = ("river stone light music number garden winter engine market theory ocean signal forest paper "
         "glass thunder silver planet letter island orbit valley mirror castle").split()
N_DOCS = 2500
WINDOW = 8
TABLES = ["results.csv", "overlap.csv", "cka.csv", "partitions.csv", "spectra.csv", "skipped.csv"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """N_DOCS documents of 6 to 30 random words (seeded), some repeated word for word."""
    rng = np.random.default_rng(7)
    lines = []
    for i in range(N_DOCS):
        words = rng.choice(WORDS, size=int(rng.integers(6, 30)))
        lines.append(json.dumps({"id": f"doc{i}", "text": " ".join(words)}))
    lines += lines[:40]  # exact repeats: their windows are duplicates
    path = tmp_path_factory.mktemp("scale_corpus") / "docs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _args(model_dir, vocab, corpus, out, *extra):
    return ["--model", str(model_dir), "--tokenizer", str(vocab), "--corpus", str(corpus), "--out", str(out),
            "--represent", "last", "--window", str(WINDOW), "--partitions", "3", "--partition-size", "300",
            "--quiet", *extra]


@pytest.fixture(scope="module")
def run(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scale_runs") / "last"
    assert main(_args(tiny_model_dir, gpt2_vocab_dir, corpus, out, "--untrained")) == 0
    return out


def _rows(run, name):
    return read_csv(run / "tables" / name)


def _partition_rows(run, p: int) -> np.ndarray:
    return np.array([int(r["sequence"]) for r in _rows(run, "partitions.csv") if int(r["partition"]) == p])


def test_partitions_are_disjoint_equal_and_seeded(run):
    rows = _rows(run, "partitions.csv")
    parts = np.array([int(r["partition"]) for r in rows])
    assert [int((parts == p).sum()) for p in range(3)] == [300, 300, 300]
    assert set(parts) <= {-1, 0, 1, 2}
    assert [int(r["sequence"]) for r in rows] == list(range(len(rows)))
    lengths = {int(r["length"]) for r in rows}
    assert lengths == {WINDOW}


def test_each_partition_equals_idest_on_the_store_rows(run):
    results = _rows(run, "results.csv")
    store = zarr.open_group(str(run / "activations.zarr"), mode="r")
    for p, site in [(0, "blocks.1.hook_resid_post"), (1, "blocks.0.hook_resid_pre"), (2, "blocks.0.hook_resid_post")]:
        X = np.asarray(store[site][:])[_partition_rows(run, p)]
        mine = {(r["quantity"], r["param"]): r for r in results
                if (r["model"], r["prompt_id"], r["site"]) == ("trained", f"partition-{p}", site)}
        tw = idest.twonn(X, discard_fraction=0.1)
        assert float(mine[("id_twonn", "")]["value"]) == pytest.approx(tw.dimension, rel=1e-12)
        ml = idest.mle(X, k=20)
        assert float(mine[("id_mle", "")]["value"]) == pytest.approx(ml.dimension, rel=1e-12)
        gr = idest.gride(X, range_max=64)
        for scale, value in zip(gr.scales, gr.dimensions):
            assert float(mine[("id_gride", str(int(scale)))]["value"]) == pytest.approx(value, rel=1e-12)
        distinct = X[idest.neighborhoods(X, k=2).point_index]  # PCA runs on the distinct points, as the estimators
        pc = idest.pca(distinct, variance=0.9, solver="covariance")
        assert float(mine[("pca_components", "0.9")]["value"]) == pc.dimension
        assert float(mine[("pca_participation_ratio", "")]["value"]) == pytest.approx(pc.participation_ratio, rel=1e-12)


def test_summary_rows_are_mean_and_std_over_partitions(run):
    results = _rows(run, "results.csv")
    site = "blocks.0.hook_resid_post"
    per = [float(r["value"]) for r in results
           if r["model"] == "trained" and r["site"] == site and r["quantity"] == "id_twonn" and r["prompt_id"].startswith("partition-")]
    summary = [r for r in results if (r["model"], r["prompt_id"], r["site"], r["quantity"]) == ("trained", "partitions", site, "id_twonn")]
    assert len(per) == 3 and len(summary) == 1
    assert float(summary[0]["value"]) == pytest.approx(np.mean(per), rel=1e-12)
    assert float(summary[0]["error"]) == pytest.approx(np.std(per, ddof=1), rel=1e-9)


def test_last_token_rows_equal_run_with_cache(run, tiny_model_dir):
    model = gpt2np.load_model(tiny_model_dir)
    man = json.loads((run / "manifest.json").read_text())
    assert man["options"]["represent"] == "last"
    store = zarr.open_group(str(run / "activations.zarr"), mode="r")
    ids = _sequence_ids(run, model)
    for row in (0, 17, len(ids) - 1):
        _, cache = model.run_with_cache(ids[row], names=["blocks.1.hook_resid_post"])
        np.testing.assert_allclose(store["blocks.1.hook_resid_post"][row], cache["blocks.1.hook_resid_post"][-1],
                                   rtol=2e-5, atol=2e-6)


def _sequence_ids(run, model):
    return _sequence_ids_from(run, model, remainder="drop")


def _sequence_ids_from(run, model, remainder):
    """Each stored sequence's token ids, re-derived from the corpus the way the protocol cuts it,
    checked against partitions.csv's documents, starts and lengths."""
    from geostudy.scale.sequences import build_sequences
    from geostudy.scale.sources import open_source

    man = json.loads((run / "manifest.json").read_text())
    tok = gpt2np.load_tokenizer(man["tokenizer"]["source"])
    seqs = build_sequences(open_source(man["corpus"]["source_path"]), tok, window=WINDOW, remainder=remainder,
                           n_ctx=model.cfg.n_ctx)
    table = _rows(run, "partitions.csv")
    assert [(int(r["document"]), int(r["start"]), int(r["length"])) for r in table] == list(
        zip(seqs.document.tolist(), seqs.start.tolist(), seqs.lengths.tolist()))
    return [seqs.ids[i, : seqs.lengths[i]] for i in range(seqs.lengths.size)]


def test_untrained_rows_are_marked_and_differ(run):
    results = _rows(run, "results.csv")
    models = {r["model"] for r in results}
    assert models == {"trained", "untrained"}
    key = ("partitions", "blocks.1.hook_resid_post", "id_twonn")
    vals = {r["model"]: float(r["value"]) for r in results if (r["prompt_id"], r["site"], r["quantity"]) == key}
    assert vals["trained"] != vals["untrained"]


def test_overlap_and_cka_tables(run):
    for name in ("overlap.csv", "cka.csv"):
        rows = _rows(run, name)
        diag = [float(r["value"]) for r in rows if r["site_a"] == r["site_b"] and r["partition"] == "mean"]
        assert diag and all(v == pytest.approx(1.0) for v in diag)
        off = [float(r["value"]) for r in rows if r["site_a"] != r["site_b"]]
        assert all(0.0 <= v <= 1.0 + 1e-12 for v in off)


def test_cka_and_overlap_equal_their_definitions_on_the_store_rows(run):
    from geostudy.scale.compare import linear_cka, neighbourhood_overlap

    store = zarr.open_group(str(run / "activations.zarr"), mode="r")
    rows = _partition_rows(run, 1)
    a, b = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"
    Xa, Xb = (np.asarray(store[s][:])[rows] for s in (a, b))
    cka = [r for r in _rows(run, "cka.csv") if (r["model"], r["partition"], r["site_a"], r["site_b"]) == ("trained", "partition-1", a, b)]
    assert float(cka[0]["value"]) == pytest.approx(linear_cka(Xa, Xb), abs=1e-6)  # float32 products: ~1e-9
    nn = [np.load(run / "units" / "trained" / s / "partition-1.npy") for s in (a, b)]
    key = ("trained", "partition-1", a, b)
    ov = [r for r in _rows(run, "overlap.csv") if (r["model"], r["partition"], r["site_a"], r["site_b"]) == key]
    assert float(ov[0]["value"]) == neighbourhood_overlap(*nn)
    brute = np.argsort(((Xa[:, None, :].astype(np.float64) - Xa[None, :, :]) ** 2).sum(-1) + np.diag([np.inf] * len(Xa)),
                       axis=1, kind="stable")[:, :10]
    assert all(set(x) == set(y) for x, y in zip(nn[0].tolist(), brute.tolist()))


def test_report_and_plots(run):
    assert (run / "report.html").is_file()
    assert any((run / "plots").glob("*.png"))


def test_killed_run_resumes_to_identical_tables(run, tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "geostudy", *_args(tiny_model_dir, gpt2_vocab_dir, corpus, out, "--untrained")]
    for delay in (4.0, 8.0):
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert subprocess.run(cmd, env=ENV, capture_output=True).returncode == 0
    for name in TABLES:
        assert (out / "tables" / name).read_bytes() == (run / "tables" / name).read_bytes(), name


@pytest.mark.parametrize("extra, expect", [
    (["--window", "5000"], "context"),
    (["--partition-size", "100000"], "sequences"),
    (["--text-column", "body"], "body"),
    (["--represent", "mean", "--remainder", "keep"], "no position"),
])
def test_bad_input_exits_2_with_one_line_before_any_work(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path, capsys, extra, expect):
    out = tmp_path / "bad"
    code = main([*_args(tiny_model_dir, gpt2_vocab_dir, corpus, out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expect in err[0], err
    assert not out.exists() or not any(out.iterdir())


def test_scale_flags_without_represent_are_refused(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path, capsys):
    code = main(["--model", str(tiny_model_dir), "--tokenizer", str(gpt2_vocab_dir), "--corpus", str(corpus),
                 "--out", str(tmp_path / "x"), "--window", "20", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--represent" in err[0]


def test_mean_rows_equal_run_with_cache_over_kept_positions(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path):
    """--represent mean: each stored row is the mean of run_with_cache's states over the
    sequence's kept positions (all of them here: --remainder keep leaves one-token sequences,
    whose mean without position 0 would be over nothing, which test_bad_input refuses)."""
    out = tmp_path / "mean"
    site = "blocks.1.hook_resid_post"
    args = ["--model", str(tiny_model_dir), "--tokenizer", str(gpt2_vocab_dir), "--corpus", str(corpus), "--out", str(out),
            "--represent", "mean", "--window", str(WINDOW), "--remainder", "keep", "--partitions", "1",
            "--partition-size", "300", "--sites", site, "--drop-positions", "none", "--no-plots", "--no-report", "--quiet"]
    assert main(args) == 0
    model = gpt2np.load_model(tiny_model_dir)
    store = zarr.open_group(str(out / "activations.zarr"), mode="r")
    rows = _rows(out, "partitions.csv")
    assert {int(r["length"]) for r in rows} - {WINDOW}, "--remainder keep gives shorter sequences too"
    ids = _sequence_ids_from(out, model, remainder="keep")
    short = next(i for i, r in enumerate(rows) if int(r["length"]) < WINDOW)
    for row in (0, short, len(ids) - 1):
        _, cache = model.run_with_cache(ids[row], names=[site])
        np.testing.assert_allclose(store[site][row], cache[site].mean(axis=0), rtol=2e-5, atol=2e-6)
