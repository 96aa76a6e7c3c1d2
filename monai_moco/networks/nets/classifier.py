"""A linear classification head on a pretrained backbone: linear probe (frozen) or fine-tuning.

The two standard transfer protocols of self-supervised learning (He et al., MoCo, CVPR 2020; Chen et al., SimCLR,
ICML 2020; Sowrirajan et al., MoCo-CXR, MIDL 2021): a **linear probe** trains only a linear layer on frozen
features; **fine-tuning** trains everything, usually with a smaller learning rate for the backbone
(:meth:`XRayClassifier.param_groups`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["XRayClassifier"]


class XRayClassifier(nn.Module):
    """``Linear(dropout(backbone(x)))``: logits ``B x num_classes`` from a pooled-feature backbone.

    With ``frozen=True`` (linear probe) the backbone's parameters get ``requires_grad=False`` and the backbone stays
    in eval mode even when ``.train()`` is called, so neither its weights nor its BatchNorm running statistics move
    (the features are exactly those the pretraining produced). With ``frozen=False`` everything trains.

    Args:
        backbone: feature extractor returning ``B x F`` (trailing singleton dims are flattened) with an
            ``out_features`` attribute, e.g. from :func:`~monai_moco.networks.nets.build_backbone`.
        num_classes: number of logits (1 or 2 for binary, C for multi-class or multi-label).
        frozen: linear probe (freeze the backbone) instead of fine-tuning.
        dropout: dropout probability before the linear head.

    Raises:
        ValueError: when the backbone has no integer ``out_features`` or ``num_classes < 1``.

    Example::

        backbone = build_backbone("resnet18", weights="runs/moco/checkpoint_final.pt")
        model = XRayClassifier(backbone, num_classes=2, frozen=True)
        optimizer = torch.optim.SGD(model.param_groups(lr=0.1), momentum=0.9)
        logits = model(images)  # B x 2
    """

    def __init__(self, backbone: nn.Module, num_classes: int, frozen: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        width = getattr(backbone, "out_features", None)
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(
                f"XRayClassifier: the backbone ({type(backbone).__name__}) needs an integer attribute out_features "
                f"(its feature width), got {width!r}; build it with monai_moco.networks.nets.build_backbone or set it."
            )
        if num_classes < 1:
            raise ValueError(f"XRayClassifier: num_classes must be >= 1, got {num_classes}.")
        self.backbone = backbone
        self.frozen = bool(frozen)
        self.num_classes = int(num_classes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(width, num_classes)
        if self.frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> XRayClassifier:
        """Set training mode; a frozen backbone stays in eval mode (its BatchNorm statistics do not move).

        Args:
            mode: training (True) or evaluation (False).

        Returns:
            self.
        """
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features ``B x F`` (no gradient to the backbone when frozen).

        Args:
            x: input batch.

        Returns:
            the pooled features.

        Raises:
            ValueError: when the backbone does not return ``B x F``.
        """
        if self.frozen:
            with torch.no_grad():
                feats = self.backbone(x)
        else:
            feats = self.backbone(x)
        if feats.ndim > 2 and feats.flatten(2).shape[2] == 1:  # B x F x 1 x 1 (TorchScript-friendly test)
            feats = feats.flatten(1)
        if feats.ndim != 2:
            raise ValueError(
                f"XRayClassifier: the backbone must return pooled features B x F, got shape {feats.shape}."
            )
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits.

        Args:
            x: ``B x C x H x W`` images.

        Returns:
            ``B x num_classes`` logits.
        """
        return self.head(self.dropout(self.embed(x)))

    def param_groups(self, lr: float, backbone_lr: float | None = None) -> list[dict[str, Any]]:
        """Optimizer parameter groups: the head at ``lr``, the (trainable) backbone at ``backbone_lr``.

        Args:
            lr: learning rate of the linear head.
            backbone_lr: learning rate of the backbone when fine-tuning (default ``lr``); ignored when frozen.

        Returns:
            a list for ``torch.optim`` (the backbone group is left out when frozen or when it has no trainable
            parameters).

        Example::

            torch.optim.AdamW(model.param_groups(lr=1e-3, backbone_lr=1e-4))
        """
        groups: list[dict[str, Any]] = [{"params": list(self.head.parameters()), "lr": lr, "name": "head"}]
        backbone_params = [p for p in self.backbone.parameters() if p.requires_grad]
        if backbone_params and not self.frozen:
            groups.append({"params": backbone_params, "lr": lr if backbone_lr is None else backbone_lr,
                           "name": "backbone"})
        return groups
