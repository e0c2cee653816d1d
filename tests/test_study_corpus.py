"""The shipped corpus and the corpus loader: formats, validation, and the context limit with the
real GPT-2 vocabulary."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

import gpt2np
from geostudy import SHIPPED_CORPUS, StudyError, load_corpus
from geostudy.corpus import tokenize_corpus

GENRES = ["word_list", "poem", "instructions", "prose_50", "prose_300", "prose_750"]
TOPICS = ["nature", "astronomy", "mathematics", "psychology", "music"]


def test_shipped_corpus_is_six_genres_by_five_topics():
    corpus = load_corpus()
    assert len(corpus) == 30
    assert Counter((p.genre, p.topic) for p in corpus) == Counter({(g, t): 1 for g in GENRES for t in TOPICS})
    assert len(set(corpus.ids)) == 30
    raw = json.loads(SHIPPED_CORPUS.read_text())
    assert all(set(p) >= {"id", "genre", "topic", "text"} for p in raw["prompts"])


def test_shipped_prose_lengths_match_their_genre():
    words = {}
    for p in load_corpus():
        words.setdefault(p.genre, []).append(len(p.text.split()))
    assert all(35 <= w <= 70 for w in words["prose_50"]), words["prose_50"]
    assert all(250 <= w <= 350 for w in words["prose_300"]), words["prose_300"]
    assert all(700 <= w <= 800 for w in words["prose_750"]), words["prose_750"]


def test_every_shipped_prompt_fits_gpt2_context_with_the_real_vocabulary(gpt2_vocab_dir):
    tok = gpt2np.load_tokenizer(gpt2_vocab_dir)
    corpus = load_corpus()
    ids = tokenize_corpus(corpus, tok, n_ctx=1024)
    lengths = [len(t) for t in ids]
    assert max(lengths) <= 1024
    assert min(lengths) > 20
    assert all(t.dtype == np.int64 for t in ids)


def test_json_list_jsonl_and_txt_folder(tmp_path):
    prompts = [{"id": "a", "genre": "g", "topic": "t", "text": "One text."}, {"id": "b", "text": "Two."}]
    (tmp_path / "list.json").write_text(json.dumps(prompts))
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(p) for p in prompts) + "\n\n")
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "b.txt").write_text("Two.", encoding="utf-8")
    (folder / "a.txt").write_text("One text.", encoding="utf-8")
    (folder / "notes.md").write_text("ignored")
    for corpus in (load_corpus(tmp_path / "list.json"), load_corpus(tmp_path / "c.jsonl")):
        assert corpus.ids == ["a", "b"]
        assert (corpus[0].genre, corpus[0].topic, corpus[1].genre) == ("g", "t", "")
    from_folder = load_corpus(folder)
    assert from_folder.ids == ["a", "b"] and from_folder[0].text == "One text."
    # the hash depends on content only, not on the file format
    assert load_corpus(tmp_path / "list.json").sha256() == load_corpus(tmp_path / "c.jsonl").sha256()


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"texts": []}', "'prompts'"),
        ('{"prompts": []}', "holds no prompts"),
        ('[{"id": "a"}]', "no 'text'"),
        ('[{"id": "a", "text": "   "}]', "text is empty"),
        ('[{"id": "a", "text": 3}]', "must be a string"),
        ('[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]', "more than once"),
        ('[{"id": "a/b", "text": "x"}]', "ids name files"),
        ('[{"id": "pooled", "text": "x"}]', "reserved"),
        ('["just a string"]', "JSON object"),
    ],
)
def test_malformed_corpora_are_refused_with_a_clear_message(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(StudyError, match=message):
        load_corpus(path)


def test_missing_corpus_and_unknown_format(tmp_path):
    with pytest.raises(StudyError, match="no corpus at"):
        load_corpus(tmp_path / "nope.json")
    (tmp_path / "c.csv").write_text("id,text\n")
    with pytest.raises(StudyError, match="unknown corpus format"):
        load_corpus(tmp_path / "c.csv")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StudyError, match="no .txt files"):
        load_corpus(empty)
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "text": "x"}\n{oops\n')
    with pytest.raises(StudyError, match="line 2"):
        load_corpus(tmp_path / "bad.jsonl")


def test_too_long_and_empty_token_sequences_are_named(gpt2_vocab_dir, tmp_path):
    tok = gpt2np.load_tokenizer(gpt2_vocab_dir)
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"id": "long", "text": "word " * 1100}, {"id": "ok", "text": "Fine."}]))
    with pytest.raises(StudyError, match=r"long: \d+ tokens, more than the model's context of 1024"):
        tokenize_corpus(load_corpus(path), tok, 1024)
