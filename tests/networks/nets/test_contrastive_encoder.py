"""Tests for ContrastiveEncoder: embed/forward composition, pooled conv features, patch heads and patch scores."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_moco.networks.blocks import MoCoV2ProjectionHead
from monai_moco.networks.nets import ContrastiveEncoder


class _Tokens(nn.Module):
    """Backbone returning B x N x F patch tokens from B x C x H x W (4x4 patches)."""

    def __init__(self, features: int = 12) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, features, 4, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class _ScoringHead(nn.Module):
    """Minimal head with TopKPatchHead's call contract."""

    def __init__(self, features: int = 12, k: int = 2) -> None:
        super().__init__()
        self.score = nn.Linear(features, 1)
        self.k = k

    def forward(self, tokens: torch.Tensor, return_scores: bool = False):
        scores = self.score(tokens).squeeze(-1)
        idx = scores.topk(self.k, dim=1).indices
        emb = torch.gather(tokens, 1, idx[..., None].expand(-1, -1, tokens.shape[-1])).mean(1)
        return (emb, scores, idx) if return_scores else emb


class _MeanHead(nn.Module):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.mean(1)


def test_embed_and_forward_with_pooled_backbone():
    backbone = nn.Sequential(nn.Conv2d(1, 8, 3), nn.AdaptiveAvgPool2d(1))  # B x 8 x 1 x 1, flattened by embed
    head = MoCoV2ProjectionHead(8, 16, 4)
    enc = ContrastiveEncoder(backbone, head)
    x = torch.randn(3, 1, 16, 16)
    h = enc.embed(x)
    assert h.shape == (3, 8)
    torch.testing.assert_close(enc(x), head(h))
    assert enc.out_features == 4


def test_out_features_from_last_linear():
    enc = ContrastiveEncoder(nn.Flatten(), nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5)))
    assert enc.out_features == 5
    assert ContrastiveEncoder(nn.Flatten(), nn.Identity()).out_features is None


def test_unpooled_backbone_error():
    enc = ContrastiveEncoder(nn.Conv2d(1, 8, 3), MoCoV2ProjectionHead(8, 8, 4))
    with pytest.raises(ValueError, match="pooled features"):
        enc(torch.randn(2, 1, 8, 8))


def test_patch_head_embed_and_scores():
    torch.manual_seed(0)
    enc = ContrastiveEncoder(_Tokens(12), MoCoV2ProjectionHead(12, 16, 4), patch_head=_ScoringHead(12, k=3))
    x = torch.randn(2, 1, 16, 16)  # 16 patches
    assert enc.embed(x).shape == (2, 12)
    assert enc(x).shape == (2, 4)
    emb, scores, idx = enc.embed_with_scores(x)
    assert scores.shape == (2, 16) and idx.shape == (2, 3)
    torch.testing.assert_close(enc.patch_scores(x), scores)
    torch.testing.assert_close(emb, enc.embed(x))


@pytest.mark.parametrize("patch_head", [None, _MeanHead()])
def test_patch_scores_errors(patch_head):
    backbone = _Tokens(12) if patch_head is not None else nn.Flatten()
    enc = ContrastiveEncoder(backbone, nn.Identity(), patch_head=patch_head)
    with pytest.raises(RuntimeError, match="patch_head" if patch_head is None else "return_scores"):
        enc.patch_scores(torch.randn(2, 1, 8, 8))


def test_patch_head_needs_tokens():
    enc = ContrastiveEncoder(nn.Flatten(), nn.Identity(), patch_head=_MeanHead())
    with pytest.raises(ValueError, match="B x N x F"):
        enc.embed(torch.randn(2, 1, 8, 8))
