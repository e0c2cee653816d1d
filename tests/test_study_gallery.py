"""The gallery (issue 12): the original study's figures, on a tiny random-weight GPT-2 (2 blocks,
width 64) and three prompts of the shipped corpus, in a default run and a residual-only run (with
t-SNE, cosine GRIDE and every prompt's lens GIF). Checked: every part of every figure inside the
canvas (GIF frames included) and no figure-level title or legend over a panel; same bytes when
drawn again; and the numbers behind the figures against references (transformers' attention and
projections, scipy's distances, scikit-learn's PCA, idest's cosine neighbours, numpy's
histograms, the study's own independently computed tables)."""

from __future__ import annotations

import json
import sys
from functools import partial

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

import geostudy
import idest
from geostudy import StudyError, load_corpus
from geostudy.measure import distributions as dist
from geostudy.measure.cosine_gride import unit_rows
from geostudy.outputs import figures
from geostudy.outputs.assemble import assemble_tables
from geostudy.outputs.gallery import GALLERY_KEYS, LENS_PAIR_PREFIX, _canvas, attention_sheet, distances, gallery_figures, pca_sheet, tsne
from geostudy.outputs.gallery.histograms import GROUPS, group_sites
from geostudy.outputs.layout_check import SavedFigure, overflows, part_boxes, watch_savefig
from geostudy.outputs.tables import read_csv
from geostudy.pipeline.pooled import load_pooled_cloud

RESIDUAL = "blocks.0.hook_resid_pre,blocks.*.hook_resid_post"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    chosen = [p for p in load_corpus() if p.genre in ("prose_50", "word_list") and p.topic in ("nature", "music")][:3]
    path = tmp_path_factory.mktemp("corpus") / "three.jsonl"
    path.write_text("\n".join(json.dumps(p.__dict__) for p in chosen) + "\n", encoding="utf-8")
    return path


def _study(model, corpus, out, vocab, **extra):
    """A run without the figures (the tests draw the gallery's themselves, under watch) or report."""
    options = dict(tokenizer=vocab, lens_positions=8, progress=False, plots=False, report=False, **extra)
    run = geostudy.run_study(model, corpus, out, **options)
    return run, geostudy.prepare_study(model, corpus, run, **options)


@pytest.fixture(scope="module")
def default_run(tiny_model_dir, corpus, gpt2_vocab_dir, tmp_path_factory):
    return _study(tiny_model_dir, corpus, tmp_path_factory.mktemp("runs") / "default", gpt2_vocab_dir)


@pytest.fixture(scope="module")
def residual_run(tiny_model_dir, corpus, gpt2_vocab_dir, tmp_path_factory):
    return _study(tiny_model_dir, corpus, tmp_path_factory.mktemp("runs") / "resid", gpt2_vocab_dir, sites=RESIDUAL,
                  tsne=True, cosine_gride=True, lens_gifs="all")


def _gallery(plan, folder=None):
    return gallery_figures(plan, assemble_tables(plan), folder or plan.out / "plots")


def _draw_all(plan, folder):
    figs = _gallery(plan, folder)
    folder.mkdir(parents=True, exist_ok=True)
    for f in figs:
        figures.Figure(f.key, f.path, f.caption, f.draw, f.cost, f.uses_blas).render()
    return figs


@pytest.fixture(scope="module")
def drawn(default_run, residual_run, tmp_path_factory):
    """Every gallery figure of both runs, drawn under watch: (run, plan, figures, what savefig saw,
    figure-level texts over panels)."""
    import matplotlib.figure

    out = {}
    for name, (run, plan) in (("default_run", default_run), ("residual_run", residual_run)):
        real = matplotlib.figure.Figure.savefig
        overlaps = []

        def spy(self, fname, *args, real=real, overlaps=overlaps, **kwargs):
            if kwargs.get("bbox_inches") == "tight":  # cropped to the drawing: nothing cut off, but may overlap
                overlaps.extend(f"{fname}: {o}" for o in _overlaps(self))
            return real(self, fname, *args, **kwargs)

        real_grab = _canvas._grab
        blitted = []  # GIF frames drawn by blitting (no savefig): checked on the figure as each is grabbed

        def grab(fig, dynamic, background, blitted=blitted, real_grab=real_grab):
            blitted.append(SavedFigure("blitted frame", tuple(fig.get_size_inches()), False, overflows(fig)))
            return real_grab(fig, dynamic, background)

        with watch_savefig() as seen:
            inner = matplotlib.figure.Figure.savefig
            matplotlib.figure.Figure.savefig = lambda self, *a, inner=inner, **k: spy(self, *a, real=inner, **k)
            _canvas._grab = grab
            try:
                figs = _draw_all(plan, run / "plots")
            finally:
                matplotlib.figure.Figure.savefig = inner
                _canvas._grab = real_grab
        assert blitted  # the histogram GIFs
        out[name] = (run, plan, figs, seen + blitted, overlaps)
    return out


def _overlaps(fig) -> list[str]:
    """Figure-level texts and legends (suptitle, fig.legend) that cover a panel's own box."""
    boxes = part_boxes(fig)
    top = [(n, b) for n, b in boxes if n.startswith(("Text", "Legend"))]
    panels = [(n, b) for n, b in boxes if not n.startswith(("Text", "Legend"))]
    out = []
    for tn, tb in top:
        for pn, pb in panels:
            w = min(tb.x1, pb.x1) - max(tb.x0, pb.x0)
            h = min(tb.y1, pb.y1) - max(tb.y0, pb.y0)
            if w > 1 and h > 1:
                out.append(f"{tn} over {pn}")
    return out


# --------------------------------------------------------------------------------------------
# Every figure: listed, inside its canvas, deterministic
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["default_run", "residual_run"])
def test_every_gallery_figure_is_listed_and_fits_its_canvas(which, drawn):
    run, plan, figs, seen, overlaps = drawn[which]
    keys = [f.key for f in figs]
    # report order: GALLERY_KEYS' order, every per-prompt GIF under its prefix
    order = [GALLERY_KEYS.index("lens_pair_gif" if k.startswith(LENS_PAIR_PREFIX) else k) for k in keys]
    assert order == sorted(order)
    assert {"spectra_pooled", "pca_sheet_pooled_position", "distances_focus", "attention_all_blocks", "attention_qkv",
            "histograms_whole_stream", "histograms_whole_stream_gif", "lens_cosine"} <= set(keys)
    if which == "residual_run":
        assert {"tsne_focus", "tsne_pooled", "gride_metrics"} <= set(keys)
        assert sorted(k for k in keys if k.startswith(LENS_PAIR_PREFIX)) == sorted(LENS_PAIR_PREFIX + p.id for p in plan.corpus)
        assert "histograms_sublayer_outputs" not in keys  # no attention or MLP outputs analysed
    else:
        assert not {"tsne_focus", "gride_metrics"} & set(keys)
        assert [k for k in keys if k.startswith(LENS_PAIR_PREFIX)] == [LENS_PAIR_PREFIX + plan.focus.id]
    # every part of every figure inside the canvas (GIF frames: a fixed canvas), no suptitle or
    # figure legend over a panel (PNGs are cropped to the drawing, so nothing is cut off there)
    assert len(seen) > len(figs)  # GIF frames are saved one by one
    assert [f"{s.target}: {o}" for s in seen for o in s.overflows] == []
    assert overlaps == []
    for f in figs:
        with Image.open(f.path) as im:
            assert im.width <= 2400 and im.height <= 3400, (f.key, im.size)
            if f.path.suffix == ".png" and f.key != "lens_cosine":  # lens_cosine: drawing.depth_figure's file
                assert "Software" not in im.info  # no version stamp: the same data, the same bytes


# one figure of each kind that samples, sorts or animates: drawn twice, the same bytes
SAME_BYTES = ("pca_sheet_pooled_genre", "attention_all_blocks", "histograms_residual_gif")


def test_the_same_figures_are_the_same_bytes(default_run, tmp_path):
    _, plan = default_run
    chosen = [f for f in _gallery(plan, tmp_path) if f.key.startswith(SAME_BYTES)]
    assert len(chosen) == len(SAME_BYTES)
    for f in chosen:
        first = f.path.with_name("first-" + f.path.name)
        figures.Figure(f.key, first, f.caption, partial(f.draw.func, *f.draw.args[:-1], first), f.cost).render()
        figures.Figure(f.key, f.path, f.caption, f.draw, f.cost).render()
        assert first.read_bytes() == f.path.read_bytes(), f.key


def test_no_drawn_text_is_maths_markup(drawn, residual_run, tmp_path):
    """Log axes carry plain numbers: matplotlib's own log labels are maths, drawn as source under
    the study's literal-text rule."""
    _, plan = residual_run
    import matplotlib.figure

    texts = []
    real = matplotlib.figure.Figure.savefig

    def collect(self, fname, *args, **kwargs):
        self.draw_without_rendering()
        texts.extend(t.get_text() for t in self.findobj(matplotlib.text.Text) if t.get_visible())
        return real(self, fname, *args, **kwargs)

    matplotlib.figure.Figure.savefig = collect
    try:
        for f in _gallery(plan):
            if f.key in ("spectra_pooled", "gride_metrics", "histograms_residual"):
                target = tmp_path / f.path.name
                figures.Figure(f.key, target, f.caption, partial(f.draw.func, *f.draw.args[:-1], target), f.cost).render()
    finally:
        matplotlib.figure.Figure.savefig = real
    assert texts and not [t for t in texts if "mathdefault" in t or "$" in t]


def test_animations_have_one_frame_per_depth(drawn, residual_run):
    run, plan = residual_run
    n = plan.cfg.n_layer
    for p in plan.corpus:
        with Image.open(run / "plots" / f"lens_pair_{p.id}.gif") as gif:
            assert gif.n_frames == n
    for key, _, subs in GROUPS:
        sites = group_sites(plan, subs)
        if sites:
            with Image.open(run / "plots" / f"histograms_{key}.gif") as gif:
                assert gif.n_frames == len(sites)
    assert group_sites(plan, None) == [s.name for s in plan.sites]


# --------------------------------------------------------------------------------------------
# The numbers behind the figures
# --------------------------------------------------------------------------------------------

def test_focus_attention_and_qkv_equal_transformers(default_run, tiny_model_dir):
    """Every block's saved pattern equals transformers' attentions; Q, K, V equal the split of its
    c_attn output; the sheet tiles exactly those patterns."""
    import torch
    from transformers import GPT2LMHeadModel

    run, plan = default_run
    ids = plan.token_ids[[p.id for p in plan.corpus].index(plan.focus.id)]
    model = GPT2LMHeadModel.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    qkv = {}
    b = plan.attention_block
    handle = model.transformer.h[b].attn.c_attn.register_forward_hook(lambda m, i, o: qkv.setdefault("out", o.detach()))
    with torch.no_grad():
        att = model(torch.tensor(ids)[None], output_attentions=True).attentions
    handle.remove()
    path = run / "activations" / f"{plan.focus.id}.safetensors"
    with safe_open(str(path), framework="numpy") as f:
        patterns = [f.get_tensor(f"blocks.{i}.attn.hook_pattern") for i in range(plan.cfg.n_layer)]
        saved = [f.get_tensor(attention_sheet.qkv_name(b, w)) for w in "qkv"]
    for i, pat in enumerate(patterns):
        np.testing.assert_allclose(pat, att[i][0].numpy(), atol=2e-6)
    h, e = plan.cfg.n_head, plan.cfg.d_model // plan.cfg.n_head
    for got, ref in zip(saved, qkv["out"][0].numpy().reshape(ids.size, 3, h, e).transpose(1, 0, 2, 3)):
        np.testing.assert_allclose(got, ref, atol=2e-5)
    img = attention_sheet.mosaic(patterns)
    t = ids.size
    step = t + attention_sheet.GAP
    np.testing.assert_array_equal(img[step:step + t, 2 * step:2 * step + t], patterns[1][2])
    assert np.isnan(img[t, 0]) and np.isnan(img[0, t])


def test_long_patterns_shrink_to_the_maximum_of_each_square():
    rng = np.random.default_rng(8)
    tile = rng.random((300, 300))
    small = attention_sheet.shrink(tile, limit=128)  # 3 x 3 squares
    assert small.shape == (100, 100)
    assert small[7, 40] == tile[21:24, 120:123].max()
    odd = rng.random((129, 129))
    shrunk = attention_sheet.shrink(odd, limit=128)  # 2 x 2 squares, padded with zeros to 130
    assert shrunk.shape == (65, 65) and shrunk[64, 64] == odd[128, 128]
    np.testing.assert_array_equal(attention_sheet.shrink(tile[:50, :50]), tile[:50, :50])


def test_distance_matrices_equal_scipy(default_run):
    from scipy.spatial.distance import cdist

    X = np.random.default_rng(3).standard_normal((40, 16)).astype(np.float32)
    np.testing.assert_allclose(distances.euclidean_matrix(X), cdist(X.astype(np.float64), X.astype(np.float64)), atol=1e-12)
    np.testing.assert_allclose(distances.cosine_distance_matrix(X), cdist(X.astype(np.float64), X.astype(np.float64),
                               "cosine"), atol=1e-12)
    _, plan = default_run
    i, tokens = distances.focus_tokens(plan)
    assert len(tokens) == plan.kept[i].size and tokens[0] == plan.tokenizer.token_strings(plan.token_ids[i])[1]


def test_pca_sheet_components_equal_scikit_learn():
    from sklearn.decomposition import PCA

    X = np.random.default_rng(4).standard_normal((300, 20)) * np.linspace(5, 0.5, 20)
    coords, share = pca_sheet.top3(X)
    ref = PCA(3, svd_solver="full").fit(X)
    np.testing.assert_allclose(np.abs(coords), np.abs(ref.transform(X)), atol=1e-9)
    np.testing.assert_allclose(share, ref.explained_variance_ratio_, rtol=1e-12)


def test_pooled_histograms_equal_direct_computation(default_run):
    """The pooled histograms: numpy's histogram of norms and cosines computed here from the saved
    activations; the mean cosine to the last token equals the results table's (computed apart)."""
    run, plan = default_run
    site = "blocks.1.hook_resid_mid"
    X, _ = load_pooled_cloud(plan, site)
    d = json.loads((run / "pooled" / f"{site}.json").read_text())["distributions"]
    X64 = X.astype(np.float64)
    norms = np.linalg.norm(X64, axis=1)
    ref, _ = np.histogram(norms, bins=np.logspace(-2, 5, dist.NORM_BINS + 1))
    assert d["row_norm"]["counts"] == ref.tolist() and d["row_norm"]["clipped"] == 0
    cos_last, start = [], 0
    for k in plan.kept:
        block = X64[start:start + k.size]
        cos_last += [float(a @ block[-1] / np.linalg.norm(a) / np.linalg.norm(block[-1])) for a in block[:-1]]
        start += k.size
    ref, _ = np.histogram(cos_last, bins=np.linspace(-1, 1, dist.COSINE_BINS + 1))
    assert d["cosine_to_last"]["counts"] == ref.tolist()
    table = [r for r in read_csv(run / "tables" / "results.csv")
             if (r["prompt_id"], r["site"], r["quantity"]) == ("pooled", site, "cosine_to_last")]
    assert float(table[0]["value"]) == pytest.approx(d["cosine_to_last"]["mean"], rel=1e-12)
    n = X.shape[0]
    assert d["pairwise_cosine"]["n"] == min(n, dist.PAIR_SAMPLE) * (min(n, dist.PAIR_SAMPLE) - 1) // 2
    # pairwise cosines of all pairs when the sample holds every row: scikit-learn's cosine similarity
    from sklearn.metrics.pairwise import cosine_similarity

    Y = np.random.default_rng(5).standard_normal((50, 8))
    sim = cosine_similarity(Y)
    np.testing.assert_allclose(np.sort(dist.pairwise_cosines(Y)), np.sort(sim[np.triu_indices(50, 1)]), atol=1e-12)


def test_cosine_gride_is_gride_on_unit_rows_with_the_cosine_neighbour_order(residual_run):
    run, plan = residual_run
    site = "blocks.1.hook_resid_post"
    X, _ = load_pooled_cloud(plan, site)
    U = X.astype(np.float64) / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    # the neighbour order on the unit sphere (Euclidean) is the cosine order (idest's metric="cosine")
    _, i_unit = idest.knn(U, 8)
    _, i_cos = idest.knn(X.astype(np.float64), 8, metric="cosine")
    assert (i_unit == i_cos).mean() > 0.99  # ties in float rounding aside
    ref = idest.gride(U.astype(np.float32), range_max=plan.pooled_settings.gride_range_max)
    rows = [r for r in read_csv(run / "tables" / "results.csv")
            if (r["prompt_id"], r["site"], r["quantity"]) == ("pooled", site, "id_gride_cosine")]
    got = {int(r["param"]): float(r["value"]) for r in rows}
    assert got == pytest.approx(dict(zip(ref.scales.tolist(), ref.dimensions.tolist())), rel=1e-6)
    np.testing.assert_allclose(np.linalg.norm(unit_rows(X).astype(np.float64), axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="zero"):
        unit_rows(np.zeros((3, 4), dtype=np.float32))


def test_spectra_figure_reads_the_pooled_eigenvalues(default_run):
    from geostudy.outputs.gallery.spectra import explained_by_site

    run, plan = default_run
    site = "blocks.0.hook_mlp_out"
    X, _ = load_pooled_cloud(plan, site)
    ev = np.linalg.eigvalsh(np.cov(X.astype(np.float64), rowvar=False))[::-1]
    ratios = explained_by_site(assemble_tables(plan)["spectra"], "pooled")[site]
    np.testing.assert_allclose(ratios, (ev / ev.sum())[:20], rtol=1e-6, atol=1e-12)


def test_tsne_is_seeded_and_its_dependency_error_is_one_line(monkeypatch):
    X = np.random.default_rng(6).standard_normal((40, 10))
    np.testing.assert_array_equal(tsne.tsne_2d(X), tsne.tsne_2d(X))
    assert tsne.perplexity_for(40) == 13.0 and tsne.perplexity_for(5000) == 30.0
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(StudyError, match="scikit-learn") as err:
        tsne.tsne_2d(X)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------

def test_lens_gifs_option(tiny_model_dir, corpus, gpt2_vocab_dir, tmp_path):
    base = dict(tokenizer=gpt2_vocab_dir, progress=False)
    ids = [p.id for p in load_corpus(corpus)]
    plan = geostudy.prepare_study(tiny_model_dir, corpus, tmp_path / "a", lens_gifs=f"{ids[2]},{ids[0]}", **base)
    assert plan.lens_gif_prompts == (ids[0], ids[2])  # corpus order
    assert geostudy.prepare_study(tiny_model_dir, corpus, tmp_path / "b", lens_gifs="none", **base).lens_gif_prompts == ()
    with pytest.raises(StudyError, match="no-such-prompt") as err:
        geostudy.prepare_study(tiny_model_dir, corpus, tmp_path / "c", lens_gifs="no-such-prompt", **base)
    assert "\n" not in str(err.value)
    # cosine GRIDE decides results: it is in the fingerprint only when on, so default folders keep their names
    on = geostudy.prepare_study(tiny_model_dir, corpus, tmp_path / "d", cosine_gride=True, **base)
    off = geostudy.prepare_study(tiny_model_dir, corpus, tmp_path / "e", **base)
    assert on.fingerprint["cosine_gride"] is True and "cosine_gride" not in off.fingerprint


def test_help_names_the_expensive_flags():
    from geostudy.cli import build_parser

    text = " ".join(build_parser().format_help().split())
    for flag in ("--tsne", "--lens-gifs", "--cosine-gride"):
        assert flag in text
    assert "off by default" in text and "default: focus" in text
