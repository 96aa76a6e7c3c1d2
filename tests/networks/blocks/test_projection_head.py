"""Tests for the projection heads (lightly-style ProjectionHead, MoCo-v1, MoCo-v2 and SimCLR heads)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_moco.networks.blocks import (
    LinearProjectionHead,
    MoCoV2ProjectionHead,
    ProjectionHead,
    SimCLRProjectionHead,
)


def test_projection_head_blocks():
    head = ProjectionHead([(6, 5, nn.BatchNorm1d(5), nn.ReLU()), (5, 3, None, None)])
    kinds = [type(m) for m in head.layers]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head.layers[0].bias is None and head.layers[3].bias is not None  # no bias before a norm
    assert head(torch.randn(4, 6)).shape == (4, 3)
    assert (head.in_features, head.out_features) == (6, 3)


def test_moco_v2_head_structure():
    head = MoCoV2ProjectionHead(16, 32, 8)
    assert [type(m) for m in head.layers] == [nn.Linear, nn.ReLU, nn.Linear]
    assert head.layers[0].weight.shape == (32, 16) and head.layers[2].weight.shape == (8, 32)
    assert head(torch.randn(3, 16)).shape == (3, 8)


@pytest.mark.parametrize(
    "batch_norm,kinds", [(False, [nn.Linear]), (True, [nn.Linear, nn.BatchNorm1d])]
)
def test_moco_v1_linear_head(batch_norm, kinds):
    head = LinearProjectionHead(16, 8, batch_norm=batch_norm)
    assert [type(m) for m in head.layers] == kinds
    assert head.layers[0].weight.shape == (8, 16)
    assert (head.layers[0].bias is None) == batch_norm
    x = torch.randn(5, 16)
    out = head(x)
    assert out.shape == (5, 8)
    if not batch_norm:  # one affine map, nothing else
        torch.testing.assert_close(out, x @ head.layers[0].weight.T + head.layers[0].bias)


@pytest.mark.parametrize("num_layers,batch_norm", [(1, False), (2, True), (2, False), (3, True)])
def test_simclr_head(num_layers, batch_norm):
    head = SimCLRProjectionHead(16, 24, 8, num_layers=num_layers, batch_norm=batch_norm)
    linears = [m for m in head.layers if isinstance(m, nn.Linear)]
    assert len(linears) == num_layers
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head.layers) == (num_layers if batch_norm else 0)
    assert sum(isinstance(m, nn.ReLU) for m in head.layers) == num_layers - 1
    assert not isinstance(head.layers[-1], nn.ReLU)
    out = head(torch.randn(4, 16))
    assert out.shape == (4, 8)
    out.sum().backward()
    assert all(p.grad is not None for p in head.parameters())


@pytest.mark.parametrize(
    "factory,match",
    [
        (lambda: ProjectionHead([]), "at least one"),
        (lambda: ProjectionHead([(4, 5, None, None), (6, 2, None, None)]), "block 1 expects 6"),
        (lambda: SimCLRProjectionHead(4, 4, 2, num_layers=0), "num_layers"),
    ],
)
def test_construction_errors(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_wrong_input_shape_error():
    with pytest.raises(ValueError, match="B x 16"):
        MoCoV2ProjectionHead(16, 16, 4)(torch.randn(2, 16, 1, 1))
