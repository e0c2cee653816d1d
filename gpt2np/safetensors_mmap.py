"""Zero-copy, read-only access to the tensors of a `.safetensors` file.

The `safetensors` package's NumPy loader copies every tensor out of its memory map, which would
hold the weights twice while loading. The format is simple and documented (an 8-byte
little-endian header length, a JSON header of dtype/shape/byte offsets, then the raw data), so we
read the header ourselves and hand out `np.memmap` views: the weights stay in the page cache,
shared with every process that maps the same file, and a float32 checkpoint run in float32 is
never copied at all.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

from .errors import WeightsError

# safetensors dtype codes. BF16 has no NumPy dtype: it is read as uint16 and widened on request.
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_MAX_HEADER_BYTES = 100 * 2**20  # the format's own limit


def read_header(path: Path) -> tuple[dict, int]:
    """Return (header dict without __metadata__, byte offset where the data starts)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise WeightsError(f"{path} is not a safetensors file: it is only {size} bytes long")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(_MAX_HEADER_BYTES, size - 8):
            raise WeightsError(
                f"{path} is not a safetensors file (or is truncated): its first 8 bytes announce "
                f"a {header_len}-byte header in a {size}-byte file"
            )
        raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsError(f"{path} is not a safetensors file: its header is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path} is not a safetensors file: its header is not a JSON object")
    header.pop("__metadata__", None)
    return header, 8 + header_len


def _check_entry(path: Path, name: str, entry, data_bytes: int) -> tuple[np.dtype, tuple, int, int]:
    try:
        dtype = DTYPES[entry["dtype"]]
        shape = tuple(int(s) for s in entry["shape"])
        begin, end = (int(o) for o in entry["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise WeightsError(f"{path}: header entry for tensor {name!r} is malformed or has an unsupported dtype: {entry!r}") from None
    if any(s < 0 for s in shape) or not 0 <= begin <= end:
        raise WeightsError(f"{path}: tensor {name!r} has an invalid shape or byte range: {entry!r}")
    if end > data_bytes:
        raise WeightsError(
            f"{path} is truncated: tensor {name!r} ends at byte {end} of the data section, "
            f"which holds only {data_bytes} bytes. Download the file again."
        )
    if end - begin != math.prod(shape) * dtype.itemsize:
        raise WeightsError(f"{path}: tensor {name!r} has {end - begin} bytes for shape {shape} of {entry['dtype']}")
    return dtype, shape, begin, end


def open_safetensors(path: str | Path) -> dict[str, tuple[str, np.ndarray]]:
    """Map every tensor of `path`: name -> (safetensors dtype code, read-only array view).

    BF16 tensors come back as their raw uint16 bits; see `to_float`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    header, data_start = read_header(path)
    data_bytes = path.stat().st_size - data_start
    if data_bytes == 0:
        return {}
    mapped = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start, shape=(data_bytes,))
    tensors = {}
    for name, entry in header.items():
        dtype, shape, begin, end = _check_entry(path, name, entry, data_bytes)
        raw = mapped[begin:end]
        if (data_start + begin) % dtype.itemsize:
            # An unaligned view would push NumPy off its BLAS path; copy this one tensor instead.
            raw = raw.copy()
        tensors[name] = (entry["dtype"], raw.view(dtype).reshape(shape))
    return tensors


def to_float(code: str, array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Return `array` as floating `dtype`, without a copy when it already is."""
    if code == "BF16":
        # bfloat16 is the top half of a float32: shift the bits into place.
        array = (array.astype(np.uint32) << 16).view(np.float32)
    elif array.dtype.kind != "f":
        raise WeightsError(f"expected a floating-point tensor, got {code}")
    if array.dtype == dtype:
        return array
    return array.astype(dtype)
