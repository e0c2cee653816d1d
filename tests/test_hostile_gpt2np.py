"""Hostile inputs to gpt2np, one after another: a Hub that never answers, malformed safetensors
files, malformed config.json fields and hooks that return the wrong kind of array. Each must end
in gpt2np's own clear error (naming what is wrong and where), never a hang, a bare traceback from
deep inside, or a silently wrong model."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from hf_models import SMALL_OTHER, build_reference
from safetensors import SafetensorError
from safetensors.numpy import load_file

import gpt2np
from gpt2np.safetensors_mmap import open_safetensors

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    return build_reference(SMALL_OTHER, tmp_path_factory.mktemp("hostile"))


# -- 1. a Hub that accepts the connection and never answers (captive portal, broken proxy) ------


@contextlib.contextmanager
def _loopback_server(answer):
    """A TCP server on 127.0.0.1; `answer(connection)` runs on each accepted connection, in a
    thread of its own. Yields the server's http:// address; every socket is closed on exit."""
    server = socket.create_server(("127.0.0.1", 0))
    connections: list[socket.socket] = []
    stop = threading.Event()

    server.settimeout(0.1)  # accept() wakes up to see `stop` (closing the socket would not wake it)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:  # the server was closed
                return
            conn.settimeout(None)
            connections.append(conn)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        server.close()
        for conn in connections:
            conn.close()


def _never_answer(conn: socket.socket) -> None:
    """Keep the connection open and say nothing (the socket is closed when the test ends)."""


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _answer_metadata_then_stall(conn: socket.socket) -> None:
    """Answer a HEAD as the Hub does (commit, ETag, size); a GET gets its headers and 3 bytes of
    the promised 1,000, and then nothing."""
    try:
        while True:
            request = _read_request(conn)
            if not request:
                return
            if request.startswith(b"HEAD"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Repo-Commit: " + b"a" * 40 + b"\r\nETag: \"" + b"b" * 64
                             + b"\"\r\nContent-Length: 1000\r\n\r\n")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc")
                return
    except OSError:
        return


_LOAD_GPT2 = """
    import time, gpt2np
    start = time.monotonic()
    try:
        gpt2np.load_model("gpt2")
    except gpt2np.ModelNotFoundError as err:
        print("ERROR:", err)
    print("SECONDS", time.monotonic() - start)
"""


def _load_gpt2_from(endpoint: str, hf_home: Path, **env: str) -> tuple[str, float]:
    """load_model("gpt2") in a fresh interpreter (huggingface_hub reads HF_ENDPOINT and its
    timeouts once, at import) with an empty cache. Returns (its output, seconds load_model took)."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("HF_HUB_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    full_env = {**clean, "PYTHONPATH": str(REPO_ROOT), "HF_HOME": str(hf_home), "HF_ENDPOINT": endpoint,
                "NO_PROXY": "127.0.0.1", **env}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_LOAD_GPT2)], env=full_env,
                          capture_output=True, text=True, timeout=45)
    assert "SECONDS" in proc.stdout, proc.stderr[-3000:]
    return proc.stdout, float(proc.stdout.split("SECONDS")[1])


def test_a_hub_that_never_answers_fails_within_15_s_with_the_offline_message(tmp_path):
    with _loopback_server(_never_answer) as endpoint:
        out, seconds = _load_gpt2_from(endpoint, tmp_path / "hf")
    assert "not in the local Hugging Face cache" in out and "pass a local folder" in out, out
    assert seconds < 15, out


def test_a_hub_that_never_answers_waits_as_long_as_the_users_hf_hub_etag_timeout(tmp_path):
    with _loopback_server(_never_answer) as endpoint:
        out, seconds = _load_gpt2_from(endpoint, tmp_path / "hf", HF_HUB_ETAG_TIMEOUT="1")
    assert "not in the local Hugging Face cache" in out, out
    assert 1 <= seconds < 6, out  # the user's 1 s, not the default 10 s


def test_a_download_that_stalls_is_a_clear_error_after_the_users_hf_hub_download_timeout(tmp_path):
    with _loopback_server(_answer_metadata_then_stall) as endpoint:
        out, seconds = _load_gpt2_from(endpoint, tmp_path / "hf", HF_HUB_DOWNLOAD_TIMEOUT="1")
    assert "ERROR: downloading model.safetensors of 'openai-community/gpt2' failed" in out, out
    assert "HF_HUB_DOWNLOAD_TIMEOUT" in out and "pass a local folder" in out, out


# -- 2. malformed safetensors files, against the safetensors library's own reader ---------------

F32 = np.arange(4, dtype=np.float32).tobytes()  # 16 bytes: one float32 tensor of shape (4,)


def _tensor(shape, offsets, dtype="F32") -> str:
    return json.dumps({"dtype": dtype, "shape": shape, "data_offsets": offsets})


def _write(path: Path, header: str, data: bytes) -> Path:
    raw = header.encode("utf-8")
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _header(*entries: tuple[str, str]) -> str:
    """Header text from (key, entry text) pairs, which may repeat a key (json.dumps would not)."""
    return "{" + ", ".join(f'"{key}": {text}' for key, text in entries) + "}"


def _raw(shape: str, offsets: str = "[0, 16]", dtype: str = '"F32"') -> str:
    """One tensor entry, its shape and offsets written as JSON text: 6.7, Infinity, true, ..."""
    return f'{{"dtype": {dtype}, "shape": {shape}, "data_offsets": {offsets}}}'


A4 = ("a", _tensor([4], [0, 16]))  # the one tensor F32 holds, correctly described

# (header text, data section, what our error must say).
MALFORMED = {
    "aliased offsets": (_header(A4, ("b", _tensor([4], [0, 16]))), F32, "'a' and 'b' overlap"),
    "overlapping offsets": (_header(("a", _tensor([3], [0, 12])), ("b", _tensor([2], [8, 16]))), F32, "'a' and 'b' overlap"),
    "gap between tensors": (_header(("a", _tensor([1], [0, 4])), ("b", _tensor([2], [8, 16]))), F32, "bytes 4..8 .* belong to no tensor"),
    "gap before the first tensor": (_header(("a", _tensor([3], [4, 16]))), F32, "bytes 0..4 .* belong to no tensor"),
    "trailing bytes": (_header(("a", _tensor([3], [0, 12]))), F32, "4 trailing bytes"),
    "offsets that end before they begin": (_header(("a", _tensor([4], [16, 0]))), F32, "end before they begin"),
    "size that disagrees with the shape": (_header(("a", _tensor([3], [0, 16]))), F32, "16 bytes for shape \\(3,\\)"),
    "shape 6.7": (_header(("a", _raw("[6.7]"))), F32, "shape must be a list of non-negative integers, got \\[6.7\\]"),
    "shape 4.0": (_header(("a", _raw("[4.0]"))), F32, "non-negative integers, got \\[4.0\\]"),
    "shape 4e0": (_header(("a", _raw("[4e0]"))), F32, "non-negative integers, got \\[4e0\\]"),
    "shape true": (_header(("a", _raw("[true]", "[0, 4]"))), F32[:4], "non-negative integers, got \\[True\\]"),
    'shape "4"': (_header(("a", _raw('["4"]'))), F32, "non-negative integers"),
    "shape -4": (_header(("a", _raw("[-4]"))), F32, "non-negative integers, got \\[-4\\]"),
    "shape Infinity": (_header(("a", _raw("[Infinity]"))), F32, "got \\[Infinity\\]"),
    "shape 1e400": (_header(("a", _raw("[1e400]"))), F32, "got \\[1e400\\]"),
    "shape 2**64": (_header(("a", _raw(f"[{2**64}]"))), F32, "non-negative integers"),
    "offset Infinity": (_header(("a", _raw("[4]", "[0, Infinity]"))), F32, "data_offsets must be two non-negative integers"),
    "offset NaN": (_header(("a", _raw("[4]", "[NaN, 16]"))), F32, "data_offsets"),
    "offset -0": (_header(("a", _raw("[4]", "[-0, 16]"))), F32, "data_offsets"),
    'offset "0"': (_header(("a", _raw("[4]", '["0", 16]'))), F32, "data_offsets"),
    "three offsets": (_header(("a", _raw("[4]", "[0, 16, 16]"))), F32, "data_offsets"),
    "byte size that overflows": (_header(("a", _tensor([2**32, 2**32], [0, 16]))), F32, "overflows"),
    "byte size that overflows in bits": (_header(("a", _tensor([2**62], [0, 16]))), F32, "overflows"),
    "a field twice in one tensor": (_header(("a", '{"dtype": "F32", "dtype": "I32", "shape": [4], "data_offsets": [0, 16]}')), F32,
                                    "names 'dtype' twice"),
    "__metadata__ twice": (_header(("__metadata__", "{}"), ("__metadata__", "{}"), A4), F32, "names '__metadata__' twice"),
    "__metadata__ that is not strings": (_header(("__metadata__", '{"x": 1}'), A4), F32, "__metadata__ must map names to strings"),
    "a tensor entry that is not an object": (_header(("a", "5")), F32, "must be an object"),
    "a header that is a list": ("[]", F32, "not a JSON object"),
    "a byte-order mark": ("\ufeff" + _header(A4), F32, "not JSON"),
    "ends where its data should start": (_header(A4), b"", "truncated: tensor 'a' ends at byte 16"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_safetensors_file_is_refused_like_the_library_refuses_it(tmp_path, case):
    header, data, message = MALFORMED[case]
    path = _write(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(SafetensorError):
        load_file(str(path))
    with pytest.raises(gpt2np.WeightsError, match=message) as err:
        open_safetensors(path)
    assert str(path) in str(err.value)


def test_two_tensors_of_one_name_are_refused_where_the_library_keeps_the_last(tmp_path):
    # safetensors 0.8 reads this file as {'a': int32 (2, 2)}: the float32 'a' is silently dropped.
    header = _header(A4, ("a", _tensor([2, 2], [0, 16], "I32")))
    path = _write(tmp_path / "twice.safetensors", header, F32)
    with pytest.raises(gpt2np.WeightsError, match="names 'a' twice"):
        open_safetensors(path)


def test_infinity_in_a_shape_is_the_loaders_error_naming_file_and_tensor(ref, tmp_path):
    """A whole GPT-2 file whose ln_f.bias shape says Infinity: not a bare OverflowError."""
    tensors = load_file(str(ref.official_file))
    header, data = {}, b""
    for name, array in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [len(data), len(data) + array.nbytes]}
        data += array.tobytes()
    text = json.dumps(header).replace('"ln_f.bias": {"dtype": "F32", "shape": [64]', '"ln_f.bias": {"dtype": "F32", "shape": [Infinity]')
    assert "Infinity" in text
    path = _write(tmp_path / "model.safetensors", text, data)
    with pytest.raises(gpt2np.WeightsError, match=r"model\.safetensors: tensor 'ln_f\.bias'.*Infinity"):
        gpt2np.load_model(path, config=ref.config_file)


# Valid files, some unusual: both readers accept them and give the same arrays.
VALID = {
    "whitespace around the header": (" " + _header(A4) + "   ", F32),
    "an unknown field": (_header(("a", '{"dtype": "F32", "shape": [4], "data_offsets": [0, 16], "note": "x"}')), F32),
    "entries out of offset order": (_header(("b", _tensor([2], [8, 16])), ("a", _tensor([2], [0, 8]))), F32),
    "empty tensors sharing an offset": (_header(("e", _tensor([0], [0, 0])), ("f", _tensor([0, 3], [0, 0])), A4), F32),
    "string metadata": (_header(("__metadata__", '{"format": "np"}'), A4), F32),
    "no tensors": ("{}", b""),
    "only an empty tensor": (_header(("a", _tensor([0], [0, 0]))), b""),
    "every dtype": (
        _header(("f64", _tensor([2], [0, 16], "F64")), ("f16", _tensor([2], [16, 20], "F16")), ("i64", _tensor([1], [20, 28], "I64")),
                ("i32", _tensor([1], [28, 32], "I32")), ("i16", _tensor([2], [32, 36], "I16")), ("i8", _tensor([2], [36, 38], "I8")),
                ("u8", _tensor([1], [38, 39], "U8")), ("b", _tensor([1], [39, 40], "BOOL"))),
        np.array([1.5, -2.0]).tobytes() + np.array([0.5, 3.0], np.float16).tobytes() + np.array([-7], np.int64).tobytes()
        + np.array([9], np.int32).tobytes() + np.array([-3, 4], np.int16).tobytes() + np.array([-1, 2], np.int8).tobytes()
        + bytes([200, 1]),
    ),
}


@pytest.mark.parametrize("case", VALID)
def test_valid_safetensors_file_reads_as_the_library_reads_it(tmp_path, case):
    header, data = VALID[case]
    path = _write(tmp_path / "ok.safetensors", header, data)
    theirs = load_file(str(path))
    ours = {name: array for name, (_, array) in open_safetensors(path).items()}
    assert ours.keys() == theirs.keys()
    for name, array in theirs.items():
        assert ours[name].dtype == array.dtype and ours[name].shape == array.shape, name
        np.testing.assert_array_equal(ours[name], array, err_msg=name)


# -- 3. config.json fields of the wrong kind -----------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("layer_norm_epsilon", "abc"),
    ("layer_norm_epsilon", "1e-5"),  # a string, however numeric it looks
    ("layer_norm_epsilon", True),
    ("layer_norm_epsilon", float("inf")),  # json.dumps writes Infinity, which Python's json reads
    ("layer_norm_epsilon", float("nan")),
    ("layer_norm_epsilon", 10**400),
    ("scale_attn_weights", "false"),  # bool("false") is True
    ("scale_attn_weights", 0),
    ("scale_attn_by_inverse_layer_idx", "true"),
], ids=lambda v: str(v)[:20])
def test_config_field_of_the_wrong_kind_is_a_config_error_naming_field_and_file(ref, tmp_path, field, value):
    config = {**json.loads(ref.config_file.read_text()), field: value}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(gpt2np.ConfigError, match=f"{path}: config field {field} must be"):
        gpt2np.load_model(ref.official_file, config=path)


# -- 4. hooks that return the wrong kind of array ------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda x: x + 1j,  # complex: casting would drop the imaginary part with only a warning
    lambda x: x.astype(object),
    lambda x: np.full(x.shape, "a"),
])
def test_a_hook_that_returns_no_real_numbers_is_an_error(ref, make):
    model = gpt2np.load_model(ref.hf_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no ComplexWarning on the way
        with pytest.raises(gpt2np.InputError, match="must return real numbers"):
            model.run_with_hooks(np.arange(8), {"blocks.1.hook_resid_mid": lambda x, name: make(x)})
