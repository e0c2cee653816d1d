"""The prompt corpus: the shipped one (six genres x five topics) or a user's.

A corpus is an ordered list of prompts, each with an `id` (also used as a file name), a `genre`,
a `topic` and a `text`. Accepted forms:

* a JSON file: either ``{"prompts": [{"id": ..., "genre": ..., "topic": ..., "text": ...}, ...]}``
  (other top-level keys such as "name" are kept as metadata) or a bare list of such objects;
* a JSONL file: one such object per line, lines ended by ``\n`` only (blank lines are ignored);
* a folder of ``.txt`` files (UTF-8): one prompt per file, in file-name order, the id taken from
  the file name without ``.txt``; genre and topic are empty; hidden files (``.name.txt``, such as
  macOS's ``._name.txt``) are not prompts.

Files are UTF-8; a leading byte-order mark is ignored. `genre` and `topic` are optional
everywhere (empty when absent); they label figures and table cells, so they are one line of text
without control characters. Ids must be unique and made of letters, digits, ``.``, ``_`` and ``-``
(they name files), unique ignoring case too (case-insensitive file systems would merge them), and
not a Windows device name (``CON``, ``NUL``, ``COM1``, ...); ``pooled`` is reserved for the
whole-corpus rows of the result tables. No field may hold a lone surrogate (a JSON ``\ud800``
escape without its pair): it is not a character and cannot be written as UTF-8.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .errors import StudyError

SHIPPED_CORPUS = Path(__file__).resolve().parent / "data" / "corpus.json"
POOLED_ID = "pooled"
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # matched against the whole id (fullmatch)
# Names Windows gives to devices, whatever the extension: "nul.json" is not a file there.
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
# Characters a label (genre, topic) may not hold: control characters (line breaks, tabs, NUL) and
# the Unicode line and paragraph separators: a label is one line of a legend or a table cell.
_NOT_IN_LABELS = {"Cc", "Zl", "Zp"}


@dataclass(frozen=True)
class Prompt:
    id: str
    genre: str
    topic: str
    text: str


@dataclass(frozen=True)
class Corpus:
    prompts: tuple[Prompt, ...]
    source: str
    name: str = ""
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self):
        return iter(self.prompts)

    def __getitem__(self, i) -> Prompt:
        return self.prompts[i]

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.prompts]

    @property
    def genres(self) -> list[str]:
        """Distinct genres in order of first appearance."""
        return list(dict.fromkeys(p.genre for p in self.prompts))

    @property
    def topics(self) -> list[str]:
        return list(dict.fromkeys(p.topic for p in self.prompts))

    def sha256(self) -> str:
        """Hash of the prompts' content (ids, genres, topics, texts, in order), independent of
        the file format they were read from."""
        canon = json.dumps([[p.id, p.genre, p.topic, p.text] for p in self.prompts], ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()

    def by_id(self, prompt_id: str) -> Prompt:
        for p in self.prompts:
            if p.id == prompt_id:
                return p
        more = " ..." if len(self) > 10 else ""
        raise StudyError(f"the corpus has no prompt with id {_shown(prompt_id)}; its ids are {', '.join(self.ids[:10])}{more}")


def _first_lone_surrogate(text: str) -> int:
    """Index of the first lone surrogate (U+D800-U+DFFF) in `text`, or -1. Python's json module
    turns a "\\ud800" escape without its pair into one; it cannot be encoded as UTF-8."""
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            return i
    return -1


def _first_label_breaker(text: str) -> int:
    """Index of the first character a one-line label may not hold (see _NOT_IN_LABELS), or -1."""
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in _NOT_IN_LABELS:
            return i
    return -1


def _check_field(key: str, value: str, where: str) -> None:
    """StudyError if a field holds what no output file can: a lone surrogate anywhere, a control
    character in a genre or topic."""
    i = _first_lone_surrogate(value)
    if i >= 0:
        raise StudyError(
            f"{where}: field {key!r} holds a lone surrogate U+{ord(value[i]):04X} at character {i + 1} (a JSON "
            "\\ud800-style escape without its pair), which is not a character and cannot be written as UTF-8; "
            "remove it, or write the character itself"
        )
    if key in ("genre", "topic"):
        i = _first_label_breaker(value)
        if i >= 0:
            raise StudyError(
                f"{where}: field {key!r} holds the control character U+{ord(value[i]):04X} at character {i + 1}; "
                f"a {key} labels figures and table cells, so it must be one line of printable text"
            )


def _shown(value, limit: int = 60) -> str:
    """A value as an error message shows it: its repr (control characters escaped, so the
    message stays one line), cut at `limit` characters (an id or a field may be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _prompt_from_obj(obj, where: str) -> Prompt:
    if not isinstance(obj, dict):
        raise StudyError(f"{where}: a prompt must be a JSON object with 'id' and 'text', got {type(obj).__name__}")
    missing = [k for k in ("id", "text") if k not in obj]
    if missing:
        raise StudyError(f"{where}: the prompt has no {' and no '.join(repr(m) for m in missing)} field")
    if isinstance(obj["id"], str):
        where = f"{where} (id {_shown(obj['id'])})"
    fields = {}
    for key in ("id", "genre", "topic", "text"):
        value = obj.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise StudyError(f"{where}: field {key!r} must be a string, got {type(value).__name__} {_shown(value)}")
        _check_field(key, value, where)
        fields[key] = value
    return Prompt(**fields)


def _read_text(path: Path, what: str = "") -> str:
    """The file as text: UTF-8, a leading byte-order mark dropped. `what` names the prompt the
    file holds, for the error message."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise StudyError(f"cannot read {path}: {err.strerror or err}") from None
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        bad = skip + err.start  # offset in the file
        line, line_start = data.count(b"\n", 0, bad) + 1, data.rfind(b"\n", 0, bad) + 1
        raise StudyError(
            f"{path}{what}, line {line}, byte {bad - line_start + 1} of the line: not UTF-8 "
            f"text (byte 0x{data[bad]:02x}: {err.reason}); save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _load_json(path: Path) -> tuple[list[Prompt], str, dict]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise StudyError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    meta: dict = {}
    if isinstance(data, dict):
        if "prompts" not in data:
            raise StudyError(f"{path}: a JSON corpus must be a list of prompts or an object with a 'prompts' list; "
                             f"found keys {_shown(sorted(data))}")
        meta = {k: v for k, v in data.items() if k != "prompts"}
        data = data["prompts"]
    if not isinstance(data, list):
        raise StudyError(f"{path}: 'prompts' must be a list, got {type(data).__name__}")
    prompts = [_prompt_from_obj(obj, f"{path}, prompt #{i + 1}") for i, obj in enumerate(data)]
    name = meta.get("name", "") if isinstance(meta.get("name", ""), str) else ""
    _check_field("name", name, f"{path}, the corpus")  # it is written to the manifest and the report
    return prompts, name, meta


def _load_jsonl(path: Path) -> tuple[list[Prompt], str, dict]:
    prompts = []
    # JSON strings may hold U+2028, U+2029 and U+0085 raw, which str.splitlines() would also end
    # a line at: JSONL ends its lines with "\n" only (a "\r" before it is JSON whitespace)
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise StudyError(f"{path}, line {lineno}: not valid JSON ({err.msg}, column {err.colno})") from None
        prompts.append(_prompt_from_obj(obj, f"{path}, line {lineno}"))
    return prompts, "", {}


def _load_folder(path: Path) -> tuple[list[Prompt], str, dict]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".txt" and not p.name.startswith(".") and p.is_file())
    if not files:
        raise StudyError(f"the folder {path} holds no .txt files; a corpus folder has one UTF-8 .txt file per prompt")
    return [Prompt(id=f.stem, genre="", topic="", text=_read_text(f, f" (prompt {f.stem!r})")) for f in files], path.name, {}


def _validate(prompts: list[Prompt], source: str) -> None:
    if not prompts:
        raise StudyError(f"the corpus {source} holds no prompts")
    seen: dict[str, str] = {}  # casefolded id -> id
    for i, p in enumerate(prompts):
        where = f"{source}, prompt #{i + 1} (id {_shown(p.id)})"
        if not _ID_RE.fullmatch(p.id):
            raise StudyError(
                f"{where}: ids name files, so they must be 1-100 characters of letters, digits, '.', '_' "
                "and '-', starting with a letter or digit" + (" (rename the .txt file)" if source.endswith("/") else "")
            )
        if p.id == POOLED_ID:
            raise StudyError(f"{where}: the id {POOLED_ID!r} is reserved for the whole-corpus rows of the tables; rename it")
        twin = seen.get(p.id.casefold())
        if twin == p.id:
            raise StudyError(f"{where}: the id {p.id!r} appears more than once; ids must be unique")
        if p.id.split(".")[0].upper() in _WINDOWS_DEVICES:
            raise StudyError(f"{where}: ids name files, and {p.id.split('.')[0]!r} is a device name on Windows "
                             "(CON, PRN, AUX, NUL, COM1-9, LPT1-9), whatever the extension; rename it")
        if twin is not None:
            raise StudyError(f"{where}: the ids {twin!r} and {p.id!r} differ only in case; they name files, which a "
                             "case-insensitive file system (macOS, Windows) would merge into one: rename one of them")
        seen[p.id.casefold()] = p.id
        if not p.text.strip():
            raise StudyError(f"{where}: the text is empty")


def load_corpus(path: str | Path | None = None) -> Corpus:
    """Load and validate a corpus. `path`: None for the shipped corpus, or a .json / .jsonl file,
    or a folder of .txt files. Raises StudyError with a precise message on any problem."""
    if path is None:
        path = SHIPPED_CORPUS
    path = Path(path).expanduser()
    if not path.exists():
        raise StudyError(f"no corpus at {path}: pass a .json or .jsonl file or a folder of .txt files")
    if path.is_dir():
        prompts, name, meta = _load_folder(path)
        source = str(path) + "/"
    elif path.suffix.lower() == ".jsonl":
        prompts, name, meta = _load_jsonl(path)
        source = str(path)
    elif path.suffix.lower() == ".json":
        prompts, name, meta = _load_json(path)
        source = str(path)
    else:
        raise StudyError(f"{path}: unknown corpus format {path.suffix!r}; use .json, .jsonl or a folder of .txt files")
    _validate(prompts, source)
    return Corpus(prompts=tuple(prompts), source=source, name=name or path.stem, metadata=meta)


def tokenize_corpus(corpus: Corpus, tokenizer, n_ctx: int) -> list:
    """Token ids of every prompt; StudyError naming every prompt that encodes to no token or to
    more tokens than the model's context."""
    ids, problems = [], []
    for p in corpus:
        t = tokenizer.encode(p.text)
        if t.size == 0:
            problems.append(f"{p.id}: encodes to no token")
        elif t.size > n_ctx:
            problems.append(f"{p.id}: {t.size} tokens, more than the model's context of {n_ctx}; shorten it")
        ids.append(t)
    if problems:
        raise StudyError("some prompts cannot be run:\n  " + "\n  ".join(problems))
    return ids
