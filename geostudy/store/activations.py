"""The activation store: one safetensors file per prompt, written once, read by the analyses.

The file holds one tensor per site under its gpt2np / TransformerLens name, in the shape gpt2np
gives it (one row per token, every position kept: dropping positions is the analyses' business),
the prompt's token ids as ``token_ids`` (int64), and, for the focus prompt, the attention pattern
of one block (``blocks.N.attn.hook_pattern``, (n_head, T, T)). Its header metadata records the
prompt id. Files are written atomically (see geostudy/rundir/fsio.py).

The files are written here, not by safetensors' save_file, because the library writes the
header's metadata in a per-process random order (a Rust HashMap): the same prompt gave
different bytes in different runs. `write_safetensors` lays the file out exactly as the library
does (tensors by dtype, widest first, then by name; the header JSON compact and padded with
spaces to 8 bytes), with the metadata keys sorted, and hashes the bytes while writing them (the
run's integrity markers, see geostudy/rundir/integrity.py). Its output is byte-identical to the
library's when there is at most one metadata key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from ..errors import StudyError
from ..rundir.fsio import atomic_write_with
from ..rundir.integrity import Checksum
from ..sites import as_cloud

TOKEN_IDS = "token_ids"

# safetensors' dtype names, in the library's order (its Dtype enum): tensors are laid out from
# the last of these to the first, so every tensor starts at a multiple of its item size.
_DTYPES = {
    np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8",
    np.dtype(np.int16): "I16", np.dtype(np.uint16): "U16", np.dtype(np.float16): "F16",
    np.dtype(np.int32): "I32", np.dtype(np.uint32): "U32", np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64", np.dtype(np.int64): "I64", np.dtype(np.uint64): "U64",
}
_DTYPE_RANK = {name: rank for rank, name in enumerate(_DTYPES.values())}


class ActivationFileError(StudyError):
    """A saved activation file that cannot be read (damaged after the run checked it)."""


def pattern_name(block: int) -> str:
    return f"blocks.{block}.attn.hook_pattern"


def _little_endian(a: np.ndarray) -> np.ndarray:
    if a.dtype.newbyteorder("=") not in _DTYPES:
        raise ValueError(f"safetensors cannot hold a {a.dtype} tensor")
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))


def safetensors_layout(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None) -> tuple[bytes, list[str]]:
    """(the 8-byte length + header, the tensor names in file order) of a safetensors file."""
    order = sorted(tensors, key=lambda n: (-_DTYPE_RANK[_DTYPES[tensors[n].dtype.newbyteorder("=")]], n))
    header: dict = {}
    if metadata:
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    offset = 0
    for name in order:
        a = tensors[name]
        header[name] = {"dtype": _DTYPES[a.dtype.newbyteorder("=")], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    return len(text).to_bytes(8, "little") + text, order


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Checksum:
    """Write a safetensors file (not atomically: see save_activations) and return its checksum."""
    tensors = {str(n): _little_endian(np.asarray(a)) for n, a in tensors.items()}
    head, order = safetensors_layout(tensors, metadata)
    h, size = hashlib.sha256(head), len(head)
    with open(path, "wb") as fh:
        fh.write(head)
        for name in order:
            data = memoryview(tensors[name].reshape(-1).view(np.uint8))  # its own bytes, no copy
            h.update(data)
            fh.write(data)
            size += data.nbytes
    return Checksum(size, h.hexdigest())


def save_activations(path: Path, tensors: dict[str, np.ndarray], ids: np.ndarray, metadata: dict[str, str]) -> Checksum:
    """Write one prompt's activation file atomically; returns its checksum."""
    payload = dict(tensors)
    payload[TOKEN_IDS] = np.asarray(ids, dtype=np.int64)
    meta = {str(k): str(v) for k, v in metadata.items()}
    return atomic_write_with(Path(path), lambda tmp: write_safetensors(tmp, payload, meta))


def load_tensor(path: Path, name: str) -> np.ndarray:
    try:
        with safe_open(str(path), framework="numpy") as f:
            return f.get_tensor(name)
    except (SafetensorError, OSError) as err:
        raise ActivationFileError(
            f"the activation file {path} cannot be read ({err}); it was damaged after the run "
            "checked it: run the same command again to redo that prompt"
        ) from None


def load_cloud(path: Path, site: str, positions: np.ndarray | None = None) -> np.ndarray:
    """One site of one prompt as a (N, width) token cloud, restricted to `positions`."""
    cloud = as_cloud(load_tensor(path, site))
    return cloud if positions is None else cloud[positions]


def load_clouds(paths: list[Path], site: str, positions: list[np.ndarray]) -> list[np.ndarray]:
    """One site of several prompts, each (N_i, width) restricted to its `positions`, in the
    order given (the pooled corpus is their concatenation)."""
    return [load_cloud(path, site, kept) for path, kept in zip(paths, positions)]
