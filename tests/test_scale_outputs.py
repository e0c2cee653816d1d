"""The corpus-scale study's figures and report (geostudy/outputs/scale_figures.py,
scale_report.py), on synthetic tables built here: partition rows drawn from a known profile,
their "partitions" summary computed here with NumPy (mean, std with ddof=1)."""

from __future__ import annotations

import base64
import math
import re
from html.parser import HTMLParser

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.legend import Legend
from matplotlib.text import Text
from PIL import Image

from geostudy.errors import StudyError
from geostudy.outputs import scale_figures as sf
from geostudy.outputs import scale_report as sr
from geostudy.outputs.drawing import DPI, LITERAL_TEXT
from geostudy.outputs.tables import write_table
from geostudy.sites import resolve_sites
from gpt2np import GPT2Config

SCALES = (1, 2, 4, 8, 16)
LEVELS = (0.75, 0.8, 0.85, 0.9, 0.95)
AUTO_SCALE = 4


def config_and_sites(n_sites: int):
    """A config and its sites: 2 (embeddings + one block's output), 13 (the residual stream of
    12 blocks) or 49 (the default sites of 8 blocks)."""
    layers, spec = {2: (1, ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"]),
                    13: (12, ["blocks.0.hook_resid_pre", "blocks.*.hook_resid_post"]),
                    49: (8, None)}[n_sites]
    cfg = GPT2Config(n_layer=layers, n_head=2, d_model=8, d_mlp=32, n_ctx=32, d_vocab=50)
    names = [s.name for s in resolve_sites(spec, cfg)]
    assert len(names) == n_sites
    return cfg, names


def profile(model: str, n: int, peak: int, height: float) -> np.ndarray:
    if model == "trained":
        return np.array([20 + height * math.exp(-((i - peak) / 2.0) ** 2) for i in range(n)])
    return np.full(n, 12.0)


def partition_values(rng, base: float, i: int) -> list[tuple]:
    """(quantity, param, value, error) of one site in one partition."""
    out = [("id_twonn", None, float(base + rng.normal(0, 0.5)), 0.3),
           ("id_mle", None, float(0.9 * base + rng.normal(0, 0.5)), 0.2)]
    out += [("id_gride", sc, float(base * (1 + 0.05 * math.log2(sc)) + rng.normal(0, 0.5)), 0.1) for sc in SCALES]
    out.append(("id_gride_auto", AUTO_SCALE, float(base * 1.1 + rng.normal(0, 0.5)), 0.1))
    out += [("pca_components", lv, int(5 + 40 * lv + i + rng.integers(0, 3)), None) for lv in LEVELS]
    out.append(("pca_participation_ratio", None, float(3 + 0.5 * i + rng.normal(0, 0.5)), None))
    return out


def synthetic_rows(n_sites=13, untrained=True, partitions=3, seed=0, peak=None, height=15.0):
    """(results, overlap, cka, partition rows, site names, cfg) of a made-up study."""
    cfg, names = config_and_sites(n_sites)
    rng = np.random.default_rng(seed)
    n = len(names)
    peak = n // 2 if peak is None else peak
    results, overlap, cka = [], [], []
    for model in ["trained", "untrained"] if untrained else ["trained"]:
        base = profile(model, n, peak, height)
        per: dict[tuple, list[float]] = {}
        for p in range(partitions):
            for i, s in enumerate(names):
                for q, param, v, e in partition_values(rng, base[i], i):
                    results.append((model, f"partition-{p}", "", "", s, s, 0, "x", i, 100, q, param, v, e))
                    per.setdefault((s, i, q, param), []).append(float(v))
            for a in range(n):
                for b in range(a, n):
                    v = 1.0 if a == b else float(np.clip(1 - 0.08 * (b - a) + rng.normal(0, 0.02), 0, 1))
                    overlap.append((model, p, names[a], names[b], v))
                    cka.append((model, p, names[a], names[b], float(np.clip(v + 0.03, 0, 1))))
        for (s, i, q, param), vals in per.items():
            results.append((model, "partitions", "", "", s, s, 0, "x", i, 100 * partitions, q, param,
                            float(np.mean(vals)), float(np.std(vals, ddof=1))))
        for src in (overlap, cka):
            acc: dict[tuple, list[float]] = {}
            for r in src:
                if r[0] == model and r[1] != "mean":
                    acc.setdefault((r[2], r[3]), []).append(r[4])
            src.extend((model, "mean", a, b, float(np.mean(v))) for (a, b), v in acc.items())
    parts = [(q, q // 3, 0, 20, (q % (partitions + 1)) - 1) for q in range(40 * (partitions + 1))]
    return results, overlap, cka, parts, names, cfg


def synthetic(**kw) -> sf.ScaleTables:
    results, overlap, cka, parts, names, cfg = synthetic_rows(**kw)
    return sf.ScaleTables.build(results, overlap, cka, parts, names[::-1], cfg, overlap_k=10)  # any order in


def info(**kw) -> sr.ScaleReportInfo:
    base = dict(model="gpt2", source="JSONL file corpus.jsonl (field text)", n_documents=1234, n_candidates=5678,
                n_duplicates=17, n_sequences=4321, window=20, remainder="drop", represent="last", partitions=3,
                partition_size=1111, partition_note="3 partitions of 1111: what the corpus allows.", seed=7,
                gride_rule="the scale whose ID differs least from the next scale's.",
                timings={"forward": 12.5, "analyses": 40.25}, versions={"numpy": np.__version__}, date="2026-12-01",
                untrained_seed=3, max_sequences=4321)
    base.update(kw)
    return sr.ScaleReportInfo(**base)


# ---------------------------------------------------------------------------------------------
# The figures


def outside_canvas(fig, tol: float = 1.0) -> list:
    """Every drawn text, legend and axes whose box leaves the figure's pixel bounds. The texts of
    an axes (title, labels, the tick labels actually drawn, annotations) are checked through
    its tight box; the figure's own texts (suptitle, legend entries) one by one."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    in_axes = set()  # tick labels (whose .axes is not set) and every other text of an axes
    for ax in fig.axes:
        in_axes.update(map(id, ax.findobj(Text)))
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                in_axes.update((id(tick.label1), id(tick.label2)))
    bad = []

    def check(kind, what, box):
        if box.x0 < -tol or box.y0 < -tol or box.x1 > width + tol or box.y1 > height + tol:
            bad.append((kind, what, tuple(round(v) for v in box.extents), (width, height)))

    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text() and id(t) not in in_axes:
            check("text", t.get_text(), t.get_window_extent(renderer))
    for legend in fig.findobj(Legend):
        check("legend", "", legend.get_window_extent(renderer))
    for ax in fig.axes:
        if ax.get_visible():
            check("axes", ax.get_title(), ax.get_tightbbox(renderer))
    return bad


def test_the_canvas_check_can_fail():
    with matplotlib.rc_context(LITERAL_TEXT):
        fig, ax = plt.subplots(figsize=(3, 2), layout="constrained")
        ax.plot([0, 1])
        assert outside_canvas(fig) == []
        fig.text(0.9, 0.5, "a label running off the right edge")
        fig.legend(["x"], loc="center left", bbox_to_anchor=(1.1, 0.5))
        bad = outside_canvas(fig)
        plt.close(fig)
    assert {kind for kind, *_ in bad} == {"text", "legend"}


# 13 and 49 sites only with the control: its figures have the most panels (and drawing is slow here)
@pytest.mark.parametrize("n_sites, untrained", [(2, True), (2, False), (13, True), (49, True)])
def test_every_artist_lies_inside_the_canvas(n_sites, untrained):
    tables = synthetic(n_sites=n_sites, untrained=untrained)
    figs = sf.scale_figures(tables)
    assert [f.key for f in figs] == ["scale_id", "scale_gride", "scale_pca", "scale_overlap", "scale_cka"]
    for f in figs:
        with matplotlib.rc_context(LITERAL_TEXT):
            fig = f.build()
            try:
                assert outside_canvas(fig) == [], f.key
            finally:
                plt.close(fig)


def _drawn(fig) -> list:
    """The artists a figure draws: (axes title, [line or image kinds])."""
    return [(ax.get_title(), len(ax.images), sum(1 for ln in ax.get_lines() if ln.get_linestyle() == "--"))
            for ax in fig.axes]


def test_untrained_curves_and_panels_appear_only_with_the_control():
    with matplotlib.rc_context(LITERAL_TEXT):
        for untrained, panels in ((True, 2), (False, 1)):
            tables = synthetic(n_sites=13, untrained=untrained)
            assert tables.models == (("trained", "untrained") if untrained else ("trained",))
            fig = sf.id_figure(tables)
            labels = [t.get_text() for t in fig.legends[0].get_texts()]
            assert labels == [f"{name}, {m}" for m in tables.models for _, name in sf.ESTIMATORS]
            dashed = _drawn(fig)[0][2]
            assert (dashed > 0) == untrained  # the untrained lines are dashed
            plt.close(fig)
            fig = sf.pair_figure(tables, tables.cka, "t", "b")
            assert sum(len(ax.images) for ax in fig.axes) == panels
            plt.close(fig)
            fig = sf.gride_scale_figure(tables)
            assert len([ax for ax in fig.axes if ax.get_title()]) == panels
            plt.close(fig)


def test_id_figure_draws_the_partition_means_and_stds():
    results, overlap, cka, parts, names, cfg = synthetic_rows(n_sites=13)
    tables = sf.ScaleTables.build(results, overlap, cka, parts, names, cfg)
    with matplotlib.rc_context(LITERAL_TEXT):
        fig = sf.id_figure(tables)
    ax = fig.axes[0]
    twonn_trained = ax.containers[0]  # the first errorbar drawn: TwoNN, trained
    line, _caps, (bars,) = twonn_trained.lines[0], twonn_trained.lines[1], twonn_trained.lines[2]
    by_site = {}
    for r in results:
        if r[0] == "trained" and r[1].startswith("partition-") and r[10] == "id_twonn":
            by_site.setdefault(r[4], []).append(r[12])
    means = [np.mean(by_site[s]) for s in names]
    stds = [np.std(by_site[s], ddof=1) for s in names]
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float), means, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(line.get_xdata(), float), range(len(names)))
    segments = bars.get_segments()
    np.testing.assert_allclose([seg[1][1] - seg[0][1] for seg in segments], 2 * np.array(stds), rtol=1e-9)
    plt.close(fig)


@pytest.fixture(scope="module")
def drawn_plots(tmp_path_factory):
    """make_scale_plots on 2 sites without the control, and each figure's laid-out size (inches)."""
    tables = synthetic(n_sites=2, untrained=False)
    sizes = {}
    original = sf.save_figure

    def recording(fig, path):
        sizes[path.stem] = tuple(fig.get_size_inches())
        original(fig, path)

    mp = pytest.MonkeyPatch()
    mp.setattr(sf, "save_figure", recording)
    try:
        plots = sf.make_scale_plots(tables, tmp_path_factory.mktemp("plots"))
    finally:
        mp.undo()
    return tables, plots, sizes


def test_plots_are_files_with_the_laid_out_size_and_the_same_bytes_twice(drawn_plots, tmp_path):
    tables, first, sizes = drawn_plots
    second = sf.make_scale_plots(tables, tmp_path)
    assert list(first) == list(second) == ["scale_id", "scale_gride", "scale_pca", "scale_overlap", "scale_cka"]
    for key, (path, caption) in first.items():
        assert path.name == f"{key}.png" and caption
        assert path.read_bytes() == second[key][0].read_bytes()
        with Image.open(path) as im:
            assert im.format == "PNG"
            fw, fh = sizes[key]
            assert im.size == (round(fw * DPI), round(fh * DPI))  # not cropped: the layout already fits


def test_log2_axis_labels_are_plain_numbers_not_maths():
    tables = synthetic(n_sites=2)
    with matplotlib.rc_context(LITERAL_TEXT):
        fig = sf.gride_scale_figure(tables)
        fig.canvas.draw()
        ax = fig.axes[0]
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(s) for s in SCALES]
        plt.close(fig)


def test_short_labels():
    cfg, names = config_and_sites(13)
    sites = resolve_sites(names, cfg)
    assert sf.short_labels(sites) == ["emb"] + [str(b) for b in range(12)]
    cfg, names = config_and_sites(49)
    labels = sf.short_labels(resolve_sites(names, cfg))
    assert labels[0] == "emb" and labels[1] == "0 LN1" and labels[-1] == "7 block out"
    assert len(set(labels)) == 49


def test_pair_matrix_is_the_symmetric_partition_mean():
    tables = synthetic(n_sites=13)
    names = [s.name for s in tables.sites]
    expected = np.full((13, 13), np.nan)
    per: dict = {}
    for model, part, a, b, v in tables.overlap:
        if model == "untrained" and part != "mean":
            per.setdefault((names.index(a), names.index(b)), []).append(v)
    for (i, j), vals in per.items():
        expected[i, j] = expected[j, i] = np.mean(vals)
    np.testing.assert_allclose(sf.pair_matrix(tables.overlap, "untrained", tables.sites), expected, rtol=1e-12)
    # without the "mean" rows, the same matrix from the partitions
    no_mean = [r for r in tables.overlap if r[1] != "mean"]
    np.testing.assert_allclose(sf.pair_matrix(no_mean, "untrained", tables.sites), expected, rtol=1e-12)


def test_tables_round_trip_through_the_run_folders_csv_files(tmp_path):
    results, overlap, cka, parts, names, cfg = synthetic_rows(n_sites=13)
    write_table(tmp_path, "results", sf.SCALE_RESULT_COLUMNS, results)
    write_table(tmp_path, "overlap", sf.PAIR_COLUMNS, overlap)
    write_table(tmp_path, "cka", sf.PAIR_COLUMNS, cka)
    write_table(tmp_path, "partitions", sf.PARTITION_COLUMNS, parts)
    back = sf.read_scale_tables(tmp_path, cfg)
    direct = sf.ScaleTables.build(results, overlap, cka, parts, names, cfg)
    assert back.results == direct.results and back.overlap == direct.overlap and back.cka == direct.cka
    assert back.sites == direct.sites and back.partitions == direct.partitions
    counts = np.bincount([p for *_, p in parts if p >= 0])
    assert back.partitions.sizes == tuple(counts) and back.partitions.unused == sum(p < 0 for *_, p in parts)


def test_bad_tables_are_study_errors():
    results, overlap, cka, parts, names, cfg = synthetic_rows(n_sites=2)
    with pytest.raises(StudyError, match="cells"):
        sf.ScaleTables.build([results[0][:-1]], overlap, cka, parts, names, cfg)
    with pytest.raises(StudyError, match="model 'other'"):
        sf.ScaleTables.build([("other",) + results[0][1:]], overlap, cka, parts, names, cfg)
    with pytest.raises(StudyError, match="not in the site list"):
        sf.ScaleTables.build(results, overlap, cka, parts, names[:1], cfg)
    with pytest.raises(StudyError, match="without gaps"):
        sf.ScaleTables.build(results, overlap, cka, [(0, 0, 0, 20, 1)], names, cfg)
    with pytest.raises(StudyError):
        sf.read_scale_tables(__import__("pathlib").Path("/nonexistent-folder"), cfg)


# ---------------------------------------------------------------------------------------------
# The report


class _Tables(HTMLParser):
    """The report's tables: {class attribute: [[cell text, ...], ...]} (header row first)."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.hrefs: list[str] = []
        self.images: list[str] = []
        self._rows = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._rows = self.tables.setdefault(a.get("class") or f"table{len(self.tables)}", [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = []
        elif tag == "a":
            self.hrefs.append(a["href"])
        elif tag == "img":
            self.images.append(a["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._rows = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(path):
    p = _Tables()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _close(text: str, value: float) -> bool:
    """`text` (as printed, e.g. "12.35") equals `value` to the digits printed."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) - value) <= 0.5 * 10 ** -decimals + 1e-12


def _partition_values(results, model, site, quantity, param=None):
    vals = [r[12] for r in results if r[0] == model and r[1].startswith("partition-") and r[4] == site
            and r[10] == quantity and (param is None or r[11] == param)]
    return float(np.mean(vals)), float(np.std(vals, ddof=1))


def test_the_report_holds_the_partition_means_and_stds_of_every_site(tmp_path):
    results, overlap, cka, parts, names, cfg = synthetic_rows(n_sites=13)
    tables = sf.ScaleTables.build(results, overlap, cka, parts, names, cfg)
    path = tmp_path / "report.html"
    sr.write_scale_report(info(), tables, {}, path)
    got = parse(path).tables
    columns = [("TwoNN", "id_twonn", None), ("MLE", "id_mle", None), ("GRIDE (auto)", "id_gride_auto", None),
               ("PCA 90%", "pca_components", 0.9), ("participation ratio", "pca_participation_ratio", None)]
    for model in ("trained", "untrained"):
        header, *rows = got[f"sites {model}"]
        assert [r[1] for r in rows] == names
        for row, site in zip(rows, names):
            for title, quantity, param in columns:
                mean_text, std_text = row[header.index(title)].split(" ± ")
                mean, std = _partition_values(results, model, site, quantity, param)
                assert _close(mean_text, mean) and _close(std_text, std), (model, site, title)
            assert row[header.index("GRIDE n1")] == str(AUTO_SCALE)
    header, *rows = got["partitions"]
    counts = np.bincount([p for *_, p in parts if p >= 0])
    assert [int(r[1]) for r in rows] == list(counts)


def test_the_report_states_the_protocol_and_cites_the_papers(tmp_path):
    tables = synthetic(n_sites=2, untrained=False)
    path = tmp_path / "report.html"
    sr.write_scale_report(info(untrained_seed=None, represent="mean", drop_positions=(0,)), tables, {}, path)
    text = re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8"))
    for needle in ("N = 4321", "P = 3", "n = 1111", "Window: 20", "remainder: drop", "1234 documents",
                   "5678 candidate sequences", "17 identical sequences", "mean of its hidden states",
                   "leaving out positions [0]", "the scale whose ID differs least from the next scale&#x27;s.",
                   "3 partitions of 1111: what the corpus allows.", "seed 7", "numpy", "40.25"):
        assert needle in text, needle
    for cite in ("Emergence of a high-dimensional abstraction phase in language transformers. ICLR 2025",
                 "The geometry of hidden representations of large transformer models. NeurIPS 2023",
                 "Intrinsic dimension of data representations in deep neural networks. NeurIPS 2019",
                 "The generalized ratios intrinsic dimension estimator. Scientific Reports",
                 "Similarity of neural network representations revisited. ICML 2019"):
        assert cite in text, cite
    assert "untrained control measures" not in text  # no control, no sentence about it
    # the synthetic partitions.csv holds 3 x 40 sequences, not the 3 x 1111 of info(): the report says so
    assert "The plan was P = 3 partitions of n = 1111, but tables/partitions.csv holds 3 partitions of [40]" in text
    sr.write_scale_report(info(partition_size=40), tables, {}, path)
    assert "The plan was" not in path.read_text(encoding="utf-8")


def test_the_report_escapes_text_and_links_only_to_run_folder_files(tmp_path):
    tables = synthetic(n_sites=2)
    (tmp_path / "tables").mkdir()
    for name in ("results.csv", "overlap.csv", "partitions.json"):
        (tmp_path / "tables" / name).write_text("x\n")
    (tmp_path / "manifest.json").write_text("{}")
    path = tmp_path / "report.html"
    evil = "<script>alert('x')</script> & co"
    sr.write_scale_report(info(model=evil, source=evil, partition_note=evil, gride_rule=evil), tables, {}, path)
    page = path.read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;" in page
    hrefs = parse(path).hrefs
    assert sorted(hrefs) == ["manifest.json", "tables/overlap.csv", "tables/partitions.json", "tables/results.csv"]
    assert all((tmp_path / h).is_file() for h in hrefs)


def test_the_report_embeds_the_figures(drawn_plots, tmp_path):
    tables, figures, _ = drawn_plots
    path = tmp_path / "report.html"
    sr.write_scale_report(info(), tables, figures, path)
    images = parse(path).images
    assert len(images) == len(figures)
    for src, (png, _caption) in zip(images, figures.values()):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == png.read_bytes()
    assert 'src="plots/' not in path.read_text(encoding="utf-8")  # self-contained
    again = tmp_path / "again.html"
    sr.write_scale_report(info(), tables, figures, again)
    assert again.read_bytes() == path.read_bytes()


def _findings_text(tables) -> str:
    return " ".join(sr.findings(tables))


def _expected_peak(results, names, model="trained", quantity="id_gride_auto"):
    means = [_partition_values(results, model, s, quantity)[0] for s in names]
    return int(np.argmax(means)), means


def test_what_we_found_follows_the_numbers():
    texts = {}
    for peak, height in ((3, 15.0), (9, 30.0)):
        results, overlap, cka, parts, names, cfg = synthetic_rows(n_sites=13, peak=peak, height=height)
        tables = sf.ScaleTables.build(results, overlap, cka, parts, names, cfg)
        text = _findings_text(tables)
        at, means = _expected_peak(results, names)
        assert at == peak  # the synthetic profile's peak, found here with NumPy
        site = tables.sites[at]
        mean, std = _partition_values(results, "trained", site.name, "id_gride_auto")
        assert f"highest at {sr.site_words(site)} (site {at + 1} of 13" in text
        assert f"{mean:.2f} ± {std:.2f}" in text
        assert f"{means[at] / means[0]:.2f} times its value at the embeddings" in text
        u_mean, u_std = _partition_values(results, "untrained", site.name, "id_gride_auto")
        assert f"untrained control measures {u_mean:.2f} ± {u_std:.2f}" in text
        assert f"the trained model is {abs(mean - u_mean):.2f} higher" in text
        assert f"{abs(mean - u_mean) / math.hypot(std, u_std):.1f} times" in text
        texts[peak] = text
    assert texts[3] != texts[9]


def test_what_we_found_without_the_control_and_with_twonn_only():
    results, overlap, cka, parts, names, cfg = synthetic_rows(n_sites=13, untrained=False, peak=4)
    only_twonn = [r for r in results if r[10] == "id_twonn"]
    tables = sf.ScaleTables.build(only_twonn, [], [], parts, names, cfg)
    assert sr.headline_estimator(tables) == "id_twonn"
    text = _findings_text(tables)
    at, means = _expected_peak(only_twonn, names, quantity="id_twonn")
    assert text.startswith(f"With TwoNN, the trained model's intrinsic dimension is highest at "
                           f"{sr.site_words(tables.sites[at])}")
    assert "untrained" not in text and "overlap" not in text and "MLE" not in text


def test_what_we_found_names_disagreeing_estimators():
    results, overlap, cka, parts, names, cfg = synthetic_rows(n_sites=13, peak=6)
    # move MLE's peak to the last site: the sentence must say the estimators disagree, and where
    moved = [r[:12] + (r[12] + (100.0 if r[4] == names[-1] else 0.0),) + r[13:] if r[10] == "id_mle" else r
             for r in results]
    tables = sf.ScaleTables.build(moved, overlap, cka, parts, names, cfg)
    text = _findings_text(tables)
    assert f"MLE peaks at {sr.site_words(tables.sites[-1])}" in text and "disagree" in text


def test_bad_report_info_is_a_study_error():
    with pytest.raises(StudyError, match="'last' and 'mean'"):
        info(represent="tokens")
    with pytest.raises(StudyError, match="n_sequences"):
        info(n_sequences=-1)
    with pytest.raises(StudyError, match="remainder"):
        info(remainder="pad")


def test_a_spread_at_rounding_level_reads_as_none(tmp_path):
    """Identical partitions (e.g. the embeddings of 20-token windows' last tokens, a small
    vocabulary) give a std of ~1e-15: shown as 0.00, and no ratio of the difference to it."""
    results, overlap, cka, parts, names, cfg = synthetic_rows(n_sites=13, peak=5)
    peak = names[5]
    flat = [r[:13] + (4.35e-15,) if (r[1] == "partitions" and r[4] == peak and r[10] == "id_gride_auto") else r
            for r in results]
    tables = sf.ScaleTables.build(flat, overlap, cka, parts, names, cfg)
    text = _findings_text(tables)
    assert "same value to rounding error" in text and "times the two models' standard deviations" not in text
    mean = next(r[12] for r in flat if r[0] == "trained" and r[1] == "partitions" and r[4] == peak
                and r[10] == "id_gride_auto")
    assert f"{mean:.2f} ± 0.00" in text
    path = tmp_path / "report.html"
    sr.write_scale_report(info(), tables, {}, path)
    assert "e-15" not in path.read_text(encoding="utf-8")


def test_missing_values_and_tables_leave_gaps_not_errors(tmp_path):
    results, overlap, cka, parts, names, cfg = synthetic_rows(n_sites=13)
    # NaN at one site for every quantity, no GRIDE at all, no overlap nor CKA table
    holes = [r[:12] + (math.nan,) + r[13:] if r[4] == names[3] else r for r in results if not r[10].startswith("id_gride")]
    tables = sf.ScaleTables.build(holes, [], [], parts, names, cfg)
    figures = sf.make_scale_plots(tables, tmp_path / "plots")
    assert list(figures) == ["scale_id", "scale_pca"]
    with matplotlib.rc_context(LITERAL_TEXT):
        fig = sf.id_figure(tables)
        xs = np.asarray(fig.axes[0].containers[0].lines[0].get_xdata(), float)
        assert outside_canvas(fig) == []
        plt.close(fig)
    np.testing.assert_array_equal(xs, [i for i in range(13) if i != 3])
    path = tmp_path / "report.html"
    sr.write_scale_report(info(), tables, figures, path)
    page = path.read_text(encoding="utf-8")
    assert "No overlap or CKA table." in page and "With TwoNN," in page
    header, *rows = parse(path).tables["sites trained"]
    assert rows[3][2:] == [""] * (len(header) - 2)  # the site without values: empty cells
