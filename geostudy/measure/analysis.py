"""The analyses of one prompt (or of the pooled corpus) at every site, as plain rows.

`analyse_cloud` is the single place where a token cloud becomes numbers, for a prompt and for
the pooled corpus alike: geometry (norms, cosines), the idest estimators, and the log-volume.
`lens_for_prompt` is the logit lens of one prompt.
"""

from __future__ import annotations

import numpy as np

from . import geometry, lens
from .estimators import Estimates, EstimatorSettings, estimate

FINAL_SITE = "logits"  # the model's own output distribution, in the lens tables


def analyse_cloud(X: np.ndarray, settings: EstimatorSettings, cosine_to_last: float | None = None,
                  timer=None, prefix: str = "", search=None) -> Estimates:
    """Every per-cloud quantity of X (N, D), in a fixed order; `search(X, k)`: the neighbour
    search (default: idest.neighborhoods in this process; see measure/estimators.py).

    cosine_to_last overrides the geometric value (the pooled corpus has no single last token:
    there it is the mean over every token of its cosine to its own prompt's last token)."""
    geo = geometry.describe(X)
    if cosine_to_last is not None:
        geo["cosine_to_last"] = cosine_to_last
    est = estimate(X, settings, timer=timer, prefix=prefix, search=search)
    items = [(q, None, v, None) for q, v in geo.items()]
    items += est.items
    if est.spectrum is not None:
        vol, rank = geometry.log_volume_from_spectrum(est.spectrum, X.shape[0])
        items += [("log_volume", None, vol, None), ("log_volume_rank", None, rank, None)]
    est.items = items
    return est


def lens_for_prompt(model, cache, lens_sites: list[str], kept: np.ndarray,
                    position_limit: int | None, top_k: int) -> dict:
    """Logit lens of one prompt.

    Last token: at each lens site, the residual stream of the prompt's last token goes through
    ln_f and the unembedding (model.unembed); compared with the model's own final distribution.
    All positions: at up to `position_limit` kept positions, mean KL(final || layer) and the
    fraction of positions whose top-1 token equals the final one.

    The model's own logits are those of the last block's output, unembedded here at the
    positions used only (the cache comes from a run with return_type=None: unembedding every
    position would be the largest product of the forward pass)."""
    output = np.asarray(cache[f"blocks.{model.cfg.n_layer - 1}.hook_resid_post"])  # (T, D)
    positions = lens.sample_positions(kept, position_limit)
    final_rows = model.unembed(output[np.append(positions, output.shape[0] - 1)])
    final_last = final_rows[-1]
    resid = np.stack([np.asarray(cache[s])[-1] for s in lens_sites])
    layer_logits = model.unembed(resid)
    stats = lens.compare(layer_logits, final_last, top_k)
    final = lens.final_summary(final_last, top_k)
    final_ids = np.asarray(final["top_ids"])
    logp = lens.log_softmax64(layer_logits)
    tracked = np.exp(logp[:, final_ids])  # (S, k): each site's probability of the final top-k tokens

    all_pos = {}
    if positions.size:
        final_pos = lens.FinalDistribution(final_rows[:-1])
        # one unembedding for every site's positions: the (V, D) matrix is read once, not per site
        stacked = np.concatenate([np.asarray(cache[s])[positions] for s in lens_sites])
        lay_all = model.unembed(stacked)
        for i, s in enumerate(lens_sites):
            lay = lay_all[i * positions.size:(i + 1) * positions.size]
            kl, agree = lens.all_positions(lay, final_pos)
            all_pos[s] = [float(kl.sum()), int(agree.sum()), int(positions.size)]
        del lay_all, stacked
    return {
        "sites": list(lens_sites),
        "last": stats,
        "final": final,
        "tracked_probs": tracked.tolist(),
        "all_positions": all_pos,
        "positions": [int(p) for p in positions],
    }
