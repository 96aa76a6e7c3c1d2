"""Tests for FlatViewSGD: the same trajectory as torch.optim.SGD on channels-last, contiguous and non-dense
parameters, buffers kept in the parameter's layout, checkpoint round trips, and the flat_view helper."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from monai_moco.optimizers import FlatViewSGD, flat_view

KERNELS = [{"fused": True}, {"foreach": True}, {"foreach": False}]
HYPER = [
    {"momentum": 0.9, "weight_decay": 1e-4},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
    {"momentum": 0.5, "dampening": 0.1, "maximize": True},
    {"momentum": 0.0, "weight_decay": 1e-3},
]


def _net(channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.Flatten(), nn.LazyLinear(2))
    net(torch.rand(2, 3, 8, 8))  # materialise the lazy layer
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _train(net: nn.Module, optimizer: torch.optim.Optimizer, steps: int, channels_last: bool) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.rand(4, 3, 8, 8, generator=gen)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        optimizer.step()
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("hyper", HYPER)
@pytest.mark.parametrize("channels_last", [True, False])
def test_same_trajectory_as_torch_sgd(kernel, hyper, channels_last):
    ref_net, net = _net(channels_last), _net(channels_last)
    ref = _train(ref_net, torch.optim.SGD(ref_net.parameters(), lr=0.1, **hyper, **kernel), 4, channels_last)
    ours_opt = FlatViewSGD(net.parameters(), lr=0.1, **hyper, **kernel)
    ours = _train(net, ours_opt, 4, channels_last)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    conv_weight = net[0].weight
    assert conv_weight.is_contiguous(memory_format=torch.channels_last) == channels_last  # layout kept
    if hyper["momentum"]:
        buf = ours_opt.state[conv_weight]["momentum_buffer"]
        assert buf.shape == conv_weight.shape and buf.stride() == conv_weight.stride()


def test_state_dict_round_trip_resumes_identically():
    net = _net(True)
    opt = FlatViewSGD(net.parameters(), lr=0.1, momentum=0.9, fused=True)
    _train(net, opt, 2, True)
    saved = io.BytesIO()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict()}, saved)
    uninterrupted = _train(net, opt, 2, True)

    resumed_net = _net(True)
    saved.seek(0)
    ckpt = torch.load(saved, weights_only=True)
    resumed_net.load_state_dict(ckpt["net"])
    resumed_opt = FlatViewSGD(resumed_net.parameters(), lr=0.1, momentum=0.9, fused=True)
    resumed_opt.load_state_dict(ckpt["opt"])
    for a, b in zip(_train(resumed_net, resumed_opt, 2, True), uninterrupted, strict=True):
        torch.testing.assert_close(a, b)


def test_buffer_from_another_layout_is_relaid_once():
    contiguous_net, cl_net = _net(False), _net(True)
    opt = torch.optim.SGD(contiguous_net.parameters(), lr=0.1, momentum=0.9)
    _train(contiguous_net, opt, 1, False)
    ours = FlatViewSGD(cl_net.parameters(), lr=0.1, momentum=0.9, fused=True)
    # buffers of contiguous weights, weights now channels-last (deep copies: load_state_dict keeps the tensors given)
    ours.load_state_dict(copy.deepcopy(opt.state_dict()))
    ref_net = _net(True)
    ref = torch.optim.SGD(ref_net.parameters(), lr=0.1, momentum=0.9, foreach=False)  # torch's fused kernel errs here
    ref.load_state_dict(copy.deepcopy(opt.state_dict()))
    for a, b in zip(_train(cl_net, ours, 2, True), _train(ref_net, ref, 2, True), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    weight = cl_net[0].weight
    assert ours.state[weight]["momentum_buffer"].stride() == weight.stride()


@pytest.mark.parametrize("kernel", KERNELS)
def test_gradient_of_another_layout_and_non_dense_parameter(kernel):
    base = torch.zeros(4, 6)
    sliced = nn.Parameter(base[:, :3])  # a view with gaps: not dense
    odd = nn.Parameter(torch.ones(2, 3, 4, 4).contiguous(memory_format=torch.channels_last))
    sliced.grad = torch.ones(4, 3)
    odd.grad = torch.full((2, 3, 4, 4), 2.0)  # contiguous, unlike its parameter
    opt = FlatViewSGD([sliced, odd], lr=0.5, momentum=0.9, **kernel)
    opt.step()
    torch.testing.assert_close(sliced.detach(), torch.full((4, 3), -0.5))
    torch.testing.assert_close(odd.detach(), torch.zeros(2, 3, 4, 4))
    assert opt.state[odd]["momentum_buffer"].shape == odd.shape


def test_differentiable_uses_torch_step():
    # torch.optim.SGD(differentiable=True) runs its step with autograd on, so an in-place update of a leaf refuses;
    # FlatViewSGD hands the step to it unchanged and refuses the same way
    for optimizer_class in (torch.optim.SGD, FlatViewSGD):
        w = nn.Parameter(torch.ones(3))
        w.grad = torch.ones(3)
        with pytest.raises(RuntimeError, match="leaf Variable"):
            optimizer_class([w], lr=0.1, differentiable=True).step()


def test_closure_loss_is_returned():
    w = nn.Parameter(torch.ones(2))
    opt = FlatViewSGD([w], lr=0.1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert float(opt.step(closure).detach()) == pytest.approx(2.0)
    torch.testing.assert_close(w.detach(), torch.full((2,), 0.8))


@pytest.mark.parametrize(
    "make, dense",
    [
        (lambda: torch.rand(3, 4), True),
        (lambda: torch.rand(2, 3, 4, 5).contiguous(memory_format=torch.channels_last), True),
        (lambda: torch.rand(3, 4).t(), True),
        (lambda: torch.rand(4, 6)[:, :3], False),
        (lambda: torch.rand(1, 4).expand(3, 4), False),
        (lambda: torch.rand(5, 1, 3)[:, :, :].transpose(0, 1), True),
        (lambda: torch.rand(6)[2:], True),
    ],
)
def test_flat_view(make, dense):
    tensor = make()
    view = flat_view(tensor)
    if not dense:
        assert view is None
        return
    assert view.ndim == 1 and view.numel() == tensor.numel()
    assert view.storage_offset() == tensor.storage_offset()
    torch.testing.assert_close(view.sort().values, tensor.reshape(-1).sort().values)  # the same elements
    view.zero_()
    assert float(tensor.abs().sum()) == 0.0  # and the same memory


@pytest.mark.parametrize("unscale_first", [False, True])
def test_grad_scaler_fused_step_matches_torch_and_skips_inf(unscale_first):
    results = []
    for optimizer_class in (torch.optim.SGD, FlatViewSGD):
        net = _net(True)
        opt = optimizer_class(net.parameters(), lr=0.1, momentum=0.9, fused=True)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
        gen = torch.Generator().manual_seed(1)
        for step in range(3):
            x = torch.rand(4, 3, 8, 8, generator=gen).contiguous(memory_format=torch.channels_last)
            opt.zero_grad()
            scaler.scale(net(x).pow(2).mean()).backward()
            if step == 1:  # an overflow: the step is skipped and the scale lowered
                net[0].weight.grad[0, 0, 0, 0] = float("inf")
                before = [p.detach().clone() for p in net.parameters()]
            if unscale_first:  # as ContrastiveTrainer does before measuring/clipping the gradient norm
                scaler.unscale_(opt)
            scaler.step(opt)
            scaler.update()
            if step == 1:
                assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
        results.append([p.detach().clone() for p in net.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
