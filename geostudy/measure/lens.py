"""The logit lens: read a residual stream through the model's final layer norm and unembedding
as if the model stopped there, and compare that next-token distribution with the model's own.

Every probability is computed in float64 from the (float32) logits with a max-shifted softmax.

For a distribution p (at some depth) and the model's final distribution q:
* entropy: -sum p log p, in nats;
* kl_to_final: KL(q || p) = sum q (log q - log p), in nats: the information lost when the final
  distribution q is approximated by the layer's p ("how far is this depth from the answer");
* cosine_to_final: p.q / (|p| |q|), the cosine between the two probability vectors;
* final_top_rank: the rank (1 = most likely) in p of q's most likely token;
* top1_prob and the top-k tokens of p with their probabilities.
"""

from __future__ import annotations

import numpy as np


def log_softmax64(logits) -> np.ndarray:
    """log softmax over the last axis, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return z


def _kl(logq: np.ndarray, logp: np.ndarray) -> np.ndarray:
    q = np.exp(logq)
    with np.errstate(invalid="ignore"):
        terms = np.where(q > 0, q * (logq - logp), 0.0)
    return terms.sum(axis=-1)


def top_k(logp: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and probabilities of the k most likely tokens (ties broken by lower id)."""
    k = min(k, logp.shape[-1])
    part = np.argpartition(-logp, k - 1)[:k] if k < logp.shape[-1] else np.arange(logp.shape[-1])
    # order the candidates by probability, then id; include every id tied with the k-th value
    kth = logp[part].min()
    cand = np.flatnonzero(logp >= kth)
    order = np.lexsort((cand, -logp[cand]))[:k]
    ids = cand[order]
    return ids, np.exp(logp[ids])


def compare(layer_logits, final_logits, k: int = 10) -> list[dict]:
    """Lens statistics for each row of layer_logits (S, V) against one final distribution (V,)."""
    logq = log_softmax64(final_logits)
    q = np.exp(logq)
    target = int(np.argmax(logq))
    logp = log_softmax64(np.atleast_2d(layer_logits))
    p = np.exp(logp)
    with np.errstate(invalid="ignore"):
        entropy = -np.where(p > 0, p * logp, 0.0).sum(axis=-1)
    kl = _kl(logq[None], logp)
    cosine = np.einsum("sv,v->s", p, q) / (np.sqrt(np.einsum("sv,sv->s", p, p)) * np.sqrt(q @ q))
    rank = 1 + np.count_nonzero(logp > logp[:, target:target + 1], axis=-1)
    out = []
    for i, row in enumerate(logp):
        ids, probs = top_k(row, k)
        out.append({
            "entropy": float(entropy[i]),
            "kl_to_final": float(kl[i]),
            "cosine_to_final": float(cosine[i]),
            "final_top_rank": int(rank[i]),
            "top1_prob": float(probs[0]),
            "top_ids": [int(j) for j in ids],
            "top_probs": [float(x) for x in probs],
        })
    return out


def final_summary(final_logits, k: int = 10) -> dict:
    """The same statistics for the model's own distribution (KL 0, rank 1, cosine 1)."""
    return compare(np.asarray(final_logits)[None], final_logits, k)[0]


class FinalDistribution:
    """The model's final distributions q at some positions, prepared once for `all_positions`."""

    def __init__(self, final_logits):
        logq = log_softmax64(final_logits)
        q = np.exp(logq)
        self.q = q
        self.q_sum = q.sum(axis=-1)
        with np.errstate(invalid="ignore"):
            self.neg_entropy = np.where(q > 0, q * logq, 0.0).sum(axis=-1)  # sum q log q
        self.top1 = np.argmax(logq, axis=-1)


def all_positions(layer_logits, final: FinalDistribution) -> tuple[np.ndarray, np.ndarray]:
    """Per position: KL(final || layer) and whether the layer's top-1 token equals the final's.

    layer_logits: (P, V). Uses KL(q || p) = sum q log q - sum q z + logsumexp(z) * sum q, with z
    the layer's logits in float64 (log p = z - logsumexp(z)): a few passes over the logits
    instead of materialising log p. Returns (kl (P,), agree (P,) bool)."""
    z = np.asarray(layer_logits)
    top1 = np.argmax(z, axis=-1)
    m = z.max(axis=-1, keepdims=True)
    shifted = np.subtract(z, m, dtype=np.float64)
    cross = np.einsum("pv,pv->p", final.q, shifted)  # sum q (z - m)
    np.exp(shifted, out=shifted)
    lse = np.log(shifted.sum(axis=-1))  # logsumexp(z) - m
    kl = final.neg_entropy - cross + lse * final.q_sum
    return np.maximum(kl, 0.0), top1 == final.top1


def sample_positions(kept: np.ndarray, limit: int | None) -> np.ndarray:
    """At most `limit` positions spread evenly over the kept ones, the first and last included
    (all of them when limit is None or not smaller than their number)."""
    kept = np.asarray(kept)
    if limit is None or limit >= kept.size:
        return kept
    if limit <= 0:
        return kept[:0]
    if limit == 1:
        return kept[-1:]
    idx = np.unique(np.round(np.linspace(0, kept.size - 1, limit)).astype(np.int64))
    return kept[idx]
