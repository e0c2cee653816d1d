"""Run the model on one prompt, keep the chosen sites, and save them as one safetensors file.

The file holds one tensor per site under its gpt2np / TransformerLens name, in the shape gpt2np
gives it (one row per token, every position kept: dropping positions is the analyses' business),
the prompt's token ids as ``token_ids`` (int64), and, for the focus prompt, the attention pattern
of one block (``blocks.N.attn.hook_pattern``, (n_head, T, T)). Its header metadata records the
prompt id. Files are written atomically (see fsio).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from .fsio import atomic_write_with
from .sites import as_cloud

TOKEN_IDS = "token_ids"


def pattern_name(block: int) -> str:
    return f"blocks.{block}.attn.hook_pattern"


def run_prompt(model, ids: np.ndarray, names: list[str]):
    """(logits (T, V), cache) with exactly the tensors `names`."""
    return model.run_with_cache(ids, names=list(names))


def save_activations(path: Path, tensors: dict[str, np.ndarray], ids: np.ndarray, metadata: dict[str, str]) -> None:
    payload = {name: np.ascontiguousarray(a) for name, a in tensors.items()}
    payload[TOKEN_IDS] = np.ascontiguousarray(ids, dtype=np.int64)
    meta = {str(k): str(v) for k, v in metadata.items()}
    atomic_write_with(Path(path), lambda tmp: save_file(payload, str(tmp), metadata=meta))


def load_tensor(path: Path, name: str) -> np.ndarray:
    with safe_open(str(path), framework="numpy") as f:
        return f.get_tensor(name)


def load_cloud(path: Path, site: str, positions: np.ndarray | None = None) -> np.ndarray:
    """One site of one prompt as a (N, width) token cloud, restricted to `positions`."""
    cloud = as_cloud(load_tensor(path, site))
    return cloud if positions is None else cloud[positions]


def tensor_names(path: Path) -> list[str]:
    with safe_open(str(path), framework="numpy") as f:
        return list(f.keys())
