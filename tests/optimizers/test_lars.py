"""Tests for LARS (You et al. 2017): the trust-ratio update, bias/norm exclusion, and loss decrease."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_moco.optimizers import LARS


def test_single_step_matches_formula():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    w.grad = torch.tensor([[0.6, 0.8]])  # ||g|| = 1
    lr, wd, eta = 0.5, 0.1, 0.01
    opt = LARS([w], lr=lr, momentum=0.0, weight_decay=wd, trust_coefficient=eta, eps=0.0)
    opt.step()
    trust = eta * 5.0 / (1.0 + wd * 5.0)
    expected = torch.tensor([[3.0, 4.0]]) - lr * trust * (torch.tensor([[0.6, 0.8]]) + wd * torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(w.detach(), expected)


@pytest.mark.parametrize("exclude", [True, False])
def test_bias_and_norm_exclusion(exclude):
    b = nn.Parameter(torch.tensor([3.0, 4.0]))
    b.grad = torch.tensor([0.6, 0.8])
    opt = LARS([b], lr=0.5, momentum=0.0, weight_decay=0.1, trust_coefficient=0.01, exclude_bias_and_norm=exclude)
    opt.step()
    if exclude:  # plain SGD step: no weight decay, no trust ratio
        expected = torch.tensor([3.0, 4.0]) - 0.5 * torch.tensor([0.6, 0.8])
    else:
        trust = 0.01 * 5.0 / (1.0 + 0.5 + 1e-8)
        expected = torch.tensor([3.0, 4.0]) - 0.5 * trust * torch.tensor([0.9, 1.2])
    torch.testing.assert_close(b.detach(), expected)


def test_momentum_buffer():
    w = nn.Parameter(torch.ones(2))
    opt = LARS([w], lr=1.0, momentum=0.9, weight_decay=0.0)
    for _ in range(2):
        w.grad = torch.ones(2)
        opt.step()
    # excluded 1-D param: buf = 1, then 0.9 + 1 = 1.9; total step 2.9
    torch.testing.assert_close(w.detach(), torch.full((2,), 1.0 - 2.9))
    assert "momentum_buffer" in opt.state[w]


def test_training_decreases_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 1)
    opt = LARS(model.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-6, trust_coefficient=0.05)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    first = closure().item()
    for _ in range(30):
        last = opt.step(closure)
    assert last.item() < 0.1 * first


def test_skips_params_without_grad_and_validates():
    w = nn.Parameter(torch.ones(2, 2))
    LARS([w], lr=0.1).step()
    assert torch.equal(w.detach(), torch.ones(2, 2))
    with pytest.raises(ValueError, match="lr"):
        LARS([w], lr=-1.0)
