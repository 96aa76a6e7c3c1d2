"""queue_consistency: a collapsed key encoder scores chance against fresh keys; an informative one does not."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from monai_moco.evaluation.diagnostics import queue_consistency


class _Encoder(nn.Module):
    """Flattened input plus ``offset`` times a fixed direction: ``offset`` large means every image maps near one
    point (a collapsed encoder); with BatchNorm so the train/eval handling and the state restore are exercised."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(16)
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.norm(x.flatten(1))
        return z + self.offset * torch.ones_like(z)


def _views(n_batches: int = 4, b: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    pairs = []
    for _ in range(n_batches):
        x = torch.randn(b, 1, 4, 4, generator=g)
        pairs.append((x + 0.05 * torch.randn(x.shape, generator=g), x + 0.05 * torch.randn(x.shape, generator=g)))
    return pairs


@pytest.mark.parametrize("offset,informative", [(0.0, True), (1e4, False)])
def test_fresh_queue_separates_collapse_from_learning(offset, informative):
    net, key_net = _Encoder(offset), _Encoder(offset)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    stale = nn.functional.normalize(torch.randn(64, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    report = queue_consistency(net, key_net, stale, _views(), temperature=0.2)
    assert report["negatives"] == 24 and report["images"] == 32
    fresh = report["fresh"]
    if informative:
        assert fresh["acc1"] > 0.9 and fresh["pos_cos"] > fresh["neg_cos"] + 0.5
    else:  # every key the same vector: positives are no closer than negatives, the loss is log(1 + K)
        assert fresh["pos_cos"] == pytest.approx(fresh["neg_cos"], abs=1e-6)
        assert fresh["loss"] == pytest.approx(math.log(25), abs=1e-3)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN statistics restored
    assert net.training  # the mode is restored too


def test_needs_two_batches():
    with pytest.raises(ValueError, match="at least two batches"):
        queue_consistency(_Encoder(0.0), _Encoder(0.0), torch.zeros(4, 16), _views(1))
