"""Run a file-writing job in a forked child process while this process goes on.

Why: at the end of a study the slow jobs are pure Python, writing the tables (formatting
millions of numbers as CSV and JSON) and drawing the plots (matplotlib). They hold the GIL, so
threads cannot overlap them, but forked children can: a child starts with the tables already in
memory (nothing is pickled) and only writes files, atomically. The study writes the tables in one
child and draws about half of the figures in another while this process draws the rest. Where
fork is unavailable or unsafe (Windows, macOS) the job simply runs in this process first.

The child touches neither BLAS nor Numba (whose threads do not survive a fork); it formats
text and writes files. A failure in it is reported, with its traceback, when `wait` is called.
The child dies with its parent: killed with the parent (kill -9 included), it would otherwise
go on writing into a run folder that a restarted run is already using.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable

from ..errors import StudyError

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _prctl():
    """libc's prctl, looked up in the parent: a forked child of a threaded process should not
    take the dynamic loader's lock (another thread may have held it at the fork)."""
    return ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent(prctl, parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies, then make sure the parent did not
    die before the request (the child would have been handed to another process already).

    SIGKILL, not SIGTERM: a forked child inherits the parent's signal handlers, which may catch
    SIGTERM. Its files are written atomically, so a kill leaves no half-written file (only a
    hidden temporary, which the next run removes). Note that Linux sends the signal when the
    *thread* that forked exits: Beside's creator waits for the child in that same thread."""
    if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}")
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent is gone already: nobody waits for this job


def _run(job: Callable[[], object], prctl, parent_pid: int) -> None:
    try:
        _die_with_parent(prctl, parent_pid)
        job()
    except BaseException:  # noqa: BLE001 - reported through the exit code
        traceback.print_exc()
        sys.stderr.flush()
        raise SystemExit(1) from None


class Beside:
    """`Beside(job, what)`: start job() in a child (or run it now); `wait()` for it."""

    def __init__(self, job: Callable[[], object], what: str):
        self.what = what
        self._process = None
        if sys.platform.startswith("linux"):
            self._process = multiprocessing.get_context("fork").Process(target=_run, args=(job, _prctl(), os.getpid()),
                                                                      daemon=True)
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
