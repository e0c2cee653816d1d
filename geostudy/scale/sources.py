"""Document sources of the corpus-scale protocol: a corpus streamed one document at a time,
never loaded whole.

`open_source(spec)` accepts

* a ``.jsonl`` file: one JSON object per line, lines ended by ``\\n`` only (as the token study's
  loader: JSON strings may hold U+2028 raw), blank lines ignored; the text in field ``text`` (or
  ``text_column``), an optional ``id`` (a string or an integer);
* a ``.json`` file: a list of such objects, or the token study's ``{"prompts": [...]}``; read
  incrementally, one object at a time;
* a folder of ``.txt`` files (UTF-8): one document per file, in file-name order, the id the file
  name without ``.txt``; hidden files are not documents (as geostudy/corpus.py);
* a ``.parquet`` file or a folder of them (file-name order), read in record batches with pyarrow;
  the text in column ``text`` (or ``text_column``), ids from an ``id`` column of strings or
  integers when there is one;
* ``hf:<name>[:<config>]`` (a Hugging Face Hub dataset) or a folder written by
  ``datasets.save_to_disk``, through the optional `datasets` library (memory-mapped Arrow, read in
  batches); ``split`` picks the split (default ``train``, or the only one).

Files are UTF-8 with an optional leading byte-order mark. A null text is an empty document (it
gives no sequence); a document without the text field, a text that is not a string, a lone
surrogate (a JSON ``\\ud800`` escape without its pair) or bytes that are not UTF-8 are StudyErrors
naming the file and line (or document number). open_source checks what it can before any work:
the path, the format, the text column (from the schema, or the first document), the libraries.
Document ids are labels, not file names: they are not checked for uniqueness (the document index
is what identifies a document in the outputs).

A source holds paths and names only (it pickles small); iterating opens the files again.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..corpus import _check_field, _read_text, _shown
from ..errors import StudyError

DEFAULT_TEXT_COLUMN = "text"
ID_FIELD = "id"
BLOCK_BYTES = 1 << 20  # files are hashed and JSON is decoded in blocks of 1 MiB
BATCH_ROWS = 1024  # Parquet / datasets rows per record batch
ACCEPTED = ("a .jsonl, .json or .parquet file, a folder of .txt or .parquet files, a folder saved with "
            "datasets' save_to_disk, or hf:<dataset name>[:<config>]")
INSTALL_HINT = 'pip install "gpt2-geometry[corpus]"'


@dataclass(frozen=True)
class Document:
    index: int  # 0, 1, 2, ... in stream order
    id: str  # the document's id field if it has one, else str(index)
    text: str


class DocumentSource:
    """A corpus as a stream of Documents; subclasses read one format each."""

    name: str  # short name for the default run folder (file stem, folder or dataset name)
    description: str  # for the report

    def __iter__(self) -> Iterator[Document]:
        raise NotImplementedError

    def fingerprint(self) -> dict:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"


# ---------------------------------------------------------------- shared helpers

def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _files_fingerprint(root: Path, files: list[Path]) -> dict:
    """One digest over the files' names (relative to `root`: they give order and ids) and
    contents, so that a folder of 10^5 files still fingerprints in a few lines."""
    digest = hashlib.sha256()
    total = 0
    for f in files:
        name = f.relative_to(root).as_posix() if f != root else f.name
        digest.update(json.dumps([name, _file_sha256(f)]).encode("utf-8"))
        total += f.stat().st_size
    return {"files": len(files), "bytes": total, "sha256": digest.hexdigest()}


def _may_hold_surrogate(raw: str) -> bool:
    """Only a JSON \\uDXXX escape makes a lone surrogate (strict UTF-8 decoding refuses them), so
    the per-character check runs only on the rare text that holds one: it is slow in Python."""
    return "\\ud" in raw or "\\uD" in raw


def _named(where: str, obj: dict) -> str:
    """`where` with the document's id when it has a string one (as the token study's messages)."""
    return f"{where} (id {_shown(obj[ID_FIELD])})" if isinstance(obj.get(ID_FIELD), str) else where


def _document_from_obj(obj, index: int, key: str, where: str, raw: str) -> Document:
    """A JSON object as a Document; StudyError naming `where` on anything malformed. A null
    text is empty and a null id absent, as in the token study's loader."""
    if not isinstance(obj, dict):
        raise StudyError(f"{where}: a document must be a JSON object with a {key!r} field, got {type(obj).__name__}")
    if key not in obj:
        raise StudyError(f"{_named(where, obj)}: the document has no {key!r} field; its fields are {_shown(sorted(obj), 200)} "
                         "(name the text field with --text-column)")
    text, doc_id = obj[key], obj.get(ID_FIELD)
    if text is None:
        text = ""
    elif not isinstance(text, str):
        raise StudyError(f"{_named(where, obj)}: field {key!r} must be a string, got {type(text).__name__} {_shown(text)}")
    if doc_id is None:
        doc_id = str(index)
    elif isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
        raise StudyError(f"{where}: field {ID_FIELD!r} must be a string or an integer, got {type(doc_id).__name__} {_shown(doc_id)}")
    else:
        doc_id = str(doc_id)
    if _may_hold_surrogate(raw):
        _check_field(ID_FIELD, doc_id, where)
        _check_field(key, text, _named(where, obj))
    return Document(index=index, id=doc_id, text=text)


def _undecodable(path: Path, lineno: int, column: int, raw: bytes, err: UnicodeDecodeError) -> StudyError:
    """The token study's message for bytes that are not UTF-8 (geostudy/corpus.py _read_text)."""
    return StudyError(
        f"{path}, line {lineno}, byte {column} of the line: not UTF-8 text (byte 0x{raw[err.start]:02x}: "
        f"{err.reason}); save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line, split on b"\\n" only (binary files iterate so), a
    leading byte-order mark dropped, each line decoded strictly."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            skip = len(codecs.BOM_UTF8) if lineno == 1 and raw.startswith(codecs.BOM_UTF8) else 0
            try:
                yield lineno, raw[skip:].decode("utf-8")
            except UnicodeDecodeError as err:
                raise _undecodable(path, lineno, skip + err.start + 1, raw[skip:], err) from None


# ---------------------------------------------------------------- JSONL

def _jsonl_records(path: Path) -> Iterator[tuple[str, object, str]]:
    """(where, parsed object, raw line) of each non-blank line."""
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise StudyError(f"{where}: not valid JSON ({err.msg}, column {err.colno})") from None
        yield where, obj, line


class JsonlSource(DocumentSource):
    def __init__(self, path: Path, text_column: str):
        self.path, self.text_column = path, text_column
        self.name = path.stem
        self.description = f"JSONL file {path.name} (field {text_column})"

    def __iter__(self) -> Iterator[Document]:
        for index, (where, obj, raw) in enumerate(_jsonl_records(self.path)):
            yield _document_from_obj(obj, index, self.text_column, where, raw)

    def fingerprint(self) -> dict:
        return {"format": "jsonl", "text_column": self.text_column, **_files_fingerprint(self.path, [self.path])}


# ---------------------------------------------------------------- JSON, read incrementally

class _JsonReader:
    """A JSON file's text decoded in blocks, with just enough of a parser to walk the outer list
    (or object) and hand each element to json's raw_decode: memory is one element and one block."""

    _decoder = json.JSONDecoder()

    def __init__(self, path: Path, f):
        self.path, self.f = path, f
        self.utf8 = codecs.getincrementaldecoder("utf-8-sig")()  # -sig: a leading byte-order mark is dropped
        self.buf, self.pos, self.eof = "", 0, False
        self.lines_before, self.col_before = 0, 0  # of the text already dropped from the buffer

    def _more(self) -> bool:
        """Append the next block to the buffer (dropping what is consumed); False at the end.
        The block is at least as long as what is buffered, so that retrying a long value
        (value()) doubles the text each time: linear, not quadratic, in its length."""
        if self.eof:
            return False
        block = self.f.read(max(BLOCK_BYTES, len(self.buf) - self.pos))
        try:
            text = self.utf8.decode(block, final=not block)
        except UnicodeDecodeError:
            _raise_undecodable(self.path)
            raise
        done = self.buf[:self.pos]
        n_lines = done.count("\n")
        self.lines_before += n_lines
        self.col_before = len(done) - done.rfind("\n") - 1 if n_lines else self.col_before + len(done)
        self.buf, self.pos, self.eof = self.buf[self.pos:] + text, 0, not block
        return True

    def error(self, message: str, pos: int | None = None) -> StudyError:
        pos = self.pos if pos is None else pos
        line = self.lines_before + self.buf.count("\n", 0, pos) + 1
        nl = self.buf.rfind("\n", 0, pos)
        column = pos - nl if nl >= 0 else self.col_before + pos + 1
        return StudyError(f"{self.path} is not valid JSON: {message} at line {line}, column {column}")

    def peek(self) -> str:
        """The next character that is not JSON whitespace ("" at the end of the file)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\n\r":
                self.pos += 1
            if self.pos < len(self.buf) or not self._more():
                return self.buf[self.pos:self.pos + 1]

    def take(self, char: str) -> None:
        if self.peek() != char:
            found = self.peek()
            raise self.error(f"expecting {char!r}" + (f", found {found!r}" if found else ", found the end of the file"))
        self.pos += 1

    def value(self) -> tuple[object, str]:
        """The next JSON value and its raw text. A value that fails to parse, or ends where the
        buffer does (a number may go on), is retried with more text until the file ends."""
        self.peek()
        while True:
            try:
                obj, end = self._decoder.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:
                    raw, self.pos = self.buf[self.pos:end], end
                    return obj, raw
            except json.JSONDecodeError as err:
                if self.eof:
                    raise self.error(err.msg, err.pos) from None
            self._more()


def _raise_undecodable(path: Path) -> None:
    """Find the first line that is not UTF-8 and raise the message naming it."""
    for _ in _lines(path):
        pass


def _json_elements(path: Path) -> Iterator[tuple[int, object, str]]:
    """(number, element, raw text) of each element of the outer list, or of the 'prompts' list
    of an outer object (the token study's form). The whole file is checked to be JSON."""
    with open(path, "rb") as f:
        r = _JsonReader(path, f)
        outer = r.peek()
        if outer == "{":
            r.take("{")
            if not _seek_key(r, "prompts"):
                raise StudyError(f"{path}: a JSON corpus must be a list of documents or an object with a 'prompts' list")
            if r.peek() != "[":
                raise StudyError(f"{path}: 'prompts' must be a list of documents")
        elif outer != "[":
            raise StudyError(f"{path}: a JSON corpus must be a list of documents or an object with a 'prompts' list")
        r.take("[")
        number = 0
        if r.peek() == "]":
            r.take("]")
        else:
            while True:
                obj, raw = r.value()
                yield number, obj, raw
                number += 1
                if r.peek() != ",":
                    r.take("]")
                    break
                r.take(",")
        if outer == "{":
            _rest_of_object(r)
        if r.peek():
            raise r.error("Extra data")


def _seek_key(r: _JsonReader, wanted: str | None, at_start: bool = True) -> bool:
    """Walk an object's members up to the key `wanted` (True, positioned at its value) or to the
    object's end (False); `at_start`: just after its "{" (where "}" may close it at once)."""
    if at_start and r.peek() == "}":
        r.take("}")
        return False
    while True:
        if r.peek() != '"':
            raise r.error("Expecting property name enclosed in double quotes")
        key, _ = r.value()
        r.take(":")
        if key == wanted:
            return True
        r.value()  # a metadata value (small: name, description)
        if r.peek() != ",":
            r.take("}")
            return False
        r.take(",")


def _rest_of_object(r: _JsonReader) -> None:
    """After the 'prompts' list: the remaining members, then the closing brace."""
    if r.peek() == ",":
        r.take(",")
        _seek_key(r, None, at_start=False)
    else:
        r.take("}")


class JsonSource(DocumentSource):
    def __init__(self, path: Path, text_column: str):
        self.path, self.text_column = path, text_column
        self.name = path.stem
        self.description = f"JSON file {path.name} (field {text_column})"

    def __iter__(self) -> Iterator[Document]:
        for number, obj, raw in _json_elements(self.path):
            yield _document_from_obj(obj, number, self.text_column, f"{self.path}, document #{number + 1}", raw)

    def fingerprint(self) -> dict:
        return {"format": "json", "text_column": self.text_column, **_files_fingerprint(self.path, [self.path])}


# ---------------------------------------------------------------- folder of .txt files

def _txt_files(folder: Path) -> list[Path]:
    """The rule of geostudy/corpus.py's folders: .txt (any case), not hidden, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".txt" and not p.name.startswith(".") and p.is_file())


class TextFolderSource(DocumentSource):
    def __init__(self, folder: Path, files: list[Path]):
        self.folder, self.files = folder, files
        self.name = folder.name
        self.description = f"folder of {len(files)} .txt files {folder.name}/"

    def __iter__(self) -> Iterator[Document]:
        for index, f in enumerate(self.files):
            yield Document(index=index, id=f.stem, text=_read_text(f, f" (document {f.stem!r})"))

    def fingerprint(self) -> dict:
        return {"format": "txt-folder", **_files_fingerprint(self.folder, self.files)}


# ---------------------------------------------------------------- Parquet

def _import_pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise StudyError(f"reading Parquet needs the pyarrow library: {INSTALL_HINT}") from None
    return pa, pq


def _is_text_type(pa, t) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _parquet_id_column(pa, schema) -> bool:
    """Ids come from an `id` column of strings or integers; any other `id` column is ignored."""
    if ID_FIELD not in schema.names:
        return False
    t = schema.field(ID_FIELD).type
    return _is_text_type(pa, t) or pa.types.is_integer(t)


def _parquet_schema(path: Path, text_column: str):
    """The file's schema (its footer only); StudyError if it is not Parquet or has no text column."""
    pa, pq = _import_pyarrow()
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        raise StudyError(f"{path} is not a readable Parquet file: {str(err).splitlines()[0] if str(err) else err}") from None
    if text_column not in schema.names:
        raise StudyError(f"{path}: no column {text_column!r}; its columns are {', '.join(map(repr, schema.names))} "
                         "(name the text column with --text-column)")
    t = schema.field(text_column).type
    if not _is_text_type(pa, t):
        raise StudyError(f"{path}: the column {text_column!r} holds {t}, not text (name the text column with --text-column)")
    return schema


class ParquetSource(DocumentSource):
    def __init__(self, root: Path, files: list[Path], text_column: str, with_ids: list[bool]):
        self.root, self.files, self.text_column, self.with_ids = root, files, text_column, with_ids
        self.name = root.stem if root.is_file() else root.name
        where = f"Parquet file {root.name}" if root.is_file() else f"Parquet folder {root.name}/ ({len(files)} files)"
        self.description = f"{where} (column {text_column})"

    def __iter__(self) -> Iterator[Document]:
        _, pq = _import_pyarrow()
        index = 0
        for path, with_id in zip(self.files, self.with_ids):
            columns = [self.text_column, ID_FIELD] if with_id else [self.text_column]
            for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
                texts = batch.column(0).to_pylist()
                ids = batch.column(1).to_pylist() if with_id else [None] * len(texts)
                for text, doc_id in zip(texts, ids):
                    yield Document(index=index, id=str(index) if doc_id is None else str(doc_id), text=text or "")
                    index += 1

    def fingerprint(self) -> dict:
        return {"format": "parquet", "text_column": self.text_column, **_files_fingerprint(self.root, self.files)}


def _parquet_source(path: Path, text_column: str) -> ParquetSource:
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.suffix.lower() == ".parquet" and not p.name.startswith(".") and p.is_file())
    if not files:
        raise StudyError(f"the folder {path} holds no .parquet files (only folders named so)")
    pa, _ = _import_pyarrow()
    with_ids = [_parquet_id_column(pa, _parquet_schema(f, text_column)) for f in files]
    return ParquetSource(path, files, text_column, with_ids)


# ---------------------------------------------------------------- Hugging Face datasets

def _import_datasets():
    try:
        import datasets
    except ImportError:
        raise StudyError(f"reading a Hugging Face dataset needs the `datasets` library: {INSTALL_HINT}") from None
    return datasets


def _is_saved_dataset(folder: Path) -> bool:
    """A folder written by Dataset.save_to_disk (state.json) or DatasetDict.save_to_disk."""
    return (folder / "dataset_dict.json").is_file() or ((folder / "state.json").is_file() and (folder / "dataset_info.json").is_file())


def _pick_split(dataset, split: str | None, what: str):
    """(Dataset, split name) from what load_dataset / load_from_disk returned (a Dataset or a
    DatasetDict: split None picks "train", or the only split)."""
    if not hasattr(dataset, "keys"):  # one Dataset
        own = str(getattr(dataset, "split", None) or "")
        if split is not None and own and split != own:
            raise StudyError(f"{what} is one dataset, the split {own!r}; drop --split {split}")
        return dataset, own or split or ""
    names = list(dataset.keys())
    if split is None:
        if "train" in names or len(names) == 1:
            split = "train" if "train" in names else names[0]
        else:
            raise StudyError(f"{what} has the splits {', '.join(names)}; choose one with --split")
    if split not in names:
        raise StudyError(f"{what} has no split {split!r}; its splits are {', '.join(names)}")
    return dataset[split], split


def _dataset_columns(dataset, text_column: str, what: str) -> bool:
    """Check the text column; True when there is an `id` column of strings or integers."""
    features = dataset.features
    if text_column not in features:
        raise StudyError(f"{what}: no column {text_column!r}; its columns are {', '.join(map(repr, features))} "
                         "(name the text column with --text-column)")
    dtype = getattr(features[text_column], "dtype", None)
    if dtype not in ("string", "large_string"):
        raise StudyError(f"{what}: the column {text_column!r} holds {features[text_column]}, not text "
                         "(name the text column with --text-column)")
    id_dtype = getattr(features.get(ID_FIELD), "dtype", "")
    return id_dtype in ("string", "large_string") or id_dtype.startswith(("int", "uint"))


class HFDatasetSource(DocumentSource):
    """A Hub dataset (`hub_name` with `config`) or a save_to_disk folder (`folder`). The loaded
    dataset is memory-mapped Arrow; it is not pickled (a worker reloads it from the cache)."""

    def __init__(self, *, hub_name: str | None, config: str | None, folder: Path | None, split: str | None, text_column: str):
        self.hub_name, self.config, self.folder, self.split, self.text_column = hub_name, config, folder, split, text_column
        if hub_name:
            self.what = f"the dataset {hub_name!r}" + (f" (config {config!r})" if config else "")
        else:
            self.what = f"the dataset folder {folder}"
        dataset, self.split = self._load()
        self.with_ids = _dataset_columns(dataset, text_column, self.what)
        self._dataset = dataset
        self.name = (hub_name.rsplit("/", 1)[-1] + (f"-{config}" if config else "")) if hub_name else folder.name
        shown = f"Hugging Face dataset {hub_name}" + (f" ({config})" if config else "") if hub_name else f"datasets folder {folder.name}/"
        self.description = f"{shown}, split {self.split or '-'} ({len(dataset)} rows, column {text_column})"

    def _load(self):
        """(Dataset, split name); StudyError when it cannot be loaded."""
        datasets = _import_datasets()
        try:
            if self.hub_name is not None:
                loaded = datasets.load_dataset(self.hub_name, self.config, split=self.split)
            else:
                loaded = datasets.load_from_disk(str(self.folder))
        except Exception as err:  # datasets raises many kinds (not found, offline, bad config)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise StudyError(f"cannot load {self.what}: {first}") from None
        return _pick_split(loaded, self.split, self.what)

    def _loaded(self):
        dataset = self.__dict__.get("_dataset")
        return self._load()[0] if dataset is None else dataset

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_dataset"}

    def __iter__(self) -> Iterator[Document]:
        dataset = self._loaded()
        columns = [self.text_column, ID_FIELD] if self.with_ids else [self.text_column]
        index = 0
        for batch in dataset.select_columns(columns).iter(batch_size=BATCH_ROWS):
            texts = batch[self.text_column]
            ids = batch[ID_FIELD] if self.with_ids else [None] * len(texts)
            for text, doc_id in zip(texts, ids):
                yield Document(index=index, id=str(index) if doc_id is None else str(doc_id), text=text or "")
                index += 1

    def fingerprint(self) -> dict:
        dataset = self._loaded()
        where = {"name": self.hub_name, "config": self.config} if self.hub_name else {"folder": self.folder.name}
        return {"format": "datasets", **where, "split": self.split, "text_column": self.text_column,
                "rows": len(dataset), "fingerprint": getattr(dataset, "_fingerprint", None)}


# ---------------------------------------------------------------- open_source

def _hub_source(spec: str, text_column: str, split: str | None) -> HFDatasetSource:
    parts = spec[len("hf:"):].split(":")
    if not parts[0] or len(parts) > 2 or (len(parts) == 2 and not parts[1]):
        raise StudyError(f"{spec!r}: a Hugging Face dataset is hf:<name> or hf:<name>:<config>")
    _import_datasets()
    return HFDatasetSource(hub_name=parts[0], config=parts[1] if len(parts) == 2 else None, folder=None, split=split,
                           text_column=text_column)


def _folder_source(folder: Path, text_column: str | None, split: str | None) -> DocumentSource:
    if _is_saved_dataset(folder):
        _import_datasets()
        return HFDatasetSource(hub_name=None, config=None, folder=folder, split=split, text_column=text_column or DEFAULT_TEXT_COLUMN)
    _no_split(split, folder)
    has_parquet = any(p.suffix.lower() == ".parquet" and not p.name.startswith(".") for p in folder.iterdir())
    txt = _txt_files(folder)
    if has_parquet and txt:
        raise StudyError(f"the folder {folder} holds both .parquet and .txt files; a corpus folder holds one kind")
    if has_parquet:
        return _parquet_source(folder, text_column or DEFAULT_TEXT_COLUMN)
    if not txt:
        raise StudyError(f"the folder {folder} holds no .txt or .parquet files; a corpus folder has one UTF-8 .txt file per "
                         "document, or .parquet files, or is a folder saved with datasets' save_to_disk")
    if text_column is not None:
        raise StudyError(f"--text-column does not apply to a folder of .txt files ({folder}): each file is one document")
    return TextFolderSource(folder, txt)


def _no_split(split: str | None, path: Path) -> None:
    if split is not None:
        raise StudyError(f"--split applies to Hugging Face datasets only, not to {path}")


def _first_document(source: DocumentSource) -> None:
    """Read up to the first document, so that a missing text field is an error before any work."""
    for _ in source:
        return


def open_source(spec: str | Path, *, text_column: str | None = None, split: str | None = None) -> DocumentSource:
    """The corpus `spec` as a DocumentSource (see the module's docstring for the accepted forms).
    StudyError, before any work, for a missing path, an unknown format, a missing text column, a
    file that is not what its name says, or a `datasets` source without the library."""
    if text_column is not None and (not isinstance(text_column, str) or not text_column.strip()):
        raise StudyError(f"the text column must be a non-empty name, got {text_column!r}")
    if isinstance(spec, str) and spec.startswith("hf:"):
        return _hub_source(spec, text_column or DEFAULT_TEXT_COLUMN, split)
    path = Path(spec).expanduser()
    if not path.exists():
        raise StudyError(f"no corpus at {path}: pass {ACCEPTED}")
    if path.is_dir():
        return _folder_source(path, text_column, split)
    _no_split(split, path)
    suffix = path.suffix.lower()
    column = text_column or DEFAULT_TEXT_COLUMN
    if suffix == ".parquet":
        return _parquet_source(path, column)
    if suffix not in (".jsonl", ".json"):
        raise StudyError(f"{path}: unknown corpus format {path.suffix or '(no extension)'!r}; pass {ACCEPTED}")
    source = JsonlSource(path, column) if suffix == ".jsonl" else JsonSource(path, column)
    _first_document(source)
    return source
