"""Why a MoCo loss moves: the same queries scored against the run's stored queue and against freshly encoded keys.

MoCo's negatives are keys encoded by the momentum encoder over the last ``K / B`` steps (He et al., CVPR 2020, section
3.2: the queue must stay *consistent*). When the encoder moves quickly, old keys differ systematically from new ones,
and a query can pick its positive out of the queue by its freshness rather than by its content; the loss then looks
low. :func:`queue_consistency` separates the two effects at a checkpoint: it computes the InfoNCE loss, top-1 and the
mean positive / negative cosine of the same queries once with the checkpoint's queue and once with a queue of keys
encoded now, by the same momentum encoder, from other images. A training loss that rises while the fresh-queue loss
falls is the queue becoming consistent, not the representation getting worse.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["queue_consistency"]


def _scores(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float) -> dict[str, float]:
    pos = (q * k).sum(1, keepdim=True)
    neg = q @ negatives.T
    logits = torch.cat([pos, neg], 1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long)
    return {
        "loss": float(F.cross_entropy(logits, target)),
        "acc1": float((logits.argmax(1) == 0).float().mean()),
        "pos_cos": float(pos.mean()),
        "neg_cos": float(neg.mean()),
    }


@torch.no_grad()
def queue_consistency(
    network: nn.Module,
    momentum_network: nn.Module,
    queue: torch.Tensor,
    view_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    temperature: float = 0.2,
    train_mode: bool = True,
) -> dict[str, Any]:
    """InfoNCE of the same queries against the stored queue and against a queue of keys encoded now.

    Both encoders run as in training (``train_mode``: BatchNorm with batch statistics; their running statistics are
    restored afterwards). The fresh negatives of a batch are the keys of the other batches, as many as the stored
    queue holds at most; the stored queue is subsampled to the same count, so both losses have the same ``log K``.

    Args:
        network: the query encoder (its output is L2-normalised here).
        momentum_network: the key encoder.
        queue: ``K x D`` stored keys (L2-normalised).
        view_batches: ``(view1, view2)`` batches of two augmented views of the same images.
        temperature: InfoNCE temperature of the run.
        train_mode: run the encoders in training mode, as the loss was computed during training.

    Returns:
        ``{"stored": {loss, acc1, pos_cos, neg_cos}, "fresh": {...}, "negatives": K, "images": N}``.

    Raises:
        ValueError: when fewer than two batches are given (no fresh negatives).

    Example::

        report = queue_consistency(ckpt_net, ckpt_key_net, ckpt_queue, batches_of_view_pairs, temperature=0.2)
        report["stored"]["loss"], report["fresh"]["loss"]
    """
    states = [{k: v.clone() for k, v in m.state_dict().items()} for m in (network, momentum_network)]
    modes = [network.training, momentum_network.training]
    network.train(train_mode)
    momentum_network.train(train_mode)
    try:
        qs, ks = [], []
        for v1, v2 in view_batches:
            qs.append(F.normalize(network(v1).float(), dim=1).cpu())
            ks.append(F.normalize(momentum_network(v2).float(), dim=1).cpu())
    finally:
        for m, state, mode in zip((network, momentum_network), states, modes, strict=True):
            m.load_state_dict(state)
            m.train(mode)
    if len(qs) < 2:
        raise ValueError("queue_consistency: need at least two batches (the fresh negatives come from other batches).")
    stored = queue.detach().float().cpu()
    totals: dict[str, dict[str, float]] = {"stored": {}, "fresh": {}}
    n_total = sum(q.shape[0] for q in qs)
    k_used = 0
    for i, (q, k) in enumerate(zip(qs, ks, strict=True)):
        others = torch.cat([kk for j, kk in enumerate(ks) if j != i])
        k_used = min(stored.shape[0], others.shape[0])
        fresh = others[:k_used]
        old = stored[torch.linspace(0, stored.shape[0] - 1, k_used).long()]
        for name, negatives in (("stored", old), ("fresh", fresh)):
            for key, value in _scores(q, k, negatives, temperature).items():
                totals[name][key] = totals[name].get(key, 0.0) + value * q.shape[0] / n_total
    return {**totals, "negatives": k_used, "images": n_total}
