"""How much disk space a run needs, and the one-line message for a full disk.

The activation files dominate and are known exactly from the sites' widths and the token
counts: T x (sum of the sites' widths) numbers per prompt, plus its token ids and, for the focus
prompt, one block's attention pattern (n_head x T x T). The rest (per-prompt and pooled results,
tables, figures, report) is estimated from its largest part, the PCA spectra: one eigenvalue
and one ratio per component, kept in a results file and in two tables.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import StudyError

_HEADER_BYTES = 4096  # a safetensors header: about 100 bytes per tensor
_BYTES_PER_NUMBER_AS_TEXT = 3 * 24  # a spectrum number, in the results json and the csv + json tables
_BYTES_PER_RESULT_ROW = 3 * 160  # one row of the results table, likewise
_FIGURES_BYTES = 40 * 2**20  # plots, GIF and report: a few dozen MB at most


class DiskFullError(StudyError):
    """The run folder's disk is full: the message says how much space the run needs."""


@dataclass(frozen=True)
class SpaceNeeded:
    activations: int  # bytes of the activation files still to write
    other: int  # estimated bytes of every other file still to write
    finished: int  # prompts already finished (their files are kept)
    total_prompts: int

    @property
    def total(self) -> int:
        return self.activations + self.other


def activation_file_bytes(n_tokens: int, widths: list[int], itemsize: int, pattern_heads: int = 0) -> int:
    """Bytes of one prompt's activation file: every site (T, width), token ids, optional pattern."""
    numbers = n_tokens * sum(widths) + pattern_heads * n_tokens * n_tokens
    return numbers * itemsize + 8 * n_tokens + _HEADER_BYTES


def other_bytes(n_points: list[int], widths: list[int], rows_per_site: int) -> int:
    """Estimated bytes of results, tables and figures for prompts with these point counts (and the
    pooled corpus, whose spectra are as long as the sites are wide)."""
    components = sum(min(n, w) for n in n_points for w in widths) + sum(widths)
    rows = (len(n_points) + 1) * len(widths) * rows_per_site
    return 2 * components * _BYTES_PER_NUMBER_AS_TEXT + rows * _BYTES_PER_RESULT_ROW + _FIGURES_BYTES


def free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def human(n: int | None) -> str:
    if n is None:
        return "an unknown amount"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def disk_full_message(folder: Path, need: SpaceNeeded, where: str | None, before_start: bool = False) -> str:
    """One line: what filled up, how much the run needs, that nothing finished is lost, what to do."""
    if before_start:
        what = f"not enough free space on the disk of the run folder {folder}"
    else:
        what = f"no space left on the disk of the run folder {folder}" + (f" (writing {where})" if where else "")
    return (
        f"{what}: the rest of this run needs about {human(need.total)} ({human(need.activations)} of "
        f"activation files, about {human(need.other)} of results, tables and figures) and "
        f"{human(free_bytes(folder))} is free. Nothing finished is lost ({need.finished} of "
        f"{need.total_prompts} prompts are done and kept): make room and run the same command again to resume"
    )
