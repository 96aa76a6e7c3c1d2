"""Projection heads that map backbone features to the space where the contrastive loss is computed.

Lightly-style composable head (:class:`ProjectionHead`, a list of ``Linear -> [norm] -> [activation]`` blocks) and the
two standard instances: the MoCo-v2 MLP (Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020)
the MoCo-v1 linear head (He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020)
and the SimCLR head (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020;
BatchNorm variant of SimCLR-v2, "Big Self-Supervised Models are Strong Semi-Supervised Learners", NeurIPS 2020).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ProjectionHead", "LinearProjectionHead", "MoCoV2ProjectionHead", "SimCLRProjectionHead"]


class ProjectionHead(nn.Module):
    """A stack of ``Linear(in, out) -> optional norm -> optional activation`` blocks (as lightly's ProjectionHead).

    A block's ``Linear`` has no bias when a norm follows it (the norm's shift replaces it).

    Args:
        blocks: ``(in_features, out_features, norm or None, activation or None)`` per block.

    Raises:
        ValueError: when ``blocks`` is empty or consecutive blocks do not chain (``out`` of one != ``in`` of next).

    Example::

        head = ProjectionHead([(512, 512, nn.BatchNorm1d(512), nn.ReLU()), (512, 128, None, None)])
        z = head(torch.randn(8, 512))  # 8 x 128
    """

    def __init__(self, blocks: Sequence[tuple[int, int, nn.Module | None, nn.Module | None]]) -> None:
        super().__init__()
        if len(blocks) == 0:
            raise ValueError("ProjectionHead: blocks must hold at least one (in, out, norm, act) block.")
        layers: list[nn.Module] = []
        for i, (in_features, out_features, norm, act) in enumerate(blocks):
            if i > 0 and in_features != blocks[i - 1][1]:
                raise ValueError(
                    f"ProjectionHead: block {i} expects {in_features} input features but block {i - 1} gives "
                    f"{blocks[i - 1][1]}."
                )
            layers.append(nn.Linear(in_features, out_features, bias=norm is None))
            if norm is not None:
                layers.append(norm)
            if act is not None:
                layers.append(act)
        self.layers = nn.Sequential(*layers)
        self.in_features = int(blocks[0][0])
        self.out_features = int(blocks[-1][1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``B x in_features`` features.

        Args:
            x: ``B x in_features``.

        Returns:
            ``B x out_features``.

        Raises:
            ValueError: when ``x`` is not ``B x in_features``.
        """
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__}: expected features of shape B x {self.in_features}, got {tuple(x.shape)} "
                "(pool or flatten the backbone output first)."
            )
        return self.layers(x)


class LinearProjectionHead(ProjectionHead):
    """MoCo-v1's head: one ``Linear`` layer from the pooled backbone features to the embedding (He et al., CVPR 2020,
    where the ResNet's ``fc`` layer outputs the 128-d embedding directly).

    MoCo-v2 (Chen et al. 2020, "Improved Baselines") replaced it with a two-layer MLP
    (:class:`MoCoV2ProjectionHead`); the linear head is kept for the v1-versus-v2 comparison. ``batch_norm=True``
    adds a ``BatchNorm1d`` after the layer (bias-free then), the same guard against a collapsed key head that
    ``MoCoV2ProjectionHead(batch_norm=True)`` gives the MLP, so both heads can be compared under one recipe.

    Args:
        in_features: backbone feature size (2048 for ResNet-50, 512 for ResNet-18).
        out_features: embedding size (MoCo-v1: 128).
        batch_norm: ``BatchNorm1d`` after the linear layer.

    Example::

        head = LinearProjectionHead(512, 128)
        z = head(torch.randn(8, 512))  # 8 x 128
    """

    def __init__(self, in_features: int = 2048, out_features: int = 128, batch_norm: bool = False) -> None:
        super().__init__([(in_features, out_features, nn.BatchNorm1d(out_features) if batch_norm else None, None)])


class MoCoV2ProjectionHead(ProjectionHead):
    """MoCo-v2's two-layer MLP head: ``Linear -> ReLU -> Linear`` (Chen et al. 2020, "Improved Baselines").

    With ``batch_norm=True`` both linear layers are followed by ``BatchNorm1d`` (as in MoCo v3, Chen, Xie, He, ICCV
    2021, and SimCLR-v2). The normalised output cannot drift towards one direction shared by every image: on
    homogeneous data such as chest radiographs the plain head can collapse that way (every key nearly the same, the
    queue told apart from the batch only by its age), which the batch-normalised head prevents.

    Args:
        in_features: backbone feature size (2048 for ResNet-50, 512 for ResNet-18).
        hidden_features: hidden layer size.
        out_features: embedding size.
        batch_norm: ``BatchNorm1d`` after each linear layer.

    Example::

        head = MoCoV2ProjectionHead(512, 512, 128)
        head_bn = MoCoV2ProjectionHead(512, 512, 128, batch_norm=True)
    """

    def __init__(
        self, in_features: int = 2048, hidden_features: int = 2048, out_features: int = 128, batch_norm: bool = False
    ) -> None:
        super().__init__([
            (in_features, hidden_features, nn.BatchNorm1d(hidden_features) if batch_norm else None, nn.ReLU()),
            (hidden_features, out_features, nn.BatchNorm1d(out_features) if batch_norm else None, None),
        ])


class SimCLRProjectionHead(ProjectionHead):
    """SimCLR's MLP head: ``num_layers`` linear layers with ReLU between them and optional BatchNorm (Chen et al.
    2020; ``num_layers=3, batch_norm=True`` is SimCLR-v2's head).

    With ``batch_norm=True`` every linear layer is followed by ``BatchNorm1d`` (the last one too, as in SimCLR-v2 and
    lightly); the last layer has no activation.

    Args:
        in_features: backbone feature size.
        hidden_features: hidden layer size.
        out_features: embedding size.
        num_layers: number of linear layers, ``>= 1``.
        batch_norm: add ``BatchNorm1d`` after each linear layer.

    Raises:
        ValueError: when ``num_layers < 1``.

    Example::

        head = SimCLRProjectionHead(512, 512, 128, num_layers=2)
    """

    def __init__(
        self,
        in_features: int = 2048,
        hidden_features: int = 2048,
        out_features: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"SimCLRProjectionHead: num_layers must be >= 1, got {num_layers}.")
        dims = [in_features] + [hidden_features] * (num_layers - 1) + [out_features]
        blocks: list[tuple[int, int, nn.Module | None, nn.Module | None]] = []
        for i in range(num_layers):
            last = i == num_layers - 1
            norm = nn.BatchNorm1d(dims[i + 1]) if batch_norm else None
            blocks.append((dims[i], dims[i + 1], norm, None if last else nn.ReLU()))
        super().__init__(blocks)
