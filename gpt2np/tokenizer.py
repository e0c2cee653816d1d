"""GPT-2's byte-level BPE tokenizer, through Hugging Face `tokenizers`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ModelNotFoundError
from .hub import HubRepo, looks_like_path, repo_id

END_OF_TEXT = "<|endoftext|>"


class Tokenizer:
    """encode / decode text, and readable token strings for plot labels."""

    def __init__(self, backend, source: str | None = None):
        self._tok = backend
        self.source = source
        self.eot_id = backend.token_to_id(END_OF_TEXT)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of `text` (no BOS is added, as in GPT-2); `<|endoftext|>` is one token."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        return np.asarray(self._tok.encode(text).ids, dtype=np.int64)

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in np.asarray(ids).ravel()], skip_special_tokens=False)

    def token_strings(self, ids) -> list[str]:
        """Each token's own text, for labels: the byte-level 'Ġ' is a plain space, and a token
        that is only part of a multi-byte character shows as '�'."""
        return [self._tok.decode([int(i)], skip_special_tokens=False) for i in np.asarray(ids).ravel()]

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, source={self.source!r})"


def _from_vocab_and_merges(vocab: Path, merges: Path):
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, pre_tokenizers

    backend = Backend(models.BPE.from_file(str(vocab), str(merges)))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([END_OF_TEXT])
    return backend


def _load_backend(tokenizer_json: Path | None, vocab: Path | None, merges: Path | None):
    from tokenizers import Tokenizer as Backend

    try:
        if tokenizer_json is not None:
            return Backend.from_file(str(tokenizer_json))
        return _from_vocab_and_merges(vocab, merges)
    except Exception as err:  # tokenizers raises a bare Exception on malformed files
        which = tokenizer_json or f"{vocab} + {merges}"
        raise ValueError(f"could not read the tokenizer from {which}: {err}") from None


def load_tokenizer(source: str | Path = "gpt2", revision: str | None = None, cache_dir: str | None = None) -> Tokenizer:
    """Load a GPT-2 tokenizer from a Hub name, a folder, a tokenizer.json file, or a folder with
    vocab.json + merges.txt (GPT-2's names; encoder.json + vocab.bpe, OpenAI's, work too)."""
    source_str = str(source)
    if isinstance(source, Path) or looks_like_path(source_str):
        path = Path(source_str).expanduser()
        if path.is_file() and path.suffix == ".json":
            return Tokenizer(_load_backend(path, None, None), source_str)
        if path.is_file():  # e.g. model.safetensors: the tokenizer files sit beside it
            path = path.parent
        if not path.is_dir():
            raise ModelNotFoundError(f"no such file or folder: {path}")
        if (path / "tokenizer.json").is_file():
            return Tokenizer(_load_backend(path / "tokenizer.json", None, None), source_str)
        for vocab, merges in (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")):
            if (path / vocab).is_file() and (path / merges).is_file():
                return Tokenizer(_load_backend(None, path / vocab, path / merges), source_str)
        raise ModelNotFoundError(
            f"{path} holds no tokenizer: expected tokenizer.json, or vocab.json and merges.txt"
        )
    hub = HubRepo(repo_id(source_str), revision, cache_dir)
    tokenizer_json = hub.file("tokenizer.json", required=False)
    if tokenizer_json is not None:
        return Tokenizer(_load_backend(tokenizer_json, None, None), source_str)
    vocab = hub.file("vocab.json")
    merges = hub.file("merges.txt")
    return Tokenizer(_load_backend(None, vocab, merges), source_str)
