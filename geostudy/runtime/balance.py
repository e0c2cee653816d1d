"""Jobs shared between this process and one forked child, by their estimated cost.

Why: drawing figures is pure Python holding the GIL (matplotlib), so threads would not overlap;
a forked child draws about half of them while this process draws the rest. The costs are
estimates (seconds, measured by hand on the shipped corpus: see outputs/figures.py's
DRAWING_SECONDS); a job that uses BLAS stays in this process (BLAS threads do not survive a
fork). The output of every job is the same wherever it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from .beside import Beside
from .threads import blas_single_thread

Job = TypeVar("Job")


def share_out(jobs: Sequence[Job], cost: Callable[[Job], float], stays_here: Callable[[Job], bool]) -> tuple[list[Job], list[Job]]:
    """(this process's jobs, the child's): the ones that must stay here, then the others
    costliest first, each to the side with less work so far."""
    mine = [j for j in jobs if stays_here(j)]
    theirs: list[Job] = []
    mine_cost, their_cost = sum(map(cost, mine)), 0.0
    for j in sorted((j for j in jobs if not stays_here(j)), key=lambda j: -cost(j)):
        if mine_cost <= their_cost:
            mine.append(j)
            mine_cost += cost(j)
        else:
            theirs.append(j)
            their_cost += cost(j)
    return mine, theirs


def run_shared(mine: Sequence[Job], theirs: Sequence[Job], run: Callable[[Job], object], what: str) -> None:
    """run(job) for `theirs` in a forked child and for `mine` here, at the same time; returns when
    both are done (StudyError if the child failed)."""
    child = Beside(lambda: [run(j) for j in theirs], what) if theirs else None
    # One BLAS thread here, shared or not (the same numbers either way): a second thread would
    # spin on the child's core (measured: the 3-D scatter took 7.9 s beside the child, 0.6 s alone).
    with blas_single_thread():
        for j in mine:
            run(j)
    if child is not None:
        child.wait()
