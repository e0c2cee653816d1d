"""Run a file-writing job in a forked child process while this process goes on.

Why: at the end of a study the slow jobs are pure Python, writing the tables (formatting
millions of numbers as CSV and JSON) and drawing the plots (matplotlib). They hold the GIL, so
threads cannot overlap them, but forked children can: a child starts with the tables already in
memory (nothing is pickled) and only writes files, atomically. The study writes the tables in one
child and draws about half of the figures in another while this process draws the rest. Where
fork is unavailable or unsafe (Windows, macOS) the job simply runs in this process first.

The child touches neither BLAS nor Numba (whose threads do not survive a fork); it formats
text and writes files. A failure in it is reported, with its traceback, when `wait` is called.
"""

from __future__ import annotations

import multiprocessing
import sys
import traceback
from typing import Callable

from .errors import StudyError


def _run(job: Callable[[], object]) -> None:
    try:
        job()
    except BaseException:  # noqa: BLE001 - reported through the exit code
        traceback.print_exc()
        sys.stderr.flush()
        raise SystemExit(1)


class Beside:
    """`Beside(job, what)`: start job() in a child (or run it now); `wait()` for it."""

    def __init__(self, job: Callable[[], object], what: str):
        self.what = what
        self._process = None
        if sys.platform.startswith("linux"):
            self._process = multiprocessing.get_context("fork").Process(target=_run, args=(job,), daemon=True)
            self._process.start()
        else:
            job()

    def wait(self) -> None:
        if self._process is None:
            return
        self._process.join()
        code, self._process = self._process.exitcode, None
        if code != 0:
            raise StudyError(f"{self.what} failed in its child process (exit code {code}); see the message above")
