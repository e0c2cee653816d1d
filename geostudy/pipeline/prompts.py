"""Per prompt: the forward pass (its activations saved), one analysis task per site, the logit
lens; the prompt's results file and, last, its marker."""

from __future__ import annotations

from ..measure.analysis import FINAL_SITE, analyse_cloud, lens_for_prompt
from ..plan import StudyPlan
from ..rundir.integrity import Checksum, write_json_checked, write_marker
from ..runtime.progress import Progress
from ..sites import Site, as_cloud
from ..store.activations import pattern_name, save_activations
from .executor import Executor

ACTIVATIONS_FORMAT = "geostudy-activations-1"


ALL_PATTERNS_MAX_TOKENS = 512  # every block's patterns of a longer focus prompt would be GBs: only the chosen block's


def focus_tensor_names(plan: StudyPlan) -> list[str]:
    """What the focus prompt's file holds beyond the sites, for its figures: the chosen block's
    attention pattern, queries, keys and values, and (up to ALL_PATTERNS_MAX_TOKENS tokens: at 512,
    150 MB for GPT-2 small) every block's pattern, for the sheet of head grids."""
    b = plan.attention_block
    n_tokens = plan.token_ids[[p.id for p in plan.corpus].index(plan.focus.id)].size
    blocks = range(plan.cfg.n_layer) if n_tokens <= ALL_PATTERNS_MAX_TOKENS else [b]
    return [pattern_name(i) for i in blocks] + [f"blocks.{b}.attn.hook_{x}" for x in "qkv"]


def forward(plan: StudyPlan, i: int):
    """Forward pass of prompt i (no unembedding: the lens unembeds the rows it uses), its
    activations saved; returns (the cache, the activation file's checksum)."""
    prompt, ids = plan.corpus[i], plan.token_ids[i]
    site_names = [s.name for s in plan.sites]
    extra = focus_tensor_names(plan) if prompt.id == plan.focus.id else []
    with plan.timer.busy("forward pass"):
        _, cache = plan.model.run_with_cache(
            ids, names=sorted(set(site_names) | set(plan.lens_sites) | set(extra)), return_type=None)
    with plan.timer.busy("save activations"):
        tensors = {n: cache[n] for n in dict.fromkeys(site_names + extra)}
        saved = save_activations(plan.act_path(prompt.id), tensors, ids, {"prompt_id": prompt.id, "format": ACTIVATIONS_FORMAT})
    return cache, saved


def analyse_site(plan: StudyPlan, i: int, cache, site: Site):
    """(number of points, Estimates) of prompt i's cloud at one site."""
    X = as_cloud(cache[site.name])[plan.kept[i]]  # (N, width), as saved: the model's dtype
    return X.shape[0], analyse_cloud(X, plan.settings, timer=plan.timer.busy, prefix="per-prompt ")


def lens(plan: StudyPlan, i: int, cache) -> dict:
    with plan.timer.busy("logit lens"):
        return lens_for_prompt(plan.model, cache, plan.lens_sites, plan.kept[i], plan.lens_positions, plan.top_k)


_LENS_QUANTITIES = ("entropy", "kl_to_final", "cosine_to_final", "final_top_rank", "top1_prob")


def prompt_record(plan: StudyPlan, i: int, site_results: list, lens_result: dict) -> dict:
    """Prompt i's results file: its rows (site, n_points, quantity, param, value, error), spectra,
    skipped estimates, the lens' top tokens and what the figures need."""
    prompt, ids, kept = plan.corpus[i], plan.token_ids[i], plan.kept[i]
    rows, spectra, skipped = [], {}, []
    for site, (n, est) in zip(plan.sites, site_results):
        rows += [[site.name, n, q, p, v, e] for q, p, v, e in est.items]
        if est.spectrum is not None:
            spectra[site.name] = [est.spectrum.tolist(), est.explained.tolist()]
        skipped += [[site.name, name, reason] for name, reason in est.skipped]
    top = []
    for site, stats in list(zip(lens_result["sites"], lens_result["last"])) + [(FINAL_SITE, lens_result["final"])]:
        rows += [[site, 1, f"lens_{q}", None, stats[q], None] for q in _LENS_QUANTITIES]
        top += [[site, r + 1, tid, plan.tokenizer.token_strings([tid])[0], pr]
                for r, (tid, pr) in enumerate(zip(stats["top_ids"], stats["top_probs"]))]
    for site, (kl_sum, agree, n) in lens_result["all_positions"].items():
        rows += [
            [site, n, "lens_mean_kl_all_positions", None, kl_sum / n, None],
            [site, n, "lens_top1_agreement_all_positions", None, agree / n, None],
        ]
    return {
        "prompt_id": prompt.id,
        "n_tokens": int(ids.size),
        "n_points": int(kept.size),
        "tokens": plan.tokenizer.token_strings(ids),
        "rows": rows,
        "spectra": spectra,
        "skipped": skipped,
        "top_tokens": top,
        "lens_tracked": {"ids": lens_result["final"]["top_ids"], "probs": lens_result["tracked_probs"]},
        "lens_all_positions": lens_result["all_positions"],
        "lens_positions": lens_result["positions"],
    }


def write_prompt(plan: StudyPlan, i: int, site_results: list, lens_result: dict, saved: Checksum) -> None:
    """The prompt's results file, then its marker (written last: the prompt is finished), which
    records the checksums of the results and of the activation file (`saved`)."""
    prompt = plan.corpus[i]
    written = write_json_checked(plan.result_path(prompt.id), prompt_record(plan, i, site_results, lens_result))
    write_marker(plan.marker_path(prompt.id), plan.out,
                 {plan.act_path(prompt.id): saved, plan.result_path(prompt.id): written},
                 prompt_id=prompt.id, n_tokens=int(plan.token_ids[i].size))


def run_prompts(plan: StudyPlan, todo: list[int], executor: Executor, bar: Progress) -> None:
    """Every unfinished prompt (in the order of `todo`): its forward pass, one task per site, the
    logit lens; each prompt's results written when they are complete. A pipeline, so that no
    worker waits: the first two forward passes run side by side, each next prompt's forward
    pass is queued before this prompt's analyses, and this prompt's analyses are queued before
    the main thread waits for the previous prompt's results (at most three prompts' caches are
    alive at once)."""

    def finish(i, saved, lens_future, site_futures):
        bar.stage(f"{plan.corpus[i].id}: geometry, ID, logit lens")
        results = [f.result() for f in site_futures]
        write_prompt(plan, i, results, lens_future.result(), saved)
        bar.advance(note=f"{plan.corpus[i].id}: done")

    forwards = {}

    def start_forward(k):
        if k < len(todo) and k not in forwards:
            forwards[k] = executor.submit(forward, plan, todo[k])

    start_forward(0)
    start_forward(1)  # the first two side by side: no worker waits for the first
    previous = None
    for k, i in enumerate(todo):
        bar.stage(f"{plan.corpus[i].id}: forward pass")
        cache, saved = forwards.pop(k).result()
        start_forward(k + 1)
        analyses = (i, saved, executor.submit(lens, plan, i, cache),
                    [executor.submit(analyse_site, plan, i, cache, site) for site in plan.sites])
        del cache  # the queued tasks hold it until they have run
        if previous is not None:
            finish(*previous)
        previous = analyses
    if previous is not None:
        finish(*previous)
