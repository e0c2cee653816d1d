"""Tidy (long-format) result tables, written as CSV and JSON.

Every table is a list of rows with fixed columns; each file is written atomically. CSV: a header
line, then one line per row; numbers in Python's shortest round-trip form, missing values as an
empty field, not-a-number as NaN and infinities as Inf / -Inf (pandas.read_csv and R's read.csv
read all of these). JSON: a list of records (one object per row, keys = columns; pandas
read_json(orient="records"), R jsonlite::fromJSON); NaN and infinities become null.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from .fsio import atomic_write_text

# The main table: one row per prompt (or the pooled corpus) x site x quantity (x parameter).
RESULT_COLUMNS = [
    "prompt_id", "genre", "topic", "site", "site_label", "block", "sublayer", "depth",
    "n_points", "quantity", "param", "value", "error",
]
TOP_TOKEN_COLUMNS = [
    "prompt_id", "genre", "topic", "site", "site_label", "block", "sublayer", "depth",
    "rank", "token_id", "token", "prob",
]
SPECTRUM_COLUMNS = ["prompt_id", "site", "component", "eigenvalue", "explained_variance_ratio"]
SKIPPED_COLUMNS = ["prompt_id", "site", "estimator", "reason"]
SITE_COLUMNS = ["site", "site_label", "short_label", "block", "sublayer", "depth", "width"]
PROMPT_COLUMNS = ["prompt_id", "genre", "topic", "n_tokens", "n_points", "n_words"]


def _csv_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Inf" if v > 0 else "-Inf"
        return repr(v)
    return str(v)


def _json_cell(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def to_csv(columns: list[str], rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([_csv_cell(v) for v in row])
    return buf.getvalue()


def to_json(columns: list[str], rows) -> str:
    records = [{c: _json_cell(v) for c, v in zip(columns, row)} for row in rows]
    return json.dumps(records, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def write_table(folder: Path, name: str, columns: list[str], rows, json_too: bool = True) -> list[Path]:
    """Write folder/name.csv (and name.json); returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"table {name}: a row has {len(row)} cells for {len(columns)} columns: {row!r}")
    paths = [folder / f"{name}.csv"]
    atomic_write_text(paths[0], to_csv(columns, rows))
    if json_too:
        paths.append(folder / f"{name}.json")
        atomic_write_text(paths[1], to_json(columns, rows))
    return paths


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV table as dicts of strings (for tests and quick looks)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
