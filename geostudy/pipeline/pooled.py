"""The pooled corpus: per site, all kept tokens of all prompts, read back from the activation
store, analysed as one cloud; its result file and, last, its marker."""

from __future__ import annotations

import numpy as np

from ..measure.analysis import analyse_cloud
from ..measure.cosine_gride import gride_cosine
from ..measure.distributions import distributions
from ..measure.geometry import cosine_to_last_sum
from ..plan import StudyPlan
from ..rundir.integrity import write_json_checked, write_marker
from ..runtime.progress import Progress
from ..sites import Site
from ..store.activations import load_clouds
from .executor import Executor, collect_as_done


def load_pooled_cloud(plan: StudyPlan, site: str) -> tuple[np.ndarray, float]:
    """All kept tokens of all prompts at one site, in corpus order, as saved, (N, width); and the
    mean over those tokens of the cosine to their own prompt's last kept token."""
    clouds = load_clouds([plan.act_path(p.id) for p in plan.corpus], site, plan.kept)
    cos_sum, cos_n = 0.0, 0
    for X in clouds:  # summed prompt by prompt, in corpus order
        s, n = cosine_to_last_sum(X)
        cos_sum += s
        cos_n += n
    return np.concatenate(clouds), cos_sum / cos_n


def analyse_pooled_site(plan: StudyPlan, site: Site, inputs: str, searches=None) -> None:
    """A task: load, analyse and save one site of the pooled corpus; its marker records `inputs`,
    the digest of the activation files it was computed from. `searches.for_site(name)`, when
    given, is the neighbour search to use (e.g. on a cluster: geostudy/cluster/pooled.py)."""
    with plan.timer.busy("pooled: load activations"):
        X, cos_last = load_pooled_cloud(plan, site.name)
    search = None if searches is None else searches.for_site(site.name)
    est = analyse_cloud(X, plan.pooled_settings, cosine_to_last=cos_last, timer=plan.timer.busy, prefix="pooled ",
                        search=search)
    if plan.cosine_gride and "gride" in plan.pooled_settings.estimators:
        with plan.timer.busy("pooled gride, cosine (unit rows)"):
            try:
                est.items += gride_cosine(X, plan.pooled_settings.gride_range_max)
            except ValueError as err:
                est.skipped.append(("gride_cosine", str(err)))
    with plan.timer.busy("pooled: histograms"):
        hists = distributions(X, [int(k.size) for k in plan.kept])
    result = {
        "site": site.name,
        "n_points": int(X.shape[0]),
        "rows": [[q, p, v, e] for q, p, v, e in est.items],
        "spectrum": None if est.spectrum is None else [est.spectrum.tolist(), est.explained.tolist()],
        "skipped": [[name, reason] for name, reason in est.skipped],
        "distributions": hists,  # the histograms over depth (outputs/gallery/histograms.py)
    }
    written = write_json_checked(plan.pooled_path(site.name), result)
    write_marker(plan.pooled_marker_path(site.name), plan.out, {plan.pooled_path(site.name): written},
                 site=site.name, inputs_sha256=inputs)


def run_pooled(plan: StudyPlan, todo: list[Site], inputs: str, executor: Executor, bar: Progress, searches=None) -> None:
    """Every unfinished pooled site, one task each (`searches`: see analyse_pooled_site)."""
    if hasattr(searches, "reporting_to"):  # a search made of tasks (a cluster's) reports them on the bar
        searches = searches.reporting_to(bar)
    futures = [executor.submit(analyse_pooled_site, plan, site, inputs, searches) for site in todo]
    collect_as_done(futures, on_done=lambda i, _: bar.advance(note=todo[i].name))
