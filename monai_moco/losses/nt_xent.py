"""NT-Xent (normalised temperature-scaled cross-entropy) loss of SimCLR (Chen et al., "A Simple Framework for
Contrastive Learning of Visual Representations", ICML 2020).

For ``N`` pairs of views every embedding has one positive (its other view) and ``2N - 2`` negatives (all other
embeddings of both views). Under DDP the embeddings of all ranks are gathered *with* gradient
(:func:`monai_moco.utils.dist.concat_all_gather_with_grad`), so ``N`` is the global batch. Computed in float32 with
autocast disabled, so it is stable under bf16/fp16 mixed precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.utils import LossReduction, look_up_option
from torch.nn.modules.loss import _Loss

from monai_moco.losses.utils import multi_view_logits

__all__ = ["NTXentLoss"]


class NTXentLoss(_Loss):
    """SimCLR's NT-Xent loss over two views, averaged over the ``2B`` local anchors.

    Both views are L2-normalised inside the loss. Each local anchor's logits hold the similarities to all ``2N``
    (global) embeddings except itself, i.e. ``2N - 1`` columns: one positive and ``2N - 2`` negatives. Symmetric in
    the two views.

    Args:
        temperature: softmax temperature ``T > 0`` (SimCLR: 0.1 to 0.5).
        gather_distributed: under DDP, use the other ranks' embeddings as negatives too (``N`` = global batch).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``2B`` per-anchor losses, view 1 first).

    Raises:
        ValueError: when ``temperature <= 0`` or ``reduction`` is unknown.

    Example::

        loss = NTXentLoss(temperature=0.1)(projector(encoder(view1)), projector(encoder(view2)))
    """

    def __init__(
        self,
        temperature: float = 0.1,
        gather_distributed: bool = True,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=look_up_option(reduction, LossReduction).value)
        if temperature <= 0:
            raise ValueError(f"{type(self).__name__}: temperature must be > 0, got {temperature}.")
        self.temperature = float(temperature)
        self.gather_distributed = gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Loss of the two views.

        Args:
            z1: ``B x D`` embeddings of view 1.
            z2: ``B x D`` embeddings of view 2 (row ``i`` pairs with row ``i`` of ``z1``).

        Returns:
            the reduced loss (float32), or ``2B`` per-anchor losses for ``reduction="none"``.
        """
        return self.forward_with_logits(z1, z2)[0]

    def forward_with_logits(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss plus the logits and labels (for accuracy and logit statistics).

        Args:
            z1: ``B x D`` embeddings of view 1.
            z2: ``B x D`` embeddings of view 2.

        Returns:
            ``(loss, logits, labels)``: logits ``2B x (2N - 1)`` float32, divided by the temperature, rows = local
            anchors (view 1 then view 2), columns = all global embeddings (view 1 of every rank, then view 2 of every
            rank) with the anchor itself removed; labels ``2B`` (long) give the positive's column.

        Raises:
            ValueError: when ``z1`` and ``z2`` are not both ``B x D``.
        """
        if z1.ndim != 2 or z1.shape != z2.shape:
            raise ValueError(
                f"NTXentLoss: z1 and z2 must both be B x D, got z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)}."
            )
        with torch.autocast(device_type=z1.device.type, enabled=False):
            logits, anchor, column = multi_view_logits([z1, z2], self.temperature, self.gather_distributed)
            labels = (column == anchor[:, None]).int().argmax(dim=1)  # the other view: one positive per anchor
            loss = F.cross_entropy(logits, labels, reduction=self.reduction)
        return loss, logits, labels
