"""Parts of the report that are computed for this run: the table of contents, the run's date,
versions and stage times, the "what we found" list, and genres and topics compared at a matched
number of points. Each returns an HTML fragment; report.py puts them in place."""

from __future__ import annotations

import html
import math
import time

import numpy as np
from scipy.stats import spearmanr

from ..plan import StudyPlan
from ..rundir.fsio import read_json
from ..rundir.layout import MANIFEST
from ..sites import site_info
from ..store.activations import load_tensor, pattern_name
from .findings import SinkMeasure, attention_to_first
from .matched import MATCH_CAP, MATCHED_COLUMNS
from .tables import PROMPT_COLUMNS, RESULT_COLUMNS

_C = {c: i for i, c in enumerate(RESULT_COLUMNS)}
_P = {c: i for i, c in enumerate(PROMPT_COLUMNS)}
_M = {c: i for i, c in enumerate(MATCHED_COLUMNS)}
# The versions the report names (the manifest has more: platform, source hashes).
SHOWN_VERSIONS = ("python", "numpy", "numba", "matplotlib", "safetensors", "tokenizers", "huggingface-hub")


def _e(x) -> str:
    return html.escape(str(x))


def toc(sections: list[tuple[str, str]]) -> str:
    """A table of contents: one link per (id, title), to the section's id."""
    items = "".join(f'<li><a href="#{_e(i)}">{_e(t)}</a></li>' for i, t in sections)
    return f'<nav id="contents"><h2>Contents</h2><ol>{items}</ol></nav>'


def section(anchor: str, title: str, *body: str) -> str:
    return f'<section id="{_e(anchor)}"><h2>{_e(title)}</h2>' + "".join(b for b in body if b) + "</section>"


def _seconds(v: float) -> str:
    return f"{v:.1f} s" if v < 120 else f"{v / 60:.1f} min"


def run_details(plan: StudyPlan) -> str:
    """When the report was written, when the run folder was created, the versions that ran
    (from the manifest), and the wall-clock seconds of each stage so far (the report's own
    time is in timings.json)."""
    man = read_json(plan.out / MANIFEST) if (plan.out / MANIFEST).is_file() else {}
    versions = man.get("versions", {})
    shown = [f"{_e(k)} {_e(versions[k])}" for k in SHOWN_VERSIONS if k in versions]
    shown += [f"{_e(k.removesuffix('_source_sha256'))} source <code>{_e(str(v)[:12])}</code>"
              for k, v in versions.items() if k.endswith("_source_sha256")]
    wall = plan.timer.as_dict()["wall_seconds"]
    rows = "".join(f'<tr><td class="l">{_e(k)}</td><td>{_seconds(v)}</td></tr>' for k, v in wall.items())
    written = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    flags = optional_figures(plan)
    return (f"<p>Report written {written}; run folder created {_e(man.get('created', '?'))}. "
            f"Versions: {', '.join(shown) or 'not recorded'}; platform {_e(versions.get('platform', '?'))}.</p>"
            f"<p>{flags}</p>"
            f'<table><tr><th class="l">stage (this session)</th><th>wall clock</th></tr>{rows}</table>'
            "<p>Every stage's wall-clock and CPU seconds, and the summed busy time of the worker threads, are in "
            "<code>timings.json</code> (written when the run ends, after this report); a resumed run times only what "
            "it redid.</p>")


def optional_figures(plan: StudyPlan) -> str:
    """Which of the expensive figures this run drew, and the flag that changes it."""
    tsne = getattr(plan, "tsne", False)
    gifs = list(getattr(plan, "lens_gif_prompts", ()) or ())
    shown = ", ".join(f"<code>{_e(g)}</code>" for g in gifs[:5]) + (f" and {len(gifs) - 5} more" if len(gifs) > 5 else "")
    return ("Figures that cost most are chosen by flags: the t-SNE figures were "
            + ("drawn" if tsne else "not drawn (<code>--tsne</code> draws them)")
            + "; the logit-lens GIF (after attention and after each block) was drawn for "
            + (f"{len(gifs)} prompt{'s' if len(gifs) != 1 else ''} ({shown})" if gifs else "no prompt")
            + " (<code>--lens-gifs</code>: focus, all, none or prompt ids).")


def focus_sink(plan: StudyPlan) -> SinkMeasure | None:
    """The attention-to-position-0 measure on the focus prompt's saved pattern (all positions)."""
    try:
        pattern = load_tensor(plan.act_path(plan.focus.id), pattern_name(plan.attention_block))
    except Exception:  # no pattern saved (a run without attention): no sentence
        return None
    return attention_to_first(pattern)


def findings_list(sentences: list[str]) -> str:
    if not sentences:
        return "<p>This run computed nothing the findings are drawn from.</p>"
    return "<ul>" + "".join(f"<li>{_e(s)}</li>" for s in sentences) + "</ul>"


def _per_prompt_means(tables, members: list[str], site: str, quantity: str, param=None) -> float | None:
    """The mean over prompts of a per-prompt value (what the depth figures plot per genre)."""
    vals = [r[_C["value"]] for r in tables["results"]
            if r[_C["prompt_id"]] in members and r[_C["site"]] == site and r[_C["quantity"]] == quantity
            and r[_C["param"]] == param and r[_C["value"]] is not None and math.isfinite(r[_C["value"]])]
    return float(np.mean(vals)) if vals else None


def _fmt(v) -> str:
    if v is None:
        return ""
    return str(v) if isinstance(v, int) else f"{v:.3g}"


def _rho(xs: list, ys: list) -> float | None:
    pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if len(pairs) < 3 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return None
    return float(spearmanr(*zip(*pairs)).statistic)


def group_table(plan: StudyPlan, tables, matched: list[list], grouping: str, site: str, level: float) -> tuple[str, dict]:
    """One grouping's table at one site: per group the prompts, the mean kept tokens per prompt,
    the per-prompt means (as in the depth figures) and the matched values; and the Spearman
    correlations of the mean length with the raw and with the matched PCA counts."""
    rows = [r for r in matched if r[_M["grouping"]] == grouping and r[_M["site"]] == site]
    if not rows:
        return "", {}
    key = "genre" if grouping == "genre" else "topic"
    prompts = {g: [p[_P["prompt_id"]] for p in tables["prompts"] if (p[_P[key]] or "—") == g] for g in
               dict.fromkeys(r[_M["group"]] for r in rows)}
    length = {g: float(np.mean([p[_P["n_points"]] for p in tables["prompts"] if p[_P["prompt_id"]] in ids]))
              for g, ids in prompts.items()}
    body, raw_k, lengths, matched_k = [], [], [], []
    for r in rows:
        g = r[_M["group"]]
        raw = [_per_prompt_means(tables, prompts[g], site, "pca_components", level),
               _per_prompt_means(tables, prompts[g], site, "pca_participation_ratio"),
               _per_prompt_means(tables, prompts[g], site, "log_volume")]
        raw_k.append(raw[0])
        lengths.append(length[g])
        matched_k.append(r[_M["pca_components"]])
        body.append(f'<tr><td class="l">{_e(g)}</td><td>{r[_M["n_prompts"]]}</td><td>{length[g]:.0f}</td>'
                    f'<td>{r[_M["n_available"]]}</td><td>{_fmt(raw[0])}</td><td><b>{r[_M["pca_components"]]}</b></td>'
                    f'<td>{_fmt(raw[1])}</td><td><b>{_fmt(r[_M["pca_participation_ratio"]])}</b></td>'
                    f'<td>{_fmt(raw[2])}</td><td><b>{_fmt(r[_M["log_volume"]])}</b></td></tr>')
    n = rows[0][_M["n_points"]]
    head = (f'<tr><th class="l">{_e(grouping)}</th><th>prompts</th><th>tokens / prompt</th><th>tokens pooled</th>'
            f"<th>PCA {level:.0%}: per prompt</th><th>matched</th><th>part. ratio: per prompt</th><th>matched</th>"
            "<th>log-volume: per prompt</th><th>matched</th></tr>")
    stats = {"n": n, "rho_raw": _rho(lengths, raw_k), "rho_matched": _rho(lengths, matched_k),
             "shortest": min(length.values()), "longest": max(length.values())}
    return f"<table>{head}{''.join(body)}</table>", stats


def _rho_text(v: float | None) -> str:
    return "not defined (fewer than three groups, or constant values)" if v is None else f"ρ = {v:.2f}"


def groups_view(plan: StudyPlan, tables, matched: list[list], level: float) -> str:
    """Per genre and per topic, side by side, at the scatter site; with the sentence saying why
    the matched columns are the ones to compare."""
    site = plan.scatter_site
    label = site_info(site, plan.cfg).label
    parts, notes = [], []
    for grouping in ("genre", "topic"):
        table, stats = group_table(plan, tables, matched, grouping, site, level)
        if not table:
            continue
        parts.append(f'<div class="side"><h3>Per {grouping}</h3>{table}</div>')
        notes.append(f"per {grouping}: prompts of {stats['shortest']:.0f} to {stats['longest']:.0f} analysed tokens on "
                     f"average, matched at {stats['n']} points; Spearman correlation of the mean length with the "
                     f"per-prompt PCA count {_rho_text(stats['rho_raw'])}, with the matched count "
                     f"{_rho_text(stats['rho_matched'])}")
    if not parts:
        return ("<p>The corpus has fewer than two genres and two topics with enough tokens: no matched "
                "comparison.</p>")
    return (f"<p>The per-genre lines of the figures above are means of per-prompt values, and the number of "
            f"principal components, the participation ratio and the log-volume all grow with the number of points in a "
            f"cloud: compared raw, genres of long prompts look higher-dimensional because they are longer. The "
            f"<b>matched</b> columns compare like with like: each group pools its prompts' kept tokens and keeps a "
            f"seeded random subsample of as many as the smallest group has (at most {MATCH_CAP}; the same tokens at every "
            f"site), then PCA as for the pooled corpus. At <em>{_e(label)}</em>; the embeddings and every block's output "
            f"are in "
            f'<a href="tables/matched_groups.csv">tables/matched_groups.csv</a>. In this run, '
            + "; ".join(_e(n) for n in notes) + ".</p>"
            + '<div class="sides">' + "".join(parts) + "</div>")
