"""Patch-embedding stems for vision transformers: the convolutional stem of Xiao et al. and the plain patchify stem.

Xiao, Singh, Mintun, Darrell, Dollár, Girshick, "Early Convolutions Help Transformers See Better", NeurIPS 2021
(https://arxiv.org/abs/2106.14881) replace ViT's single ``patch_size x patch_size`` stride-``patch_size`` convolution
("patchify stem", Dosovitskiy et al., ICLR 2021) by a small stack of 3x3 stride-2 convolutions (BatchNorm + ReLU) and a
final 1x1 convolution to the transformer width. The conv stem makes optimisation more stable (less sensitive to
learning rate and optimiser) and usually improves accuracy at matched FLOPs.

Both stems map ``B x C x H x W`` to ``B x hidden_size x H/p x W/p``. With ``spatial_dims=3`` they map volumes
``B x C x D x H x W`` to a ``D/p x H/p x W/p`` grid: the conv stem then uses 3x3x3 stride-2 convolutions with
BatchNorm3d, the direct 3D analogue of the paper's stem.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Norm

__all__ = ["ConvStem", "PatchifyStem", "default_stem_channels", "num_stem_convs"]


def num_stem_convs(patch_size: int) -> int:
    """Number of 3x3 stride-2 convolutions a conv stem needs to reach ``patch_size``: ``log2(patch_size)``.

    Args:
        patch_size: side of one transformer token in input pixels; a power of two >= 2.

    Returns:
        ``log2(patch_size)`` (3 for patch 8, 4 for patch 16).

    Raises:
        ValueError: if ``patch_size`` is not a power of two >= 2.

    Example::

        >>> num_stem_convs(16)
        4
    """
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 2:
        raise ValueError(f"ConvStem: patch_size must be a power of two >= 2 (e.g. 8 or 16), got {patch_size!r}.")
    if patch_size & (patch_size - 1):
        raise ValueError(
            f"ConvStem: patch_size must be a power of two (each 3x3 conv halves the resolution), got {patch_size}."
        )
    return int(math.log2(patch_size))


def default_stem_channels(hidden_size: int, patch_size: int) -> tuple[int, ...]:
    """Default widths of the strided convolutions: double at every stride, ending at ``hidden_size``.

    This is the rule behind Xiao et al.'s ViT_C-1GF (width 192: 24 -> 48 -> 96 -> 192) and ViT_C-4GF (width 384:
    48 -> 96 -> 192 -> 384) stems, scaled to any width: the last strided conv has ``hidden_size`` channels and each
    earlier one half as many (never fewer than 8). With this rule the stem costs about one transformer block of
    FLOPs, which is why the paper drops one block (see ``ConvStemViT(reduce_depth_for_stem=True)``).
    (For ViT-B width 768 this gives 96 -> 192 -> 384 -> 768; the paper's 18GF model used a deeper 6-conv stem.)

    Args:
        hidden_size: the transformer width.
        patch_size: power of two >= 2; the number of strided convs is ``log2(patch_size)``.

    Returns:
        one channel count per strided conv.

    Example::

        >>> default_stem_channels(192, 16)
        (24, 48, 96, 192)
    """
    n = num_stem_convs(patch_size)
    return tuple(max(8, hidden_size >> (n - 1 - i)) for i in range(n))


class ConvStem(nn.Module):
    """Convolutional stem (Xiao et al., NeurIPS 2021): ``log2(patch_size)`` 3x3 stride-2 convs + BN + ReLU, then 1x1.

    Args:
        in_channels: input channels (1 for radiographs).
        hidden_size: output channels (the transformer width).
        patch_size: total down-sampling; a power of two >= 2 (3 strided convs for 8, 4 for 16).
        channels: widths of the strided convs, one per conv; default :func:`default_stem_channels`
            (doubling each stride and ending at ``hidden_size``, e.g. 24, 48, 96, 192 for width 192).
        spatial_dims: 2 for images, 3 for volumes.

    Raises:
        ValueError: if ``patch_size`` is not a power of two, or ``channels`` has the wrong length or non-positive
            entries.

    Example::

        >>> stem = ConvStem(in_channels=1, hidden_size=192, patch_size=16)
        >>> stem(torch.zeros(2, 1, 224, 224)).shape
        torch.Size([2, 192, 14, 14])
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden_size: int = 768,
        patch_size: int = 16,
        channels: Sequence[int] | None = None,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        n = num_stem_convs(patch_size)
        chans = default_stem_channels(hidden_size, patch_size) if channels is None else tuple(int(c) for c in channels)
        if len(chans) != n:
            raise ValueError(
                f"ConvStem: channels={tuple(chans)} has {len(chans)} entries but patch_size={patch_size} needs "
                f"{n} stride-2 convolutions (one width per conv)."
            )
        if any(c <= 0 for c in chans):
            raise ValueError(f"ConvStem: channels must all be positive, got {tuple(chans)}.")
        conv_type = Conv[Conv.CONV, spatial_dims]
        norm_type = Norm[Norm.BATCH, spatial_dims]
        layers: list[nn.Module] = []
        prev = in_channels
        for c in chans:
            # bias is redundant before BatchNorm
            layers += [conv_type(prev, c, kernel_size=3, stride=2, padding=1, bias=False), norm_type(c), nn.ReLU()]
            prev = c
        self.convs = nn.Sequential(*layers)
        self.proj = conv_type(prev, hidden_size, kernel_size=1)
        self.in_channels = in_channels
        self.out_channels = hidden_size
        self.patch_size = patch_size
        self.channels = chans
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``B x C x *spatial`` to ``B x hidden_size x *(spatial / patch_size)``."""
        return self.proj(self.convs(x))


class PatchifyStem(nn.Module):
    """The plain ViT patch embedding (Dosovitskiy et al., ICLR 2021): one conv with kernel = stride = ``patch_size``.

    Same constructor arguments (less ``channels``) and same output as :class:`ConvStem`, for comparison.

    Args:
        in_channels: input channels.
        hidden_size: output channels (the transformer width).
        patch_size: kernel size and stride; any integer >= 1.
        spatial_dims: 2 for images, 3 for volumes.

    Raises:
        ValueError: if ``patch_size`` < 1.

    Example::

        >>> stem = PatchifyStem(in_channels=1, hidden_size=192, patch_size=16)
        >>> stem(torch.zeros(2, 1, 224, 224)).shape
        torch.Size([2, 192, 14, 14])
    """

    def __init__(self, in_channels: int = 1, hidden_size: int = 768, patch_size: int = 16, spatial_dims: int = 2) -> None:
        super().__init__()
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"PatchifyStem: patch_size must be a positive integer, got {patch_size!r}.")
        self.proj = Conv[Conv.CONV, spatial_dims](in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)
        self.in_channels = in_channels
        self.out_channels = hidden_size
        self.patch_size = patch_size
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``B x C x *spatial`` to ``B x hidden_size x *(spatial / patch_size)``."""
        return self.proj(x)
