"""SplitBatchNorm: the same outputs and running statistics as forwarding the sub-batches through BatchNorm one by one."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from monai_moco.networks.blocks import SplitBatchNorm

PLAIN = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


@pytest.mark.parametrize("shape", [(12, 5), (12, 5, 7), (12, 3, 6, 6), (12, 2, 3, 4, 4)])
@pytest.mark.parametrize("num_splits", [1, 2, 3, 5])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_training_forward_equals_sub_batches_through_batch_norm(shape, num_splits, momentum):
    torch.manual_seed(0)
    x = torch.randn(*shape) * 3 + 1
    plain = PLAIN[len(shape)](shape[1], momentum=momentum)
    nn.init.uniform_(plain.weight, 0.5, 2.0)
    nn.init.uniform_(plain.bias, -1.0, 1.0)
    split = SplitBatchNorm.convert_split_batchnorm(copy.deepcopy(plain), num_splits)
    for _ in range(2):  # twice: the running statistics carry over between forwards
        expected = torch.cat([plain(c) for c in torch.tensor_split(x, num_splits)])  # 12 / 5: uneven sub-batches
        torch.testing.assert_close(split(x), expected)
    torch.testing.assert_close(split.running_mean, plain.running_mean)
    torch.testing.assert_close(split.running_var, plain.running_var)
    assert int(split.num_batches_tracked) == int(plain.num_batches_tracked) == 2 * num_splits
    if num_splits > 1:  # the split matters: one BatchNorm over the whole batch gives other outputs
        assert not torch.allclose(split(x), nn.functional.batch_norm(x, None, None, plain.weight, plain.bias, True))


def test_eval_mode_is_plain_batch_norm():
    plain = nn.BatchNorm2d(3)
    plain.running_mean.fill_(0.5)
    plain.running_var.fill_(2.0)
    split = SplitBatchNorm.convert_split_batchnorm(copy.deepcopy(plain), 4).eval()
    x = torch.randn(8, 3, 5, 5)
    torch.testing.assert_close(split(x), plain.eval()(x))
    assert int(split.num_batches_tracked) == 0


def test_convert_shares_parameters_and_keeps_state_dict_keys():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.Flatten(), nn.Linear(4 * 36, 6)),
                        nn.BatchNorm1d(6, affine=False))  # fmt: skip
    net[1].eval()
    params, buffers = list(net.parameters()), list(net.buffers())
    keys = list(net.state_dict())
    converted = SplitBatchNorm.convert_split_batchnorm(net, 2)
    assert converted is net  # in place
    assert isinstance(net[1], SplitBatchNorm) and isinstance(net[3], SplitBatchNorm)
    assert not net[1].training and net[3].training  # modes kept
    assert all(a is b for a, b in zip(net.parameters(), params, strict=True))  # an optimizer over them still works
    assert all(a is b for a, b in zip(net.buffers(), buffers, strict=True))
    assert list(net.state_dict()) == keys
    assert "num_splits=2" in repr(net[1])
    assert net(torch.randn(4, 1, 8, 8)).shape == (4, 6)
    # a BatchNorm at the root comes back converted; converting again only changes num_splits
    root = SplitBatchNorm.convert_split_batchnorm(nn.BatchNorm1d(3), 2)
    assert isinstance(root, SplitBatchNorm) and SplitBatchNorm.convert_split_batchnorm(root, 3) is root
    assert root.num_splits == 3


def test_channels_last_is_kept():
    split = SplitBatchNorm(4, num_splits=2)
    x = torch.randn(6, 4, 5, 5).to(memory_format=torch.channels_last)
    y = split(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, split(x.contiguous()))


def test_gradients_flow_through_every_sub_batch():
    split = SplitBatchNorm(3, num_splits=2)
    x = torch.randn(8, 3, 4, 4, requires_grad=True)
    split(x).pow(2).sum().backward()
    assert x.grad is not None and bool((x.grad.abs().flatten(1).sum(1) > 0).all())
    assert split.weight.grad is not None and split.bias.grad is not None


@pytest.mark.parametrize(("make", "match"), [(lambda: SplitBatchNorm(3, num_splits=0), "num_splits"),
                                             (lambda: SplitBatchNorm(3)(torch.randn(3)), "N x C")])  # fmt: skip
def test_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
