"""Atomic file writes: a file either has its complete final content or does not exist.

Every writer puts the bytes in a hidden temporary file in the destination folder, flushes and
fsyncs it, then renames it over the destination with os.replace (atomic on POSIX and Windows
within one file system), and fsyncs the folder so that the rename itself survives a crash.
Readers only ever open final names, so a killed run never leaves a half-written file that a
later run could read; `remove_stale_temporaries` clears the debris of a killed writer (only the
process holding the run folder's lock may call it: the temporaries may be another writer's).

A full disk (ENOSPC, or EDQUOT: over quota) is noted in memory shared with forked children
(`disk_full_guard`), so that the study can say "the disk is full" in one line, whichever process
met it; a forked child that meets it inside the guard exits at once with DISK_FULL_EXIT instead
of printing a traceback (its parent reports the disk, see geostudy.pipeline.study.execute).
"""

from __future__ import annotations

import errno
import json
import mmap
import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp-"
DISK_FULL_EXIT = 28  # a forked child's exit code when the disk is full (ENOSPC's number on Linux)


def is_temporary(name: str) -> bool:
    """Is this file name one of our writers' hidden temporaries?"""
    return name.startswith(".") and TMP_MARK in name


def _temp_path(path: Path) -> Path:
    """Hidden, in the same folder, and with the same extension (writers that pick the format
    from the file name, like PIL, still work)."""
    return path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: Path, write: Callable[[Path], object]):
    """Call write(tmp) to create a temporary file, then move it to `path` atomically; returns
    what write returned."""
    path = Path(path)
    tmp = _temp_path(path)
    try:
        result = write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink()
        except OSError:
            pass
        if is_disk_full(err):
            _DISK_FULL.note(path)
        raise
    _fsync_dir(path.parent)
    return result


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_bytes(obj, indent: int | None = None) -> bytes:
    """JSON with NaN and infinities allowed (Python's json reads them back); keys in the order given."""
    return json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=True).encode("utf-8")


def atomic_write_json(path: Path, obj, indent: int | None = None) -> None:
    atomic_write_bytes(path, json_bytes(obj, indent))


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def remove_stale_temporaries(folder: Path) -> int:
    """Delete the temporary files a killed writer left in `folder` and its sub-folders."""
    count = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in folder.rglob(f".*{TMP_MARK}*"):
        if p.is_file():
            p.unlink()
            count += 1
    return count


# --------------------------------------------------------------------------------------------
# A full disk
# --------------------------------------------------------------------------------------------

def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


class _DiskFullNote:
    """One shared page (an anonymous MAP_SHARED mapping survives fork): byte 0 says whether a
    write met a full disk since the guard was entered, the rest holds that file's path."""

    def __init__(self):
        self._page = mmap.mmap(-1, mmap.PAGESIZE)
        self.guard_pid: int | None = None  # the process that entered the guard

    def reset(self) -> None:
        self._page[:] = bytes(len(self._page))

    def note(self, path: Path) -> None:
        if self.guard_pid is None:
            return
        name = os.fsencode(str(path))[: len(self._page) - 1]
        self._page[1:1 + len(name)] = name
        self._page[0] = 1
        if os.getpid() != self.guard_pid:
            # a forked child of the study: its parent reports the full disk in one line
            os._exit(DISK_FULL_EXIT)

    @property
    def path(self) -> str | None:
        if not self._page[0]:
            return None
        return os.fsdecode(bytes(self._page[1:]).rstrip(b"\0"))


_DISK_FULL = _DiskFullNote()


@contextmanager
def disk_full_guard():
    """While the block runs, a write (in this process or a forked child) that meets a full disk
    is noted; yields a function that returns the path of that file (None if none)."""
    _DISK_FULL.reset()
    _DISK_FULL.guard_pid = os.getpid()
    try:
        yield lambda: _DISK_FULL.path
    finally:
        _DISK_FULL.guard_pid = None
