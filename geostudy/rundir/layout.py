"""Where each file of a run folder goes (every file is written atomically, see fsio.py):

    .lock                            held (fcntl.flock) by the one run working in the folder
    manifest.json                    versions, model source and hash, corpus hash, options; the
                                     first file a run writes
    activations/<prompt>.safetensors the chosen sites of each prompt (TransformerLens names)
    prompts/<prompt>.json            that prompt's analysis results
    prompts/<prompt>.done            written last: the prompt is finished; the size and sha256 of
                                     its two files
    pooled/<site>.json               the pooled-corpus analysis of one site
    pooled/<site>.done               written last: its size and sha256, and a digest of the
                                     activation files it was computed from
    tables/*.csv, tables/*.json      the tidy result tables
    plots/*.png, plots/*.gif         the figures
    report.html                      the self-contained report
    timings.json                     seconds per stage of the last (resumed) run: wall clock, CPU
                                     (user, system) of each wall-clock stage, and time inside
                                     each step summed over the worker threads
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ACT_DIR, PROMPT_DIR, POOLED_DIR, TABLE_DIR, PLOT_DIR = "activations", "prompts", "pooled", "tables", "plots"
WORK_DIRS = (ACT_DIR, PROMPT_DIR, POOLED_DIR)  # made when the manifest is written, resumed from
MANIFEST, REPORT, TIMINGS = "manifest.json", "report.html", "timings.json"
DEFAULT_RUNS_DIR = Path("runs")
SLUG_LENGTH = 60  # characters of the model's and the corpus' names in a default run folder's name


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder."""

    root: Path

    def act_path(self, prompt_id: str) -> Path:
        return self.root / ACT_DIR / f"{prompt_id}.safetensors"

    def result_path(self, prompt_id: str) -> Path:
        return self.root / PROMPT_DIR / f"{prompt_id}.json"

    def marker_path(self, prompt_id: str) -> Path:
        return self.root / PROMPT_DIR / f"{prompt_id}.done"

    def pooled_path(self, site: str) -> Path:
        return self.root / POOLED_DIR / f"{site}.json"

    def pooled_marker_path(self, site: str) -> Path:
        return self.root / POOLED_DIR / f"{site}.done"

    def relative(self, path: Path) -> str:
        """A file's name in the run folder, as its marker records it."""
        return Path(path).relative_to(self.root).as_posix()


def _slug(text: str, fallback: str) -> str:
    """A name that is safe as part of one file name: letters, digits, '.', '_' and '-' only (so
    no '/' and no '..' can lead out of the runs folder), at most SLUG_LENGTH characters."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text or "").strip("._-")[:SLUG_LENGTH].strip("._-")
    return slug or fallback


def _model_slug(source: str) -> str:
    p = Path(source)
    name = p.stem if (p.suffix == ".safetensors" and p.stem != "model") else (p.parent.name if p.suffix else p.name)
    return _slug(name, "model")


def default_run_folder(runs_dir: Path, model: str, corpus_name: str, fingerprint_sha256: str) -> Path:
    """runs_dir/<model>-<corpus>-<start of the fingerprint's hash>: always a direct child of runs_dir."""
    name = f"{_model_slug(model)}-{_slug(corpus_name, 'corpus')}-{fingerprint_sha256[:10]}"
    folder = Path(runs_dir) / name
    assert folder.parent == Path(runs_dir) and folder.name == name, name  # the slugs guarantee it
    return folder
