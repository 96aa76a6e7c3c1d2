"""Tests for the engines' speed options measured by scripts/bench_pretrain.py: ``channels_last`` (with torch's SGD and
with ``FlatViewSGD``'s fused step), and MoCo's ShuffleBN skipped for a key encoder without BatchNorm."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.utils import set_determinism

from monai_moco.engines import MoCoTrainer, SimCLRTrainer, StepOptions
from monai_moco.networks.blocks import SplitBatchNorm
from monai_moco.optimizers import FlatViewSGD
from monai_moco.transforms.ssl import BatchedTwoView

ENGINES = {
    "moco": lambda net, batches, opt, **kw: MoCoTrainer("cpu", 1, batches, net, opt, queue_size=32, momentum=0.9, **kw),
    "simclr": lambda net, batches, opt, **kw: SimCLRTrainer("cpu", 1, batches, net, opt, **kw),
}


def _conv_weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


def _run(method: str, tiny_encoder, view_batches, channels_last: bool, from_images: bool, flat_sgd: bool = False):
    set_determinism(seed=0)
    net = tiny_encoder()
    params = list(net.parameters())
    opt = FlatViewSGD(params, lr=0.1, momentum=0.9, fused=True) if flat_sgd else torch.optim.SGD(params, lr=0.1, momentum=0.9)
    batches = view_batches(n_batches=3, batch_size=8, size=24)
    kwargs = {}
    if from_images:
        batches = [{"image": b["view1"].clamp(0, 1)} for b in batches]
        kwargs["view_transform"] = BatchedTwoView(spatial_size=16, seed=0)
    trainer = ENGINES[method](net, batches, opt, step=StepOptions(channels_last=channels_last), **kwargs)
    seen: list[bool] = []
    conv = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][1]  # 8 input channels (1 channel is both)
    hook = conv.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    losses: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"]))
    trainer.run()
    hook.remove()
    set_determinism(None)
    return trainer, params, seen, losses


@pytest.mark.parametrize("method", list(ENGINES))
@pytest.mark.parametrize("from_images", [False, True])
@pytest.mark.parametrize("flat_sgd", [False, True])
def test_channels_last_converts_network_and_views_and_trains_the_same(
    method, from_images, flat_sgd, tiny_encoder, view_batches
):
    trainer, params, seen, losses = _run(method, tiny_encoder, view_batches, True, from_images, flat_sgd)
    # the network was converted in place: the optimizer still holds the network's parameters
    assert [id(p) for p in trainer.network.parameters()] == [id(p) for p in params]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(trainer.network))
    if method == "moco":  # the key encoder is a copy of the converted network
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(trainer.momentum_network))
    assert seen and all(seen)  # every forward kept channels-last activations

    reference, _, seen_ref, losses_ref = _run(method, tiny_encoder, view_batches, False, from_images)
    assert not any(seen_ref)
    assert losses == pytest.approx(losses_ref, rel=1e-4, abs=1e-5)  # only the memory layout differs
    for a, b in zip(trainer.network.parameters(), reference.network.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for w in _conv_weights(trainer.network):  # the momentum buffers keep the weights' channels-last layout
        assert trainer.optimizer.state[w]["momentum_buffer"].stride() == w.stride()


@pytest.mark.parametrize("batch_norm", [True, False])
def test_moco_shuffle_bn_runs_the_key_encoder_once_on_the_whole_batch(batch_norm, tiny_encoder, view_batches):
    """One process: ShuffleBN splits inside the key encoder's BatchNorm layers only, so every other layer runs once on
    the 8 keys; a key encoder without BatchNorm is left as it is."""
    net = tiny_encoder(batch_norm=batch_norm)
    trainer = ENGINES["moco"](net, view_batches(n_batches=2, batch_size=8), torch.optim.SGD(net.parameters(), lr=0.1),
                              shuffle_bn="shuffle")  # fmt: skip
    sizes: list[int] = []
    trainer.momentum_network.register_forward_pre_hook(lambda m, a: sizes.append(a[0].shape[0]))
    trainer.run()
    assert sizes == [8] * 2
    split = [m for m in trainer.momentum_network.modules() if isinstance(m, SplitBatchNorm)]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(split) == len(bns) and (len(bns) > 0) is batch_norm  # every BatchNorm converted, nothing else
    assert all(m.num_splits == 2 for m in split)
    assert not any(isinstance(m, SplitBatchNorm) for m in net.modules())  # the query encoder keeps its BatchNorm
