"""Where each file of a corpus-scale run folder goes (every file is written atomically):

    .lock, manifest.json, timings.json, report.html, tables/, plots/   as in the token study
    activations.zarr/                 the trained model's representations: one (N, width) array
                                      per site, named by its hook name, rows in sequence order;
                                      one chunk per shard of rows, each shard with a marker
                                      holding its chunks' checksums (see scale/store.py)
    activations-untrained.zarr/       the same for the untrained control (--untrained)
    units/<model>/<site>/partition-<k>.json   the estimators on one partition of one site
    units/<model>/<site>/partition-<k>.npy    its k nearest neighbours (row indices in the
                                              partition): the neighbourhood overlap reads them
    units/<model>/<site>/partition-<k>.done   written last: the size and sha256 of both
    compare/<model>/partition-<k>.json, .done the site x site overlap and CKA of one partition

The stores may live elsewhere (--store PATH_OR_URL: a local folder or any fsspec URL the
workers share, e.g. s3://bucket/run/acts.zarr): the trained model's store is then exactly that
location and the untrained control's is beside it, its name with -untrained before a .zarr
suffix (s3://bucket/run/acts-untrained.zarr), else after the name (.../acts -> .../acts-untrained).
Everything else stays in the run folder, which only the client (the process running the study)
writes: the workers read and write nothing but the stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

UNIT_DIR, COMPARE_DIR = "units", "compare"
MODELS = ("trained", "untrained")
STORE_NAME, STORE_SUFFIX = "activations", ".zarr"


def store_beside(store: Path | str, model: str) -> Path | str:
    """The store of `model` beside the trained model's `store` (a path or a URL): <name>.zarr ->
    <name>-<model>.zarr, any other name -> <name>-<model>."""
    if isinstance(store, Path):
        return store.with_name(_model_name(store.name, model))
    folder, _, name = store.rstrip("/").rpartition("/")
    return f"{folder}/{_model_name(name, model)}"


def _model_name(name: str, model: str) -> str:
    if name.endswith(STORE_SUFFIX) and name != STORE_SUFFIX:
        return f"{name[: -len(STORE_SUFFIX)]}-{model}{STORE_SUFFIX}"
    return f"{name}-{model}"


@dataclass(frozen=True)
class ScaleLayout:
    root: Path
    store: Path | str | None = None  # the trained model's store, when not in the run folder (--store)

    def store_location(self, model: str) -> Path | str:
        """The store of `model`: in the run folder by default, else at or beside --store."""
        trained = self.store if self.store is not None else self.root / f"{STORE_NAME}{STORE_SUFFIX}"
        return trained if model == "trained" else store_beside(trained, model)

    def unit_base(self, model: str, site: str, partition: int) -> Path:
        return self.root / UNIT_DIR / model / site / f"partition-{partition}"

    def unit_paths(self, model: str, site: str, partition: int) -> tuple[Path, Path, Path]:
        """(results json, neighbours npy, marker)."""
        base = self.unit_base(model, site, partition)
        return base.with_suffix(".json"), base.with_suffix(".npy"), base.with_suffix(".done")

    def compare_paths(self, model: str, partition: int) -> tuple[Path, Path]:
        base = self.root / COMPARE_DIR / model / f"partition-{partition}"
        return base.with_suffix(".json"), base.with_suffix(".done")

    def relative(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()
