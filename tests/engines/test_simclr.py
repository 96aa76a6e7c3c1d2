"""SimCLRTrainer: NT-Xent step, labels to SupCon, warm-up + cosine schedule through MONAI's LrScheduleHandler, LARS,
real-data runs."""

from __future__ import annotations

import math

import pytest
import torch
from monai.engines.utils import IterationEvents
from monai.handlers import LrScheduleHandler
from monai.optimizers import WarmupCosineSchedule

from monai_moco.engines import SimCLRTrainer
from monai_moco.losses import NTXentLoss, SupConLoss
from monai_moco.optimizers import LARS
from monai_moco.transforms.ssl.batched import BatchedTwoView


def test_step_matches_nt_xent_and_updates_every_parameter(tiny_encoder, view_batches):
    net = tiny_encoder(batch_norm=False)
    batch = view_batches(n_batches=1)[0]
    reference = tiny_encoder(batch_norm=False)
    expected = NTXentLoss(temperature=0.1)(reference(batch["view1"]), reference(batch["view2"]))
    before = [p.detach().clone() for p in net.parameters()]
    trainer = SimCLRTrainer("cpu", 1, [batch], net, torch.optim.SGD(net.parameters(), lr=0.1))
    trainer.run()
    out = trainer.state.output
    assert out["loss"] == pytest.approx(float(expected.detach()), rel=1e-5)
    assert set(out) == {"loss", "acc1", "pos_logit", "neg_logit", "lr", "grad_norm"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


@pytest.mark.parametrize("labels", [[0, 1, 0, 1, 1, 0, 0, 1], [2, 2, 2, 2, 2, 2, 2, 2], [0, 1, 2, 3, 4, 5, 6, 7]])
def test_label_key_passes_batch_labels_to_supcon(labels, tiny_encoder, view_batches):
    net = tiny_encoder(batch_norm=False)
    batch = {**view_batches(n_batches=1)[0], "label": torch.tensor(labels)}
    reference = tiny_encoder(batch_norm=False)
    z1, z2 = reference(batch["view1"]), reference(batch["view2"])
    expected = SupConLoss(temperature=0.1)(z1, z2, labels=torch.tensor(labels))
    trainer = SimCLRTrainer("cpu", 1, [batch], net, torch.optim.SGD(net.parameters(), lr=0.1),
                            loss_function=SupConLoss(temperature=0.1), label_key="label")
    trainer.run()
    assert trainer.state.output["loss"] == pytest.approx(float(expected.detach()), rel=1e-5)
    if len(set(labels)) == len(labels):  # one class per image: the SupCon step is SimCLR's
        assert trainer.state.output["loss"] == pytest.approx(float(NTXentLoss(0.1)(z1, z2).detach()), rel=1e-5)


def test_label_key_missing_from_batch_names_the_keys(tiny_encoder, view_batches):
    net = tiny_encoder(batch_norm=False)
    trainer = SimCLRTrainer("cpu", 1, view_batches(n_batches=1), net, torch.optim.SGD(net.parameters(), lr=0.1),
                            loss_function=SupConLoss(), label_key="label")
    with pytest.raises(KeyError, match=r"no 'label' \(batch keys: \['view1', 'view2'\]\)"):
        trainer.run()


def _class_gap(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cosine of same-class pairs minus that of other-class pairs of the eval-mode projections."""
    net.eval()
    with torch.no_grad():
        z = torch.nn.functional.normalize(net(images), dim=1)
    sim, same = z @ z.T, labels[:, None] == labels[None, :]
    return float(sim[same & ~torch.eye(len(labels), dtype=torch.bool)].mean() - sim[~same].mean())


def test_supcon_on_real_labelled_radiographs_separates_classes(kermany_dir, small_cnn):
    """SupCon steps on real labelled Kermany radiographs of the study's training split (32 px, a small CNN): the loss
    is finite and falls, and the projections' same-class minus other-class cosine grows."""
    from monai_moco.data import make_dataset, transfer_datalists
    from monai_moco.networks.blocks import SimCLRProjectionHead
    from monai_moco.networks.nets import ContrastiveEncoder
    from monai_moco.transforms import LoadXRayd

    items = transfer_datalists(kermany_dir, seed=0, max_images=96)["train"]
    dataset = make_dataset(items, LoadXRayd(keys="image", spatial_size=32), cache="memory", progress=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    everything = next(iter(torch.utils.data.DataLoader(dataset, batch_size=len(dataset))))
    images, labels = everything["image"].as_tensor(), torch.as_tensor(everything["label"])
    assert 0 < int(labels.sum()) < len(labels)  # both classes
    torch.manual_seed(0)
    net = ContrastiveEncoder(small_cnn(width=16), SimCLRProjectionHead(64, 64, 32))
    gap_before = _class_gap(net, images, labels)
    losses: list[float] = []
    epochs = 12
    trainer = SimCLRTrainer("cpu", epochs, loader, net, torch.optim.AdamW(net.parameters(), lr=3e-3),
                            loss_function=SupConLoss(0.2), label_key="label",
                            view_transform=BatchedTwoView(spatial_size=32, seed=0))
    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, lambda e: losses.append(e.state.output["loss"]))
    trainer.run()
    n = len(loader)
    assert all(math.isfinite(v) for v in losses) and len(losses) == epochs * n
    first, last = sum(losses[: 2 * n]) / (2 * n), sum(losses[-2 * n :]) / (2 * n)
    assert last < first, (first, last)
    gap_after = _class_gap(net, images, labels)
    assert gap_after > gap_before + 0.05, (gap_before, gap_after)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_joint_and_separate_view_forwards(batch_norm, tiny_encoder, view_batches):
    """Without BatchNorm the joint 2N forward and the two N forwards are the same step; with it each view's batch is
    normalised on its own, which is what a separate forward of that view computes."""
    batch = view_batches(n_batches=1)[0]
    runs = {}
    for joint in (True, False):
        torch.manual_seed(0)
        net = tiny_encoder(batch_norm=batch_norm)
        trainer = SimCLRTrainer("cpu", 1, [batch], net, torch.optim.SGD(net.parameters(), lr=0.1), joint_forward=joint)
        trainer.run()
        runs[joint] = (trainer.state.output["loss"], [p.detach().clone() for p in net.parameters()])
    torch.manual_seed(0)
    reference = tiny_encoder(batch_norm=batch_norm).train()
    separate = float(NTXentLoss(temperature=0.1)(reference(batch["view1"]), reference(batch["view2"])))
    z1, z2 = reference(torch.cat([batch["view1"], batch["view2"]])).chunk(2)
    joint = float(NTXentLoss(temperature=0.1)(z1, z2))
    assert runs[False][0] == pytest.approx(separate, rel=1e-5)
    assert runs[True][0] == pytest.approx(joint, rel=1e-5)
    same = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(runs[True][1], runs[False][1], strict=True))
    assert same is (not batch_norm)
    if batch_norm:
        assert separate != pytest.approx(joint, rel=1e-4)


def test_warmup_cosine_schedule_per_iteration(tiny_encoder, view_batches):
    net = tiny_encoder()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = WarmupCosineSchedule(opt, warmup_steps=2, t_total=8)
    trainer = SimCLRTrainer(
        "cpu", 2, view_batches(n_batches=4), net, opt,
        train_handlers=[LrScheduleHandler(sched, print_lr=False, epoch_level=False)],
    )
    lrs = []
    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, lambda e: lrs.append(e.state.output["lr"]))
    trainer.run()
    expected = [0.1 * sched.lr_lambda(step) for step in range(8)]  # the handler steps after each iteration
    assert lrs == pytest.approx(expected)
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(0.1) and lrs[-1] < lrs[3]


def test_lars_and_batched_views(tiny_encoder):
    g = torch.Generator().manual_seed(0)
    batches = [{"image": torch.rand(8, 1, 24, 24, generator=g)} for _ in range(2)]
    net = tiny_encoder()
    trainer = SimCLRTrainer(
        "cpu", 1, batches, net, LARS(net.parameters(), lr=0.3, weight_decay=1e-6),
        view_transform=BatchedTwoView(spatial_size=16, seed=0),
    )
    trainer.run()
    assert math.isfinite(trainer.state.output["loss"])


@pytest.mark.slow
def test_simclr_on_real_radiographs_beats_chance(kermany_images_64, small_cnn):
    """SimCLR on 256 real Kermany radiographs at 64 px, batch 32: top-1 of finding the other view among the 2N - 1 = 63
    candidates (chance 1/63) rises well above chance."""
    from monai.utils import set_determinism

    from monai_moco.networks.blocks import SimCLRProjectionHead
    from monai_moco.networks.nets import ContrastiveEncoder

    set_determinism(0)
    images = kermany_images_64
    loader = [{"image": images[i : i + 32]} for i in range(0, len(images), 32)]
    net = ContrastiveEncoder(small_cnn(32), SimCLRProjectionHead(128, 128, 64))
    trainer = SimCLRTrainer(
        "cpu", 6, loader, net, torch.optim.AdamW(net.parameters(), lr=1e-3), loss_function=NTXentLoss(temperature=0.5),
        view_transform=BatchedTwoView(spatial_size=64, crop_scale=(0.8, 1.0), rotate_degrees=0.0, blur_prob=0.0,
                                      noise_prob=0.0, seed=0),
    )
    acc = {}
    trainer.add_event_handler(
        IterationEvents.MODEL_COMPLETED, lambda e: acc.setdefault(e.state.epoch, []).append(e.state.output["acc1"])
    )
    trainer.run()
    mean = {epoch: sum(v) / len(v) for epoch, v in acc.items()}
    assert mean[6] > 5 / 63, mean  # measured about 0.2 (chance 0.016)
    assert mean[6] > mean[1] + 0.05, mean  # rising (epoch 1 about 0.07)


def _simclr_ddp_step(rank: int, world_size: int) -> dict:
    """One SimCLRTrainer step under DDP: this rank trains on its half of a fixed global batch."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import make_tiny_encoder, make_view_batches

    net = make_tiny_encoder(batch_norm=False, seed=0)  # no BatchNorm: per-rank statistics would differ by design
    ddp = torch.nn.parallel.DistributedDataParallel(net)
    full = make_view_batches(n_batches=1, batch_size=8, seed=0)[0]
    half = {k: v.chunk(world_size)[rank] for k, v in full.items()}
    trainer = SimCLRTrainer("cpu", 1, [half], ddp, torch.optim.SGD(ddp.parameters(), lr=0.5),
                            loss_function=NTXentLoss(temperature=0.2))  # fmt: skip
    trainer.run()
    return {"loss": trainer.state.output["loss"], "net": [p.detach().clone() for p in net.parameters()]}


def test_two_process_step_equals_one_process_on_the_global_batch(tiny_encoder, view_batches):
    """2 gloo processes with half the batch each: the mean of the rank losses is the 1-process loss on the global
    batch (negatives gathered with gradient across ranks), and the weights after the step are the same (so the
    gradients, averaged by DDP, are the global batch's)."""
    from testing_helpers import run_distributed

    r0, r1 = run_distributed(_simclr_ddp_step, world_size=2)
    net = tiny_encoder(batch_norm=False, seed=0)
    trainer = SimCLRTrainer("cpu", 1, view_batches(n_batches=1, batch_size=8, seed=0), net,
                            torch.optim.SGD(net.parameters(), lr=0.5), loss_function=NTXentLoss(temperature=0.2))  # fmt: skip
    start = [p.detach().clone() for p in net.parameters()]
    trainer.run()
    assert any(not torch.allclose(a, b) for a, b in zip(start, net.parameters(), strict=True)), "the step changed nothing"
    assert math.isclose(0.5 * (r0["loss"] + r1["loss"]), trainer.state.output["loss"], rel_tol=1e-5)
    for a, b, ref in zip(r0["net"], r1["net"], net.parameters(), strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, ref.detach(), rtol=1e-5, atol=1e-6)
