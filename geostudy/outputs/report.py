"""The self-contained HTML report: a table of contents, what this run found (findings.py), the
run's date, versions and stage times, every figure embedded as a base64 data URI, the key
tables, genres and topics at a matched number of points (matched.py), and a paragraph per
section saying what is shown and how it was computed. Links point only to files of the run
folder, by relative paths, and to the page's own sections (#id). The report holds its date and
times, so unlike the tables it is not byte-identical between runs."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from ..corpus import POOLED_ID
from ..measure.analysis import FINAL_SITE
from ..plan import StudyPlan
from ..rundir.fsio import atomic_write_text
from ..rundir.layout import MANIFEST, TABLE_DIR
from ..sites import site_info
from .figures import gride_headline_scale, pca_headline_level
from .findings import SINK_RATIO, sink_sentence, what_we_found
from .matched import MATCHED_COLUMNS, matched_rows
from .report_sections import findings_list, focus_sink, groups_view, run_details, section, toc
from .tables import RESULT_COLUMNS, TOP_TOKEN_COLUMNS, write_table

_C = {c: i for i, c in enumerate(RESULT_COLUMNS)}
_T = {c: i for i, c in enumerate(TOP_TOKEN_COLUMNS)}
_MIME = {".png": "image/png", ".gif": "image/gif"}
MATCHED_TABLE = "matched_groups"  # tables/matched_groups.csv|json: genres and topics at a matched size


def write_matched_table(plan: StudyPlan, tables: dict) -> None:
    """Genres and topics at a matched number of points, as a table of every run (with or
    without a report): tables[MATCHED_TABLE], and tables/matched_groups.csv|json."""
    tables[MATCHED_TABLE] = matched_rows(plan, pca_headline_level(plan.pooled_settings))
    write_table(plan.out / TABLE_DIR, MATCHED_TABLE, MATCHED_COLUMNS, tables[MATCHED_TABLE])

# The figures each section shows first (figures.py's keys), and, by key prefix, the further
# figures (the original study's gallery, outputs/gallery) each section shows after them; any other
# figure goes to "More figures", so a new figure is never left out of the report.
CORE_FIGURES = ("id_twonn", "id_mle", "id_gride", "id_gride_scales", "pca_components", "pca_components_90",
                "pca_participation_ratio", "norms", "cosine_to_last", "pairwise_cosine", "log_volume",
                "lens_heatmap", "lens_kl_last", "lens_kl_all", "lens_agreement", "attention", "pca3d")
SECTION_FIGURES = {
    "id": ("gride_metrics",), "pca": ("spectra_",), "norms": ("distances_", "histograms_"),
    "lens": ("lens_cosine", "lens_pair_gif"), "attention": ("attention_all_blocks", "attention_qkv"),
    "cloud": ("pca_sheet_", "tsne_"),
}


def place_figures(keys: list[str]) -> dict[str, list[str]]:
    """{section: further figure keys, in the order given}, plus "more" for every key no section
    takes."""
    placed: dict[str, list[str]] = {name: [] for name in SECTION_FIGURES}
    placed["more"] = []
    for key in keys:
        if key in CORE_FIGURES:
            continue
        home = next((name for name, prefixes in SECTION_FIGURES.items() if key.startswith(prefixes)), "more")
        placed[home].append(key)
    return placed

CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
table { border-collapse: collapse; font-size: .85em; margin: .8em 0; }
th, td { border: 1px solid #ddd; padding: .2em .5em; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .6em 1em; }
code { background: #f4f4f4; padding: 0 .2em; }
details { margin: .6em 0; }
.sides { display: flex; flex-wrap: wrap; gap: 1.5em; } .side { flex: 1 1 30em; overflow-x: auto; }
nav ol { columns: 2; } section { scroll-margin-top: 1em; }
"""


def _e(x) -> str:
    return html.escape(str(x))


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    return _e(v)


def _levels_text(levels) -> str:
    """(0.75, 0.8, 0.9) -> "75, 80 and 90%"."""
    shown = [f"{100 * v:g}" for v in levels]
    return (", ".join(shown[:-1]) + " and " + shown[-1] if len(shown) > 1 else "".join(shown)) + "%"


# What each idest.pca solver computes, in the report's words.
_SOLVERS = {
    "covariance": (
        "computed in float64 as the eigenvalues of the smaller of the D × D covariance and the N × N Gram "
        "matrix (the same non-zero eigenvalues; <code>idest.pca(X, solver=\"covariance\")</code>). Eigenvalues "
        "below about max(N, D)·ε·λ<sub>max</sub> (ε = 2.2·10<sup>−16</sup>) are not resolved by this solver and are "
        "set to zero."),
    "svd": (
        "computed in float64 as the squared singular values of the centred cloud divided by N − 1 "
        "(<code>idest.pca(X, solver=\"svd\")</code>), which resolves the small eigenvalues of the tail too."),
    "auto": (
        "computed in float64 by <code>idest.pca(X, solver=\"auto\")</code>: from the covariance when there are at "
        "least ten times more points than dimensions, else from the singular values of the centred cloud."),
}


def _solver_text(solver: str) -> str:
    return _SOLVERS.get(solver, f"computed by <code>idest.pca(X, solver={_e(repr(solver))})</code>.")


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    mime = _MIME.get(Path(path).suffix.lower(), "application/octet-stream")
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def html_table(headers: list[str], rows: list[list], left: int = 1, cls: str = "") -> str:
    """A table: cells are HTML already (escaped by the caller), headers are escaped here; the
    first `left` columns are left-aligned. Shared with the corpus-scale report."""
    attr = f' class="{cls}"' if cls else ""
    out = [f"<table{attr}><tr>"]
    out += [f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(headers)]
    out.append("</tr>")
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _pooled_table(plan: StudyPlan, tables) -> str:
    idx = {}
    for r in tables["results"]:
        if r[_C["prompt_id"]] == POOLED_ID:
            idx[(r[_C["site"]], r[_C["quantity"]], r[_C["param"]])] = (r[_C["value"]], r[_C["error"]])

    def ve(site, q, p=None):
        v, e = idx.get((site, q, p), (None, None))
        if v is None:
            return ""
        return _fmt(v, 2) + (f" ± {_fmt(e, 2)}" if e is not None else "")

    n1, level = gride_headline_scale(plan.pooled_settings), pca_headline_level(plan.pooled_settings)
    headers = ["site", "name", "TwoNN", "MLE", f"GRIDE n1={n1}", f"PCA {level:.0%}", "part. ratio", "mean |x−μ|",
               "pairwise cos", "log-volume"]
    rows = []
    for s in plan.sites:
        rows.append([_e(s.label), f"<code>{_e(s.name)}</code>", ve(s.name, "id_twonn"), ve(s.name, "id_mle"),
                     ve(s.name, "id_gride", n1), ve(s.name, "pca_components", level),
                     ve(s.name, "pca_participation_ratio"), ve(s.name, "mean_centred_norm"),
                     ve(s.name, "mean_pairwise_cosine"), ve(s.name, "log_volume")])
    return html_table(headers, rows, left=2)


def _lens_table(plan: StudyPlan, tables) -> str:
    idx, top = {}, {}
    for r in tables["results"]:
        if r[_C["prompt_id"]] == plan.focus.id and r[_C["quantity"]].startswith("lens_"):
            idx[(r[_C["site"]], r[_C["quantity"]])] = r[_C["value"]]
    pooled = {}
    for r in tables["results"]:
        if r[_C["prompt_id"]] == POOLED_ID and r[_C["quantity"]].startswith("lens_"):
            pooled[(r[_C["site"]], r[_C["quantity"]])] = r[_C["value"]]
    for r in tables["lens_top_tokens"]:
        if r[_T["prompt_id"]] == plan.focus.id and r[_T["rank"]] == 1:
            top[r[_T["site"]]] = (r[_T["token"]], r[_T["prob"]])
    headers = ["depth", "top-1 token", "p(top-1)", "entropy (nats)", "KL(final‖layer)", "cos(p, final)",
               "rank of final top-1", "corpus: mean KL", "corpus: top-1 agreement"]
    rows = []
    for s in list(plan.lens_sites) + [FINAL_SITE]:
        label = "model output" if s == FINAL_SITE else site_info(s, plan.cfg).label
        tok, p = top.get(s, ("", None))
        rows.append([_e(label), f"<code>{_e(repr(tok))}</code>", _fmt(p), _fmt(idx.get((s, "lens_entropy"))),
                     _fmt(idx.get((s, "lens_kl_to_final"))), _fmt(idx.get((s, "lens_cosine_to_final"))),
                     _fmt(idx.get((s, "lens_final_top_rank"))),
                     _fmt(pooled.get((s, "lens_mean_kl_all_positions"))),
                     _fmt(pooled.get((s, "lens_top1_agreement_all_positions")))])
    return html_table(headers, rows, left=2)


def _links(out: Path) -> str:
    items = []
    for name in ("results", "lens_top_tokens", "spectra", "prompts", "sites", "skipped", MATCHED_TABLE):
        for ext in ("csv", "json"):
            p = out / TABLE_DIR / f"{name}.{ext}"
            if p.is_file():
                items.append(f'<a href="{TABLE_DIR}/{name}.{ext}">{_e(TABLE_DIR)}/{name}.{ext}</a>')
    for name in (MANIFEST,):
        if (out / name).is_file():
            items.append(f'<a href="{name}">{name}</a>')
    return " · ".join(items)


def write_report(plan: StudyPlan, tables: dict, figures: dict, path: Path) -> None:
    """The report, with whatever figures were drawn ({} without plots: tables and text only)."""
    out = Path(path).parent
    m = plan.model_info
    cfg = plan.cfg
    fig = {k: _img(p, c) for k, (p, c) in figures.items()}

    def f(*keys):
        return "".join(fig[k] for k in keys if k in fig)

    n_tokens = sum(int(t.size) for t in plan.token_ids)
    n_points = sum(int(k.size) for k in plan.kept)
    drop = list(plan.drop_positions)
    skipped = tables["skipped"]
    est = plan.settings
    model_note = (
        "" if m.get("known_checkpoint") else
        '<p class="note">This model was loaded from a local file, not from a released checkpoint name. If its '
        "weights are random (as in tests and benchmarks), the next-token predictions below are meaningless; the "
        "geometry is still that of the model's activations.</p>"
    )
    drop_text = (
        f"Token positions {drop} are left out of every analysis of token clouds (they are still part of the "
        "input, and still saved). Position 0 is dropped by default because its activations in GPT-2 are huge "
        "outliers: the first token serves as an <em>attention sink</em> that most heads attend to when they have "
        "nothing better to do, and from the first blocks on its residual-stream norm is many times larger than "
        "every other token's. Kept in, that single point dominates norms, principal components and "
        "nearest-neighbour distances (how much attention position 0 gets in this run is measured under "
        '<a href="#attention">Attention patterns</a>).' if drop else
        "No position was dropped. Note that GPT-2's first position is a huge outlier (an attention sink with a "
        "residual norm far above the others), which dominates norms, principal components and distances (how much "
        'attention position 0 gets in this run is measured under <a href="#attention">Attention patterns</a>).'
    )
    placed = place_figures(list(figures))
    pooled_est = set(plan.pooled_settings.estimators)
    n1, level = gride_headline_scale(plan.pooled_settings), pca_headline_level(plan.pooled_settings)
    sink = focus_sink(plan)
    found = what_we_found(tables["results"], n1 if "gride" in pooled_est else None,
                          level if "pca" in pooled_est else None, plan.focus.id, sink, plan.attention_block)
    matched = tables[MATCHED_TABLE] if MATCHED_TABLE in tables else matched_rows(plan, level)
    sections = [
        ("found", "What we found", findings_list(found) + "<p>Each sentence is computed from this run's tables (pooled "
         "corpus unless said otherwise) when the report is written.</p>"),
        ("run", "What was run", "".join([
        f"<p>Model: <code>{_e(m['source'])}</code> ({cfg.n_layer} blocks, {cfg.n_head} heads, width "
        f"{cfg.d_model}, MLP width {cfg.d_mlp}, computed in {_e(plan.dtype)}); weights file sha256 "
        f"<code>{_e(m['weights_sha256'][:16])}…</code>. Tokenizer: <code>{_e(plan.tokenizer_info['source'])}</code>. "
        f"Corpus: <code>{_e(plan.corpus.source)}</code>, {len(plan.corpus)} prompts "
        f"({', '.join(_e(g or '—') for g in plan.corpus.genres)}), {n_tokens} tokens, of which {n_points} are "
        f"analysed. {len(plan.sites)} sites, from <em>{_e(plan.sites[0].label)}</em> to "
        f"<em>{_e(plan.sites[-1].label)}</em>. Everything is in the run folder: {_links(out)}.</p>",
        model_note,
        f"<p>{drop_text}</p>",
        "<p>A <em>site</em> is one intermediate tensor of the forward pass (named as in TransformerLens, e.g. "
        "<code>blocks.5.hook_resid_mid</code> = after attention + residual, block 5); at each site each token is a "
        "point, and the prompt's tokens form a cloud. Every quantity is computed for each prompt's cloud and for "
        "the <em>pooled</em> corpus: all analysed tokens of all prompts at that site together, the way the "
        "literature measures a layer's intrinsic dimension.</p>",
        ]) + run_details(plan)),
        ("id", "Intrinsic dimension", "".join([
        "<p>Estimates come from <code>idest</code>, on the activations as saved "
        f"({_e(plan.dtype)}), with exact nearest neighbours. <b>TwoNN</b> (Facco et al. 2017): the ratio of each "
        "point's second to first neighbour distance follows a Pareto law whose exponent is the dimension; fitted "
        f"after discarding the largest {est.twonn_discard_fraction:.0%} of ratios; error: its asymptotic standard "
        f"error. <b>MLE</b> (Levina &amp; Bickel 2004) with k = {est.mle_k} neighbours, local estimates combined "
        "as the inverse of the mean inverse; error: the standard error across points. <b>GRIDE</b> (Denti et al. "
        "2022): the same idea at neighbour orders n1 = 1, 2, 4, … and n2 = 2·n1 (up to "
        f"{est.gride_range_max}), so the ID is seen at growing length scales; error: Fisher-information standard "
        f"error. <b>PCA</b>: the number of principal components needed for {_levels_text(est.pca_levels)} of the variance "
        "(a linear, global notion of dimension, typically far above the nonlinear estimates) and the participation "
        "ratio (Σλ)²/Σλ². Repeated points are dropped by the neighbour-based estimators, which read one "
        "shared exact neighbour search per cloud (<code>idest.neighborhoods</code>; identical results to "
        "separate searches). An estimate that "
        f"cannot be made (too few points for the estimator) is listed in <code>tables/skipped.csv</code> "
        f"({len(skipped)} here).</p>",
        f("id_twonn", "id_mle", "id_gride", "id_gride_scales", *placed["id"]),
        "<h3>Pooled corpus, per site</h3>",
        _pooled_table(plan, tables),
        ])),
        ("pca", "Principal components", "".join([
        f"<p>Eigenvalues of the covariance (ddof = 1) of the centred cloud, {_solver_text(est.pca_solver)} "
        "The full spectra are in <code>tables/spectra.csv</code>. The per-genre lines are means of per-prompt "
        "values, and component counts and the participation ratio grow with the number of tokens in a cloud: "
        'they are confounded with the prompts\' length; <a href="#groups">the genres and topics at a matched '
        "number of points</a> compare them fairly.</p>",
        f("pca_components", "pca_components_90", "pca_participation_ratio", *placed["pca"]),
        ])),
        ("groups", "Genres and topics at a matched number of points", groups_view(plan, tables, matched, level)),
        ("norms", "Norms, angles and volume", "".join([
        "<p><b>Mean centred norm</b>: the mean of |x<sub>i</sub> − mean|, the spread of the cloud. <b>Cosine to "
        "the last token</b>: the mean over tokens of cos(x<sub>i</sub>, x<sub>last</sub>), uncentred (the last "
        "analysed token is the one whose vector predicts the next token). <b>Anisotropy</b>: the mean cosine over "
        "all pairs of tokens, uncentred; near 1 when every vector points the same way. <b>Log-volume per "
        "token</b>: (1/N)·½·log pdet(G), G the Gram matrix of the centred cloud — the log of the volume of the "
        "parallelotope the centred token vectors span, divided by the number of tokens N. It is computed without "
        "forming a determinant, as the sum of ½·log((N−1)·λ<sub>i</sub>) over the non-zero covariance "
        "eigenvalues λ<sub>i</sub> (those PCA uses; idest sets eigenvalues at rounding level to zero), divided by N. "
        "Like the PCA counts, the per-genre log-volume depends on the number of tokens (see "
        '<a href="#groups">the matched comparison</a>).</p>',
        f("norms", "cosine_to_last", "pairwise_cosine", "log_volume", *placed["norms"]),
        ])),
        ("lens", "Logit lens", "".join([
        "<p>The residual stream after each block's attention (<code>hook_resid_mid</code>) and after each block "
        "(<code>hook_resid_post</code>) is put through the model's final layer norm and unembedding, as if the "
        "model stopped there; softmax in float64 gives a next-token distribution p. It is compared with the "
        "model's own final distribution q by the entropy of p, <b>KL(q ‖ p) = Σ q·log(q/p)</b> (the final "
        "distribution against the layer's: the information lost when the layer's guess stands in for the final "
        "answer), the cosine between the probability vectors, and the rank in p of q's top token. At the last "
        "block the lens is the model's output, so the KL is 0 there. Shown for the last token of "
        f"<code>{_e(plan.focus.id)}</code>; the last two columns of the table summarise "
        + ("every analysed position" if plan.lens_positions is None else
           f"up to {plan.lens_positions} analysed positions per prompt, evenly spread (first and last included)")
        + " over the whole corpus: the mean KL and the fraction of positions whose top-1 token already equals the "
        "model's.</p>",
        f("lens_heatmap"),
        _lens_table(plan, tables),
        f("lens_kl_last", "lens_kl_all", "lens_agreement", *placed["lens"]),
        ])),
        ("attention", "Attention patterns", "".join([
            f"<p>Every head of block {plan.attention_block} on <code>{_e(plan.focus.id)}</code>, all positions "
            "included. Attention to position 0 is measured as the mean, over heads and over every query after "
            "position 0, of the weight on key 0, compared with the share a uniform causal pattern would give it "
            f"(query i spreads 1/(i+1) over its keys); a sink is stated when it is at least {SINK_RATIO:g}× that share. "
            + _e(sink_sentence(sink, plan.attention_block, plan.focus.id) or "No pattern was saved.") + "</p>",
            f("attention", *placed["attention"]),
        ])),
        ("cloud", "The token cloud in 3-D", "".join([
        f"<p>The pooled cloud at <em>{_e(site_info(plan.scatter_site, cfg).label)}</em> "
        f"(<code>{_e(plan.scatter_site)}</code>) projected on its first three principal components; colour: the "
        "token's position in its prompt.</p>",
        f("pca3d", *placed["cloud"]),
        ])),
    ]
    if placed["more"]:
        sections.append(("more", "More figures", f(*placed["more"])))
    sections.append(("tables", "Tables", "".join([
        "<p><code>tables/results.csv</code> (and .json) is tidy: one row per prompt (or <code>pooled</code>) × site "
        "× quantity (× parameter), with columns " + ", ".join(f"<code>{c}</code>" for c in RESULT_COLUMNS) + ". "
        "Quantities: <code>mean_norm</code>, <code>mean_centred_norm</code>, <code>cosine_to_last</code>, "
        "<code>mean_pairwise_cosine</code>, <code>id_twonn</code>, <code>id_mle</code>, <code>id_gride</code> "
        "(param = n1), <code>pca_components</code> (param = variance share), <code>pca_participation_ratio</code>, "
        "<code>log_volume</code>, <code>log_volume_rank</code>, and for the logit lens "
        "<code>lens_entropy</code>, <code>lens_kl_to_final</code>, <code>lens_cosine_to_final</code>, "
        "<code>lens_final_top_rank</code>, <code>lens_top1_prob</code> (last token), "
        "<code>lens_mean_kl_all_positions</code>, <code>lens_top1_agreement_all_positions</code>. "
        "<code>lens_top_tokens.csv</code> holds the top tokens per depth; <code>spectra.csv</code> every PCA "
        "spectrum; <code>prompts.csv</code> and <code>sites.csv</code> describe the rows.</p>",
    ])))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Geometry of GPT-2 token clouds — {_e(plan.corpus.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>How the token cloud changes shape through GPT-2</h1>",
        toc([(i, t) for i, t, _ in sections]),
        *(section(i, t, b) for i, t, b in sections),
        "</body></html>",
    ]
    atomic_write_text(path, "\n".join(p for p in parts if p))
