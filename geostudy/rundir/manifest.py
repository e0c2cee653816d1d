"""The run's manifest: versions, the model's source and file hash, the corpus hash, all options.

The *fingerprint* is the part that decides the results (model file hash and config, token ids
of the corpus, every option); a run folder belongs to one fingerprint, so that a restarted run
can only resume a run of the very same study.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1  # of the run folder's layout and tables


def sha256_file(path: Path, chunk: int = 8 * 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def sha256_token_ids(ids_list) -> str:
    h = hashlib.sha256()
    for ids in ids_list:
        a = np.ascontiguousarray(ids, dtype="<i8")
        h.update(len(a).to_bytes(8, "little"))
        h.update(a.tobytes())
    return h.hexdigest()


def source_hash(package_dir: Path) -> str:
    """sha256 over a package's .py files (names and contents): identifies the code that ran."""
    h = hashlib.sha256()
    for p in sorted(Path(package_dir).rglob("*.py")):
        h.update(str(p.relative_to(package_dir)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def fingerprint_hash(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


GEOSTUDY_DIR = Path(__file__).resolve().parents[1]  # this package's source, without importing it


def versions() -> dict:
    import gpt2np
    import idest

    out = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for dist in ("numpy", "safetensors", "tokenizers", "huggingface-hub", "numba", "matplotlib"):
        out[dist] = _dist_version(dist)
    for name, folder in (("gpt2np", Path(gpt2np.__file__).parent), ("idest", Path(idest.__file__).parent),
                         ("geostudy", GEOSTUDY_DIR)):
        out[name + "_source_sha256"] = source_hash(folder)
    return out


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Keys whose values differ between two nested dicts, dotted."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out
