"""One run at a time in a run folder: an OS-level lock on the folder's `.lock` file.

`fcntl.flock` locks belong to the open file, so the operating system releases them when the
process that holds them exits, however it dies (a SIGKILL included): a lock left by a killed
run never blocks the next one, and no stale-lock guessing is needed. The holder writes its
process id, host, start time and command line into the file, so that a run refused because
the folder is busy can say who holds it.

The file itself stays in the folder after the run: deleting it would let a run that opened it
just before lock a file that no longer has a name, while a third run locks a new one.
Forked children (the study's table and plot writers) share the open file, so the folder stays
locked until they have finished too. Without fcntl (Windows) there is no lock.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import StudyError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LOCK_FILE = ".lock"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}


class RunFolderBusy(StudyError):
    """Another process holds the run folder."""


def _holder_info() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv)}


def _describe_holder(fd: int) -> str:
    """The holder's own words from the lock file, or a plain phrase if it has not written them yet."""
    try:
        info = json.loads(os.pread(fd, 65536, 0).decode("utf-8"))
        return (f"process {int(info['pid'])} on {info.get('host', '?')}, started {info.get('started', '?')}"
                + (f" ({info['command']})" if info.get("command") else ""))
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not written its details yet)"


class RunFolderLock:
    """`with RunFolderLock(folder):` holds the folder's lock for the block, or raises
    RunFolderBusy at once, naming the process that holds it."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(fd)
            os.close(fd)
            raise RunFolderBusy(
                f"the run folder {self.path.parent} is in use by {holder}; wait until it has finished "
                "(then the same command resumes or reuses its results), or pass another --out"
            ) from None
        except OSError as err:
            os.close(fd)
            if err.errno not in _NO_LOCKS:
                raise
            # some network and FUSE file systems cannot lock: run unlocked rather than not at all
            print(f"warning: the file system of {self.path.parent} cannot lock files ({err.strerror}): "
                  "make sure no other run uses this folder", file=sys.stderr, flush=True)
            return
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_holder_info()).encode("utf-8"), 0)
        except BaseException:
            os.close(fd)  # releases the lock
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)  # no holder any more (still locked: no one reads it half-cleared)
            except OSError:
                pass
            os.close(fd)  # closing the file releases the lock

    def __enter__(self) -> RunFolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
