"""MoCoTrainer: gradient only to the query encoder, exact momentum update, queue bookkeeping, options, real-data run."""

from __future__ import annotations

import contextlib
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from monai.engines.utils import IterationEvents
from torch import nn

from monai_moco.engines import MoCoTrainer, StepOptions
from monai_moco.losses import InfoNCELoss, MemoryQueue
from monai_moco.networks.blocks import SplitBatchNorm
from monai_moco.transforms.ssl.batched import BatchedTwoView
from monai_moco.utils.dist import batch_shuffle, batch_unshuffle, cosine_schedule


def _trainer(net, batches, **kwargs) -> MoCoTrainer:
    kwargs.setdefault("queue_size", 64)
    kwargs.setdefault("momentum", 0.9)
    opt = kwargs.pop("optimizer", None) or torch.optim.SGD(net.parameters(), lr=0.5)
    return MoCoTrainer("cpu", kwargs.pop("max_epochs", 1), batches, net, opt, **kwargs)


def test_gradient_only_to_query_and_exact_momentum_update(tiny_encoder, view_batches):
    net = tiny_encoder()
    trainer = _trainer(net, view_batches(n_batches=1), momentum=0.9)
    key_before = {n: p.detach().clone() for n, p in trainer.momentum_network.named_parameters()}
    query_before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in trainer.momentum_network.parameters():
        assert not p.requires_grad
    trainer.run()

    for n, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
        assert not torch.equal(p, query_before[n]), f"{n} was not updated"
    for n, p in trainer.momentum_network.named_parameters():
        assert p.grad is None, n
        expected = 0.9 * key_before[n] + 0.1 * net.get_parameter(n).detach()
        torch.testing.assert_close(p, expected, rtol=0, atol=1e-6)
    assert trainer.state.output["momentum"] == pytest.approx(0.9)


def test_queue_receives_normalised_keys_and_wraps_around(tiny_encoder, view_batches):
    net = tiny_encoder()
    trainer = _trainer(net, view_batches(n_batches=2, batch_size=8), queue_size=12)
    keys, ptrs = [], []
    trainer.add_event_handler(IterationEvents.FORWARD_COMPLETED, lambda e: keys.append(e.state.output["key"].clone()))
    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, lambda e: ptrs.append(int(e.queue.ptr)))
    trainer.run()

    assert ptrs == [8, 4]  # 8 keys; then 8 more wrap around a queue of 12
    torch.testing.assert_close(keys[0].norm(dim=1), torch.ones(8))
    q = trainer.queue.keys
    torch.testing.assert_close(q[:4], keys[1][4:])  # wrapped part of the second batch
    torch.testing.assert_close(q[4:8], keys[0][4:])  # first batch, not yet overwritten
    torch.testing.assert_close(q[8:], keys[1][:4])
    assert int(trainer.queue.num_enqueued) == 16 and trainer.state.output["queue_fill"] == 1.0


def test_loss_uses_the_queue_as_negatives(tiny_encoder, view_batches):
    """The loss equals InfoNCE of the captured query/key against the queue contents before the step."""
    net = tiny_encoder()
    trainer = _trainer(net, view_batches(n_batches=1), loss_function=InfoNCELoss(temperature=0.2))
    queue_before = trainer.queue.get()
    seen = {}
    trainer.add_event_handler(IterationEvents.FORWARD_COMPLETED, lambda e: seen.update(e.state.output))
    trainer.run()
    expected = InfoNCELoss(temperature=0.2)(seen["query"].float(), seen["key"], queue_before)
    assert trainer.state.output["loss"] == pytest.approx(float(expected.detach()), rel=1e-5)
    assert seen["key"].requires_grad is False


@pytest.mark.parametrize("shuffle_bn", ["shuffle", "sync", "none"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_options_run_and_report_health_stats(tiny_encoder, view_batches, shuffle_bn, symmetric):
    net = tiny_encoder()
    with pytest.warns(UserWarning, match="sync") if shuffle_bn == "sync" else contextlib.nullcontext():
        trainer = _trainer(net, view_batches(n_batches=2), shuffle_bn=shuffle_bn, symmetric=symmetric)
    trainer.run()
    out = trainer.state.output
    assert set(out) == {"loss", "acc1", "pos_logit", "neg_logit", "lr", "grad_norm", "queue_fill", "momentum"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    # symmetric enqueues both key sets: 2 batches x 8 images x (2 if symmetric else 1)
    assert int(trainer.queue.num_enqueued) == 16 * (2 if symmetric else 1)


def test_shuffle_bn_changes_keys_only_through_batchnorm(tiny_encoder, view_batches):
    """Split-batch ShuffleBN gives other keys than one forward with BN, and the same keys without BN."""
    batch = view_batches(n_batches=1)[0]["view2"]
    for bn, same in ((True, False), (False, True)):
        net = tiny_encoder(batch_norm=bn)
        keys = {}
        for mode in ("shuffle", "none"):
            trainer = _trainer(net, [], shuffle_bn=mode, shuffle_splits=2)
            trainer.train_mode()
            keys[mode] = trainer._keys(batch)
        assert torch.allclose(keys["shuffle"], keys["none"], atol=1e-5) is same


@pytest.mark.parametrize("splits", [2, 3])
def test_one_process_shuffle_bn_equals_forwarding_shuffled_sub_batches(tiny_encoder, view_batches, splits):
    """The split-inside-BatchNorm key forward gives the keys and running statistics of the ShuffleBN emulation it
    replaces: the shuffled batch forwarded in ``splits`` sub-batches one by one through a plain copy of the encoder."""
    net = tiny_encoder(batch_norm=True)
    plain = copy.deepcopy(net).train()
    trainer = _trainer(net, [], shuffle_bn="shuffle", shuffle_splits=splits)
    trainer.train_mode()
    x = view_batches(n_batches=1, batch_size=9)[0]["view2"]
    torch.manual_seed(5)
    keys = trainer._keys(x)
    torch.manual_seed(5)
    xs, idx = batch_shuffle(x)
    with torch.no_grad():
        expected = batch_unshuffle(torch.cat([plain(c) for c in torch.tensor_split(xs, splits)]), idx)
    torch.testing.assert_close(keys, F.normalize(expected, dim=1))
    for a, b in zip(trainer.momentum_network.buffers(), plain.buffers(), strict=True):
        torch.testing.assert_close(a, b)
    assert list(trainer.momentum_network.state_dict()) == list(net.state_dict())  # checkpoints keep their keys


def test_momentum_cosine_ramp_follows_iteration(tiny_encoder, view_batches):
    trainer = _trainer(tiny_encoder(), view_batches(n_batches=4), max_epochs=2, momentum=0.9, momentum_end=1.0)
    seen = []
    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, lambda e: seen.append(e.state.output["momentum"]))
    trainer.run()
    assert seen[0] == pytest.approx(0.9) and seen[-1] == pytest.approx(1.0)
    assert seen == pytest.approx([cosine_schedule(i, 7, 0.9, 1.0) for i in range(8)])
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False))


def test_batched_view_transform_on_image_batches(tiny_encoder):
    g = torch.Generator().manual_seed(0)
    batches = [{"image": torch.rand(8, 1, 24, 24, generator=g)} for _ in range(2)]
    trainer = _trainer(tiny_encoder(), batches, view_transform=BatchedTwoView(spatial_size=16, seed=0))
    shapes = []
    trainer.add_event_handler(IterationEvents.FORWARD_COMPLETED, lambda e: shapes.append(e.state.output["query"].shape))
    trainer.run()
    assert shapes == [torch.Size([8, 16])] * 2
    assert "view_transform" in trainer.checkpoint_items()


def test_ready_queue_and_width_checks(tiny_encoder, view_batches):
    queue = MemoryQueue(32, 16)
    trainer = _trainer(tiny_encoder(), view_batches(n_batches=1), queue_size=queue)
    assert trainer.queue is queue
    trainer.run()
    assert int(queue.num_enqueued) == 8
    bare = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 8))
    with pytest.raises(ValueError, match="queue_dim"):
        _trainer(bare, [])
    assert _trainer(bare, [], queue_dim=8).queue.dim == 8


def test_bad_arguments_and_batches_give_clear_errors(tiny_encoder):
    with pytest.raises(ValueError, match="shuffle"):
        _trainer(tiny_encoder(), [], shuffle_bn="ring")
    with pytest.raises(ValueError, match="accumulation_steps"):
        StepOptions(accumulation_steps=0)
    with pytest.raises(ValueError, match="view_transform"):
        _trainer(tiny_encoder(), [{"image": torch.rand(4, 1, 16, 16)}]).run()
    with pytest.raises(KeyError, match="view1"):
        _trainer(tiny_encoder(), [{"img": torch.rand(4, 1, 16, 16)}]).run()


@pytest.mark.slow
def test_moco_on_real_radiographs_beats_chance(kermany_images_64, small_cnn):
    """MoCo-v2 on 256 real Kermany radiographs at 64 px: with the queue full of real keys (K = 256, chance 1/257),
    the contrastive top-1 accuracy climbs far above chance."""
    from monai.utils import set_determinism

    from monai_moco.networks.blocks import MoCoV2ProjectionHead
    from monai_moco.networks.nets import ContrastiveEncoder

    set_determinism(0)
    images = kermany_images_64
    loader = [{"image": images[i : i + 32]} for i in range(0, len(images), 32)]
    net = ContrastiveEncoder(small_cnn(32), MoCoV2ProjectionHead(128, 128, 64))
    opt = torch.optim.SGD(net.parameters(), lr=0.06, momentum=0.9, weight_decay=1e-4)
    trainer = MoCoTrainer(
        "cpu", 6, loader, net, opt, loss_function=InfoNCELoss(0.2), queue_size=256, momentum=0.99,
        view_transform=BatchedTwoView(spatial_size=64, crop_scale=(0.4, 1.0), seed=0),
    )
    acc = {}
    trainer.add_event_handler(
        IterationEvents.MODEL_COMPLETED,
        lambda e: acc.setdefault(e.state.epoch, []).append(e.state.output["acc1"]),
    )
    trainer.run()
    chance = 1 / 257
    last = sum(acc[6]) / len(acc[6])
    assert trainer.state.output["queue_fill"] == 1.0
    mean = {epoch: sum(v) / len(v) for epoch, v in acc.items()}
    assert last > 20 * chance, mean  # measured about 0.33 (chance 0.004)
    assert last > 2 * mean[2], mean  # rising once the queue holds real keys (epoch 2 about 0.05)


def _ddp_worker(rank: int, world_size: int, shuffle_bn: str) -> dict:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import make_tiny_encoder, make_view_batches

    net = make_tiny_encoder(seed=0)
    ddp = torch.nn.parallel.DistributedDataParallel(net)
    batches = make_view_batches(n_batches=2, batch_size=4, seed=rank)
    try:
        trainer = MoCoTrainer("cpu", 1, batches, ddp, torch.optim.SGD(ddp.parameters(), lr=0.5), queue_size=32,
                              momentum=0.9, shuffle_bn=shuffle_bn)
    except ValueError as e:
        return {"error": str(e)}
    trainer.run()
    return {
        "queue": trainer.queue.keys.clone(), "ptr": int(trainer.queue.ptr),
        "net": [p.detach().clone() for p in net.parameters()],
        "key": [p.detach().clone() for p in trainer.momentum_network.parameters()],
        "sync_bn": any(isinstance(m, nn.SyncBatchNorm) for m in trainer.momentum_network.modules()),
        "split_bn": any(isinstance(m, SplitBatchNorm) for m in trainer.momentum_network.modules()),
    }


def _ddp_shuffle(rank: int, world_size: int) -> dict:
    return _ddp_worker(rank, world_size, "shuffle")


def _ddp_sync(rank: int, world_size: int) -> dict:
    return _ddp_worker(rank, world_size, "sync")


def test_two_process_ddp_keeps_ranks_in_step():
    """Under DDP (2 gloo processes) with cross-rank ShuffleBN both ranks end with the same weights, key encoder and
    queue (the keys of both ranks, gathered)."""
    from testing_helpers import run_distributed

    r0, r1 = run_distributed(_ddp_shuffle, world_size=2)
    assert r0["ptr"] == r1["ptr"] == 2 * 4 * 2  # 2 iterations x 4 images x 2 ranks
    torch.testing.assert_close(r0["queue"], r1["queue"])
    for a, b in zip(r0["net"] + r0["key"], r1["net"] + r1["key"], strict=True):
        torch.testing.assert_close(a, b)
    assert not r0["sync_bn"] and not r0["split_bn"]  # the cross-rank shuffle replaces the one-process split


def test_sync_bn_on_cpu_ddp_is_refused_with_advice():
    from testing_helpers import run_distributed

    results = run_distributed(_ddp_sync, world_size=2)
    assert all("shuffle_bn='shuffle'" in r["error"] for r in results)
