"""Checksums of finished files, so that a resumed run trusts only what is intact.

A finished unit of work (a prompt, a pooled site) ends with a *marker*: a small JSON file that
records the size and sha256 of each file the unit wrote, as they were when it was written (the
writers hash the bytes they write, so recording costs no extra read). On resume every marker is
checked against the files (`damage`): a file that is missing, of another size or with another
sha256 makes the unit unfinished, and it is redone. A pooled site's marker also records which
per-prompt activation files it was computed from (`inputs_digest`), so pooled results computed
from other inputs are redone too.

Cost of the check: sha256 reads about 1.6 GB/s per core here (SHA-NI), so the ~2 GB of
activations of the shipped corpus are checked in about a second on two threads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .fsio import atomic_write_bytes, json_bytes, read_json

_CHUNK = 16 * 2**20  # read size for hashing: large enough that hashlib releases the GIL


@dataclass(frozen=True)
class Checksum:
    """What a file held when it was written."""

    size: int
    sha256: str

    def as_dict(self) -> dict:
        return {"bytes": self.size, "sha256": self.sha256}


def checksum_bytes(data: bytes) -> Checksum:
    return Checksum(len(data), hashlib.sha256(data).hexdigest())


def checksum_file(path: Path) -> Checksum:
    """Size and sha256 of a file, read in large chunks into one reused buffer."""
    h, size = hashlib.sha256(), 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            size += n
    return Checksum(size, h.hexdigest())


def write_json_checked(path: Path, obj) -> Checksum:
    """Write JSON atomically (the bytes of fsio.atomic_write_json) and return its checksum."""
    data = json_bytes(obj)
    atomic_write_bytes(path, data)
    return checksum_bytes(data)


def write_marker(path: Path, root: Path, files: dict[Path, Checksum], **info) -> None:
    """The marker of a finished unit: `info` and the checksum of each of its files (recorded
    by their paths relative to the run folder `root`)."""
    record = {str(Path(p).relative_to(root).as_posix()): c.as_dict() for p, c in files.items()}
    atomic_write_bytes(path, json.dumps({**info, "files": record}, indent=1).encode("utf-8"))


def read_marker(path: Path) -> tuple[dict | None, str | None]:
    """(marker, None), or (None, why it cannot be used)."""
    try:
        marker = read_json(path)
    except FileNotFoundError:
        return None, "it is not finished"
    except (OSError, ValueError) as err:
        return None, f"its marker {path.name} cannot be read ({err})"
    files = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(files, dict) or not files:
        return None, f"its marker {path.name} records no checksums (written by an older version)"
    return marker, None


def damage(root: Path, marker: dict, expected: list[str]) -> str | None:
    """None if every `expected` file (relative to `root`) is as the marker recorded it; else one
    sentence naming the first damaged file and what is wrong with it."""
    files = marker["files"]
    for rel in expected:
        record = files.get(rel)
        if not isinstance(record, dict) or not {"bytes", "sha256"} <= set(record):
            return f"{rel} has no checksum in its marker"
        path = Path(root) / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return f"{rel} is missing"
        if size != record["bytes"]:
            return f"{rel} has {size} bytes, {record['bytes']} when it was written (truncated or overwritten)"
        if checksum_file(path).sha256 != record["sha256"]:
            return f"{rel} has changed since it was written (its sha256 differs)"
    return None


def inputs_digest(named_checksums: list[tuple[str, str]]) -> str:
    """One sha256 for an ordered list of (name, sha256 of its file): what a pooled result was
    computed from."""
    h = hashlib.sha256()
    for name, sha in named_checksums:
        h.update(f"{name}\0{sha}\n".encode())
    return h.hexdigest()
