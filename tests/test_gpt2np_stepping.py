"""The step-by-step calls (`model.embed`, `model.block`, `model.unembed`) are the plain NumPy path
of forward.py: they agree with the fast path of full runs on every cached tensor, and they run on
the calling thread without the buffer pool, the worker threads or the row-blocked attention.

What a debugger shows is read the way a debugger reads it: the locals of each forward.py function
when it returns. An array overwritten after it was computed (the scores by the pattern, say) would
then hold the wrong tensor and fail the comparison."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hf_models import build_reference

import gpt2np
from gpt2np import forward
from gpt2np.recycle import BufferPool

T = 300  # more than causal.ROWS (256) queries: the fast path splits every head into row blocks
SHAPE = dict(n_layer=2, n_head=4, n_embd=64, vocab_size=300, n_positions=T)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_reference(SHAPE, tmp_path_factory.mktemp("stepping")).hf_dir


def _returns_of_forward_functions(run) -> list[tuple[str, dict]]:
    """Call run() and record (function name, its locals) each time a forward.py function returns."""
    seen: list[tuple[str, dict]] = []

    def profile(frame, event, arg):
        if event == "return" and frame.f_code.co_filename == forward.__file__:
            seen.append((frame.f_code.co_name, dict(frame.f_locals)))

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return seen


def _heads_last(x: np.ndarray) -> np.ndarray:
    """(B, H, T, ·) as the cache shows per-head tensors: (B, T, H, ·)."""
    return x.transpose(0, 2, 1, 3)


def _as_cache(returns: list[tuple[str, dict]], model: gpt2np.GPT2) -> dict[str, np.ndarray]:
    """The cache names of the plain path's locals. A block's layer norms, attention and MLP
    return before the block does, the first layer norm before the second."""
    named: dict[str, np.ndarray] = {}
    pending: list[tuple[str, dict]] = []
    n_blocks = 0
    for function, v in returns:
        if function == "embed":
            named["hook_embed"] = v["token"]
            named["hook_pos_embed"] = np.broadcast_to(v["position"], v["token"].shape)
        elif function in ("layer_norm", "attention", "mlp"):
            pending.append((function, v))
        elif function == "block":
            p = f"blocks.{n_blocks}."
            (_, ln1), (_, attn), (_, ln2), (_, mlp) = pending
            for prefix, ln in (("ln1.", ln1), ("ln2.", ln2)):
                named[p + prefix + "hook_scale"] = ln["scale"]
                named[p + prefix + "hook_normalized"] = ln["normalized"]
                named[p + prefix + "hook_out"] = ln["out"]
            for name in ("q", "k", "v", "z"):
                named[p + "attn.hook_" + name] = _heads_last(attn[name])
            named[p + "attn.hook_attn_scores"] = attn["scores"]
            named[p + "attn.hook_pattern"] = attn["pattern"]
            cfg = model.cfg
            w_o = model.params.h[n_blocks].attn.c_proj.weight.reshape(cfg.n_head, cfg.d_head, cfg.d_model)
            named[p + "attn.hook_result"] = _heads_last(attn["z"] @ w_o)  # the heads' shares of attn_out
            named[p + "mlp.hook_pre"], named[p + "mlp.hook_post"] = mlp["pre"], mlp["post"]
            for name in ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post"):
                named[p + "hook_" + name] = v[name]
            pending, n_blocks = [], n_blocks + 1
        elif function == "unembed":
            ((_, ln_f),) = pending
            for name in ("scale", "normalized", "out"):
                named["ln_final.hook_" + name] = ln_f[name]
            named["logits"] = v["logits"]
    return named


def _step_through(model: gpt2np.GPT2, ids: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    x = model.embed(ids)
    for layer in range(model.cfg.n_layer):
        x = model.block(layer, x, attention_mask=mask)
    return model.unembed(x)


def _inputs(kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(7)
    if kind == "one sequence":  # (1, T): the causal mask alone
        return rng.integers(0, 300, size=(1, T)), None
    mask = np.ones((2, T), np.int64)  # a right-padded batch: causal + padding mask
    mask[1, 170:] = 0
    return rng.integers(0, 300, size=(2, T)), mask


@pytest.mark.parametrize("kind", ["one sequence", "padded batch"])
def test_plain_steps_agree_with_the_fast_path_on_every_cached_tensor(model_dir, kind):
    model = gpt2np.load_model(model_dir, dtype="float64")
    ids, mask = _inputs(kind)
    logits, cache = model.run_with_cache(ids, names="*", attention_mask=mask)
    plain = _as_cache(_returns_of_forward_functions(lambda: _step_through(model, ids, mask)), model)
    expected = {**cache, "logits": logits}
    assert set(plain) == set(expected) == {*gpt2np.hook_names(model.cfg), "logits"}
    for name, array in expected.items():
        assert plain[name].shape == array.shape, name
        np.testing.assert_allclose(plain[name], array, rtol=0, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(_step_through(model, ids, mask), logits, rtol=0, atol=1e-12)


def test_plain_steps_run_on_the_calling_thread_without_the_buffer_pool(model_dir, monkeypatch):
    model = gpt2np.load_model(model_dir, dtype="float64")
    model(np.arange(T) % 300)  # a full run first: its pool and worker threads exist and are warm

    def refuse(*args, **kwargs):
        raise AssertionError("a plain step used the buffer pool or a worker thread")

    for name in ("empty", "keep"):
        monkeypatch.setattr(BufferPool, name, refuse)
    monkeypatch.setattr(ThreadPoolExecutor, "submit", refuse)
    ids, mask = _inputs("padded batch")
    called: set[str] = set()

    def profile(frame, event, arg):  # sys.setprofile sees this thread only
        if event == "call" and "gpt2np" in Path(frame.f_code.co_filename).parts:
            called.add(Path(frame.f_code.co_filename).name)

    sys.setprofile(profile)
    try:
        _step_through(model, ids, mask)
    finally:
        sys.setprofile(None)
    # Only the plain functions and the input checks: no trace, pool, threads or row blocks.
    assert called == {"model.py", "inputs.py", "forward.py", "ops.py", "config.py"}
