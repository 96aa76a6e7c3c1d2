"""Shared pieces of the contrastive losses: the all-views similarity logits of NT-Xent and SupCon, and health statistics
of contrastive logits (accuracy of picking the positive, mean positive/negative logit).

The statistics are used by the engines and handlers to watch training: for InfoNCE (He et al. 2020) the positive is
column 0; for NT-Xent (Chen et al. 2020) and SupCon (Khosla et al. 2020) the positive column is given by the labels
that ``forward_with_logits`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from monai_moco.utils.dist import concat_all_gather_with_grad, get_rank, get_world_size

__all__ = ["contrastive_accuracy", "logit_stats", "multi_view_logits"]


def multi_view_logits(
    views: Sequence[torch.Tensor], temperature: float, gather_distributed: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarity logits of every local embedding against every (global) embedding of every view but itself.

    The common core of NT-Xent (Chen et al., ICML 2020) and SupCon (Khosla et al., NeurIPS 2020): the ``V`` views are
    L2-normalised in float32, gathered across ranks with gradient when ``gather_distributed`` and DDP is running
    (``N`` = global batch), and each of the ``V * B`` local anchors is compared with all ``V * N`` embeddings except
    itself. Call it with autocast disabled (the losses do), so the logits stay float32.

    Args:
        views: ``V >= 1`` tensors of shape ``B x D``; row ``i`` of every view is sample ``i``.
        temperature: the logits are divided by it.
        gather_distributed: under DDP, contrast against the other ranks' embeddings too.

    Returns:
        ``(logits, anchor_sample, column_sample)``: ``logits`` ``VB x (VN - 1)`` float32, rows = local anchors (view
        1's batch, then view 2's, ...), columns = all global embeddings (view 1 of every rank, then view 2, ...) with
        the anchor itself removed; ``anchor_sample`` ``VB`` (long), the global sample index of each anchor;
        ``column_sample`` ``VB x (VN - 1)`` (long), the global sample index of each column. The positives of an
        instance-discrimination loss are the columns where ``column_sample == anchor_sample[:, None]``.

    Raises:
        ValueError: when ``views`` is empty or the views are not all ``B x D`` of one shape.

    Example::

        logits, anchor, column = multi_view_logits([z1, z2], temperature=0.1)
        labels = (column == anchor[:, None]).int().argmax(dim=1)  # NT-Xent's positive column per anchor
    """
    if len(views) == 0 or views[0].ndim != 2 or any(v.shape != views[0].shape for v in views):
        raise ValueError(
            f"multi_view_logits: expected V >= 1 views, each B x D of one shape, got shapes "
            f"{[tuple(v.shape) for v in views]}."
        )
    batch, n_views = views[0].shape[0], len(views)
    device = views[0].device
    normed = [F.normalize(v.float(), dim=1) for v in views]
    if gather_distributed and get_world_size() > 1:
        gathered = [concat_all_gather_with_grad(a) for a in normed]
        offset = get_rank() * batch
    else:
        gathered, offset = normed, 0
    n = gathered[0].shape[0]
    logits_full = torch.cat(normed) @ torch.cat(gathered).T / temperature  # VB x VN
    local = torch.arange(batch, device=device) + offset
    self_col = torch.cat([local + k * n for k in range(n_views)])
    keep = torch.ones_like(logits_full, dtype=torch.bool)
    keep[torch.arange(n_views * batch, device=device), self_col] = False
    shape = (n_views * batch, n_views * n - 1)
    column_sample = (torch.arange(n_views * n, device=device) % n).expand_as(logits_full)[keep].view(shape)
    return logits_full[keep].view(shape), local.repeat(n_views), column_sample


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
