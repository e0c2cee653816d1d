"""The report states findings computed from the run: each sentence follows the numbers (two
synthetic table sets give two different texts), the attention-sink sentence appears only when
the measured attention to position 0 supports it, genres and topics are compared at a matched
number of points (checked against numpy's eigenvalues of the same subsample), and the table of
contents links only ids the page has."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

import geostudy
from geostudy import load_corpus
from geostudy.outputs import findings, matched
from geostudy.outputs.report import place_figures
from geostudy.outputs.tables import RESULT_COLUMNS, read_csv
from geostudy.store.activations import load_cloud, pattern_name

# --------------------------------------------------------------------------------------------
# Findings from synthetic tables
# --------------------------------------------------------------------------------------------

SITES = [  # (site, label, depth, sublayer)
    ("blocks.0.hook_resid_pre", "embeddings", 2, "hook_resid_pre"),
    ("blocks.0.hook_resid_mid", "after attention, block 0", 10, "hook_resid_mid"),
    ("blocks.0.hook_resid_post", "after the block, block 0", 20, "hook_resid_post"),
    ("blocks.1.hook_resid_mid", "after attention, block 1", 30, "hook_resid_mid"),
    ("blocks.1.hook_resid_post", "after the block, block 1", 40, "hook_resid_post"),
]


def _rows(values: dict[tuple[str, object], list[float]], prompt: str = "pooled") -> list[list]:
    """Result rows (RESULT_COLUMNS) of one prompt: {(quantity, param): one value per SITES entry}."""
    rows = []
    for (quantity, param), vals in values.items():
        for (site, label, depth, sub), v in zip(SITES, vals):
            row = dict(prompt_id=prompt, genre="all", topic="all", site=site, site_label=label, block=0, sublayer=sub,
                       depth=depth, n_points=100, quantity=quantity, param=param, value=v, error=0.5)
            rows.append([row[c] for c in RESULT_COLUMNS])
    return rows


TABLES_A = _rows({("id_twonn", None): [10.0, 14.0, 21.5, 12.0, 11.0], ("id_mle", None): [8.0, 9.0, 9.5, 9.9, 13.25],
                  ("pca_components", 0.9): [50, 60, 80, 90, 120],
                  ("lens_top1_agreement_all_positions", None): [math.nan, 0.1, 0.2, 0.7, 1.0]})
TABLES_B = _rows({("id_twonn", None): [33.0, 14.0, 12.0, 12.0, 11.0], ("id_mle", None): [17.75, 9.0, 9.5, 9.9, 3.0],
                  ("pca_components", 0.9): [300, 250, 200, 90, 40],
                  ("lens_top1_agreement_all_positions", None): [math.nan, 0.6, 0.55, 0.52, 1.0]})


def _found(rows) -> list[str]:
    return findings.what_we_found(rows, None, 0.9, "focus-prompt", None, 1)


def test_findings_follow_the_numbers():
    a, b = _found(TABLES_A), _found(TABLES_B)
    assert a != b
    twonn_a, twonn_b = a[0], b[0]
    assert "21.5 ± 0.5 at after the block, block 0" in twonn_a and "33" not in twonn_a
    assert "highest at the first site, embeddings: 33 ± 0.5; 11 at the last" in twonn_b
    assert "highest at the last site, after the block, block 1: 13.2 ± 0.5" in a[1]  # MLE: at the last site in A
    assert "highest at the first site, embeddings: 17.8 ± 0.5" in b[1]
    pca_a, pca_b = a[2], b[2]
    # along the residual stream only (embeddings and block outputs): 50 -> 80 -> 120, 300 -> 200 -> 40
    assert "50 principal components" in pca_a and "120 at after the block, block 1" in pca_a and "rises" in pca_a
    assert "300 principal components" in pca_b and "falls" in pca_b and "250" not in pca_b
    wavy = findings.pca_sentence(findings.series(_rows({("pca_components", 0.9): [50, 1, 200, 1, 40]}), "pca_components",
                                                 0.9), 0.9)
    assert "falls" in wavy and "most: 200 at after the block, block 0" in wavy and "fewest" not in wavy
    # agreement >= 50 % from block 1's attention in A; from block 0's attention on in B
    assert "from after attention, block 1 on" in a[3] and "70%" in a[3] and "20% at after the block, block 0" in a[3]
    assert "from after attention, block 0 on" in b[3] and "60%" in b[3]


def test_lens_agreement_only_at_the_output_and_never():
    only_end = findings.series(_rows({("lens_top1_agreement_all_positions", None): [0.1, 0.2, 0.3, 0.4, 1.0]}),
                               "lens_top1_agreement_all_positions")
    assert "only at after the block, block 1" in findings.agreement_sentence(only_end)
    never = findings.series(_rows({("lens_top1_agreement_all_positions", None): [0.1, 0.2, 0.3, 0.4, 0.45]}),
                            "lens_top1_agreement_all_positions")
    assert "at no depth" in findings.agreement_sentence(never) and "45%" in findings.agreement_sentence(never)


def test_last_token_rank_sentence():
    rows = _rows({("lens_final_top_rank", None): [900, 40, 1, 2, 1]}, prompt="p1")
    text = findings.last_token_sentence(findings.series(rows, "lens_final_top_rank", prompt="p1"), "p1")
    assert "from after the block, block 1 on" in text and "900" in text


def test_missing_quantities_give_no_sentence():
    assert findings.what_we_found([], 8, 0.9, "p", None, 0) == []


# --------------------------------------------------------------------------------------------
# The attention sink: measured, and stated only when supported
# --------------------------------------------------------------------------------------------

def _causal_uniform(h: int, t: int) -> np.ndarray:
    p = np.tril(np.ones((t, t)))
    return np.broadcast_to(p / p.sum(axis=1, keepdims=True), (h, t, t)).copy()


def _sink_pattern(h: int, t: int, weight: float) -> np.ndarray:
    """Every query after position 0 puts `weight` on key 0 and spreads the rest uniformly."""
    p = np.zeros((h, t, t))
    p[:, 0, 0] = 1.0
    for q in range(1, t):
        p[:, q, 0] = weight
        p[:, q, 1:q + 1] = (1 - weight) / q
    return p


def test_attention_to_first_closed_forms():
    uni = findings.attention_to_first(_causal_uniform(4, 9))
    expected = np.mean([1 / (i + 1) for i in range(1, 9)])  # query i has i + 1 keys
    assert uni.mean_to_first == pytest.approx(expected, rel=1e-12)
    assert uni.uniform_share == pytest.approx(expected, rel=1e-12)
    assert uni.ratio == pytest.approx(1.0) and not uni.is_sink
    sink = findings.attention_to_first(_sink_pattern(3, 20, 0.8))
    assert sink.mean_to_first == pytest.approx(0.8) and sink.is_sink
    assert findings.attention_to_first(np.ones((2, 1, 1))) is None  # one token: nothing to measure


def test_sink_sentence_only_when_supported():
    bright = findings.sink_sentence(findings.attention_to_first(_sink_pattern(3, 20, 0.8)), 5, "p")
    flat = findings.sink_sentence(findings.attention_to_first(_causal_uniform(3, 20)), 5, "p")
    assert "bright first column" in bright and "0.8 of each later token" in bright
    assert "bright first column" not in flat and "no attention sink" in flat and "1×" in flat
    assert findings.sink_sentence(None, 5, "p") is None


# --------------------------------------------------------------------------------------------
# Matched subsamples
# --------------------------------------------------------------------------------------------

def test_subsample_is_seeded_sorted_and_distinct():
    a = matched.subsample(500, 37, "poem")
    assert np.array_equal(a, matched.subsample(500, 37, "poem"))
    assert not np.array_equal(a, matched.subsample(500, 37, "prose_750"))
    assert a.size == 37 and np.unique(a).size == 37 and np.all(np.diff(a) > 0) and a.max() < 500


def test_matched_measures_against_numpy_eigenvalues():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((80, 30)) @ np.diag(np.linspace(3, 0.1, 30))
    comps, ratio, volume = matched.matched_measures(X, 0.9, "covariance")
    ev = np.sort(np.linalg.eigvalsh(np.cov(X, rowvar=False)))[::-1]
    assert comps == int(np.searchsorted(np.cumsum(ev) / ev.sum(), 0.9) + 1)
    assert ratio == pytest.approx(ev.sum() ** 2 / (ev ** 2).sum(), rel=1e-9)
    # log-volume per token: (1/N) * 1/2 * log pdet(Xc Xc^T)
    Xc = X - X.mean(axis=0)
    sign, logdet = np.linalg.slogdet(Xc.T @ Xc)
    assert volume == pytest.approx(0.5 * logdet / X.shape[0], rel=1e-9)


def test_figures_are_placed_in_sections_and_none_left_out():
    placed = place_figures(["id_twonn", "spectra_pooled", "tsne_focus", "lens_pair_gif.p1", "brand_new_figure",
                            "histograms_residual_gif", "attention_qkv"])
    assert placed["pca"] == ["spectra_pooled"] and placed["cloud"] == ["tsne_focus"]
    assert placed["lens"] == ["lens_pair_gif.p1"] and placed["norms"] == ["histograms_residual_gif"]
    assert placed["attention"] == ["attention_qkv"] and placed["more"] == ["brand_new_figure"]


# --------------------------------------------------------------------------------------------
# The report of a real (tiny) run
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three genres x two topics of the shipped corpus, 25 words each: genres and topics of
    unequal sizes."""
    chosen = [p for p in load_corpus() if p.genre in ("word_list", "poem", "prose_300") and p.topic in ("nature", "music")]
    rows = [{"id": p.id, "genre": p.genre, "topic": p.topic, "text": " ".join(p.text.split()[:25 + 10 * i])}
            for i, p in enumerate(chosen)]
    path = tmp_path_factory.mktemp("corpus") / "six.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path_factory):
    opts = dict(tokenizer=gpt2_vocab_dir, progress=False, lens_positions=8, drop_positions=[])
    out = geostudy.run_study(tiny_model_dir, corpus, tmp_path_factory.mktemp("runs") / "r", plots=False, **opts)
    return out, geostudy.prepare_study(tiny_model_dir, corpus, out, **opts)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.anchors = set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href", "").startswith("#"):
            self.anchors.append(a["href"][1:])


def _page(out: Path) -> str:
    return (out / "report.html").read_text(encoding="utf-8")


def test_table_of_contents_links_resolve(run):
    out, _ = run
    page = _Page()
    page.feed(_page(out))
    assert len(page.anchors) >= 8
    assert set(page.anchors) <= page.ids, set(page.anchors) - page.ids
    for needed in ("found", "run", "groups", "attention", "lens"):
        assert needed in page.anchors


def test_report_has_date_versions_and_stage_times(run):
    out, plan = run
    text = _page(out)
    man = json.loads((out / "manifest.json").read_text())
    assert "Report written 20" in text and man["created"] in text
    assert f"numpy {man['versions']['numpy']}" in text and f"python {man['versions']['python']}" in text
    for stage in ("per prompt: forward, geometry, ID, lens", "pooled geometry + ID", "tables"):
        assert stage in text


def test_report_sink_sentence_matches_the_saved_pattern(run):
    out, plan = run
    with safe_open(str(plan.act_path(plan.focus.id)), framework="numpy") as f:
        pattern = f.get_tensor(pattern_name(plan.attention_block)).astype(np.float64)
    to_first = pattern[:, 1:, 0].mean()
    uniform = np.mean(1.0 / np.arange(2, pattern.shape[1] + 1))
    text = _page(out)
    assert f"{to_first:.3g} of each later token" in text
    assert ("bright first column" in text) == (to_first >= 2 * uniform)


def test_report_findings_name_the_pooled_peak(run):
    out, _ = run
    rows = [r for r in read_csv(out / "tables" / "results.csv") if r["prompt_id"] == "pooled" and r["quantity"] == "id_twonn"]
    top = max(rows, key=lambda r: float(r["value"]))
    finding = _page(out).split("<li>TwoNN: the pooled")[1].split("</li>")[0]
    assert f"{float(top['value']):.3g} ± {float(top['error']):.3g}" in finding and top["site_label"] in finding


def test_matched_table_per_genre_and_topic(run):
    out, plan = run
    rows = read_csv(out / "tables" / "matched_groups.csv")
    assert {r["grouping"] for r in rows} == {"genre", "topic"}
    for grouping in ("genre", "topic"):
        mine = [r for r in rows if r["grouping"] == grouping]
        sizes = {r["group"]: int(r["n_available"]) for r in mine}
        assert {int(r["n_points"]) for r in mine} == {min(matched.MATCH_CAP, *sizes.values())}
    # the residual stream (embeddings and block outputs) and the scatter site
    assert {r["site"] for r in rows} == {"blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"}
    # one group recomputed from the activation files with numpy: same subsample, same count
    r = next(r for r in rows if r["grouping"] == "genre" and r["group"] == "poem" and r["site"] == plan.scatter_site)
    ids = [i for i, p in enumerate(plan.corpus) if p.genre == "poem"]
    X = np.concatenate([load_cloud(plan.act_path(plan.corpus[i].id), plan.scatter_site, plan.kept[i]) for i in ids])
    X = X[matched.subsample(X.shape[0], int(r["n_points"]), "poem")].astype(np.float64)
    ev = np.sort(np.linalg.eigvalsh(np.cov(X, rowvar=False)))[::-1]
    level = float(r["pca_level"])
    assert int(r["pca_components"]) == int(np.searchsorted(np.cumsum(ev) / ev.sum(), level - 1e-12) + 1)
    text = _page(out)
    assert "Per genre" in text and "Per topic" in text and "Spearman" in text and "matched" in text
