"""Loading: both key layouts, configs, dtypes, memory mapping, the Hub cache, and every error path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hf_models import SMALL_OTHER, build_reference
from safetensors.numpy import load_file, save_file

import gpt2np
from gpt2np.config import PRESETS

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    return build_reference(SMALL_OTHER, tmp_path_factory.mktemp("small"))


@pytest.fixture
def tensors(ref):
    """The official-layout tensors, to be damaged by a test and saved again."""
    return load_file(str(ref.official_file))


def _save(tmp_path, tensors, name="model.safetensors") -> Path:
    path = tmp_path / name
    save_file(tensors, str(path))
    return path


IDS = np.arange(1, 30) % 300


def test_layouts_and_config_forms_agree(ref):
    base = gpt2np.load_model(ref.hf_dir)(IDS)
    config_dict = json.loads(ref.config_file.read_text())
    for model in (
        gpt2np.load_model(ref.hf_dir / "model.safetensors"),  # its config.json sits beside it
        gpt2np.load_model(ref.official_file, config=ref.config_file),
        gpt2np.load_model(ref.official_file, config=config_dict),
        gpt2np.load_model(str(ref.official_file), config=gpt2np.GPT2Config.from_hf_dict(config_dict)),
    ):
        np.testing.assert_array_equal(model(IDS), base)
    cfg = gpt2np.load_model(ref.hf_dir).cfg
    assert (cfg.n_layer, cfg.n_head, cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.n_ctx, cfg.d_vocab) == (3, 4, 64, 16, 256, 96, 300)


def test_float32_weights_are_memory_mapped_not_copied(ref):
    tracemalloc.start()
    model = gpt2np.load_model(ref.official_file, config=ref.config_file)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    w = model.params.h[0].attn.c_attn.weight
    assert not w.flags.writeable and not w.flags.owndata  # a read-only view of the file's pages
    n_bytes = sum(a.nbytes for a in load_file(str(ref.official_file)).values())
    assert peak < 0.1 * n_bytes  # nothing near a copy of the weights was allocated
    assert model.params.tied and model.params.lm_head is model.params.wte


def test_float64_upcasts(ref):
    model = gpt2np.load_model(ref.hf_dir, dtype="float64")
    assert model.params.wte.dtype == np.float64 and model(IDS).dtype == np.float64
    with pytest.raises(ValueError, match="dtype must be"):
        gpt2np.load_model(ref.hf_dir, dtype="float16")


@pytest.mark.parametrize("torch_dtype", [torch.float16, torch.bfloat16])
def test_half_precision_files_are_upcast(ref, tmp_path, torch_dtype):
    from safetensors.torch import save_file as save_torch

    half = {k: torch.from_numpy(v).to(torch_dtype) for k, v in load_file(str(ref.official_file)).items()}
    path = tmp_path / "half.safetensors"
    save_torch(half, str(path))
    model = gpt2np.load_model(path, config=ref.config_file)
    # Each weight is exactly torch's own widening of the stored half-precision values.
    for got, key in ((model.params.wte, "wte.weight"), (model.params.h[2].mlp.c_fc.weight, "h.2.mlp.c_fc.weight"),
                     (model.params.ln_f.bias, "ln_f.bias")):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, half[key].float().numpy(), err_msg=key)
    full = gpt2np.load_model(ref.official_file, config=ref.config_file)
    assert 0 < np.abs(model(IDS) - full(IDS)).max() < 0.1  # rounded weights, nearly the same model


def test_untied_lm_head_is_used(ref, tmp_path, tensors):
    tensors["lm_head.weight"] = tensors["wte.weight"][::-1].copy()
    model = gpt2np.load_model(_save(tmp_path, tensors), config=ref.config_file)
    assert not model.params.tied
    final = model.run_with_cache(IDS, names="ln_final.hook_out")[1]["ln_final.hook_out"]
    np.testing.assert_allclose(model(IDS), final @ tensors["lm_head.weight"].T, rtol=1e-6)


def test_bare_file_is_gpt2_small_unless_told(ref):
    with pytest.raises(gpt2np.ConfigError, match="n_layer=12 but the file has tensors for 3 blocks"):
        gpt2np.load_model(ref.official_file)
    assert PRESETS["gpt2"].n_layer == 12


# -- errors ---------------------------------------------------------------------------------


def test_missing_tensor_is_named(ref, tmp_path, tensors):
    del tensors["h.1.mlp.c_fc.bias"]
    with pytest.raises(gpt2np.WeightsError, match=r"missing tensor\(s\) h\.1\.mlp\.c_fc\.bias"):
        gpt2np.load_model(_save(tmp_path, tensors), config=ref.config_file)


def test_wrong_shape_is_named(ref, tmp_path, tensors):
    tensors["h.2.attn.c_proj.weight"] = np.zeros((64, 60), np.float32)
    with pytest.raises(gpt2np.ConfigError, match=r"h\.2\.attn\.c_proj\.weight has shape \(64, 60\).*\(64, 64\)"):
        gpt2np.load_model(_save(tmp_path, tensors), config=ref.config_file)


def test_config_that_disagrees_with_the_tensors(ref, tmp_path):
    config = json.loads(ref.config_file.read_text())
    for change, message in (({"n_embd": 128}, "wte.weight has shape"), ({"n_layer": 4}, "n_layer=4"), ({"vocab_size": 301}, "wte.weight")):
        with pytest.raises(gpt2np.ConfigError, match=message):
            gpt2np.load_model(ref.official_file, config={**config, **change})
    with pytest.raises(gpt2np.ConfigError, match="not divisible by n_head"):
        gpt2np.load_model(ref.official_file, config={**config, "n_head": 5})
    with pytest.raises(gpt2np.ConfigError, match="activation_function"):
        gpt2np.load_model(ref.official_file, config={**config, "activation_function": "relu"})
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(gpt2np.ConfigError, match="not valid JSON"):
        gpt2np.load_model(ref.official_file, config=bad)


def test_non_finite_weights_are_named(ref, tmp_path, tensors):
    tensors["h.0.ln_2.weight"][3] = np.nan
    with pytest.raises(gpt2np.WeightsError, match=r"h\.0\.ln_2\.weight contains NaN"):
        gpt2np.load_model(_save(tmp_path, tensors), config=ref.config_file)


def test_unexpected_tensor_is_named(ref, tmp_path, tensors):
    tensors["h.0.attn.q_proj.weight"] = np.zeros((2,), np.float32)
    with pytest.raises(gpt2np.WeightsError, match=r"unexpected tensor\(s\) h\.0\.attn\.q_proj\.weight"):
        gpt2np.load_model(_save(tmp_path, tensors), config=ref.config_file)


def test_truncated_and_foreign_files(ref, tmp_path):
    data = ref.official_file.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(gpt2np.WeightsError, match="truncated"):
        gpt2np.load_model(truncated, config=ref.config_file)
    for name, content in (("text.safetensors", b"this is a text file, not weights\n" * 10), ("tiny.safetensors", b"abc")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(gpt2np.WeightsError, match="not a safetensors file"):
            gpt2np.load_model(path, config=ref.config_file)


def test_missing_paths(tmp_path):
    with pytest.raises(gpt2np.ModelNotFoundError, match="no such file"):
        gpt2np.load_model(tmp_path / "nothing.safetensors")
    with pytest.raises(gpt2np.ModelNotFoundError, match="has no model.safetensors"):
        gpt2np.load_model(tmp_path)


# -- the Hub: run in a fresh interpreter so HF_HOME / HF_HUB_OFFLINE are read as a user sets them


def _run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True, text=True, timeout=120)


def test_hub_name_without_network_or_cache_fails_fast_with_instructions(tmp_path):
    start = time.monotonic()
    proc = _run_python(
        """
        import gpt2np
        try:
            gpt2np.load_model("gpt2")
        except gpt2np.ModelNotFoundError as err:
            print("ERROR:", err)
        """,
        {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9"},  # a closed port: no Hub
    )
    elapsed = time.monotonic() - start
    assert "ERROR:" in proc.stdout, proc.stderr
    assert "not in the local Hugging Face cache" in proc.stdout and "pass a local folder" in proc.stdout
    assert f"cached in {tmp_path / 'hf' / 'hub'}" in proc.stdout  # the folder really used, not "$HF_HOME"
    assert elapsed < 60  # a hang guard, not a speed target: the client alone retries for ~25 s


def _fake_hub_cache(hf_home: Path, repo: str, files: dict[str, Path], commit: str = "0" * 40) -> None:
    """The documented cache layout: hub/models--org--name/{refs/main, snapshots/<commit>/...}."""
    root = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)


def test_hub_name_loads_from_the_cache_offline(ref, tmp_path):
    hf_home = tmp_path / "hf"
    _fake_hub_cache(hf_home, "someone/tiny-gpt2", {"model.safetensors": ref.official_file, "config.json": ref.config_file})
    proc = _run_python(
        """
        import numpy as np, gpt2np
        model = gpt2np.load_model("someone/tiny-gpt2")
        print("SHAPE", model(np.arange(5)).shape)
        """,
        {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"},
    )
    assert "SHAPE (5, 300)" in proc.stdout, proc.stderr


# -- inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids, mask, message",
    [
        (np.array([1.0, 2.0]), None, "integer array"),
        (np.array([], np.int64), None, "empty"),
        (np.zeros((1, 2, 3), np.int64), None, "1-D"),
        (np.arange(97), None, "only 96 positions"),
        (np.array([1, 300]), None, "token id 300 at position 1 is outside the vocabulary"),
        (np.array([1, -1]), None, "outside the vocabulary"),
        ([[1, 2, 3], [1, 2]], None, "different lengths"),
        (np.ones((2, 4), np.int64), np.array([[0, 1, 1, 1], [1, 1, 1, 1]]), "right padding"),
        (np.ones((2, 4), np.int64), np.array([[1, 0, 1, 1], [1, 1, 1, 1]]), "right padding"),
        (np.ones((2, 4), np.int64), np.array([[1, 2, 1, 1], [1, 1, 1, 1]]), "only 1"),
        (np.ones((2, 4), np.int64), np.ones((2, 3)), "must match"),
    ],
)
def test_bad_inputs_get_clear_errors(ref, ids, mask, message):
    model = gpt2np.load_model(ref.hf_dir)
    with pytest.raises(gpt2np.InputError, match=message):
        model(ids, attention_mask=mask)


def test_names_filter(ref):
    model = gpt2np.load_model(ref.hf_dir)
    _, cache = model.run_with_cache(IDS, names="blocks.*.hook_resid_post")
    assert list(cache) == [f"blocks.{i}.hook_resid_post" for i in range(3)]
    _, cache = model.run_with_cache(IDS, names=["hook_embed", "blocks.1.attn.hook_result"])
    assert list(cache) == ["hook_embed", "blocks.1.attn.hook_result"]
    assert cache["blocks.1.attn.hook_result"].shape == (29, 4, 64)
    _, cache = model.run_with_cache(IDS, names=lambda n: n.startswith("ln_final"))
    assert list(cache) == ["ln_final.hook_scale", "ln_final.hook_normalized", "ln_final.hook_out"]
    with pytest.raises(KeyError, match="Did you mean 'blocks.1.hook_resid_mid'"):
        model.run_with_cache(IDS, names=["blocks.1.hook_resid_midd"])
    with pytest.raises(KeyError, match="matches no tensor"):
        model.run_with_cache(IDS, names="blocks.*.hook_nothing")
    with pytest.raises(KeyError, match="was not kept"):
        cache["hook_embed"]


def test_residual_only_cache_does_not_pay_for_attention_patterns(tmp_path):
    """Peak memory of a residual-stream-only run stays far below the size of all patterns."""
    from hf_models import build_reference as build

    r = build(dict(n_layer=6, n_head=8, n_embd=64, vocab_size=50, n_positions=512), tmp_path)
    model = gpt2np.load_model(r.hf_dir)
    ids = np.arange(512) % 50
    one_layer_scores = 8 * 512 * 512 * 4
    tracemalloc.start()
    logits, cache = model.run_with_cache(ids, names="blocks.*.hook_resid_post")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = cache.nbytes + logits.nbytes
    assert peak < kept + 2.5 * one_layer_scores  # all six layers' patterns would be 6x
    tracemalloc.start()
    _, full = model.run_with_cache(ids)
    _, peak_full = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert full.nbytes > kept + 12 * one_layer_scores  # the full trace does keep scores and patterns


def test_readme_names_table_is_the_documented_table():
    """The README's table of tensor names is the one gpt2np.names defines (it cannot go stale)."""
    from gpt2np.names import BLOCK_SITES, EMBED_SITES, FINAL_SITES

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- NAMES-TABLE -->")[1].split("<!-- /NAMES-TABLE -->")[0]
    rows = [line for line in table.strip().splitlines()[2:]]
    expected = [f"| `{n}` | {s} | {d} |" for n, s, d in EMBED_SITES]
    expected += [f"| `blocks.{{i}}.{n}` | {s} | {d} |" for n, s, d in BLOCK_SITES]
    expected += [f"| `{n}` | {s} | {d} |" for n, s, d in FINAL_SITES]
    assert rows == expected
