"""Atomic file writes: a file either has its complete final content or does not exist.

Every writer puts the bytes in a hidden temporary file in the destination folder, flushes and
fsyncs it, then renames it over the destination with os.replace (atomic on POSIX and Windows
within one file system), and fsyncs the folder so that the rename itself survives a crash.
Readers only ever open final names, so a killed run never leaves a half-written file that a
later run could read; `remove_stale_temporaries` clears the debris of a killed writer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

_TMP_MARK = ".tmp-"


def _temp_path(path: Path) -> Path:
    """Hidden, in the same folder, and with the same extension (writers that pick the format
    from the file name, like PIL, still work)."""
    return path.with_name(f".{path.stem}{_TMP_MARK}{os.getpid()}{path.suffix}")


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


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) to create a temporary file, then move it to `path` atomically."""
    path = Path(path)
    tmp = _temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj, indent: int | None = None) -> None:
    """JSON with NaN and infinities allowed (Python's json reads them back); keys in the order given."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=True))


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def remove_stale_temporaries(folder: Path) -> int:
    """Delete the temporary files a killed writer left in `folder` and its sub-folders."""
    count = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in folder.rglob(f".*{_TMP_MARK}*"):
        if p.is_file():
            p.unlink()
            count += 1
    return count
