"""Vision transformer with a convolutional stem (ViT_C), built from MONAI's ``TransformerBlock`` (as
:class:`~monai_moco.networks.blocks.TokenTransformerBlock`).

Xiao et al., "Early Convolutions Help Transformers See Better", NeurIPS 2021 (https://arxiv.org/abs/2106.14881):
replacing ViT's patchify stem (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021) by a few 3x3
stride-2 convolutions makes the transformer easier to optimise; the paper removes one transformer block so that the
conv-stem model costs the same FLOPs as the plain one (``reduce_depth_for_stem=True`` here).

The same class builds the plain ViT (``stem="patchify"``) for comparison, with learnable or fixed 2D sin-cos position
embeddings, a CLS token, and CLS / mean / no pooling (``"none"`` returns the patch tokens for a
:class:`~monai_moco.networks.blocks.TopKPatchHead`). Position embeddings are interpolated to the token grid of any
input whose size is a multiple of ``patch_size``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding
from monai.utils import ensure_tuple_rep, look_up_option

from monai_moco.networks.blocks.conv_stem import ConvStem, PatchifyStem
from monai_moco.networks.blocks.token_attention import TokenTransformerBlock

__all__ = [
    "ConvStemViT",
    "CONVSTEM_VIT_PRESETS",
    "convstem_vit_tiny",
    "convstem_vit_small",
    "convstem_vit_base",
    "patchify_vit_tiny",
    "patchify_vit_small",
    "patchify_vit_base",
]

#: Widths of the DeiT/ViT family (Touvron et al. 2021; Dosovitskiy et al. 2021), MLP ratio 4.
CONVSTEM_VIT_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 192, "num_heads": 3, "num_layers": 12, "mlp_dim": 768},
    "small": {"hidden_size": 384, "num_heads": 6, "num_layers": 12, "mlp_dim": 1536},
    "base": {"hidden_size": 768, "num_heads": 12, "num_layers": 12, "mlp_dim": 3072},
}

_STEMS = ("conv", "patchify")
_POS_EMBEDS = ("learnable", "sincos")
_POOLINGS = ("cls", "mean", "none")


class ConvStemViT(nn.Module):
    """ViT with a convolutional (Xiao et al., NeurIPS 2021) or patchify stem, from MONAI ``TransformerBlock`` s.

    Token sequence: ``[CLS] + patch tokens``; position embeddings cover the patch tokens only (the CLS token is
    itself learned, so a separate CLS position embedding would be redundant). A final LayerNorm is applied to every
    token. The CLS token is always present, so one set of weights serves every ``pooling``.

    Args:
        in_channels: image channels (1 for radiographs).
        img_size: training input size (int or one per spatial dim); sets the stored position-embedding grid.
        patch_size: token side in pixels; a power of two for ``stem="conv"``.
        hidden_size: transformer width ``D``.
        mlp_dim: MLP hidden width (4 x ``hidden_size`` in the presets).
        num_layers: transformer blocks before any ``reduce_depth_for_stem`` reduction.
        num_heads: attention heads; must divide ``hidden_size``.
        stem: ``"conv"`` (:class:`~monai_moco.networks.blocks.ConvStem`) or ``"patchify"``
            (:class:`~monai_moco.networks.blocks.PatchifyStem`).
        stem_channels: widths of the conv stem's strided convs (``stem="conv"`` only); default doubles to
            ``hidden_size`` (24, 48, 96, 192 for width 192).
        reduce_depth_for_stem: with ``stem="conv"``, drop one transformer block to keep FLOPs level with the patchify
            model, as the paper does (the default stem costs about one block). Ignored for ``stem="patchify"``.
        pos_embed: ``"learnable"`` (truncated-normal init, std 0.02) or ``"sincos"`` (fixed 2D/3D sin-cos, MONAI's
            ``build_sincos_position_embedding``; needs ``hidden_size`` divisible by 4 in 2D, 6 in 3D).
        pooling: ``"cls"`` (B x D, the CLS token), ``"mean"`` (B x D, mean of the patch tokens) or ``"none"``
            (B x N x D patch tokens, no CLS).
        spatial_dims: 2 (images) or 3 (volumes; position embeddings are then interpolated trilinearly).
        qkv_bias: bias in the query/key/value projection (True in the original ViT).
        dropout_rate: dropout in attention, MLP and after adding the position embeddings.
        use_flash_attention: use ``torch.nn.functional.scaled_dot_product_attention`` (SDPA) inside each block's
            :class:`~monai_moco.networks.blocks.TokenSelfAttention`, else its explicit matmul-softmax-matmul. ``"auto"``
            (default): SDPA, except for a forward on the CPU under bfloat16 autocast, where the explicit path is used:
            PyTorch's CPU flash-attention backward in bf16 is several times slower than the explicit path at a ViT's token
            counts, enough to slow the whole training step (``scripts/bench_pretrain.py``). TorchScript
            always uses the path chosen at construction (SDPA for ``"auto"``).

    Attributes:
        out_features: ``hidden_size`` (the width of every output).
        patch_size: as given.
        num_blocks: the number of transformer blocks actually built.

    Raises:
        ValueError: for an unknown ``stem`` / ``pos_embed`` / ``pooling``, ``stem_channels`` with the patchify stem,
            an ``img_size`` that is not a multiple of ``patch_size``, or too few layers.

    Example::

        >>> net = ConvStemViT.from_preset("tiny", img_size=224, pooling="cls")
        >>> net(torch.zeros(2, 1, 224, 224)).shape
        torch.Size([2, 192])
        >>> net.grid_size((160, 128))
        (10, 8)
    """

    def __init__(
        self,
        in_channels: int = 1,
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        hidden_size: int = 768,
        mlp_dim: int = 3072,
        num_layers: int = 12,
        num_heads: int = 12,
        stem: str = "conv",
        stem_channels: Sequence[int] | None = None,
        reduce_depth_for_stem: bool = True,
        pos_embed: str = "learnable",
        pooling: str = "cls",
        spatial_dims: int = 2,
        qkv_bias: bool = True,
        dropout_rate: float = 0.0,
        use_flash_attention: bool | str = "auto",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"ConvStemViT: spatial_dims must be 2 or 3, got {spatial_dims}.")
        stem = look_up_option(stem, _STEMS)
        pos_embed = look_up_option(pos_embed, _POS_EMBEDS)
        self.pooling: str = look_up_option(pooling, _POOLINGS)
        if stem == "conv":
            self.stem: nn.Module = ConvStem(in_channels, hidden_size, patch_size, stem_channels, spatial_dims)
        else:
            if stem_channels is not None:
                raise ValueError(
                    f"ConvStemViT: stem_channels={tuple(stem_channels)} only applies to stem='conv', not 'patchify'."
                )
            self.stem = PatchifyStem(in_channels, hidden_size, patch_size, spatial_dims)
        depth = num_layers - 1 if (stem == "conv" and reduce_depth_for_stem) else num_layers
        if depth < 1:
            raise ValueError(
                f"ConvStemViT: num_layers={num_layers} leaves {depth} transformer blocks"
                f"{' after reduce_depth_for_stem' if depth != num_layers else ''}; need at least 1."
            )
        self.spatial_dims = spatial_dims
        self.patch_size = patch_size
        self.out_features = hidden_size
        self.hidden_size = hidden_size
        self.num_blocks = depth
        self.img_size: tuple[int, ...] = tuple(int(s) for s in ensure_tuple_rep(img_size, spatial_dims))
        self.base_grid: list[int] = list(self.grid_size(self.img_size))
        self._interp_mode = "bicubic" if spatial_dims == 2 else "trilinear"

        n_tokens = 1
        for g in self.base_grid:
            n_tokens *= g
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden_size))
        if pos_embed == "sincos":
            with warnings.catch_warnings():  # MONAI calls torch.meshgrid without indexing= (its order is "ij")
                warnings.simplefilter("ignore", UserWarning)
                self.pos_embed = build_sincos_position_embedding(self.base_grid, hidden_size, spatial_dims)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, hidden_size))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.pos_drop = nn.Dropout(dropout_rate)
        if isinstance(use_flash_attention, str):
            look_up_option(use_flash_attention, ("auto",))
        self.auto_attention = use_flash_attention == "auto"
        self.blocks = nn.ModuleList(
            TokenTransformerBlock(
                hidden_size,
                mlp_dim,
                num_heads,
                dropout_rate=dropout_rate,
                qkv_bias=qkv_bias,
                use_flash_attention=bool(use_flash_attention),
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.blocks.apply(_init_transformer_weights)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ConvStemViT:
        """Build a ``"tiny"`` (192 wide, 3 heads), ``"small"`` (384, 6) or ``"base"`` (768, 12) model, 12 layers, MLP 4x.

        Args:
            name: preset name, one of :data:`CONVSTEM_VIT_PRESETS`.
            overrides: any other constructor argument (``stem``, ``img_size``, ``pooling``, ``num_layers``, ...).

        Returns:
            the model.

        Raises:
            ValueError: for an unknown preset name.

        Example::

            >>> ConvStemViT.from_preset("small", stem="patchify").out_features
            384
        """
        preset = look_up_option(name, CONVSTEM_VIT_PRESETS)
        return cls(**{**preset, **overrides})

    def grid_size(self, image_size: Sequence[int]) -> tuple[int, ...]:
        """Token grid ``(h, w)`` (or ``(d, h, w)``) for an input of spatial size ``image_size``.

        Args:
            image_size: ``(H, W)`` (or ``(D, H, W)``), each a multiple of ``patch_size``.

        Returns:
            ``image_size // patch_size`` per dimension.

        Raises:
            ValueError: if the length is not ``spatial_dims`` or a size is not a multiple of ``patch_size``.
        """
        size = tuple(int(s) for s in image_size)
        if len(size) != self.spatial_dims or any(s % self.patch_size or s <= 0 for s in size):
            raise ValueError(
                f"ConvStemViT: input spatial size {size} must have {self.spatial_dims} positive sizes, each a multiple "
                f"of patch_size={self.patch_size}."
            )
        return tuple(s // self.patch_size for s in size)

    def _pos_embed_for(self, grid: list[int]) -> torch.Tensor:
        """Position embeddings (1 x N x D) for a token grid; the stored table itself at the training grid.

        Not cached: the interpolation is a few microseconds next to one transformer block, and a cache of a learnable
        table would go stale after every optimiser step (and hold autograd graphs that ``deepcopy`` cannot copy).
        """
        if grid == self.base_grid:
            return self.pos_embed
        table = self.pos_embed.reshape([1] + self.base_grid + [self.hidden_size]).movedim(-1, 1)
        table = F.interpolate(table, size=grid, mode=self._interp_mode, align_corners=False)
        return table.flatten(2).transpose(1, 2)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens after the final LayerNorm: ``B x (1 + N) x D``, CLS first."""
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"ConvStemViT: expected a B x C x {'D x ' if self.spatial_dims == 3 else ''}H x W input, "
                f"got shape {list(x.shape)}."
            )
        for s in x.shape[2:]:
            if s % self.patch_size != 0:
                raise ValueError(
                    f"ConvStemViT: input spatial size {list(x.shape[2:])} must be a multiple of "
                    f"patch_size={self.patch_size}."
                )
        feat = self.stem(x)
        grid: list[int] = [int(g) for g in feat.shape[2:]]
        tokens = feat.flatten(2).transpose(1, 2) + self._pos_embed_for(grid)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = self.pos_drop(tokens)
        if self.auto_attention and not torch.jit.is_scripting():
            self._choose_attention(tokens)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)

    @torch.jit.unused
    def _choose_attention(self, tokens: torch.Tensor) -> None:
        """``use_flash_attention="auto"``: SDPA unless on the CPU under bf16 autocast (see the class docstring)."""
        flash = not (
            tokens.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
        )
        for blk in self.blocks:
            blk.attn.use_flash_attention = flash

    def _pool(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return tokens[:, 0]
        if self.pooling == "mean":
            return tokens[:, 1:].mean(dim=1)
        return tokens[:, 1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode an image batch.

        Args:
            x: ``B x C x H x W`` (or ``B x C x D x H x W``), sizes multiples of ``patch_size``.

        Returns:
            ``B x D`` for ``pooling`` "cls"/"mean"; ``B x N x D`` patch tokens (row-major grid order) for "none".
        """
        return self._pool(self._encode(x))

    def forward_features(self, x: torch.Tensor, return_tokens: bool = True) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Pooled embedding and, optionally, the patch tokens.

        Args:
            x: input batch as for :meth:`forward`.
            return_tokens: also return the patch tokens.

        Returns:
            ``embedding`` (B x D: by ``pooling``, the CLS token when ``pooling="none"``), or
            ``(embedding, patch_tokens)`` with ``patch_tokens`` B x N x D (no CLS, grid of :meth:`grid_size`).
        """
        tokens = self._encode(x)
        embedding = tokens[:, 1:].mean(dim=1) if self.pooling == "mean" else tokens[:, 0]
        if return_tokens:
            return embedding, tokens[:, 1:]
        return embedding


def _init_transformer_weights(m: nn.Module) -> None:
    """ViT initialisation (truncated normal 0.02 for linear weights, zero biases; as in timm / DeiT)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def convstem_vit_tiny(**kwargs: Any) -> ConvStemViT:
    """ViT_C-Tiny: conv stem, width 192, 3 heads (``ConvStemViT.from_preset("tiny", stem="conv", **kwargs)``)."""
    return ConvStemViT.from_preset("tiny", **{"stem": "conv", **kwargs})


def convstem_vit_small(**kwargs: Any) -> ConvStemViT:
    """ViT_C-Small: conv stem, width 384, 6 heads."""
    return ConvStemViT.from_preset("small", **{"stem": "conv", **kwargs})


def convstem_vit_base(**kwargs: Any) -> ConvStemViT:
    """ViT_C-Base: conv stem, width 768, 12 heads."""
    return ConvStemViT.from_preset("base", **{"stem": "conv", **kwargs})


def patchify_vit_tiny(**kwargs: Any) -> ConvStemViT:
    """Plain ViT-Tiny (patchify stem), width 192, 3 heads."""
    return ConvStemViT.from_preset("tiny", **{"stem": "patchify", **kwargs})


def patchify_vit_small(**kwargs: Any) -> ConvStemViT:
    """Plain ViT-Small (patchify stem), width 384, 6 heads."""
    return ConvStemViT.from_preset("small", **{"stem": "patchify", **kwargs})


def patchify_vit_base(**kwargs: Any) -> ConvStemViT:
    """Plain ViT-Base (patchify stem), width 768, 12 heads."""
    return ConvStemViT.from_preset("base", **{"stem": "patchify", **kwargs})
