"""Tests for monai_moco.utils.dist: gathers, ShuffleBN helpers, momentum update, the cosine schedule, device_of.

The 2-process tests run real gloo process groups through ``testing_helpers.run_distributed``.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from testing_helpers import run_distributed
from torch import nn

from monai_moco.networks.blocks import SplitBatchNorm
from monai_moco.utils.dist import (
    batch_shuffle,
    batch_unshuffle,
    concat_all_gather,
    concat_all_gather_with_grad,
    cosine_schedule,
    device_of,
    forward_shuffled,
    get_rank,
    get_world_size,
    is_dist_initialized,
    update_momentum,
)

B = 8


def test_single_process_defaults():
    assert not is_dist_initialized()
    assert get_world_size() == 1 and get_rank() == 0
    x = torch.randn(4, 3, requires_grad=True)
    gathered = concat_all_gather(x)
    assert torch.equal(gathered, x) and not gathered.requires_grad
    gathered[0, 0] = 123.0
    assert x[0, 0] != 123.0  # a copy, not a view
    assert concat_all_gather_with_grad(x) is x


@pytest.mark.parametrize("shape", [(8,), (8, 5), (6, 2, 3)])
def test_batch_shuffle_single_process_round_trip(shape):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    xs, idx = batch_shuffle(x)
    assert xs.shape == x.shape
    assert not torch.equal(xs, x)  # permuted
    assert torch.equal(torch.sort(xs.flatten())[0], torch.sort(x.flatten())[0])  # same samples
    assert torch.equal(batch_unshuffle(xs, idx), x)


def test_batch_unshuffle_rejects_wrong_index():
    with pytest.raises(ValueError, match="idx_unshuffle"):
        batch_unshuffle(torch.randn(4, 2), torch.arange(3))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_forward_shuffled_in_one_process_equals_plain_forward(batch_norm):
    """A permutation alone changes neither per-sample layers nor one BatchNorm's batch statistics."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7) if batch_norm else nn.ReLU(), nn.Linear(7, 3))
    x = torch.randn(B, 5)
    torch.testing.assert_close(forward_shuffled(net, x), net(x))


def test_forward_shuffled_with_split_batch_norm_differs_in_training_equal_in_eval():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Linear(7, 3))
    x = torch.randn(B, 5)
    plain = net(x)
    split_net = SplitBatchNorm.convert_split_batchnorm(copy.deepcopy(net), 2)
    split = forward_shuffled(split_net, x)
    assert split.shape == plain.shape
    assert not torch.allclose(split, plain, atol=1e-4)  # each random half normalised with its own statistics
    # the same as forwarding the two halves of the shuffled batch one by one through the plain network
    generator = torch.Generator().manual_seed(3)
    xs, idx = batch_shuffle(x, generator=torch.Generator().manual_seed(3))
    expected = batch_unshuffle(torch.cat([net(c) for c in torch.tensor_split(xs, 2)]), idx)
    torch.testing.assert_close(forward_shuffled(split_net, x, generator=generator), expected)
    net.load_state_dict(split_net.state_dict())  # the same keys; in eval mode the running statistics are used
    net.eval()
    split_net.eval()
    torch.testing.assert_close(forward_shuffled(split_net, x), net(x))


def test_forward_shuffled_has_no_grad():
    net = nn.Linear(3, 2)
    assert not forward_shuffled(net, torch.randn(4, 3)).requires_grad


@pytest.mark.parametrize("m", [0.0, 1.0, 0.9])
def test_update_momentum_math(m):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.data.normal_()
    model[1].running_mean.fill_(5.0)
    before = [p.detach().clone() for p in ema.parameters()]
    update_momentum(model, ema, m)
    for p, p_ema, p0 in zip(model.parameters(), ema.parameters(), before, strict=True):
        torch.testing.assert_close(p_ema, m * p0 + (1 - m) * p.detach(), rtol=0, atol=1e-6)
    # MoCo semantics: buffers (BN running statistics) are not touched by default
    assert torch.all(ema[1].running_mean == 0)
    update_momentum(model, ema, m, copy_buffers=True)
    assert torch.all(ema[1].running_mean == 5.0)


def test_update_momentum_errors():
    with pytest.raises(ValueError, match="momentum"):
        update_momentum(nn.Linear(2, 2), nn.Linear(2, 2), 1.5)
    with pytest.raises(ValueError, match="same architecture"):
        update_momentum(nn.Linear(2, 2), nn.Linear(2, 3), 0.5)


@pytest.mark.parametrize("start,end", [(0.99, 1.0), (0.996, 1.0), (1.0, 0.0)])
def test_cosine_schedule(start, end):
    assert cosine_schedule(0, 100, start, end) == pytest.approx(start)
    assert cosine_schedule(100, 100, start, end) == pytest.approx(end)
    assert cosine_schedule(250, 100, start, end) == pytest.approx(end)  # clamped after the end
    assert cosine_schedule(50, 100, start, end) == pytest.approx((start + end) / 2)
    values = [cosine_schedule(s, 100, start, end) for s in range(101)]
    diffs = [b - a for a, b in zip(values, values[1:], strict=False)]
    assert all(d * (end - start) >= -1e-12 for d in diffs)  # monotone towards end
    assert cosine_schedule(25, 100, 0.0, 1.0) == pytest.approx((1 - math.cos(math.pi / 4)) / 2)


def test_cosine_schedule_errors():
    with pytest.raises(ValueError, match="step"):
        cosine_schedule(-1, 10, 0.0, 1.0)
    with pytest.raises(ValueError, match="max_steps"):
        cosine_schedule(0, 0, 0.0, 1.0)


# ---- 2-process gloo worker (runs in subprocesses started by run_distributed) ----
def _dist_worker(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(1234 + rank)  # different local seeds: the permutation must still come from rank 0
    x = (rank * 100 + torch.arange(B)).float()[:, None].repeat(1, 3)
    out: dict[str, torch.Tensor] = {"x": x}
    out["gathered"] = concat_all_gather(x)
    xs, idx = batch_shuffle(x)
    out["shuffled"], out["idx"] = xs, idx
    out["unshuffled"] = batch_unshuffle(xs, idx)
    out["forward_shuffled"] = forward_shuffled(lambda t: 2 * t + 1, x)
    # gradient of the gathered tensor: each rank's loss weights global row j by j
    z = torch.full((2, 3), float(rank + 1), requires_grad=True)
    g = concat_all_gather_with_grad(z)
    (g * torch.arange(world_size * 2.0)[:, None]).sum().backward()
    out["z_gathered"] = g.detach()
    out["z_grad"] = z.grad
    return out


def test_two_process_gather_shuffle_and_grad():
    res = run_distributed(_dist_worker, world_size=2)
    xs_all = torch.cat([r["x"] for r in res])
    for r in res:
        assert torch.equal(r["gathered"], xs_all)  # rank order
        assert torch.equal(r["unshuffled"], r["x"])  # round trip
        assert torch.equal(r["forward_shuffled"], 2 * r["x"] + 1)
    # same global permutation on both ranks (broadcast from rank 0)
    assert torch.equal(res[0]["idx"], res[1]["idx"])
    # the shuffled slices partition the global batch ...
    shuffled = torch.cat([r["shuffled"][:, 0] for r in res])
    assert torch.equal(torch.sort(shuffled)[0], torch.sort(xs_all[:, 0])[0])
    # ... and really mix samples across ranks
    for rank, r in enumerate(res):
        owners = (r["shuffled"][:, 0] // 100).long()
        assert (owners != rank).any(), f"rank {rank} received only its own samples: {r['shuffled'][:, 0]}"
    # gradients: every rank's loss contributes (sum over ranks) to each rank's own rows
    assert torch.equal(res[0]["z_gathered"][:2], torch.ones(2, 3))
    assert torch.equal(res[0]["z_gathered"][2:], 2 * torch.ones(2, 3))
    for rank, r in enumerate(res):
        expected = 2.0 * (torch.arange(2.0) + 2 * rank)[:, None].expand(2, 3)
        torch.testing.assert_close(r["z_grad"], expected)


class _BuffersOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize(
    "make, first",
    [
        (lambda: nn.Linear(2, 3), lambda m: m.weight),  # parameters
        (lambda: nn.BatchNorm1d(3, affine=False), lambda m: m.running_mean),  # buffers only
        (_BuffersOnly, lambda m: m.mean),
        (nn.Identity, None),  # neither: the CPU
        (lambda: nn.Sequential(nn.ReLU(), nn.Flatten()), None),
    ],
)
def test_device_of(make, first):
    module = make()
    assert device_of(module) == torch.device("cpu")
    if first is not None:  # the device is read from the tensor, not assumed: a meta-device module reports "meta"
        assert device_of(module.to("meta")) == first(module).device == torch.device("meta")
