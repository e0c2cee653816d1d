"""The corpus-scale study's tasks: plain module-level functions of small, picklable arguments
(paths, specs, row indices), so that any executor runs them, in this process or on a cluster's
workers. Each writes its own files and, last, a marker with their checksums; a resumed run
redoes a task whose marker is missing or whose files do not match it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..rundir.fsio import atomic_write_bytes
from ..rundir.integrity import checksum_bytes, write_json_checked, write_marker
from .analyses import ScaleSettings, analyse_partition
from .compare import cka_matrix, overlap_matrix
from .store import ActivationStore


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def analyse_unit(store_path: Path, site: str, rows: np.ndarray, settings: ScaleSettings,
                 json_path: Path, nn_path: Path, marker_path: Path, root: Path) -> None:
    """The estimators on one partition of one site: its results, its neighbour lists, its marker."""
    X = ActivationStore.open_existing(store_path).read(site, rows)
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
    written = write_json_checked(json_path, record)
    neighbours = result.neighbours if result.neighbours is not None else np.zeros((0, settings.k_overlap), np.int32)
    data = _npy_bytes(neighbours.astype(np.int32))
    atomic_write_bytes(nn_path, data)
    write_marker(marker_path, root, {json_path: written, nn_path: checksum_bytes(data)}, site=site)


def _overlap_where_searched(neighbours: list[np.ndarray], n_rows: int) -> np.ndarray:
    """The overlap matrix; NaN for a site whose cloud was too small to search (an empty list)."""
    ok = [i for i, nn in enumerate(neighbours) if nn.shape[0] == n_rows]
    out = np.full((len(neighbours), len(neighbours)), np.nan)
    if ok:
        out[np.ix_(ok, ok)] = overlap_matrix([neighbours[i] for i in ok])
    return out


def compare_partition(store_path: Path, sites: list[str], rows: np.ndarray, nn_paths: list[Path],
                      json_path: Path, marker_path: Path, root: Path, cka_dtype: str = "float64") -> None:
    """Site x site neighbourhood overlap (from the neighbour lists the estimators used) and
    linear CKA (from the stored rows) of one partition."""
    neighbours = [np.load(p, allow_pickle=False) for p in nn_paths]
    overlap = _overlap_where_searched(neighbours, len(rows))
    store = ActivationStore.open_existing(store_path)
    cka = cka_matrix([lambda s=s: store.read(s, rows) for s in sites], dtype=cka_dtype)
    record = {"sites": list(sites), "overlap": np.asarray(overlap, dtype=float).tolist(),
              "cka": np.asarray(cka, dtype=float).tolist()}
    written = write_json_checked(json_path, record)
    write_marker(marker_path, root, {json_path: written})
