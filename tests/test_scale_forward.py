"""geostudy.scale.forward: one point per sequence from batched, right-padded forward passes, equal to
run_with_cache on each sequence alone (and to transformers with an attention mask), and the
forward_shard task writing them into the store."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import gpt2np
from geostudy.scale.forward import ModelSpec, default_sites, forward_shard, represent_batch
from geostudy.scale.store import ActivationStore

CFG = gpt2np.GPT2Config(n_layer=3, n_head=4, d_model=64, d_mlp=256, n_ctx=48, d_vocab=500)


def perturbed(model: gpt2np.GPT2, seed: int) -> gpt2np.GPT2:
    """GPT-2's init has LayerNorms at 1/0 and zero biases; perturb them so that every parameter matters."""
    rng = np.random.default_rng(seed)
    for block in model.params.h:
        for p in (block.ln_1, block.ln_2, block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            p.bias[...] += 0.1 * rng.standard_normal(p.bias.shape)
        for ln in (block.ln_1, block.ln_2):
            ln.weight[...] += 0.1 * rng.standard_normal(ln.weight.shape)
    return model


@pytest.fixture(scope="module")
def model64():
    return perturbed(gpt2np.untrained_model(CFG, 1, "float64"), 0)


@pytest.fixture(scope="module")
def model32(model64):
    import dataclasses

    def cast(x):
        if isinstance(x, np.ndarray):
            return x.astype(np.float32)
        if isinstance(x, tuple):
            return tuple(cast(v) for v in x)
        return type(x)(**{f.name: cast(getattr(x, f.name)) for f in dataclasses.fields(x)})

    params = cast(model64.params)
    params = dataclasses.replace(params, lm_head=params.wte)
    return gpt2np.GPT2(params, CFG)


def batch(seed: int, b: int = 7, t: int = 20, pad: int = 0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, t + 1, b)
    lengths[0] = t  # at least one full row
    ids = rng.integers(0, CFG.d_vocab, (b, t))
    for i, n in enumerate(lengths):
        ids[i, n:] = pad
    return ids, lengths


def reference(model, ids, lengths, sites, represent, drop=()):
    """Sequence by sequence, each alone, through run_with_cache."""
    out = {s: [] for s in sites}
    for row, n in zip(ids, lengths):
        _, cache = model.run_with_cache(row[:n], names=sites)
        keep = [p for p in range(n) if p not in drop]
        for s in sites:
            out[s].append(cache[s][-1] if represent == "last" else cache[s][keep].mean(axis=0))
    return {s: np.array(v) for s, v in out.items()}


@pytest.mark.parametrize("represent", ["last", "mean"])
def test_equals_each_sequence_alone_float64(model64, represent):
    ids, lengths = batch(1)
    sites = default_sites(CFG)
    got = represent_batch(model64, ids, lengths, sites, represent)
    want = reference(model64, ids, lengths, sites, represent)
    assert list(got) == sites
    for s in sites:
        assert got[s].shape == (len(ids), CFG.d_model) and got[s].dtype == np.float64
        np.testing.assert_allclose(got[s], want[s], rtol=1e-12, atol=1e-12 * np.abs(want[s]).max())


@pytest.mark.parametrize("represent", ["last", "mean"])
def test_equals_each_sequence_alone_float32(model32, model64, represent):
    """float32: the batched and the single runs differ only in how BLAS blocks products of other
    shapes (sums of at most d_mlp = 256 products taken in another order), i.e. by float32 rounding
    (eps 1.2e-7): measured here up to 1.7e-7 of the largest value, as far as float32 itself is from
    the float64 model. The bound, 2e-6 of the largest value (some 16 ulps), allows for that growing
    through 3 blocks; a wrong position or a wrong mean is off by O(1)."""
    ids, lengths = batch(2)
    sites = default_sites(CFG)
    got = represent_batch(model32, ids, lengths, sites, represent)
    want = reference(model32, ids, lengths, sites, represent)
    exact = reference(model64, ids, lengths, sites, represent)
    for s in sites:
        assert got[s].dtype == np.float32
        scale = np.abs(want[s]).max()
        np.testing.assert_allclose(got[s], want[s], rtol=0, atol=2e-6 * scale)
        np.testing.assert_allclose(got[s], exact[s], rtol=0, atol=2e-6 * scale)


def test_the_padding_never_matters(model64):
    """Right padding under a causal mask: what the padded positions hold changes no bit."""
    ids_a, lengths = batch(3, pad=0)
    ids_b = ids_a.copy()
    rng = np.random.default_rng(9)
    for i, n in enumerate(lengths):
        ids_b[i, n:] = rng.integers(0, CFG.d_vocab, ids_b.shape[1] - n)
    sites = default_sites(CFG)
    for represent in ("last", "mean"):
        a = represent_batch(model64, ids_a, lengths, sites, represent)
        b = represent_batch(model64, ids_b, lengths, sites, represent)
        for s in sites:
            assert a[s].tobytes() == b[s].tobytes(), (represent, s)


def test_mean_with_dropped_positions(model64):
    ids, lengths = batch(4)
    lengths[1] = 2
    sites = ["blocks.1.hook_resid_post", "blocks.0.hook_resid_pre"]
    got = represent_batch(model64, ids, lengths, sites, "mean", drop_positions=(0,))
    want = reference(model64, ids, lengths, sites, "mean", drop=(0,))
    assert list(got) == sites
    for s in sites:
        np.testing.assert_allclose(got[s], want[s], rtol=1e-12, atol=1e-12 * np.abs(want[s]).max())
    lengths[1] = 1
    with pytest.raises(ValueError, match="no position left"):
        represent_batch(model64, ids, lengths, sites, "mean", drop_positions=(0,))


def test_equals_transformers_with_an_attention_mask(tiny_model_dir):
    """A real reference: transformers' GPT2Model (eager, float64) on the padded batch with its
    attention mask; hidden_states[i] is blocks.i.hook_resid_pre (the last one has ln_f applied)."""
    torch = pytest.importorskip("torch")
    from transformers import GPT2Model

    hf = GPT2Model.from_pretrained(tiny_model_dir, attn_implementation="eager").double().eval()
    model = gpt2np.load_model(tiny_model_dir, dtype="float64")
    rng = np.random.default_rng(5)
    lengths = np.array([12, 5, 1, 9])
    ids = rng.integers(0, 50257, (4, 12))
    mask = (np.arange(12)[None] < lengths[:, None]).astype(np.int64)
    with torch.inference_mode():
        states = hf(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), output_hidden_states=True).hidden_states
    sites = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]  # hidden_states[0], [1]
    for represent in ("last", "mean"):
        got = represent_batch(model, ids, lengths, sites, represent)
        for i, s in enumerate(sites):
            h = states[i].numpy()
            want = h[np.arange(4), lengths - 1] if represent == "last" else (h * mask[..., None]).sum(1) / lengths[:, None]
            np.testing.assert_allclose(got[s], want, rtol=1e-10, atol=1e-10 * np.abs(want).max())


def test_bad_batches(model64):
    ids, lengths = batch(6)
    with pytest.raises(ValueError, match="represent"):
        represent_batch(model64, ids, lengths, ["blocks.0.hook_resid_pre"], "first")
    with pytest.raises(ValueError, match="length"):
        represent_batch(model64, ids, lengths + 100, ["blocks.0.hook_resid_pre"], "last")
    with pytest.raises(gpt2np.UnknownNameError):
        represent_batch(model64, ids, lengths, ["blocks.9.hook_resid_post"], "last")


def test_model_spec_is_picklable_and_cached(tiny_model_dir):
    spec = ModelSpec(weights=str(tiny_model_dir / "model.safetensors"), config=str(tiny_model_dir / "config.json"), dtype="float64")
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and hash(again) == hash(spec)
    model = spec.load()
    assert again.load() is model and model.cfg.n_layer == 2 and model.dtype == np.float64
    untrained = ModelSpec(weights=None, config=str(tiny_model_dir / "config.json"), dtype="float32", untrained_seed=3)
    ref = gpt2np.untrained_model(model.cfg, 3)
    assert untrained.load() is untrained.load()
    assert np.array_equal(untrained.load().params.h[1].mlp.c_proj.weight, ref.params.h[1].mlp.c_proj.weight)


def test_forward_shard_fills_the_store(tmp_path, tiny_model_dir):
    spec = ModelSpec(weights=str(tiny_model_dir / "model.safetensors"), config=None, dtype="float64")
    model = spec.load()
    sites = default_sites(model.cfg)
    rng = np.random.default_rng(8)
    n, w = 23, 10
    lengths = rng.integers(1, w + 1, n)
    ids = rng.integers(0, 50257, (n, w))
    ids[np.arange(w)[None] >= lengths[:, None]] = 0
    path = tmp_path / "activations.zarr"
    store = ActivationStore.open(path, sites={s: 64 for s in sites}, n_rows=n, shard_rows=10, dtype="float64", fingerprint="f")
    for k in range(store.n_shards):
        a, b = store.shard_rows_range(k)
        forward_shard(spec, path, k, ids[a:b], lengths[a:b], sites, "mean", (), 4)
    assert store.finished_shards() == [True] * 3
    want = reference(model, ids, lengths, sites, "mean")
    for s in sites:
        np.testing.assert_allclose(store.read(s), want[s], rtol=1e-12, atol=1e-12 * np.abs(want[s]).max())
    with pytest.raises(ValueError, match="shard 1"):
        forward_shard(spec, path, 1, ids[:3], lengths[:3], sites, "mean", (), 4)
