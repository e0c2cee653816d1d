"""The corpus-scale input: every source format streams the same documents, windows against a
hand computation on the real GPT-2 vocabulary, duplicates, the seeded reservoir sample (uniform,
deterministic, complete when large enough), bounded memory, and every bad input as a one-line
StudyError before any work."""

from __future__ import annotations

import itertools
import json
import pickle
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import gpt2np
from geostudy import SHIPPED_CORPUS, StudyError, load_corpus
from geostudy.scale import sources as sources_mod
from geostudy.scale.sequences import DigestSet, _insert_digests, build_sequences, encode_batch
from geostudy.scale.sources import Document, open_source

DOCS = [
    {"id": "first", "text": "The cat sat on the mat."},
    {"id": "second", "text": "Two lines\nof text, with unicode: café ☕ and <|endoftext|> inside."},
    {"id": "third", "text": ""},
    {"id": "fourth", "text": "The cat sat on the mat."},
]


@pytest.fixture(scope="module")
def tok(gpt2_vocab_dir):
    return gpt2np.load_tokenizer(gpt2_vocab_dir)


@pytest.fixture(scope="module")
def vocab(gpt2_vocab_dir) -> dict[str, int]:
    """GPT-2's own token -> id table, read from the vocabulary file (the hand computation's reference)."""
    return json.loads((gpt2_vocab_dir / "encoder.json").read_text(encoding="utf-8"))


def _jsonl(path: Path, docs) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def _triples(source) -> list[tuple[int, str, str]]:
    return [(d.index, d.id, d.text) for d in source]


def _one_line_error(call, pattern: str) -> str:
    with pytest.raises(StudyError, match=pattern) as info:
        call()
    assert "\n" not in str(info.value), str(info.value)
    return str(info.value)


# ---------------------------------------------------------------- formats

def _write_every_format(tmp_path: Path, docs) -> dict[str, Path]:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {"jsonl": _jsonl(tmp_path / "c.jsonl", docs)}
    paths["json"] = tmp_path / "c.json"
    paths["json"].write_text(json.dumps(docs, indent=2), encoding="utf-8")
    paths["prompts-json"] = tmp_path / "p.json"
    paths["prompts-json"].write_text(json.dumps({"name": "n", "prompts": docs, "after": {"k": [1, 2]}}), encoding="utf-8")
    folder = tmp_path / "txt"
    folder.mkdir()
    for d in docs:
        (folder / f"{d['id']}.txt").write_text(d["text"], encoding="utf-8")
    (folder / ".hidden.txt").write_text("not a document")
    (folder / "notes.md").write_text("not a document")
    table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs], "n": list(range(len(docs)))})
    paths["parquet"] = tmp_path / "c.parquet"
    pq.write_table(table, paths["parquet"], row_group_size=2)
    pfolder = tmp_path / "pq"
    pfolder.mkdir()
    pq.write_table(table.slice(2), pfolder / "part-1.parquet")  # file-name order, not writing order
    pq.write_table(table.slice(0, 2), pfolder / "part-0.parquet")
    paths["parquet-folder"] = pfolder
    paths["datasets"] = tmp_path / "ds"
    datasets.Dataset.from_dict({"text": [d["text"] for d in docs], "id": [d["id"] for d in docs]}).save_to_disk(paths["datasets"])
    paths["txt"] = folder
    return paths


def test_every_format_streams_the_same_documents(tmp_path):
    paths = _write_every_format(tmp_path, DOCS)
    # the txt folder is in file-name order: first, fourth, second, third
    by_name = sorted(DOCS, key=lambda d: d["id"])
    for kind, path in paths.items():
        src = open_source(path)
        expected = by_name if kind == "txt" else DOCS
        assert _triples(src) == [(i, d["id"], d["text"]) for i, d in enumerate(expected)], kind
        assert _triples(src) == _triples(src), kind  # iterating twice streams the same documents
        assert _triples(pickle.loads(pickle.dumps(src))) == _triples(src), kind  # small, picklable (tasks)
        assert src.name and src.description, kind
        json.dumps(src.fingerprint())  # goes into the manifest
    assert open_source(paths["jsonl"]).description == "JSONL file c.jsonl (field text)"
    assert "column text" in open_source(paths["parquet-folder"]).description


def test_the_shipped_corpus_streams_as_the_token_study_reads_it():
    corpus = load_corpus()
    assert _triples(open_source(SHIPPED_CORPUS)) == [(i, p.id, p.text) for i, p in enumerate(corpus)]


def test_text_column_ids_and_nulls(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _jsonl(tmp_path / "c.jsonl", [{"body": "a", "id": 7}, {"body": None}, {"body": "c", "id": None}])
    assert _triples(open_source(path, text_column="body")) == [(0, "7", "a"), (1, "1", ""), (2, "2", "c")]
    pq.write_table(pa.table({"body": ["x", None], "id": [1.5, 2.5]}), tmp_path / "f.parquet")  # float ids: not ids
    assert _triples(open_source(tmp_path / "f.parquet", text_column="body")) == [(0, "0", "x"), (1, "1", "")]


def test_dataset_dict_split_choice(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["t0", "t1"]}),
                               "test": datasets.Dataset.from_dict({"text": ["s0"]})})
    dd.save_to_disk(tmp_path / "dd")
    assert [d.text for d in open_source(tmp_path / "dd")] == ["t0", "t1"]
    assert [d.text for d in open_source(tmp_path / "dd", split="test")] == ["s0"]
    _one_line_error(lambda: open_source(tmp_path / "dd", split="dev"), r"no split 'dev'; its splits are train, test")
    datasets.DatasetDict({"a": dd["train"], "b": dd["test"]}).save_to_disk(tmp_path / "ab")
    _one_line_error(lambda: open_source(tmp_path / "ab"), r"has the splits a, b; choose one with --split")


def test_a_hub_dataset_by_name(monkeypatch):
    """hf:<name>:<config> goes to datasets.load_dataset (replaced here: the tests are offline)."""
    import datasets

    calls = []

    def fake_load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a", None], "id": [10, 11]}),
                                   "validation": datasets.Dataset.from_dict({"text": ["v"], "id": [12]})})
        return dd if split is None else dd[split]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    src = open_source("hf:someone/wiki:raw-v1")
    assert calls[0] == ("someone/wiki", "raw-v1", None)
    assert _triples(src) == [(0, "10", "a"), (1, "11", "")]
    assert (src.name, src.split) == ("wiki-raw-v1", "train")
    assert src.description == "Hugging Face dataset someone/wiki (raw-v1), split train (2 rows, column text)"
    assert src.fingerprint()["split"] == "train" and src.fingerprint()["name"] == "someone/wiki"
    assert _triples(pickle.loads(pickle.dumps(src))) == _triples(src)  # a worker reloads it by name and split
    assert calls[-1] == ("someone/wiki", "raw-v1", "train")
    assert [d.text for d in open_source("hf:someone/wiki", split="validation")] == ["v"]

    def unreachable(name, config=None, split=None):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    _one_line_error(lambda: open_source("hf:someone/wiki"),
                    r"^cannot load the dataset 'someone/wiki': Couldn't reach 'someone/wiki' on the Hub$")


def test_fingerprint_is_the_content(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    fa = open_source(_jsonl(a / "c.jsonl", DOCS)).fingerprint()
    assert fa == open_source(_jsonl(b / "c.jsonl", DOCS)).fingerprint()  # where it lies does not matter
    assert fa != open_source(_jsonl(b / "c.jsonl", DOCS[:3])).fingerprint()
    assert fa != open_source(a / "c.jsonl", text_column="id").fingerprint()
    import hashlib
    assert fa["sha256"] == hashlib.sha256(json.dumps(["c.jsonl", hashlib.sha256((a / "c.jsonl").read_bytes()).hexdigest()])
                                          .encode()).hexdigest()


def test_json_read_in_tiny_blocks_equals_json_load(tmp_path, monkeypatch):
    """The incremental JSON reader against the json module: blocks of 5 bytes cut numbers,
    strings, escapes and multi-byte characters everywhere."""
    monkeypatch.setattr(sources_mod, "BLOCK_BYTES", 5)
    rng = np.random.default_rng(3)
    docs = [{"text": "".join(rng.choice(list("ab ☕é\n\"\\\u2028")) for _ in range(int(rng.integers(0, 40)))),
             "id": int(rng.integers(-10**12, 10**12)), "extra": [1.5e300, None, True, {"x": "\ud83d\ude00"}]} for _ in range(60)]
    path = tmp_path / "c.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompts": docs, "meta": "m"}, indent=1).encode("utf-8"))
    assert _triples(open_source(path)) == [(i, str(d["id"]), d["text"]) for i, d in enumerate(docs)]


@pytest.mark.parametrize("content", ['[{"text": "a"}, {"text": "b"} {"text": "c"}]', '[{"text": "a"},\n {"text": "b",}]',
                                     '[{"text": "a"}] x', '[{"text": "a"}', '{"prompts": [], }', '{"prompts": [] "x": 1}',
                                     '[{"text": "a"},\n\n  {"text": tru}]'])
def test_broken_json_is_refused_where_the_json_module_says(tmp_path, content, monkeypatch):
    monkeypatch.setattr(sources_mod, "BLOCK_BYTES", 4)
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(json.JSONDecodeError) as ref:
        json.loads(content)

    def read_all():
        return list(open_source(path))

    message = _one_line_error(read_all, "is not valid JSON")
    assert f"line {ref.value.lineno}, column {ref.value.colno}" in message, (message, ref.value)


# ---------------------------------------------------------------- hostile input: the token study's refusals

def test_undecodable_bytes_name_file_and_line_as_the_token_study(tmp_path):
    good = json.dumps({"id": "a", "text": "fine"}).encode()
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n" + b'{"id": "b", "text": "caf\xe9"}\n')
    reference = _one_line_error(lambda: load_corpus(path), "line 2, byte 25 of the line: not UTF-8")
    assert _one_line_error(lambda: list(open_source(path)), "not UTF-8") == reference
    jpath = tmp_path / "c.json"
    jpath.write_bytes(b'[{"text": "ok"},\n {"text": "\xff"}]')
    reference = _one_line_error(lambda: load_corpus(jpath), r"c\.json, line 2, byte 12 of the line: not UTF-8")
    assert _one_line_error(lambda: list(open_source(jpath)), "not UTF-8") == reference
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"line one\nline \x80two")
    _one_line_error(lambda: list(open_source(folder)), r"a\.txt \(document 'a'\), line 2, byte 6 of the line: not UTF-8")


def test_a_lone_surrogate_is_refused_as_the_token_study(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n{"id": "broken", "text": "x \\ud800 y"}\n')
    reference = _one_line_error(lambda: load_corpus(path), "lone surrogate U\\+D800")
    assert _one_line_error(lambda: list(open_source(path)), "lone surrogate") == reference
    jpath = tmp_path / "c.json"
    jpath.write_text('[{"text": "ok"}, {"text": "\\udfff"}]')
    _one_line_error(lambda: list(open_source(jpath)), r"c\.json, document #2: field 'text' holds a lone surrogate U\+DFFF")
    pair = tmp_path / "pair.jsonl"
    pair.write_text('{"text": "\\ud83d\\ude00"}\n')  # a proper pair is a character
    assert [d.text for d in open_source(pair)] == ["\U0001f600"]


def test_jsonl_lines_end_at_newline_only(tmp_path):
    texts = ["one\u2028two", "three\u2029four", "five\x85six", "cr\r"]
    path = tmp_path / "c.jsonl"
    path.write_text("\r\n\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in texts), encoding="utf-8")
    assert [d.text for d in open_source(path)] == texts


def test_malformed_documents_name_their_line(tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", [{"text": "a"}, {"text": 3, "id": "three"}])
    _one_line_error(lambda: list(open_source(path)), r"c\.jsonl, line 2 \(id 'three'\): field 'text' must be a string, got int 3")
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "a"}, ["x"]])
    _one_line_error(lambda: list(open_source(path)), r"line 2: a document must be a JSON object")
    path = _jsonl(tmp_path / "e.jsonl", [{"text": "a"}, {"body": "b", "id": "q"}])
    _one_line_error(lambda: list(open_source(path)),
                    r"line 2 \(id 'q'\): the document has no 'text' field; its fields are \['body', 'id'\]")
    path = _jsonl(tmp_path / "f.jsonl", [{"text": "a", "id": [1]}])
    _one_line_error(lambda: open_source(path), r"field 'id' must be a string or an integer, got list")
    (tmp_path / "g.jsonl").write_text('{"text": "a"}\n{oops\n')
    _one_line_error(lambda: list(open_source(tmp_path / "g.jsonl")), r"g\.jsonl, line 2: not valid JSON")


# ---------------------------------------------------------------- errors before any work

def test_source_errors(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _one_line_error(lambda: open_source(tmp_path / "nope.jsonl"), r"no corpus at .*nope\.jsonl: pass a \.jsonl, \.json or \.parquet")
    (tmp_path / "c.csv").write_text("text\nx\n")
    _one_line_error(lambda: open_source(tmp_path / "c.csv"), r"unknown corpus format '\.csv'; pass a \.jsonl, \.json or \.parquet file")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(lambda: open_source(empty), r"holds no \.txt or \.parquet files")
    # a missing text column is found when the source is opened, listing the columns
    path = _jsonl(tmp_path / "c.jsonl", [{"body": "x", "title": "t"}] + [{"text": "y"}] * 3)
    _one_line_error(lambda: open_source(path), r"line 1: the document has no 'text' field; its fields are \['body', 'title'\]")
    (tmp_path / "c.json").write_text(json.dumps([{"body": "x"}]))
    _one_line_error(lambda: open_source(tmp_path / "c.json"), r"document #1: the document has no 'text' field")
    pq.write_table(pa.table({"body": ["x"], "n": [1]}), tmp_path / "c.parquet")
    _one_line_error(lambda: open_source(tmp_path / "c.parquet"), r"c\.parquet: no column 'text'; its columns are 'body', 'n'")
    _one_line_error(lambda: open_source(tmp_path / "c.parquet", text_column="n"), r"the column 'n' holds int64, not text")
    (tmp_path / "fake.parquet").write_text("not parquet")
    _one_line_error(lambda: open_source(tmp_path / "fake.parquet"), r"fake\.parquet is not a readable Parquet file")
    import datasets
    datasets.Dataset.from_dict({"body": ["x"]}).save_to_disk(tmp_path / "ds")
    _one_line_error(lambda: open_source(tmp_path / "ds"), r"no column 'text'; its columns are 'body'")
    _one_line_error(lambda: open_source(path, split="train"), r"--split applies to Hugging Face datasets only")
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    _one_line_error(lambda: open_source(folder, text_column="body"), r"--text-column does not apply to a folder of \.txt files")
    _one_line_error(lambda: open_source("hf:"), r"a Hugging Face dataset is hf:<name> or hf:<name>:<config>")
    # without the optional libraries: the extra to install
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now raises ImportError
    for spec in ("hf:wikitext:wikitext-103-raw-v1", tmp_path / "ds"):
        _one_line_error(lambda spec=spec: open_source(spec), r'needs the `datasets` library: pip install "gpt2-geometry\[corpus\]"')
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    _one_line_error(lambda: open_source(tmp_path / "c.parquet"), r'needs the pyarrow library: pip install "gpt2-geometry\[corpus\]"')


class _Untouchable:
    """A source that fails the test if anything reads it."""

    name, description = "untouchable", "untouchable"

    def __iter__(self):
        raise AssertionError("the source was read before the arguments were checked")


@pytest.mark.parametrize("kwargs, pattern", [
    ({"window": 2000}, r"--window 2000 is longer than the model's context of 1024 tokens; use at most 1024"),
    ({"window": 1}, r"--window must be at least 2 tokens"),
    ({"window": 2.5}, r"--window must be a whole number"),
    ({"window": 20, "remainder": "pad"}, r"--remainder must be drop or keep"),
    ({"window": 20, "max_sequences": 0}, r"--max-sequences must be a positive integer"),
    ({"window": 20, "seed": -1}, r"--seed must be a non-negative integer"),
])
def test_bad_arguments_are_refused_before_reading(tok, kwargs, pattern):
    _one_line_error(lambda: build_sequences(_Untouchable(), tok, n_ctx=1024, **kwargs), pattern)


def test_a_corpus_without_a_sequence(tmp_path, tok):
    path = _jsonl(tmp_path / "c.jsonl", [{"text": "Short."}, {"text": "Also short."}, {"text": ""}])
    _one_line_error(lambda: build_sequences(open_source(path), tok, window=20, n_ctx=1024),
                    r"^3 documents gave no window of 20 tokens \(JSONL file c\.jsonl \(field text\)\); "
                    r"use a shorter --window or --remainder keep$")
    assert len(build_sequences(open_source(path), tok, window=20, remainder="keep", n_ctx=1024)) == 2
    blank = _jsonl(tmp_path / "blank.jsonl", [{"text": ""}])
    _one_line_error(lambda: build_sequences(open_source(blank), tok, window=None, n_ctx=1024), r"^1 documents gave no sequence")
    (tmp_path / "none.jsonl").write_text("\n\n")
    _one_line_error(lambda: build_sequences(open_source(tmp_path / "none.jsonl"), tok, window=5, n_ctx=1024), r"holds no documents")


# ---------------------------------------------------------------- tokenizing and windows

def test_batch_encoding_equals_transformers_gpt2_tokenizer(gpt2_vocab_dir, tok, tmp_path):
    import shutil

    from transformers import GPT2TokenizerFast

    shutil.copy(gpt2_vocab_dir / "encoder.json", tmp_path / "vocab.json")  # the Hub's names for the same files
    shutil.copy(gpt2_vocab_dir / "vocab.bpe", tmp_path / "merges.txt")
    ref = GPT2TokenizerFast.from_pretrained(tmp_path)
    texts = [d["text"] for d in DOCS] + ["  leading spaces", "tabs\tand\r\nCRLF", "emoji 🧪🧪 and ﬁ ligature", "x" * 3000, "1234567"]
    got = encode_batch(tok, texts)
    assert all(g.dtype == np.int32 for g in got)
    assert [g.tolist() for g in got] == [ref(t)["input_ids"] for t in texts]
    assert [g.tolist() for g in got] == [tok.encode(t).tolist() for t in texts]


def _hand_corpus(vocab):
    """Texts whose tokens are read off the vocabulary: BPE never merges across a space, and each
    of these words is one token."""
    words = ["A", " b", " c", " d", " e", " f", " g"]
    ids = [vocab[w.replace(" ", "\u0120")] for w in words]  # GPT-2 writes a leading space as Ġ
    short = [vocab["h"], vocab["\u0120i"]]
    return ["".join(words), "h i", "", "".join(words)], ids, short


def test_windows_against_a_hand_computation(tmp_path, tok, vocab):
    texts, seven, two = _hand_corpus(vocab)
    src = open_source(_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in texts]))
    drop = build_sequences(src, tok, window=3, remainder="drop", n_ctx=1024)
    assert drop.ids.tolist() == [seven[0:3], seven[3:6]]
    assert (drop.lengths.tolist(), drop.document.tolist(), drop.start.tolist()) == ([3, 3], [0, 0], [0, 3])
    assert (drop.n_documents, drop.n_candidates, drop.n_duplicates) == (4, 4, 2)  # document 3 repeats document 0
    keep = build_sequences(src, tok, window=3, remainder="keep", n_ctx=1024)
    assert keep.ids.tolist() == [seven[0:3], seven[3:6], [seven[6], 0, 0], two + [0]]
    assert (keep.lengths.tolist(), keep.document.tolist(), keep.start.tolist()) == ([3, 3, 1, 2], [0, 0, 0, 1], [0, 3, 6, 0])
    assert (keep.n_candidates, keep.n_duplicates) == (7, 3)
    assert keep.ids.dtype == np.int32 and keep.lengths.dtype == np.int32 and keep.document.dtype == np.int64
    # no window: a document is one sequence; past the context it is cut at n_ctx, the rest as --remainder says
    whole = build_sequences(src, tok, window=None, remainder="drop", n_ctx=4)
    assert whole.ids.tolist() == [seven[0:4], two + [0, 0]] and whole.lengths.tolist() == [4, 2]
    whole = build_sequences(src, tok, window=None, remainder="keep", n_ctx=4)
    assert whole.ids.tolist() == [seven[0:4], seven[4:7] + [0], two + [0, 0]] and whole.start.tolist() == [0, 4, 0]
    wide = build_sequences(src, tok, window=None, n_ctx=1024)
    assert wide.ids.shape == (2, 7) and wide.lengths.tolist() == [7, 2]


def test_progress_reports_each_batch(tmp_path, tok, vocab):
    texts, _, _ = _hand_corpus(vocab)
    src = open_source(_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in texts] + [{"text": "h i"}]))
    calls = []
    build_sequences(src, tok, window=3, remainder="keep", n_ctx=1024, documents_per_batch=2, progress=lambda *a: calls.append(a))
    assert calls == [(2, 4), (4, 4), (5, 4)]  # (documents read, distinct sequences so far)


def test_duplicates_are_token_for_token_and_the_first_is_kept(tmp_path, tok, vocab):
    _, seven, _ = _hand_corpus(vocab)
    texts = ["A b A b A", "A b", "A b c", " A b"]  # " A" is another token than "A"
    src = open_source(_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in texts]))
    s = build_sequences(src, tok, window=2, remainder="keep", n_ctx=1024)
    a, b, c, sp_a = vocab["A"], vocab["\u0120b"], vocab["\u0120c"], vocab["\u0120A"]
    # candidates: doc0 [A b] [ A b] [ A]; doc1 [A b]; doc2 [A b] [ c]; doc3 [ A b]
    assert s.n_candidates == 7
    assert s.ids.tolist() == [[a, b], [sp_a, b], [sp_a, 0], [c, 0]]
    assert (s.document.tolist(), s.start.tolist()) == ([0, 0, 0, 2], [0, 2, 4, 2])
    assert s.n_duplicates == 3
    # a shorter sequence whose ids start another is not its duplicate
    s = build_sequences(open_source(_jsonl(tmp_path / "d.jsonl", [{"text": "A"}, {"text": "A b"}])), tok,
                        window=None, n_ctx=1024)
    assert s.lengths.tolist() == [1, 2] and s.n_duplicates == 0


def test_the_digest_table_agrees_with_a_python_set():
    """Growth, repeats within one batch, and colliding slots (the probing) against set()."""
    rng = np.random.default_rng(0)
    table = DigestSet(capacity=4)
    seen, batches = set(), [[rng.integers(0, 30, size=int(rng.integers(1, 4))).astype(np.int32) for _ in range(m)]
                            for m in (1, 7, 300, 2000, 0, 50)]
    for batch in batches:
        expected = []
        for p in batch:
            expected.append(p.tobytes() not in seen)
            seen.add(p.tobytes())
        assert table.add(batch).tolist() == expected
    assert table.count == len(seen) and table.count <= DigestSet.MAX_LOAD * table.table.shape[0]
    slots = np.zeros((8, 2), dtype=np.uint64)
    same_slot = np.array([[8, 1], [16, 2], [8, 1], [0, 3], [24, 4], [16, 2]], dtype=np.uint64)  # all hash to slot 0
    is_new = np.zeros(6, dtype=bool)
    assert _insert_digests(slots, same_slot, is_new) == 4
    assert is_new.tolist() == [True, True, False, True, True, False]


# ---------------------------------------------------------------- sampling

def _distinct_corpus(tmp_path: Path, vocab, n: int) -> Path:
    """n documents, each exactly one distinct window of 2 tokens."""
    words = [w for w in vocab if w.isalpha() and w.isascii()][:n]
    return _jsonl(tmp_path / f"distinct{n}.jsonl", [{"text": f"{w} x"} for w in words])


def test_the_sample_is_uniform_over_subsets(tmp_path, tok, vocab):
    """Algorithm R draws every k-subset with probability 1 / C(N, k): chi-square over the 10
    subsets of 2 of 5 from 2,400 seeds, and over each item's inclusion for 4 of 12."""
    src = open_source(_distinct_corpus(tmp_path, vocab, 5))
    runs = 2400
    counts = Counter(tuple(build_sequences(src, tok, window=2, max_sequences=2, seed=seed, n_ctx=1024).document.tolist())
                     for seed in range(runs))
    assert set(counts) == set(itertools.combinations(range(5), 2))
    expected = runs / 10
    chi2 = sum((counts[s] - expected) ** 2 / expected for s in itertools.combinations(range(5), 2))
    assert chi2 < 27.9, (chi2, counts)  # 9 degrees of freedom: p = 0.001
    src = open_source(_distinct_corpus(tmp_path, vocab, 12))
    inclusion = Counter()
    for seed in range(1200):
        inclusion.update(build_sequences(src, tok, window=2, max_sequences=4, seed=seed, n_ctx=1024, documents_per_batch=5)
                         .document.tolist())
    expected = 1200 * 4 / 12
    chi2 = sum((inclusion[i] - expected) ** 2 / expected for i in range(12))
    assert chi2 < 31.3, (chi2, inclusion)  # 11 degrees of freedom: p = 0.001


def test_the_sample_is_seeded_in_stream_order_and_complete_when_large_enough(tmp_path, tok, vocab):
    src = open_source(_distinct_corpus(tmp_path, vocab, 40))
    full = build_sequences(src, tok, window=2, n_ctx=1024)
    assert len(full) == 40
    one = build_sequences(src, tok, window=2, max_sequences=7, seed=5, n_ctx=1024)
    # the same seed: the same bytes, whatever the tokenizing batches; the document order kept
    for batch in (1, 3, 1000):
        again = build_sequences(src, tok, window=2, max_sequences=7, seed=5, n_ctx=1024, documents_per_batch=batch)
        assert again.sha256() == one.sha256()
    assert len(one) == 7 and np.all(np.diff(one.document) > 0)
    rows = {tuple(r) for r in full.ids.tolist()}
    assert all(tuple(r) in rows for r in one.ids.tolist())
    assert len({build_sequences(src, tok, window=2, max_sequences=7, seed=s, n_ctx=1024).sha256() for s in range(6)}) > 1
    for k in (40, 41, 1000):
        every = build_sequences(src, tok, window=2, max_sequences=k, seed=9, n_ctx=1024)
        assert every.sha256() == full.sha256()


def test_duplicates_are_removed_before_sampling(tmp_path, tok, vocab):
    """Each distinct sequence is equally likely, however often it repeats: 3 copies of one and
    1 of another, sample 1: each about half the time."""
    src = open_source(_jsonl(tmp_path / "c.jsonl", [{"text": "A b"}] * 3 + [{"text": "h i"}]))
    picks = Counter(int(build_sequences(src, tok, window=2, max_sequences=1, seed=s, n_ctx=1024).document[0]) for s in range(400))
    assert set(picks) == {0, 3} and 160 < picks[0] < 240, picks


# ---------------------------------------------------------------- streaming memory

def test_sources_stream_in_bounded_memory(tmp_path, monkeypatch):
    """Reading a corpus of over 5 MB keeps under 2 MB of Python objects alive at any time (a
    record batch of 1,024 Parquet rows is the largest)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setattr(sources_mod, "BLOCK_BYTES", 1 << 16)
    text = "a few words of text to fill the corpus up " * 10
    n = 12_000
    jsonl = tmp_path / "big.jsonl"
    with open(jsonl, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "text": f"{i} {text}"}) + "\n")
    big_json = tmp_path / "big.json"
    big_json.write_text(json.dumps([{"text": f"{i} {text}"} for i in range(n)]))
    letters = np.random.default_rng(0).integers(97, 123, size=(n, 450), dtype=np.uint8)  # incompressible text
    pq.write_table(pa.table({"text": [row.tobytes().decode() for row in letters]}), tmp_path / "big.parquet",
                   row_group_size=2048, compression="none", use_dictionary=False)
    for path in (jsonl, big_json, tmp_path / "big.parquet"):
        assert path.stat().st_size > 5e6
        src = open_source(path)
        tracemalloc.start()
        count = sum(1 for d in src if isinstance(d, Document))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == n and peak < 2e6, (path.name, peak)
