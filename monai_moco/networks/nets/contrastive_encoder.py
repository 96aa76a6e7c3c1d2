"""The encoder trained by contrastive methods: backbone, optional patch-pooling head, projection head.

``embed`` gives the representation transferred downstream (He et al. 2020, MoCo; Chen et al. 2020, SimCLR: the
features *before* the projection head), ``forward`` the projection the contrastive loss sees.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

__all__ = ["ContrastiveEncoder"]


class ContrastiveEncoder(nn.Module):
    """``projection(embed(x))`` with ``embed(x) = backbone(x)`` or ``patch_head(backbone(x))``.

    Without a ``patch_head`` the backbone must return pooled features ``B x F`` (trailing singleton dimensions such
    as ``B x F x 1 x 1`` are flattened). With a ``patch_head`` the backbone returns patch tokens ``B x N x F`` and
    ``patch_head(tokens)`` pools them into ``B x F'``; a head that accepts ``return_scores=True`` and then returns
    ``(embedding, scores B x N, indices B x K)`` (such as ``TopKPatchHead``) also enables :meth:`patch_scores`.

    The output of :meth:`forward` is not normalised: the contrastive losses normalise.

    Args:
        backbone: feature extractor.
        projection: projection head, e.g. :class:`~monai_moco.networks.blocks.MoCoV2ProjectionHead`.
        patch_head: optional module pooling patch tokens into one embedding.

    Example::

        backbone = torchvision.models.resnet18(); backbone.fc = nn.Identity()
        encoder = ContrastiveEncoder(backbone, MoCoV2ProjectionHead(512, 512, 128))
        z = encoder(x)       # B x 128, for the loss
        h = encoder.embed(x)  # B x 512, for transfer
    """

    def __init__(self, backbone: nn.Module, projection: nn.Module, patch_head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = projection
        self.patch_head = patch_head

    @property
    def out_features(self) -> int | None:
        """Size of the projection output, read from ``projection.out_features`` or its last ``nn.Linear``
        (``None`` when it cannot be derived)."""
        value = getattr(self.projection, "out_features", None)
        if isinstance(value, int):
            return value
        linears = [m for m in self.projection.modules() if isinstance(m, nn.Linear)]
        return linears[-1].out_features if linears else None

    def _backbone_out(self, x: torch.Tensor, tokens: bool) -> torch.Tensor:
        """Backbone output checked for rank: patch tokens ``B x N x F`` or pooled features ``B x F``."""
        out = self.backbone(x)
        if not tokens and out.ndim > 2 and all(s == 1 for s in out.shape[2:]):
            out = out.flatten(1)
        if out.ndim != (3 if tokens else 2):
            hint = (
                "with a patch_head the backbone must return patch tokens B x N x F"
                if tokens
                else "without a patch_head the backbone must return pooled features B x F (add global pooling to "
                "the backbone or pass a patch_head for B x N x F tokens)"
            )
            raise ValueError(f"ContrastiveEncoder: {hint}, got {tuple(out.shape)}.")
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Representation before the projection head.

        Args:
            x: input batch for the backbone.

        Returns:
            ``B x F`` backbone features, or ``B x F'`` pooled by the patch head.

        Raises:
            ValueError: when the backbone output has the wrong rank.
        """
        if self.patch_head is None:
            return self._backbone_out(x, tokens=False)
        return self.patch_head(self._backbone_out(x, tokens=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projection of the representation (what the contrastive loss compares).

        Args:
            x: input batch.

        Returns:
            ``B x out_features`` projections, not normalised.
        """
        return self.projection(self.embed(x))

    def embed_with_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled embedding plus the patch head's per-patch scores and selected patch indices.

        Args:
            x: input batch.

        Returns:
            ``(embedding B x F', scores B x N, indices B x K)``.

        Raises:
            RuntimeError: when there is no patch head or it does not accept ``return_scores=True``.
        """
        if self.patch_head is None:
            raise RuntimeError(
                "ContrastiveEncoder: patch scores need a patch_head (e.g. TopKPatchHead); this encoder has none."
            )
        forward = self.patch_head.forward
        try:
            params = inspect.signature(forward).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            params = {}
        if "return_scores" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            raise RuntimeError(
                f"ContrastiveEncoder: patch_head {type(self.patch_head).__name__} does not accept return_scores=True; "
                "use a head that returns (embedding, scores, indices), such as TopKPatchHead."
            )
        out = self.patch_head(self._backbone_out(x, tokens=True), return_scores=True)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise RuntimeError(
                f"ContrastiveEncoder: patch_head {type(self.patch_head).__name__}(tokens, return_scores=True) must "
                "return (embedding, scores, indices)."
            )
        return out[0], out[1], out[2]

    def patch_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-patch scores of the patch head (for heat-maps).

        Args:
            x: input batch.

        Returns:
            ``B x N`` scores, one per patch token.

        Raises:
            RuntimeError: when there is no patch head or it does not accept ``return_scores=True``.
        """
        return self.embed_with_scores(x)[1]
