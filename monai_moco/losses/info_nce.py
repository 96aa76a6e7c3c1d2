"""InfoNCE loss of MoCo (He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020;
Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018).

Each query is contrasted against its positive key (column 0 of the logits) and ``K`` negatives from the memory queue
(:class:`monai_moco.losses.MemoryQueue`) or, without a queue, against the other keys of the batch. Logits and the
cross-entropy are computed in float32 with autocast disabled, so the loss stays finite at ``T = 0.07`` under bf16/fp16
mixed precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.utils import LossReduction, look_up_option
from torch.nn.modules.loss import _Loss

__all__ = ["InfoNCELoss"]


class InfoNCELoss(_Loss):
    """MoCo's InfoNCE loss: ``-log( exp(q.k+/T) / (exp(q.k+/T) + sum_j exp(q.k_j/T)) )``.

    ``query`` and ``key`` are L2-normalised inside the loss; the queue is assumed already normalised (as
    :class:`~monai_moco.losses.MemoryQueue` stores it) and is detached. The positive logit is column 0 and the labels
    are zeros (the layout of facebookresearch/moco). Gradients flow into ``query`` and ``key``; detaching the key
    (momentum encoder output) is the caller's job.

    Args:
        temperature: softmax temperature ``T > 0`` (MoCo-v2: 0.2, MoCo-v1: 0.07).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample losses, ``B``).

    Raises:
        ValueError: when ``temperature <= 0`` or ``reduction`` is unknown.

    Example::

        loss_fn = InfoNCELoss(temperature=0.2)
        loss = loss_fn(q, k.detach(), queue.get())  # q, k: B x D, queue: K x D
    """

    def __init__(self, temperature: float = 0.07, reduction: LossReduction | str = LossReduction.MEAN) -> None:
        super().__init__(reduction=look_up_option(reduction, LossReduction).value)
        if temperature <= 0:
            raise ValueError(f"InfoNCELoss: temperature must be > 0, got {temperature}.")
        self.temperature = float(temperature)

    def forward(self, query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of ``query`` against positive ``key`` and the negatives.

        Args:
            query: ``B x D`` query embeddings (not necessarily normalised).
            key: ``B x D`` positive key embeddings (not necessarily normalised).
            queue: ``K x D`` L2-normalised negative keys; ``None`` uses the other ``B - 1`` keys of the batch.

        Returns:
            the reduced loss (float32), or ``B`` per-sample losses for ``reduction="none"``.
        """
        return self.forward_with_logits(query, key, queue)[0]

    def forward_with_logits(
        self, query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss plus the logits and labels (for accuracy and positive/negative logit statistics).

        Args:
            query: ``B x D`` query embeddings.
            key: ``B x D`` positive key embeddings.
            queue: ``K x D`` normalised negatives, or ``None`` for in-batch negatives (``K = B - 1``).

        Returns:
            ``(loss, logits, labels)``: logits ``B x (1 + K)`` already divided by the temperature, float32, positive
            in column 0; labels ``B`` zeros (long).

        Raises:
            ValueError: when the shapes of ``query``, ``key`` and ``queue`` do not match.
        """
        if query.ndim != 2 or query.shape != key.shape:
            raise ValueError(
                f"InfoNCELoss: query and key must both be B x D, got query {tuple(query.shape)} and key "
                f"{tuple(key.shape)}."
            )
        if queue is not None and (queue.ndim != 2 or queue.shape[1] != query.shape[1]):
            raise ValueError(
                f"InfoNCELoss: queue must be K x D with D = {query.shape[1]} (the query dimension), got "
                f"{tuple(queue.shape)}."
            )
        batch = query.shape[0]
        with torch.autocast(device_type=query.device.type, enabled=False):
            q = F.normalize(query.float(), dim=1)
            k = F.normalize(key.float(), dim=1)
            l_pos = (q * k).sum(dim=1, keepdim=True)
            if queue is None:
                sim = q @ k.T
                off_diag = ~torch.eye(batch, dtype=torch.bool, device=sim.device)
                l_neg = sim[off_diag].view(batch, batch - 1)
            else:
                l_neg = q @ queue.detach().to(device=q.device, dtype=torch.float32).T
            logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature
            labels = torch.zeros(batch, dtype=torch.long, device=logits.device)
            loss = F.cross_entropy(logits, labels, reduction=self.reduction)
        return loss, logits, labels
