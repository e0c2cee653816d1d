"""Every result table, assembled from the per-prompt and pooled files in corpus and depth order."""

from __future__ import annotations

from pathlib import Path

import gpt2np

from ..corpus import POOLED_ID
from ..measure.analysis import FINAL_SITE
from ..plan import StudyPlan
from ..rundir.fsio import read_json
from ..rundir.layout import TABLE_DIR
from ..sites import site_info, site_width
from .tables import PROMPT_COLUMNS, RESULT_COLUMNS, SITE_COLUMNS, SKIPPED_COLUMNS, SPECTRUM_COLUMNS, TOP_TOKEN_COLUMNS, write_table

TABLE_COLUMNS = {
    "results": RESULT_COLUMNS, "lens_top_tokens": TOP_TOKEN_COLUMNS, "spectra": SPECTRUM_COLUMNS,
    "skipped": SKIPPED_COLUMNS, "prompts": PROMPT_COLUMNS, "sites": SITE_COLUMNS,
}


def site_columns(name: str, cfg, cache: dict) -> tuple:
    """(site_label, block, sublayer, depth) of a site name, including the lens' 'logits'."""
    if name not in cache:
        if name == FINAL_SITE:
            cache[name] = ("model output (final next-token distribution)", cfg.n_layer, FINAL_SITE, len(gpt2np.hook_names(cfg)))
        else:
            s = site_info(name, cfg)
            cache[name] = (s.label, s.block, s.sublayer, s.depth)
    return cache[name]


def assemble_tables(plan: StudyPlan) -> dict[str, list]:
    """Build every table from the per-prompt and pooled files, in corpus and depth order."""
    cfg, info = plan.cfg, {}
    results, top, spectra, skipped, prompts = [], [], [], [], []
    pooled_lens: dict[str, list] = {}
    for p in plan.corpus:
        r = read_json(plan.result_path(p.id))
        head = [p.id, p.genre, p.topic]
        for site, n, q, param, v, e in r["rows"]:
            results.append(head + [site, *site_columns(site, cfg, info), n, q, param, v, e])
        for site, rank, tid, tok, prob in r["top_tokens"]:
            top.append(head + [site, *site_columns(site, cfg, info), rank, tid, tok, prob])
        for site in plan.sites:
            if site.name in r["spectra"]:
                ev, ratio = r["spectra"][site.name]
                spectra += [[p.id, site.name, c + 1, a, b] for c, (a, b) in enumerate(zip(ev, ratio))]
        skipped += [[p.id, *s] for s in r["skipped"]]
        prompts.append([p.id, p.genre, p.topic, r["n_tokens"], r["n_points"], len(p.text.split())])
        for site, (kl_sum, agree, n) in r["lens_all_positions"].items():
            acc = pooled_lens.setdefault(site, [0.0, 0, 0])
            acc[0] += kl_sum
            acc[1] += agree
            acc[2] += n
    head = [POOLED_ID, "all", "all"]
    for site in plan.sites:
        r = read_json(plan.pooled_path(site.name))
        for q, param, v, e in r["rows"]:
            results.append(head + [site.name, *site_columns(site.name, cfg, info), r["n_points"], q, param, v, e])
        if r["spectrum"] is not None:
            ev, ratio = r["spectrum"]
            spectra += [[POOLED_ID, site.name, c + 1, a, b] for c, (a, b) in enumerate(zip(ev, ratio))]
        skipped += [[POOLED_ID, site.name, *s] for s in r["skipped"]]
    for site in plan.lens_sites:
        if site in pooled_lens:
            kl_sum, agree, n = pooled_lens[site]
            cols = site_columns(site, cfg, info)
            results.append(head + [site, *cols, n, "lens_mean_kl_all_positions", None, kl_sum / n, None])
            results.append(head + [site, *cols, n, "lens_top1_agreement_all_positions", None, agree / n, None])
    sites = [[s.name, s.label, s.short, s.block, s.sublayer, s.depth, site_width(s, cfg)] for s in plan.sites]
    return {"results": results, "lens_top_tokens": top, "spectra": spectra, "skipped": skipped,
            "prompts": prompts, "sites": sites}


def write_tables(plan: StudyPlan, tables: dict[str, list]) -> list[Path]:
    """Every table as tables/<name>.csv and .json; returns the paths."""
    paths = []
    for name, rows in tables.items():
        paths += write_table(plan.out / TABLE_DIR, name, TABLE_COLUMNS[name], rows)
    return paths
