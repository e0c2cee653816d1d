"""Tidy (long-format) result tables, written as CSV and JSON.

Every table is a list of rows with fixed columns; each file is written atomically. CSV: a header
line, then one line per row; numbers in Python's shortest round-trip form, missing values as an
empty field, not-a-number as NaN and infinities as Inf / -Inf (pandas.read_csv and R's read.csv
read all of these). JSON: a list of records (one object per row, keys = columns; pandas
read_json(orient="records"), R jsonlite::fromJSON); NaN and infinities become null.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ..rundir.fsio import atomic_write_text

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


def _csv_text(s: str) -> str:
    """A text field as the csv module's default (excel) dialect writes it: quoted, with quotes
    doubled, only when it holds a comma, a quote or a line break (a carriage return too, which
    the csv module leaves bare with a "\\n" line end, and most readers would end the line at)."""
    if "," in s or '"' in s or "\n" in s or "\r" in s:
        return '"' + s.replace('"', '""') + '"'
    return s


def _csv_float(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "Inf" if v > 0 else "-Inf"
    return repr(v)


def _json_float(v: float) -> str:
    return repr(v) if math.isfinite(v) else "null"  # json.dumps writes finite floats with repr too


# Cell formatters by exact type (bool is not int here: it gets its own words).
_CSV = {float: _csv_float, int: str, str: _csv_text, bool: lambda v: "true" if v else "false",
        type(None): lambda v: ""}
_JSON = {float: _json_float, int: str, str: lambda v: json.dumps(v, ensure_ascii=False),
         bool: lambda v: "true" if v else "false", type(None): lambda v: "null"}


def _format_column(values: tuple) -> tuple[list[str], list[str]]:
    """Every cell of one column as CSV text and as JSON text. The spectra table has ~700,000
    rows, so the common columns (all finite floats, all ints, all strings) are formatted with
    C-level maps, numbers once for both files (their text is the same) and each distinct string
    once; the output is the same bytes as the csv module and json.dumps write (tests compare)."""
    kinds = set(map(type, values))
    if kinds == {float} and all(map(math.isfinite, values)):
        text = list(map(float.__repr__, values))
        return text, text
    if kinds == {int}:
        text = list(map(int.__repr__, values))
        return text, text
    unknown = kinds - _CSV.keys()
    if unknown:
        raise TypeError(f"a table cell must be a number, a string or None, got {sorted(k.__name__ for k in unknown)}")
    if kinds == {str}:
        distinct = set(values)
        as_csv = {v: _csv_text(v) for v in distinct}
        as_json = {v: _JSON[str](v) for v in distinct}
        return list(map(as_csv.__getitem__, values)), list(map(as_json.__getitem__, values))
    return [_CSV[type(v)](v) for v in values], [_JSON[type(v)](v) for v in values]


def _render(columns: list[str], rows) -> tuple[str, str]:
    """(CSV text, JSON text) of a table. CSV: a header line, then a line per row. JSON: a list
    of records, {"column": value, ...} per row."""
    rows = list(rows)
    cells = [_format_column(col) for col in zip(*rows)] if rows else [([], [])] * len(columns)
    csv_text = "\n".join([",".join(map(_csv_text, columns)), *map(",".join, zip(*[c for c, _ in cells]))]) + "\n"
    keys = [json.dumps(c, ensure_ascii=False) + ":" for c in columns]
    fields = [list(map(key.__add__, j)) for key, (_, j) in zip(keys, cells)]
    json_text = "[" + ",".join(map("{{{}}}".format, map(",".join, zip(*fields)))) + "]"
    return csv_text, json_text


def to_csv(columns: list[str], rows) -> str:
    return _render(columns, rows)[0]


def to_json(columns: list[str], rows) -> str:
    return _render(columns, rows)[1]


def write_table(folder: Path, name: str, columns: list[str], rows) -> list[Path]:
    """Write folder/name.csv and folder/name.json; returns the two paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"table {name}: a row has {len(row)} cells for {len(columns)} columns: {row!r}")
    csv_text, json_text = _render(columns, rows)
    paths = [folder / f"{name}.csv", folder / f"{name}.json"]
    atomic_write_text(paths[0], csv_text)
    atomic_write_text(paths[1], json_text)
    return paths


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV table as dicts of strings (for tests and quick looks)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
