"""What a process runs: the versions of the packages the study's numbers depend on, and a
hash of our own packages' code. Every worker must match the client, or the cluster's numbers
could differ from one machine's."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from ..errors import StudyError

# Our packages (compared by version and by a hash of their source) and the libraries whose
# arithmetic the results depend on (by version).
OWN_PACKAGES = ("gpt2np", "idest", "geostudy")
LIBRARIES = ("numpy", "numba")


def _source_hash(module) -> str:
    """sha256 over the package's .py files (relative path and bytes, in sorted order)."""
    root = Path(module.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _describe(name: str) -> str:
    """'1.2.3' for a library, 'version 0.1.0, code <hash>' for our packages, or 'missing (...)'."""
    try:
        module = importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - reported to the client as a mismatch, not raised on the worker
        return f"missing ({type(err).__name__}: {err})"
    version = getattr(module, "__version__", None)
    if name in OWN_PACKAGES:
        return f"version {version}, code {_source_hash(module)}"
    return str(version)


def package_versions() -> dict[str, str]:
    """This process's packages (run on every worker by connect, through client.run)."""
    return {name: _describe(name) for name in OWN_PACKAGES + LIBRARIES}


def check_workers(expected: dict[str, str], found: dict[str, dict[str, str]]) -> None:
    """StudyError naming the first worker (by address) whose packages differ from ``expected``."""
    for address in sorted(found):
        theirs = found[address]
        for name, mine in expected.items():
            if theirs.get(name) != mine:
                raise StudyError(
                    f"Dask worker {address} has {name} {theirs.get(name, 'missing')}, this process {mine}; "
                    "install the same packages (this checkout) on every worker, then start again."
                )
