"""gpt2np against transformers' GPT2LMHeadModel (eager attention): logits, hidden states,
attention patterns and every named intermediate tensor, in float32 and float64, for the GPT-2
small shape and a smaller one, loaded from both key layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hf_models import GPT2_SMALL, SMALL_OTHER, build_reference, torch_forward, torch_intermediates

import gpt2np

# float32 against the float64 reference: rounding of ~1e-7 relative, grown through 12 blocks.
TOLERANCE = {"float32": 1e-4, "float64": 1e-9}
SHAPES = {"gpt2-small": GPT2_SMALL, "3x4x64": SMALL_OTHER}


@pytest.fixture(scope="session")
def references(tmp_path_factory):
    return {name: build_reference(shape, tmp_path_factory.mktemp(name)) for name, shape in SHAPES.items()}


def _ids(n_vocab: int, t: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_vocab, size=t)


def _load(ref, layout: str, dtype: str) -> gpt2np.GPT2:
    if layout == "save_pretrained":
        return gpt2np.load_model(ref.hf_dir, dtype=dtype)
    return gpt2np.load_model(ref.official_file, dtype=dtype, config=ref.config_file)


def _close(ours, theirs, tol, what):
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=tol, err_msg=what)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["save_pretrained", "official"])
def test_logits_hidden_states_and_patterns(references, shape, dtype, layout):
    ref = references[shape]
    model = _load(ref, layout, dtype)
    ids = _ids(model.cfg.d_vocab, 48, seed=1)
    logits, cache = model.run_with_cache(ids)
    assert logits.dtype == np.dtype(dtype)
    ref_logits, hidden, attentions = torch_forward(ref.torch_model, ids)
    tol = TOLERANCE[dtype]
    _close(logits, ref_logits[0], tol, "logits")
    # hidden_states: embeddings, each block's output, except that the last entry is after ln_f.
    n = model.cfg.n_layer
    for i in range(n):
        _close(cache[f"blocks.{i}.hook_resid_pre"], hidden[i][0], tol, f"hidden_states[{i}]")
    _close(cache["ln_final.hook_out"], hidden[n][0], tol, f"hidden_states[{n}] (after ln_f)")
    for i in range(n):
        _close(cache[f"blocks.{i}.attn.hook_pattern"], attentions[i][0], tol, f"attentions[{i}]")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_named_tensor(references, shape, dtype):
    ref = references[shape]
    model = _load(ref, "save_pretrained", dtype)
    ids = _ids(model.cfg.d_vocab, 40, seed=2)
    logits, cache = model.run_with_cache(ids, names="*")  # "*" includes the opt-in hook_result
    expected = torch_intermediates(ref.torch_model, ids)
    tol = TOLERANCE[dtype]
    assert set(cache) == set(gpt2np.hook_names(model.cfg))
    for name in gpt2np.hook_names(model.cfg):
        assert cache[name].shape == expected[name].shape, name
        _close(cache[name], expected[name], tol, name)
    _close(logits, expected["logits"], tol, "logits")


def test_default_names_leave_out_hook_result(references):
    model = _load(references["3x4x64"], "save_pretrained", "float64")
    _, cache = model.run_with_cache(_ids(300, 10, seed=3))
    assert not any(n.endswith("attn.hook_result") for n in cache)
    assert len(cache) == len(gpt2np.hook_names(model.cfg)) - model.cfg.n_layer


def test_padded_batch_matches_rows_alone_and_transformers(references):
    ref = references["3x4x64"]
    model = _load(ref, "save_pretrained", "float64")
    lengths = [17, 30, 9]
    t = max(lengths)
    rows = [_ids(300, n, seed=10 + n) for n in lengths]
    ids = np.zeros((len(rows), t), np.int64)
    mask = np.zeros((len(rows), t), np.int64)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = row
        mask[b, : len(row)] = 1
    logits, cache = model.run_with_cache(ids, attention_mask=mask)
    assert logits.shape == (3, t, 300)
    assert cache["blocks.1.attn.hook_pattern"].shape == (3, 4, t, t)
    ref_logits, _, _ = torch_forward(ref.torch_model, ids, attention_mask=mask)
    for b, row in enumerate(rows):
        n = len(row)
        alone_logits, alone = model.run_with_cache(row)
        _close(logits[b, :n], alone_logits, 1e-12, f"row {b} logits")
        _close(logits[b, :n], ref_logits[b, :n], 1e-9, f"row {b} vs transformers")
        for name in ("blocks.2.hook_resid_post", "blocks.0.attn.hook_z", "ln_final.hook_out"):
            _close(cache[name][b, :n], alone[name], 1e-12, name)
        # The real tokens never look at padding.
        assert np.all(cache["blocks.0.attn.hook_pattern"][b, :, :n, n:] == 0)


def _torch_logits_with(model, ids, module, *, pre=None, post=None):
    handle = module.register_forward_pre_hook(pre) if pre else module.register_forward_hook(post)
    try:
        with torch.no_grad():
            return model(torch.as_tensor(ids[None])).logits[0].numpy()
    finally:
        handle.remove()


def test_hooks_patch_like_the_same_edit_in_torch(references):
    ref = references["3x4x64"]
    model = _load(ref, "save_pretrained", "float64")
    ids = _ids(300, 25, seed=4)
    clean = model(ids)
    blk1, blk0 = ref.torch_model.transformer.h[1], ref.torch_model.transformer.h[0]

    # 1. add a vector to the residual stream after block 1's attention.
    delta = np.random.default_rng(5).normal(size=64)
    patched = model.run_with_hooks(ids, {"blocks.1.hook_resid_mid": lambda x, name: x + delta})
    expected = _torch_logits_with(ref.torch_model, ids, blk1.attn.c_proj, post=lambda m, i, out: out + torch.as_tensor(delta))
    _close(patched, expected, 1e-9, "resid_mid patch")
    assert np.abs(patched - clean).max() > 1e-3  # the patch did change something

    # 2. zero-ablate head 2 of block 0, through hook_z (edited in place, returning None) ...
    def ablate_z(z, name):
        z[:, 2, :] = 0.0

    def ablate_merged(module, inputs):
        x = inputs[0].clone()
        x[..., 2 * 16 : 3 * 16] = 0.0
        return (x,)

    expected = _torch_logits_with(ref.torch_model, ids, blk0.attn.c_proj, pre=ablate_merged)
    _close(model.run_with_hooks(ids, {"blocks.0.attn.hook_z": ablate_z}), expected, 1e-9, "z ablation")
    # ... and through the per-head results, which then make up the attention output.
    ablate_result = {"blocks.0.attn.hook_result": lambda r, name: r * (np.arange(4) != 2)[:, None]}
    _close(model.run_with_hooks(ids, ablate_result), expected, 1e-9, "result ablation")


def test_hooks_apply_in_batches_and_are_validated(references):
    model = _load(references["3x4x64"], "save_pretrained", "float64")
    ids = np.stack([_ids(300, 12, seed=6), _ids(300, 12, seed=7)])
    seen = {}

    def look(q, name):
        seen[name] = q.shape

    model.run_with_hooks(ids, {"blocks.0.attn.hook_q": look})
    assert seen == {"blocks.0.attn.hook_q": (2, 12, 4, 16)}
    with pytest.raises(ValueError, match="must keep the shape"):
        model.run_with_hooks(ids, {"blocks.0.hook_resid_mid": lambda x, name: x[:, :3]})
    with pytest.raises(KeyError, match="hook_resid_mid"):
        model.run_with_hooks(ids, {"blocks.0.hook_resid_mdi": lambda x, name: x})


def test_stepping_block_by_block_equals_the_whole_pass(references):
    model = _load(references["3x4x64"], "save_pretrained", "float32")
    ids = _ids(300, 20, seed=8)
    resid = model.embed(ids)
    for layer in range(model.cfg.n_layer):
        resid = model.block(layer, resid)
    np.testing.assert_array_equal(model.unembed(resid), model(ids))


def test_same_input_same_output_bit_for_bit(references):
    model = _load(references["gpt2-small"], "save_pretrained", "float32")
    ids = _ids(50257, 33, seed=9)
    a_logits, a = model.run_with_cache(ids)
    b_logits, b = model.run_with_cache(ids)
    np.testing.assert_array_equal(a_logits, b_logits)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_hooks_may_write_into_the_masked_triangle(references):
    """Edited scores or patterns are used whole: nothing is assumed about the causal triangle."""
    model = _load(references["3x4x64"], "save_pretrained", "float64")
    ids = _ids(300, 20, seed=11)
    _, cache = model.run_with_cache(
        ids, names=["blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z", "blocks.0.attn.hook_v"],
        hooks={"blocks.0.attn.hook_attn_scores": lambda s, name: np.zeros_like(s)},
    )
    np.testing.assert_array_equal(cache["blocks.0.attn.hook_pattern"], np.full((4, 20, 20), 1 / 20))
    mean_v = cache["blocks.0.attn.hook_v"].mean(axis=0)  # (H, E): every query averages all values
    np.testing.assert_allclose(cache["blocks.0.attn.hook_z"], np.broadcast_to(mean_v, (20, 4, 16)), atol=1e-12)


def test_unembed_is_the_logit_lens_on_any_number_of_rows(references):
    model = _load(references["3x4x64"], "save_pretrained", "float64")
    ids = _ids(300, 30, seed=12)
    logits, cache = model.run_with_cache(ids, names="blocks.*.hook_resid_post")
    np.testing.assert_array_equal(model.unembed(cache["blocks.2.hook_resid_post"]), logits)
    rows = np.concatenate([cache[f"blocks.{i}.hook_resid_post"] for i in range(3)] * 2)  # 180 > n_ctx = 96
    lens = model.unembed(rows)
    assert lens.shape == (180, 300)
    np.testing.assert_allclose(lens[60:90], logits, atol=1e-12)
    with pytest.raises(gpt2np.InputError, match="shape"):
        model.unembed(rows[:, :10])
    with pytest.raises(gpt2np.InputError, match="positions"):
        model.block(0, rows)


def test_return_type_none_skips_only_the_unembedding(references):
    model = _load(references["3x4x64"], "save_pretrained", "float32")
    ids = _ids(300, 25, seed=13)
    logits, full = model.run_with_cache(ids)
    nothing, cache = model.run_with_cache(ids, return_type=None)
    assert nothing is None
    assert list(cache) == list(full)  # ln_final included: it comes before the unembedding
    for name in full:
        np.testing.assert_array_equal(cache[name], full[name], err_msg=name)
    np.testing.assert_array_equal(model.unembed(cache["blocks.2.hook_resid_post"]), logits)
    with pytest.raises(gpt2np.InputError, match="return_type"):
        model.run_with_cache(ids, return_type="loss")


def _transformer_lens_gpt2(hf_dir):
    """TransformerLens 3's HookedTransformer holding the same weights, unprocessed (nothing
    folded or centred), built offline from a hand-made config."""
    transformer_lens = pytest.importorskip("transformer_lens", reason="TransformerLens is not installed")
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    c = hf.config
    cfg = transformer_lens.HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, d_head=c.n_embd // c.n_head, n_heads=c.n_head,
        d_mlp=4 * c.n_embd, d_vocab=c.vocab_size, act_fn="gelu_new", normalization_type="LN", eps=c.layer_norm_epsilon,
        positional_embedding_type="standard", original_architecture="GPT2LMHeadModel", default_prepend_bos=False,
        use_attn_result=True, device="cpu", dtype=torch.float32,
    )
    tl = transformer_lens.HookedTransformer(cfg)
    tl.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
                                   center_unembed=False, fold_value_biases=False)
    return tl.eval()


def test_names_mean_what_they_mean_in_transformer_lens(references):
    """Every name the two caches share holds the same tensor as in TransformerLens 3 (the LayerNorms'
    hook_normalized before their weight and bias), and hook_out is the output of TransformerLens'
    LayerNorm modules (TransformerLens 4 names it so), float32 to a few 1e-6."""
    ref = references["gpt2-small"]
    tl = _transformer_lens_gpt2(ref.hf_dir)
    model = _load(ref, "save_pretrained", "float32")
    ids = _ids(model.cfg.d_vocab, 40, seed=14)
    layer_norm_outputs = {}
    modules = {**{f"blocks.{i}.{ln}.hook_out": getattr(b, ln) for i, b in enumerate(tl.blocks) for ln in ("ln1", "ln2")},
               "ln_final.hook_out": tl.ln_final}
    handles = [m.register_forward_hook(lambda mod, args, out, name=name: layer_norm_outputs.update({name: out}))
               for name, m in modules.items()]
    try:
        with torch.no_grad():
            tl_logits, tl_cache = tl.run_with_cache(torch.as_tensor(ids)[None])
    finally:
        for h in handles:
            h.remove()
    logits, cache = model.run_with_cache(ids, names="*")
    theirs = {name: tl_cache[name] for name in cache if name in tl_cache}
    assert len(theirs) == 220  # 18 per block (208 without the opt-in attn.hook_result) + 4
    theirs.update(layer_norm_outputs)
    assert set(theirs) == set(cache)
    theirs["logits"], cache = tl_logits, {**cache, "logits": logits}
    for name, tensor in theirs.items():
        expected = tensor[0].numpy()
        assert expected.shape == cache[name].shape, name
        _close(cache[name], expected, 5e-6, name)
