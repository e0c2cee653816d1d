"""The corpus-scale study's tasks: plain module-level functions of small, picklable arguments
(the store's location, specs, row indices, neighbour lists), so that any executor runs them, in
this process or on a cluster's workers. A task reads only the activation store (a local path, or
a URL the workers share) and returns its results: the workers need nothing but the store.

The client (the process running the study) writes what they return into the run folder
(write_unit_files, write_comparison_files): each unit's files, then, last, its marker with their
checksums; it also reads the neighbour lists compare_partition needs (read_neighbours). A
resumed run redoes a task whose marker is missing or whose files do not match it, so a run
killed between a task's end and its files being written redoes that task.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..rundir.fsio import atomic_write_bytes
from ..rundir.integrity import checksum_bytes, write_json_checked, write_marker
from .analyses import ScaleSettings, analyse_partition
from .compare import cka_matrix, overlap_matrix
from .store import ActivationStore


@dataclass(frozen=True)
class UnitResult:
    """What the estimators found on one partition of one site."""

    record: dict  # the unit's json: its numbers, spectrum and what was skipped
    neighbours: np.ndarray  # (n_points, k_overlap) int32: each row's nearest neighbours in the partition


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def analyse_unit(store: Path | str, site: str, rows: np.ndarray, settings: ScaleSettings) -> UnitResult:
    """The task: the estimators on one partition (`rows`) of one site of the store."""
    X = ActivationStore.open_existing(store).read(site, rows)
    result = analyse_partition(X, settings)
    record = {
        "site": site,
        "n_rows": int(len(rows)),
        "n_points": int(result.n_points),
        "n_duplicates": int(result.n_duplicates),
        "n_near_duplicates": int(result.n_near_duplicates),
        "rows": [[q, p, float(v), None if e is None else float(e)] for q, p, v, e in result.items],
        "spectrum": None if result.spectrum is None else [float(v) for v in result.spectrum],
        "skipped": [list(s) for s in result.skipped],
    }
    neighbours = result.neighbours if result.neighbours is not None else np.zeros((0, settings.k_overlap), np.int32)
    return UnitResult(record, neighbours.astype(np.int32))


def write_unit_files(result: UnitResult, json_path: Path, nn_path: Path, marker_path: Path, root: Path) -> None:
    """In the client: the unit's results json, its neighbour lists (.npy), then its marker."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    written = write_json_checked(json_path, result.record)
    data = _npy_bytes(result.neighbours)
    atomic_write_bytes(nn_path, data)
    write_marker(marker_path, root, {json_path: written, nn_path: checksum_bytes(data)}, site=result.record["site"])


def read_neighbours(nn_paths: list[Path]) -> list[np.ndarray]:
    """In the client: the units' neighbour lists (their .npy files), to send to compare_partition."""
    return [np.load(p, allow_pickle=False) for p in nn_paths]


def _overlap_where_searched(neighbours: list[np.ndarray], n_rows: int) -> np.ndarray:
    """The overlap matrix; NaN for a site whose cloud was too small to search (an empty list)."""
    ok = [i for i, nn in enumerate(neighbours) if nn.shape[0] == n_rows]
    out = np.full((len(neighbours), len(neighbours)), np.nan)
    if ok:
        out[np.ix_(ok, ok)] = overlap_matrix([neighbours[i] for i in ok])
    return out


def compare_partition(store: Path | str, sites: list[str], rows: np.ndarray, neighbours: list[np.ndarray],
                      cka_dtype: str = "float64") -> dict:
    """The task: site x site neighbourhood overlap (from the neighbour lists the estimators
    used, one per site, which the client read from the units' files) and linear CKA (from the
    stored rows) of one partition; returns the comparison's json."""
    overlap = _overlap_where_searched(neighbours, len(rows))
    opened = ActivationStore.open_existing(store)
    cka = cka_matrix([lambda s=s: opened.read(s, rows) for s in sites], dtype=cka_dtype)
    return {"sites": list(sites), "overlap": np.asarray(overlap, dtype=float).tolist(),
            "cka": np.asarray(cka, dtype=float).tolist()}


def write_comparison_files(record: dict, json_path: Path, marker_path: Path, root: Path) -> None:
    """In the client: the comparison's json, then its marker."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    written = write_json_checked(json_path, record)
    write_marker(marker_path, root, {json_path: written})
