"""Health statistics of contrastive logits (accuracy of picking the positive, mean positive/negative logit).

Used by the engines and handlers to watch training: for InfoNCE (He et al. 2020) the positive is column 0; for
NT-Xent (Chen et al. 2020) the positive column is given by the labels that ``forward_with_logits`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["contrastive_accuracy", "logit_stats"]


def _labels_or_zeros(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    if logits.ndim != 2:
        raise ValueError(f"contrastive logits must be B x C, got {tuple(logits.shape)}.")
    if labels is None:
        return torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must have shape ({logits.shape[0]},) to match logits {tuple(logits.shape)}, "
                         f"got {tuple(labels.shape)}.")
    return labels.to(device=logits.device, dtype=torch.long)


@torch.no_grad()
def contrastive_accuracy(
    logits: torch.Tensor, labels: torch.Tensor | None = None, topk: Sequence[int] = (1,)
) -> dict[str, float]:
    """Top-k accuracy of finding the positive among the candidates.

    Args:
        logits: ``B x C`` logits.
        labels: ``B`` positive column per row; ``None`` means column 0 (InfoNCE layout).
        topk: the ``k`` values; each is clipped to ``C``.

    Returns:
        ``{"top1": ..., "top5": ...}`` fractions in ``[0, 1]``.

    Raises:
        ValueError: when the shapes do not match.

    Example::

        loss, logits, labels = InfoNCELoss().forward_with_logits(q, k, queue)
        acc = contrastive_accuracy(logits, labels, topk=(1, 5))["top1"]
    """
    labels = _labels_or_zeros(logits, labels)
    maxk = min(max(topk), logits.shape[1])
    pred = logits.topk(maxk, dim=1).indices  # B x maxk
    hit = pred.eq(labels[:, None])
    return {f"top{k}": hit[:, : min(k, maxk)].any(dim=1).float().mean().item() for k in topk}


@torch.no_grad()
def logit_stats(logits: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[float, float]:
    """Mean positive logit and mean negative logit.

    Entries equal to ``-inf`` (masked self-similarities) are left out of the negative mean.

    Args:
        logits: ``B x C`` logits.
        labels: ``B`` positive column per row; ``None`` means column 0 (InfoNCE layout).

    Returns:
        ``(pos_mean, neg_mean)`` as floats (``nan`` for the negatives when there are none).

    Raises:
        ValueError: when the shapes do not match.

    Example::

        pos, neg = logit_stats(logits)  # a shrinking gap pos - neg is a sign of collapse
    """
    labels = _labels_or_zeros(logits, labels)
    logits = logits.float()
    pos_mask = torch.zeros_like(logits, dtype=torch.bool)
    pos_mask[torch.arange(logits.shape[0], device=logits.device), labels] = True
    neg_mask = ~pos_mask & ~torch.isneginf(logits)
    pos_mean = logits[pos_mask].mean().item()
    neg_mean = logits[neg_mask].mean().item() if neg_mask.any() else float("nan")
    return pos_mean, neg_mean
