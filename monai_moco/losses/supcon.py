"""Supervised contrastive loss (Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020), the L_out form.

NT-Xent (:class:`~monai_moco.losses.NTXentLoss`) gives each embedding one positive, the other view of its own image.
SupCon uses the labels: every other embedding of the same class, in any view, is a positive, and the loss averages
the log-likelihood over those positives *outside* the logarithm (``L_out``, the form the paper found best):

``L = mean_i  -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p/T) / sum_{a != i} exp(z_i.z_a/T) )``

With every label distinct (or ``labels=None``), ``P(i)`` is the other view(s) of sample ``i`` and the loss is NT-Xent.
The similarity logits come from :func:`monai_moco.losses.utils.multi_view_logits`, shared with NT-Xent, so the
DDP gathering and the float32 computation under autocast are the same.
"""

from __future__ import annotations

import torch
from monai.utils import LossReduction

from monai_moco.losses.nt_xent import NTXentLoss
from monai_moco.losses.utils import multi_view_logits
from monai_moco.utils.dist import concat_all_gather, get_world_size

__all__ = ["SupConLoss"]


class SupConLoss(NTXentLoss):
    """Supervised contrastive loss over ``V >= 2`` views and class labels (Khosla et al. NeurIPS 2020, ``L_out``).

    Inputs are ``B x V x D`` features (the layout of the paper's reference code) or two ``B x D`` views, as the
    SimCLR engine gives them. Embeddings are L2-normalised inside the loss. Every one of the ``V * B`` local anchors
    is contrasted with all other ``V * N - 1`` embeddings (``N`` = global batch under DDP); its positives are all of
    them with the anchor's label. The loss is averaged over anchors. The reference code's extra factor
    ``temperature / base_temperature`` is 1 here (its default); scale the loss yourself to reproduce other settings.
    It extends :class:`~monai_moco.losses.NTXentLoss` (same arguments), of which it is the labelled generalisation.

    Args:
        temperature: softmax temperature ``T > 0`` (the paper: 0.1).
        gather_distributed: under DDP, contrast against the other ranks' embeddings (and labels) too.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``V * B`` per-anchor losses, view 1's batch first).

    Raises:
        ValueError: when ``temperature <= 0`` or ``reduction`` is unknown.

    Example::

        loss_fn = SupConLoss(temperature=0.1)
        loss = loss_fn(projector(encoder(view1)), projector(encoder(view2)), labels=labels)  # labels: B
        loss = loss_fn(torch.stack([z1, z2], dim=1), labels=labels)  # B x 2 x D
    """

    def forward(
        self, z1: torch.Tensor, z2: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss of the views given their labels.

        Args:
            z1: ``B x V x D`` features of ``V >= 2`` views, or ``B x D`` view-1 embeddings when ``z2`` is given.
            z2: ``B x D`` view-2 embeddings (row ``i`` pairs with row ``i`` of ``z1``), or ``None``.
            labels: ``B`` integer class labels; ``None`` makes every sample its own class (NT-Xent).

        Returns:
            the reduced loss (float32), or ``V * B`` per-anchor losses for ``reduction="none"``.
        """
        return self.forward_with_logits(z1, z2, labels=labels)[0]

    def forward_with_logits(
        self, z1: torch.Tensor, z2: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss plus the logits and each anchor's instance positive (for accuracy and logit statistics).

        Args:
            z1: ``B x V x D`` features, or ``B x D`` view-1 embeddings when ``z2`` is given.
            z2: ``B x D`` view-2 embeddings, or ``None``.
            labels: ``B`` integer class labels, or ``None``.

        Returns:
            ``(loss, logits, positives)``: logits ``VB x (VN - 1)`` float32 divided by the temperature, laid out as
            :func:`~monai_moco.losses.utils.multi_view_logits` says (for ``V = 2`` the layout of NT-Xent);
            positives ``VB`` (long) give the column of another view of the anchor's own sample (the first), so the engines' ``acc1`` is the
            instance-discrimination accuracy, comparable with SimCLR's.

        Raises:
            ValueError: when the features are not ``B x V x D`` with ``V >= 2`` (or two ``B x D`` views of one shape),
                or ``labels`` is not ``B`` integers.
        """
        views = self._views(z1, z2)
        batch = views[0].shape[0]
        if labels is not None and (labels.shape != (batch,) or labels.is_floating_point()):
            raise ValueError(
                f"SupConLoss: labels must be {batch} integer class labels (shape ({batch},)) to match the features "
                f"{self._shapes(z1, z2)}, got {labels.dtype} of shape {tuple(labels.shape)}."
            )
        with torch.autocast(device_type=views[0].device.type, enabled=False):
            logits, anchor, column = multi_view_logits(views, self.temperature, self.gather_distributed)
            same_sample = column == anchor[:, None]
            if labels is None:
                positive = same_sample
            else:
                labels = labels.to(device=logits.device, dtype=torch.long)
                if self.gather_distributed and get_world_size() > 1:
                    labels = concat_all_gather(labels)
                positive = labels[column] == labels[anchor][:, None]
            log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
            per_anchor = -(log_prob * positive).sum(dim=1) / positive.sum(dim=1)
            instance = same_sample.int().argmax(dim=1)
        if self.reduction == LossReduction.MEAN.value:
            loss = per_anchor.mean()
        elif self.reduction == LossReduction.SUM.value:
            loss = per_anchor.sum()
        else:
            loss = per_anchor
        return loss, logits, instance

    @staticmethod
    def _shapes(z1: torch.Tensor, z2: torch.Tensor | None) -> str:
        return f"z1 {tuple(z1.shape)}" + ("" if z2 is None else f" and z2 {tuple(z2.shape)}")

    def _views(self, z1: torch.Tensor, z2: torch.Tensor | None) -> list[torch.Tensor]:
        if z2 is None:
            if z1.ndim != 3 or z1.shape[1] < 2:
                raise ValueError(
                    "SupConLoss: features must be B x V x D with V >= 2 views (or two B x D views z1, z2), got "
                    f"{self._shapes(z1, z2)}."
                )
            return list(z1.unbind(dim=1))
        if z1.ndim != 2 or z1.shape != z2.shape:
            raise ValueError(f"SupConLoss: z1 and z2 must both be B x D, got {self._shapes(z1, z2)}.")
        return [z1, z2]
