"""Which folders a run may use: a new one, the start of a run killed before its manifest, or a
run of this very study (to resume); anything else is refused before any work."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StudyError
from . import manifest as mf
from .fsio import TMP_MARK, is_temporary, read_json
from .layout import MANIFEST, WORK_DIRS
from .lock import LOCK_FILE

WRITE_PROBE = f".write-test{TMP_MARK}"  # + pid: a temporary, swept by the lock holder if left behind


def _is_debris(entry: Path) -> bool:
    """What a run killed before it wrote its manifest can leave: the lock file, temporaries
    (the write probe and a manifest being written among them), and the run's sub-folders
    holding nothing else (older versions created them before the manifest)."""
    if entry.is_dir() and entry.name in WORK_DIRS:
        return all(is_temporary(e.name) and e.is_file() for e in entry.iterdir())
    return entry.is_file() and (entry.name == LOCK_FILE or is_temporary(entry.name))


def check_run_folder(out: Path, fingerprint: dict) -> None:
    """The folder is new, the start of a run killed before its manifest, or a run of this very
    study (to resume); anything else is refused."""
    if out.exists() and not out.is_dir():
        raise StudyError(f"the output path {out} exists and is not a folder")
    man = out / MANIFEST
    if out.is_dir() and man.is_file():
        try:
            old = read_json(man).get("fingerprint", {})
        except (OSError, ValueError, AttributeError) as err:
            raise StudyError(f"{man} cannot be read ({err}); pass another --out") from None
        diff = mf.differences(old, fingerprint)
        if diff:
            raise StudyError(
                f"the output folder {out} holds a run of a different study (differences in: "
                f"{', '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}); pass another --out or delete it"
            )
    elif out.is_dir() and not all(_is_debris(e) for e in out.iterdir()):
        raise StudyError(f"the output folder {out} is not empty and holds no {MANIFEST}: it is not a study run; pass another --out")


def prepare_run_folder(out: Path, fingerprint: dict) -> None:
    """Create the run folder (or accept the folder of the same study, to resume), and check that
    this process can write into it."""
    check_run_folder(out, fingerprint)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f"{WRITE_PROBE}{os.getpid()}"  # per process: runs probing side by side
        probe.write_bytes(b"ok")
        probe.unlink(missing_ok=True)  # the lock holder may have swept it already
    except OSError as err:
        raise StudyError(f"cannot write to the output folder {out}: {err.strerror or err}") from None
