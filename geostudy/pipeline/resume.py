"""What a resumed run can skip, checked against the markers' checksums (not believed), and what
the rest of the run still needs on disk."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..errors import StudyError
from ..plan import StudyPlan
from ..rundir.diskspace import DiskFullError, SpaceNeeded, activation_file_bytes, disk_full_message, free_bytes, other_bytes
from ..rundir.integrity import damage, inputs_digest, read_marker
from ..sites import site_width
from .executor import Executor, collect_in_order

RESULT_ROWS_PER_SITE = 30  # about, per prompt and site: for the disk-space estimate only


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _intact(plan: StudyPlan, marker_path: Path, files: list[Path]) -> tuple[dict | None, str | None]:
    """(the marker, None) if it exists and each of `files` is as it recorded; else (None, why)."""
    marker, why = read_marker(marker_path)
    if marker is None:
        return None, why
    problem = damage(plan.out, marker, [plan.relative(f) for f in files])
    return (marker, None) if problem is None else (None, problem)


def _check_prompt(plan: StudyPlan, prompt_id: str) -> tuple[dict | None, str | None]:
    if not plan.marker_path(prompt_id).is_file():
        return None, None  # not finished, nothing to warn about
    return _intact(plan, plan.marker_path(prompt_id), [plan.act_path(prompt_id), plan.result_path(prompt_id)])


def finished_prompts(plan: StudyPlan, executor: Executor) -> list[bool]:
    """Per prompt: finished and intact (the files are hashed as tasks: hashing releases the GIL).
    A prompt with a marker whose files are damaged or missing gets one warning line naming the
    file, and loses its marker: it is redone."""
    checks = collect_in_order([executor.submit(_check_prompt, plan, p.id) for p in plan.corpus])
    finished = []
    for prompt, (marker, why) in zip(plan.corpus, checks):
        if marker is None and why is not None:
            _warn(f"prompt {prompt.id} is redone: {why}")
            plan.marker_path(prompt.id).unlink(missing_ok=True)
        finished.append(marker is not None)
    return finished


def activation_inputs(plan: StudyPlan) -> str:
    """The digest of every prompt's activation file as its marker recorded it (all prompts are
    finished): what a pooled result is computed from."""
    named = []
    for p in plan.corpus:
        marker, why = read_marker(plan.marker_path(p.id))
        if marker is None:
            raise StudyError(f"prompt {p.id} is not finished ({why}): run the same command again")
        named.append((p.id, marker["files"][plan.relative(plan.act_path(p.id))]["sha256"]))
    return inputs_digest(named)


def _check_pooled_site(plan: StudyPlan, site_name: str, inputs: str) -> str | None:
    """None (no marker), "intact", or why the site is redone."""
    marker_path = plan.pooled_marker_path(site_name)
    if not marker_path.is_file():
        return None
    marker, why = _intact(plan, marker_path, [plan.pooled_path(site_name)])
    if marker is not None and marker.get("inputs_sha256") != inputs:
        why = (f"{plan.relative(plan.pooled_path(site_name))} was computed from other activation "
               "files than the prompts' current ones")
    return why if why is not None else "intact"


def finished_pooled_sites(plan: StudyPlan, inputs: str, executor: Executor) -> list[bool]:
    """Per site: its pooled result is intact and was computed from these activation files
    (`inputs`); otherwise one warning line (when it had a marker) and it is redone."""
    states = collect_in_order([executor.submit(_check_pooled_site, plan, s.name, inputs) for s in plan.sites])
    finished = []
    for site, state in zip(plan.sites, states):
        if state not in (None, "intact"):
            _warn(f"the pooled corpus at {site.name} is redone: {state}")
            plan.pooled_marker_path(site.name).unlink(missing_ok=True)
        finished.append(state == "intact")
    return finished


def space_needed(plan: StudyPlan) -> SpaceNeeded:
    """What the rest of the run will write: the activation files of the unfinished prompts
    (exactly) and the results, tables and figures (about)."""
    cfg, itemsize = plan.cfg, np.dtype(plan.dtype).itemsize
    widths = [site_width(s, cfg) for s in plan.sites]
    unfinished = [i for i, p in enumerate(plan.corpus) if not plan.marker_path(p.id).is_file()]
    activations = sum(
        activation_file_bytes(int(plan.token_ids[i].size), widths, itemsize,
                              cfg.n_head if plan.corpus[i].id == plan.focus.id else 0)
        for i in unfinished)
    other = other_bytes([int(k.size) for k in plan.kept], widths, RESULT_ROWS_PER_SITE)
    return SpaceNeeded(activations, other, len(plan.corpus) - len(unfinished), len(plan.corpus))


def check_free_space(plan: StudyPlan) -> None:
    """Refuse before any work when the activation files alone cannot fit."""
    need, free = space_needed(plan), free_bytes(plan.out)
    if free is not None and free < need.activations:
        raise DiskFullError(disk_full_message(plan.out, need, None, before_start=True))
