"""Zero-copy, read-only access to the tensors of a `.safetensors` file.

The `safetensors` package's NumPy loader copies every tensor out of its memory map, which would
hold the weights twice while loading. The format is simple and documented (an 8-byte
little-endian header length, a JSON header of dtype/shape/byte offsets, then the raw data), so we
read the header ourselves and hand out `np.memmap` views: the weights stay in the page cache,
shared with every process that maps the same file, and a float32 checkpoint run in float32 is
never copied at all.

The reader is as strict as the format (and as the `safetensors` library, which refuses the same
files; tests/test_hostile_gpt2np.py compares them): shapes and offsets are JSON integers in
[0, 2**64), the tensors tile the data section exactly (no overlap, alias, gap or trailing byte),
and no key appears twice (the library keeps the last of two tensors of one name; we refuse).
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
_MAX_HEADER_BYTES = 100_000_000  # the format's own limit (MAX_HEADER_SIZE in the reference reader)
_MAX_USIZE = 2**64 - 1  # shapes, offsets and sizes in bits are 64-bit unsigned integers


class _NotAnInteger(str):
    """A JSON number that no shape or offset may hold (a fraction, an exponent, a negative
    number, NaN or Infinity), kept as its text so that the error can quote it."""

    def __repr__(self) -> str:
        return str(self)


class _DuplicateKey(ValueError):
    pass


def _integer(text: str):
    return _NotAnInteger(text) if text.startswith("-") else int(text)  # "-0" is not a valid size either


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _parse_header_json(path: Path, raw: bytes) -> dict:
    try:
        header = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_object_without_duplicates,
            parse_int=_integer, parse_float=_NotAnInteger, parse_constant=_NotAnInteger,
        )
    except _DuplicateKey as err:
        raise WeightsError(
            f"{path}: its header names {err.args[0]!r} twice; a safetensors header holds each key once"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsError(f"{path} is not a safetensors file: its header is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path} is not a safetensors file: its header is not a JSON object")
    return header


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
    header = _parse_header_json(path, raw)
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise WeightsError(f"{path}: its __metadata__ must map names to strings, got {metadata!r}")
    return header, 8 + header_len


def _is_size(value) -> bool:
    """A JSON integer in [0, 2**64). (bool is a subclass of int: true is not a size.)"""
    return type(value) is int and 0 <= value <= _MAX_USIZE


def _check_entry(path: Path, name: str, entry) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """(dtype, shape, begin, end) of one header entry, each checked on its own."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise WeightsError(f"{where}: its header entry must be an object with dtype, shape and data_offsets, got {entry!r}")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(code, str) or code not in DTYPES:
        raise WeightsError(f"{where} has dtype {code!r}, which gpt2np does not read (it reads {', '.join(DTYPES)})")
    if not isinstance(shape, list) or not all(_is_size(s) for s in shape):
        raise WeightsError(f"{where}: its shape must be a list of non-negative integers, got {shape!r}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_size(o) for o in offsets):
        raise WeightsError(f"{where}: its data_offsets must be two non-negative integers [begin, end], got {offsets!r}")
    begin, end = offsets
    if end < begin:
        raise WeightsError(f"{where}: its data_offsets [{begin}, {end}] end before they begin")
    if math.prod(shape) * 8 * DTYPES[code].itemsize > _MAX_USIZE:  # its size in bits, as the format counts
        raise WeightsError(f"{where}: its shape {shape} of {code} overflows: no file can hold that many bytes")
    nbytes = math.prod(shape) * DTYPES[code].itemsize
    if end - begin != nbytes:
        raise WeightsError(f"{where} has {end - begin} bytes for shape {tuple(shape)} of {code}, which needs {nbytes}")
    return DTYPES[code], tuple(shape), begin, end


def _check_layout(path: Path, spans: list[tuple[int, int, str]], data_bytes: int) -> None:
    """The tensors must tile the data section: taken in the order of their offsets, each begins
    where the one before ends, and the last ends where the file does."""
    covered, previous = 0, None
    for begin, end, name in sorted(spans):
        if begin < covered:
            raise WeightsError(
                f"{path}: tensors {previous!r} and {name!r} overlap (bytes {begin}..{covered} of the "
                "data section belong to both); each tensor must have bytes of its own"
            )
        if begin > covered:
            raise WeightsError(
                f"{path}: bytes {covered}..{begin} of the data section, before tensor {name!r}, "
                "belong to no tensor; the tensors must follow one another without gaps"
            )
        covered, previous = end, name
    if covered > data_bytes:
        last = max(spans)[2]
        raise WeightsError(
            f"{path} is truncated: tensor {last!r} ends at byte {covered} of the data section, "
            f"which holds only {data_bytes} bytes. Download the file again."
        )
    if covered < data_bytes:
        raise WeightsError(
            f"{path}: {data_bytes - covered} trailing bytes follow the last tensor; a safetensors "
            "file ends where its last tensor does"
        )


def open_safetensors(path: str | Path) -> dict[str, tuple[str, np.ndarray]]:
    """Map every tensor of `path`: name -> (safetensors dtype code, read-only array view).

    BF16 tensors come back as their raw uint16 bits; see `to_float`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    header, data_start = read_header(path)
    data_bytes = path.stat().st_size - data_start
    entries = {name: _check_entry(path, name, entry) for name, entry in header.items()}
    _check_layout(path, [(begin, end, name) for name, (_, _, begin, end) in entries.items()], data_bytes)
    if data_bytes == 0:  # only empty tensors (or none): there is nothing to map
        mapped = np.empty(0, np.uint8)
        mapped.flags.writeable = False
    else:
        mapped = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start, shape=(data_bytes,))
    tensors = {}
    for name, (dtype, shape, begin, end) in entries.items():
        raw = mapped[begin:end]
        if (data_start + begin) % dtype.itemsize:
            # An unaligned view would push NumPy off its BLAS path; copy this one tensor instead.
            raw = raw.copy()
        tensors[name] = (header[name]["dtype"], raw.view(dtype).reshape(shape))
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
