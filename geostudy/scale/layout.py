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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

UNIT_DIR, COMPARE_DIR = "units", "compare"
MODELS = ("trained", "untrained")


@dataclass(frozen=True)
class ScaleLayout:
    root: Path

    def store_path(self, model: str) -> Path:
        return self.root / ("activations.zarr" if model == "trained" else f"activations-{model}.zarr")

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
