"""The whole study on a tiny random-weight GPT-2 (2 blocks, width 64) and the real vocabulary:
artifacts, agreement with idest on the saved activations, the logit lens against the model's
own output, the report, a killed-and-restarted run, and bad inputs refused before any work."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

import geostudy
import gpt2np
import idest
from geostudy import StudyError, load_corpus
from geostudy.measure import geometry
from geostudy.outputs.tables import read_csv
from geostudy.store.activations import TOKEN_IDS, load_cloud, pattern_name

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_prerun.py"
# the scripts import geostudy from the repository (they do not edit sys.path)
SCRIPT_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
TABLES = ["results", "lens_top_tokens", "spectra", "prompts", "sites", "skipped"]


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """Six prompts of the shipped corpus (two genres, three topics), as JSONL, plus one prompt
    too short for MLE with k=20 (its MLE is skipped, not fatal)."""
    shipped = load_corpus()
    chosen = [p for p in shipped if p.genre in ("prose_50", "word_list") and p.topic in ("nature", "music", "mathematics")]
    chosen.append(geostudy.Prompt("tiny-one", "short", "misc", "A short line of eleven words for the smallest test."))
    path = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    path.write_text("\n".join(json.dumps(p.__dict__) for p in chosen) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def options(gpt2_vocab_dir):
    return dict(tokenizer=gpt2_vocab_dir, lens_positions=16, progress=False)


@pytest.fixture(scope="session")
def run(tiny_model_dir, small_corpus, options, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "full"
    return geostudy.run_study(tiny_model_dir, small_corpus, out, **options)


@pytest.fixture(scope="session")
def plan(tiny_model_dir, small_corpus, options, run):
    return geostudy.prepare_study(tiny_model_dir, small_corpus, run, **options)


def _results(run):
    return read_csv(run / "tables" / "results.csv")


def _value(rows, prompt, site, quantity, param=""):
    hits = [r for r in rows if (r["prompt_id"], r["site"], r["quantity"], r["param"]) == (prompt, site, quantity, param)]
    assert len(hits) == 1, (prompt, site, quantity, param, len(hits))
    return hits[0]


# --------------------------------------------------------------------------------------------
# Artifacts
# --------------------------------------------------------------------------------------------

def test_every_artifact_exists_and_is_readable(run, plan):
    man = json.loads((run / "manifest.json").read_text())
    assert man["status"] == "complete"
    assert man["model"]["weights_sha256"] and len(man["model"]["weights_sha256"]) == 64
    assert man["corpus"]["sha256"] == plan.corpus.sha256() and man["corpus"]["n_prompts"] == 7
    assert man["versions"]["numpy"] == np.__version__
    assert man["options"]["drop_positions"] == [0]
    for name in TABLES:
        rows = read_csv(run / "tables" / f"{name}.csv")
        records = json.loads((run / "tables" / f"{name}.json").read_text())
        assert len(rows) == len(records)
    results = _results(run)
    quantities = {r["quantity"] for r in results}
    assert {"id_twonn", "id_mle", "id_gride", "pca_components", "pca_participation_ratio", "mean_norm",
            "mean_centred_norm", "cosine_to_last", "mean_pairwise_cosine", "log_volume", "lens_entropy",
            "lens_kl_to_final", "lens_cosine_to_final", "lens_final_top_rank", "lens_mean_kl_all_positions",
            "lens_top1_agreement_all_positions"} <= quantities
    assert {r["param"] for r in results if r["quantity"] == "pca_components"} == {"0.75", "0.8", "0.85", "0.9", "0.95"}
    assert {r["prompt_id"] for r in results} == set(plan.corpus.ids) | {"pooled"}
    # the short prompt is too small for MLE with k = 20: skipped, with idest's reason
    skipped = read_csv(run / "tables" / "skipped.csv")
    assert skipped and {r["prompt_id"] for r in skipped} == {"tiny-one"} and {r["estimator"] for r in skipped} == {"mle"}
    # activations: one file per prompt, TransformerLens names, every position
    for p, ids in zip(plan.corpus, plan.token_ids):
        with safe_open(str(run / "activations" / f"{p.id}.safetensors"), framework="numpy") as f:
            keys = set(f.keys())
            assert keys >= {s.name for s in plan.sites} | {TOKEN_IDS}
            np.testing.assert_array_equal(f.get_tensor(TOKEN_IDS), ids)
            assert f.get_tensor("blocks.1.hook_resid_post").shape == (ids.size, 64)
            assert f.get_tensor("blocks.1.hook_resid_post").dtype == np.float32
            assert f.metadata()["prompt_id"] == p.id
    with safe_open(str(run / "activations" / f"{plan.focus.id}.safetensors"), framework="numpy") as f:
        assert f.get_tensor(pattern_name(plan.attention_block)).shape[0] == 4
    # figures: PNGs that decode, and a GIF with one frame per depth
    from PIL import Image

    pngs = sorted((run / "plots").glob("*.png"))
    assert len(pngs) >= 15
    for png in pngs:
        with Image.open(png) as im:
            im.verify()
    with Image.open(run / "plots" / f"lens_pair_{plan.focus.id}.gif") as gif:  # one frame per block
        assert gif.n_frames == plan.cfg.n_layer
    assert not list(run.rglob(".*.tmp-*"))
    # timings: every wall-clock stage with the CPU seconds it used
    timings = json.loads((run / "timings.json").read_text())
    assert set(timings["cpu_seconds"]) == set(timings["wall_seconds"])
    assert all(c["user"] >= 0 and c["system"] >= 0 for c in timings["cpu_seconds"].values())
    assert timings["cpu_seconds"]["per prompt: forward, geometry, ID, lens"]["user"] > 0


def test_tables_load_in_pandas_style_tools(run):
    """Plain csv module: header, typed columns parse as floats where numeric."""
    with open(run / "tables" / "results.csv", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        assert header == geostudy.tables.RESULT_COLUMNS
        for row in reader:
            float(row[header.index("value")])  # every value is a number (NaN/Inf included)


# --------------------------------------------------------------------------------------------
# The numbers
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("site", ["blocks.0.hook_resid_pre", "blocks.1.mlp.hook_post", "blocks.1.hook_resid_post"])
def test_per_prompt_numbers_equal_idest_on_the_saved_activations(run, plan, site):
    rows = _results(run)
    for p, kept in zip(plan.corpus, plan.kept):
        if p.id == "tiny-one":
            continue
        X = load_cloud(run / "activations" / f"{p.id}.safetensors", site, kept)
        tw = idest.twonn(X)
        r = _value(rows, p.id, site, "id_twonn")
        assert float(r["value"]) == tw.dimension and float(r["error"]) == tw.error
        ml = idest.mle(X, k=20)
        r = _value(rows, p.id, site, "id_mle")
        assert float(r["value"]) == ml.dimension and float(r["error"]) == ml.error
        gr = idest.gride(X, range_max=64)
        for n1, d, e in zip(gr.scales, gr.dimensions, gr.errors):
            r = _value(rows, p.id, site, "id_gride", str(int(n1)))
            assert float(r["value"]) == d and float(r["error"]) == e
        pc = idest.pca(X, variance=[0.75, 0.8, 0.85, 0.9, 0.95], solver="covariance")
        for level, n in zip(pc.variance_levels, pc.dimensions):
            assert int(_value(rows, p.id, site, "pca_components", repr(level))["value"]) == n
        # PCA: same numbers up to the last bits (LAPACK may split its work differently over threads)
        assert float(_value(rows, p.id, site, "pca_participation_ratio")["value"]) == pytest.approx(pc.participation_ratio, rel=1e-12)
        geo = geometry.describe(X)
        for q, v in geo.items():
            assert float(_value(rows, p.id, site, q)["value"]) == v
        vol, rank = geometry.log_volume(X)  # the SVD route agrees with the table's
        assert float(_value(rows, p.id, site, "log_volume")["value"]) == pytest.approx(vol, rel=1e-9)
        assert int(_value(rows, p.id, site, "log_volume_rank")["value"]) == rank


def test_pooled_numbers_equal_idest_on_all_saved_tokens(run, plan):
    rows = _results(run)
    site = "blocks.0.hook_resid_mid"
    X = np.concatenate([load_cloud(run / "activations" / f"{p.id}.safetensors", site, k)
                        for p, k in zip(plan.corpus, plan.kept)])
    assert int(_value(rows, "pooled", site, "id_twonn")["n_points"]) == X.shape[0] == sum(k.size for k in plan.kept)
    assert float(_value(rows, "pooled", site, "id_twonn")["value"]) == idest.twonn(X).dimension
    assert float(_value(rows, "pooled", site, "id_mle")["value"]) == idest.mle(X, k=20).dimension
    assert float(_value(rows, "pooled", site, "id_gride", "4")["value"]) == idest.gride(X).dimensions[2]
    pc = idest.pca(X, variance=0.9, solver="covariance")
    assert int(_value(rows, "pooled", site, "pca_components", "0.9")["value"]) == pc.dimension
    spectrum = [r for r in read_csv(run / "tables" / "spectra.csv") if (r["prompt_id"], r["site"]) == ("pooled", site)]
    np.testing.assert_allclose([float(r["eigenvalue"]) for r in spectrum], pc.spectrum, rtol=1e-12, atol=1e-12 * pc.spectrum[0])
    assert float(_value(rows, "pooled", site, "mean_pairwise_cosine")["value"]) == pytest.approx(
        geometry.mean_pairwise_cosine(X), rel=1e-12)


def test_logit_lens_at_the_last_block_is_the_models_own_distribution(run, plan, tiny_model_dir, gpt2_vocab_dir):
    model = gpt2np.load_model(tiny_model_dir)
    tok = gpt2np.load_tokenizer(gpt2_vocab_dir)
    rows = _results(run)
    top = read_csv(run / "tables" / "lens_top_tokens.csv")
    last = f"blocks.{model.cfg.n_layer - 1}.hook_resid_post"
    for p in plan.corpus:
        logits = model(tok.encode(p.text))[-1].astype(np.float64)
        q = np.exp(logits - logits.max())
        q /= q.sum()
        order = np.argsort(-q, kind="stable")[:10]
        for site in (last, "logits"):
            mine = [r for r in top if (r["prompt_id"], r["site"]) == (p.id, site)]
            assert [int(r["token_id"]) for r in mine] == order.tolist()
            np.testing.assert_allclose([float(r["prob"]) for r in mine], q[order], rtol=1e-5)
            assert [r["token"] for r in mine] == tok.token_strings(order)
        assert float(_value(rows, p.id, last, "lens_kl_to_final")["value"]) < 1e-9
        assert int(_value(rows, p.id, last, "lens_final_top_rank")["value"]) == 1
        assert float(_value(rows, p.id, last, "lens_cosine_to_final")["value"]) == pytest.approx(1.0, abs=1e-9)
        assert float(_value(rows, p.id, last, "lens_top1_agreement_all_positions")["value"]) == 1.0
        assert float(_value(rows, p.id, "logits", "lens_entropy")["value"]) == pytest.approx(-(q * np.log(q)).sum(), rel=1e-9)


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------

class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.hrefs, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if "href" in a:
            self.hrefs.append(a["href"])


def test_report_is_self_contained_and_links_nothing_missing(run, plan):
    text = (run / "report.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(text)
    parser.close()
    assert len(parser.imgs) >= 15
    assert all(src.startswith(("data:image/png;base64,", "data:image/gif;base64,")) for src in parser.imgs)
    assert parser.hrefs, "the report links its tables"
    ids = set(re.findall(r'id="([^"]+)"', text))
    for href in parser.hrefs:
        assert not href.startswith(("http:", "https:", "/")), href
        if href.startswith("#"):  # the table of contents: an anchor of the page itself
            assert href[1:] in ids, href
            continue
        assert (run / href).is_file(), href
    for needed in ("Position 0 is dropped", "KL(q ‖ p)", "TwoNN", "GRIDE", "participation", plan.model_info["source"]):
        assert needed in text, needed
    assert "random" in text  # the note that a local, unknown model may have random weights


# --------------------------------------------------------------------------------------------
# Resuming
# --------------------------------------------------------------------------------------------

def _script(args, **kw):
    env = dict(SCRIPT_ENV, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(SCRIPT), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _markers(out: Path) -> list[Path]:
    """Finished prompts (a marker being written is a hidden temporary file, not a marker)."""
    folder = out / "prompts"
    return [p for p in folder.glob("*.done") if not p.name.startswith(".")] if folder.is_dir() else []


def test_killed_and_restarted_run_gives_identical_tables(run, tiny_model_dir, small_corpus, gpt2_vocab_dir, tmp_path):
    out = tmp_path / "killed"
    args = ["--model", tiny_model_dir, "--tokenizer", gpt2_vocab_dir, "--corpus", small_corpus, "--out", out,
            "--lens-positions", "16", "--no-plots", "--quiet"]
    proc = _script(args)
    deadline = time.time() + 240
    while not _markers(out):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert 1 <= len(_markers(out)) < 7, "the kill must land in the middle of the run"
    assert not (out / "tables").exists()
    restarted = _script(args)
    stdout, stderr = restarted.communicate(timeout=300)
    assert restarted.returncode == 0, stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["sessions"][-1]["prompts_already_done"] >= 1
    assert not list(out.rglob(".*.tmp-*"))
    for name in TABLES:
        for ext in ("csv", "json"):
            assert (out / "tables" / f"{name}.{ext}").read_bytes() == (run / "tables" / f"{name}.{ext}").read_bytes(), name


def test_results_do_not_depend_on_the_number_of_worker_threads(run, tiny_model_dir, small_corpus, options, tmp_path):
    one = geostudy.run_study(tiny_model_dir, small_corpus, tmp_path / "one", **options, workers=1, plots=False, report=False)
    for name in TABLES:
        assert (one / "tables" / f"{name}.csv").read_bytes() == (run / "tables" / f"{name}.csv").read_bytes(), name


def test_a_finished_run_started_again_reuses_everything(run, tiny_model_dir, small_corpus, options):
    before = {p: p.read_bytes() for p in (run / "tables").iterdir()}
    stamp = {p: p.stat().st_mtime_ns for p in (run / "activations").iterdir()}
    geostudy.run_study(tiny_model_dir, small_corpus, run, **options, plots=False, report=False)
    assert {p: p.read_bytes() for p in (run / "tables").iterdir()} == before
    assert {p: p.stat().st_mtime_ns for p in (run / "activations").iterdir()} == stamp


def test_a_run_folder_of_another_study_is_refused(run, tiny_model_dir, small_corpus, options):
    with pytest.raises(StudyError, match="different study.*drop_positions"):
        geostudy.prepare_study(tiny_model_dir, small_corpus, run, **{**options, "drop_positions": "none"})


def test_a_folder_holding_other_files_is_refused_even_beside_a_lock_file(tiny_model_dir, small_corpus, options, tmp_path):
    """A folder with only a run's debris (lock file, temporaries) is resumed; one with anything
    else is somebody's: nothing is written into it."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / ".lock").write_text("")
    (out / "notes.txt").write_text("my notes")
    with pytest.raises(StudyError, match="not a study run"):
        geostudy.run_study(tiny_model_dir, small_corpus, out, **options)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "notes.txt"]


# --------------------------------------------------------------------------------------------
# Bad input: a clear error before any work
# --------------------------------------------------------------------------------------------

def _bad_corpus(tmp_path, prompts) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(prompts))
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing corpus", "no corpus at"),
        ("malformed corpus", "not valid JSON"),
        ("empty text", "text is empty"),
        ("text over the context", "more than the model's context of 1024"),
        ("unwritable output", "cannot write to the output folder|cannot create"),
        ("unknown site", "unknown site.*Did you mean"),
        ("unknown estimator", "unknown estimator"),
        ("missing model", "cannot load the model"),
        ("no tokenizer", "cannot load a tokenizer"),
        ("bad focus", "no prompt with id"),
    ],
)
def test_bad_inputs_fail_before_any_work(case, message, tmp_path, tiny_model_dir, small_corpus, gpt2_vocab_dir):
    out = tmp_path / "out"
    kw = dict(model=tiny_model_dir, corpus=small_corpus, out=out, tokenizer=gpt2_vocab_dir, progress=False)
    if case == "missing corpus":
        kw["corpus"] = tmp_path / "nope.json"
    elif case == "malformed corpus":
        kw["corpus"] = tmp_path / "bad.json"
        kw["corpus"].write_text('{"prompts": [')
    elif case == "empty text":
        kw["corpus"] = _bad_corpus(tmp_path, [{"id": "a", "text": "fine"}, {"id": "b", "text": ""}])
    elif case == "text over the context":
        kw["corpus"] = _bad_corpus(tmp_path, [{"id": "a", "text": "word " * 1100}])
    elif case == "unwritable output":
        blocker = tmp_path / "a_file"
        blocker.write_text("")
        kw["out"] = out = blocker / "sub"  # a folder cannot be made inside a file (works as root too)
    elif case == "unknown site":
        kw["sites"] = "blocks.1.hook_resid_psot"
    elif case == "unknown estimator":
        kw["estimators"] = "twonn,lpca"
    elif case == "missing model":
        kw["model"] = tmp_path / "no_model_here"
    elif case == "no tokenizer":
        kw["tokenizer"] = None  # the model folder holds no tokenizer files
    elif case == "bad focus":
        kw["focus"] = "no-such-prompt"
    model = kw.pop("model")
    with pytest.raises(StudyError, match=message):
        geostudy.run_study(model, **kw)
    assert not out.exists() or not any(out.iterdir())


def test_the_script_prints_the_error_and_exits_2(tmp_path, tiny_model_dir, gpt2_vocab_dir):
    proc = _script(["--model", tiny_model_dir, "--tokenizer", gpt2_vocab_dir, "--corpus", tmp_path / "missing.json",
                    "--out", tmp_path / "o"])
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert stderr.startswith("error: no corpus at") and "Traceback" not in stderr
    proc = _script(["--model", tiny_model_dir, "--tokenizer", gpt2_vocab_dir, "--sites", "blocks.7.hook_resid_post",
                    "--out", tmp_path / "o2"])
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "unknown site" in stderr and "Traceback" not in stderr
