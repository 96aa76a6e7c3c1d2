"""Behaviour shared by both engines (ContrastiveTrainer): events, non-finite guard, resume, determinism, AMP,
gradient accumulation and clipping, MONAI handlers."""

from __future__ import annotations

import copy
import logging
import math

import pytest
import torch
from ignite.contrib.handlers import ProgressBar
from ignite.engine import Events
from monai.engines.utils import IterationEvents
from monai.handlers import CheckpointLoader, CheckpointSaver, LrScheduleHandler
from monai.optimizers import WarmupCosineSchedule
from monai.utils import set_determinism

from monai_moco.engines import (
    MoCoTrainer,
    NonFiniteLossError,
    SimCLRTrainer,
    StepOptions,
    amp_pays,
    checkpoint_dict,
)
from monai_moco.handlers import AtomicCheckpointSaver, contrastive_stats_handlers
from monai_moco.transforms.ssl.batched import BatchedTwoView

ENGINES = {
    "moco": lambda net, batches, **kw: MoCoTrainer(
        "cpu", kw.pop("max_epochs", 1), batches, net, kw.pop("optimizer"), queue_size=kw.pop("queue_size", 32),
        momentum=kw.pop("momentum", 0.9), **kw
    ),
    "simclr": lambda net, batches, **kw: SimCLRTrainer("cpu", kw.pop("max_epochs", 1), batches, net, kw.pop("optimizer"), **kw),
}


def _state(trainer) -> dict[str, torch.Tensor]:
    """Every tensor a resume must restore: network, momentum network, queue (as flat name -> tensor)."""
    out = {f"net.{k}": v.detach().clone() for k, v in trainer.network.state_dict().items()}
    if isinstance(trainer, MoCoTrainer):
        out.update({f"key.{k}": v.detach().clone() for k, v in trainer.momentum_network.state_dict().items()})
        out.update({f"queue.{k}": v.detach().clone() for k, v in trainer.queue.state_dict().items()})
    return out


def _assert_state_equal(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("method", ENGINES)
def test_iteration_events_fire_in_order(method, tiny_encoder, view_batches):
    net = tiny_encoder()
    trainer = ENGINES[method](net, view_batches(n_batches=2), optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    fired = []
    for ev in (IterationEvents.FORWARD_COMPLETED, IterationEvents.LOSS_COMPLETED,
               IterationEvents.BACKWARD_COMPLETED, IterationEvents.MODEL_COMPLETED):
        trainer.add_event_handler(ev, lambda e, ev=ev: fired.append(ev))
    trainer.run()
    assert fired == [IterationEvents.FORWARD_COMPLETED, IterationEvents.LOSS_COMPLETED,
                     IterationEvents.BACKWARD_COMPLETED, IterationEvents.MODEL_COMPLETED] * 2


class _NaNAt:
    """Batches whose ``view1`` is NaN at (1-based) iteration ``n``."""

    def __init__(self, batches: list[dict], n: int) -> None:
        self.batches = [dict(b) for b in batches]
        self.batches[n - 1]["view1"] = torch.full_like(self.batches[n - 1]["view1"], float("nan"))

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@pytest.mark.parametrize("method", ENGINES)
@pytest.mark.parametrize("saver_cls", [AtomicCheckpointSaver, CheckpointSaver])
def test_nan_loss_stops_before_the_step_and_keeps_the_last_good_state(method, saver_cls, tiny_encoder, view_batches,
                                                                      tmp_path):
    net = tiny_encoder()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    trainer = ENGINES[method](net, _NaNAt(view_batches(n_batches=4), n=3), optimizer=opt, max_epochs=2)
    saver = saver_cls(save_dir=str(tmp_path), save_dict=checkpoint_dict(trainer), save_final=True,
                      final_filename="final.pt")
    saver.attach(trainer)
    good = {}
    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, lambda e: good.update(_state(e)))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at iteration 3 \(epoch 1\).*lower learning"):
        trainer.run()

    _assert_state_equal(_state(trainer), good, atol=0)  # weights, BN statistics, key encoder, queue untouched
    ckpt = torch.load(tmp_path / "final.pt", weights_only=False)
    assert ckpt["trainer"]["iteration"] == 2  # labelled with the last good iteration
    assert all(torch.isfinite(v).all() for v in ckpt["network"].values() if v.is_floating_point())
    restored = ENGINES[method](tiny_encoder(seed=1), [], optimizer=torch.optim.SGD(tiny_encoder().parameters(), lr=0.1))
    restored.network.load_state_dict(ckpt["network"])
    if method == "moco":
        restored.momentum_network.load_state_dict(ckpt["momentum_network"])
        restored.queue.load_state_dict(ckpt["queue"])
    _assert_state_equal(_state(restored), good, atol=0)


def test_non_finite_gradient_also_stops(tiny_encoder, view_batches):
    net = tiny_encoder()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trainer = ENGINES["simclr"](net, view_batches(n_batches=1), optimizer=opt)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED,
                              lambda e: next(e.network.parameters()).grad.fill_(float("inf")))
    with pytest.raises(NonFiniteLossError, match="gradient norm"):
        trainer.run()
    _assert_state_equal({k: v for k, v in net.state_dict().items()}, before, atol=0)


def _resumable(method, tiny_encoder, images, max_epochs):
    net = tiny_encoder(seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    sched = WarmupCosineSchedule(opt, warmup_steps=2, t_total=max_epochs * len(images))
    kw = {"momentum_end": 1.0} if method == "moco" else {}
    trainer = ENGINES[method](
        net, images, optimizer=opt, max_epochs=max_epochs, view_transform=BatchedTwoView(spatial_size=16, seed=7),
        train_handlers=[LrScheduleHandler(sched, print_lr=False, epoch_level=False)], **kw,
    )
    losses = []
    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, lambda e: losses.append(e.state.output["loss"]))
    return trainer, sched, losses


@pytest.mark.parametrize("method", ENGINES)
def test_resume_reproduces_the_uninterrupted_run(method, tiny_encoder, tmp_path):
    g = torch.Generator().manual_seed(0)
    images = [{"image": torch.rand(8, 1, 20, 20, generator=g)} for _ in range(3)]

    torch.manual_seed(123)
    straight, _, losses_straight = _resumable(method, tiny_encoder, images, max_epochs=2)
    straight.run()

    torch.manual_seed(123)
    first, sched, _ = _resumable(method, tiny_encoder, images, max_epochs=2)  # same configuration, stopped after 1
    AtomicCheckpointSaver(str(tmp_path), checkpoint_dict(first, sched), save_interval=1).attach(first)
    first.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.terminate())
    first.run()
    assert first.state.epoch == 1
    ckpt = tmp_path / "checkpoint_epoch=1.pt"
    assert ckpt.exists()

    torch.manual_seed(999)  # a different process: other initial weights, queue and random state
    second, sched2, losses_second = _resumable(method, lambda seed: tiny_encoder(seed=5), images, max_epochs=2)
    CheckpointLoader(str(ckpt), checkpoint_dict(second, sched2), map_location="cpu").attach(second)
    second.run()

    assert second.state.iteration == straight.state.iteration == 6
    assert losses_second == pytest.approx(losses_straight[3:], abs=1e-5)
    _assert_state_equal(_state(second), _state(straight))
    assert second.state.output["lr"] == pytest.approx(straight.state.output["lr"])
    if method == "moco":
        assert second.state.output["momentum"] == pytest.approx(straight.state.output["momentum"])


@pytest.mark.parametrize("method", ENGINES)
def test_same_seed_gives_identical_runs(method, tiny_encoder):
    g = torch.Generator().manual_seed(0)
    images = [{"image": torch.rand(8, 1, 20, 20, generator=g)} for _ in range(2)]
    runs = []
    for _ in range(2):
        set_determinism(seed=3)
        trainer, _, losses = _resumable(method, tiny_encoder, images, max_epochs=1)
        trainer.run()
        runs.append((losses, _state(trainer)))
    set_determinism(None)
    assert runs[0][0] == runs[1][0]
    _assert_state_equal(runs[0][1], runs[1][1], atol=0)


@pytest.mark.filterwarnings("ignore:amp=True on a CPU without native bfloat16")
@pytest.mark.parametrize("method", ENGINES)
def test_bf16_autocast_on_cpu(method, tiny_encoder, view_batches):
    net = tiny_encoder()
    trainer = ENGINES[method](net, view_batches(n_batches=2), optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
                              step=StepOptions(amp=True))
    dtypes = []
    trainer.add_event_handler(IterationEvents.FORWARD_COMPLETED,
                              lambda e: dtypes.append(next(iter(e.state.output.values())).dtype))
    trainer.run()
    assert trainer.amp_dtype == torch.bfloat16 and trainer.scaler is None
    assert dtypes == [torch.bfloat16] * 2  # the forward really ran under autocast
    assert math.isfinite(trainer.state.output["loss"])
    assert all(p.dtype == torch.float32 for p in net.parameters())


@pytest.mark.parametrize("native, expect_amp", [(True, True), (False, False)])
@pytest.mark.parametrize("method", ENGINES)
def test_amp_auto_turns_bf16_on_only_where_the_cpu_has_it(method, native, expect_amp, monkeypatch, tiny_encoder,
                                                          view_batches):
    monkeypatch.setattr("monai_moco.engines.contrastive.bf16_native", lambda: native)
    assert amp_pays("cpu") is native
    net = tiny_encoder()
    trainer = ENGINES[method](net, view_batches(n_batches=1), optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
                              step=StepOptions(amp="auto"))
    assert trainer.amp is expect_amp
    trainer.run()
    assert math.isfinite(trainer.state.output["loss"])


def test_amp_true_on_a_cpu_without_native_bf16_warns(monkeypatch, tiny_encoder, view_batches):
    monkeypatch.setattr("monai_moco.engines.contrastive.bf16_native", lambda: False)
    net = tiny_encoder()
    with pytest.warns(UserWarning, match="amp='auto'"):
        trainer = ENGINES["simclr"](net, view_batches(n_batches=1), optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
                                    step=StepOptions(amp=True))
    assert trainer.amp is True  # asked for explicitly: honoured
    with pytest.raises(ValueError, match="auto"):
        StepOptions(amp="fast")


def test_moco_accumulation_equals_one_step_on_the_double_batch(tiny_encoder, view_batches):
    """BN-free net: InfoNCE against a fixed queue is a mean over independent queries, and the keys of both
    micro-batches are enqueued after the step, so 2 x 8 accumulated == one step on 16."""
    halves = view_batches(n_batches=2, batch_size=8)
    double = [{k: torch.cat([halves[0][k], halves[1][k]]) for k in ("view1", "view2")}]
    results = []
    for batches, acc in ((halves, 2), (double, 1)):
        net = tiny_encoder(batch_norm=False)
        trainer = ENGINES["moco"](net, batches, optimizer=torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9),
                                  step=StepOptions(accumulation_steps=acc), shuffle_bn="none",
                                  queue_size=32)
        torch.manual_seed(0)
        trainer.queue.keys.copy_(torch.nn.functional.normalize(torch.randn(32, 16), dim=1))
        trainer.run()
        results.append(_state(trainer))
    _assert_state_equal(results[0], results[1], atol=1e-6)


def test_simclr_accumulation_averages_micro_batch_gradients(tiny_encoder, view_batches):
    """SimCLR: no step after the first micro-batch; the step uses the mean of the micro-batch losses' gradients
    (not the double batch's: each micro-batch contrasts only within itself)."""
    halves = view_batches(n_batches=2, batch_size=8)
    net = tiny_encoder(batch_norm=False)
    reference = copy.deepcopy(net)
    trainer = ENGINES["simclr"](net, halves, optimizer=torch.optim.SGD(net.parameters(), lr=0.5),
                                step=StepOptions(accumulation_steps=2))
    after_first = []
    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED,
                              lambda e: after_first.append({k: v.clone() for k, v in net.state_dict().items()}))
    trainer.run()
    _assert_state_equal(after_first[0], reference.state_dict(), atol=0)

    opt = torch.optim.SGD(reference.parameters(), lr=0.5)
    loss = sum(trainer.loss_function(reference(b["view1"]), reference(b["view2"])) for b in halves) / 2
    loss.backward()
    opt.step()
    _assert_state_equal(net.state_dict(), reference.state_dict(), atol=1e-6)


def test_gradient_clipping_bounds_the_update(tiny_encoder, view_batches):
    net = tiny_encoder()
    before = [p.detach().clone() for p in net.parameters()]
    trainer = ENGINES["simclr"](net, view_batches(n_batches=1), optimizer=torch.optim.SGD(net.parameters(), lr=1.0),
                                step=StepOptions(clip_grad_norm=1e-3))
    trainer.run()
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(net.parameters(), before, strict=True)])
    assert trainer.state.output["grad_norm"] > 1e-3  # reported before clipping
    assert step.norm() == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize("method", ENGINES)
def test_monai_handlers_attach_and_write(method, tiny_encoder, view_batches, tmp_path):
    net = tiny_encoder()
    trainer = ENGINES[method](net, view_batches(n_batches=2), optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
                              max_epochs=2)
    handlers = [
        AtomicCheckpointSaver(str(tmp_path / "ckpt"), checkpoint_dict(trainer), save_interval=1, n_saved=1),
        *contrastive_stats_handlers(log_dir=str(tmp_path / "tb"), name="contrastive_test"),
    ]
    for h in handlers:
        h.attach(trainer)
    ProgressBar(persist=False).attach(trainer, output_transform=lambda o: {"loss": o["loss"]})
    records: list[str] = []
    collect = logging.Handler(logging.INFO)
    collect.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("contrastive_test")
    logger.addHandler(collect)
    try:
        trainer.run()
    finally:
        logger.removeHandler(collect)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["checkpoint_epoch=2.pt"]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(records) == 4 and "Epoch: 2/2, Iter: 2/2" in records[-1] and "acc1" in records[-1]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(tmp_path / "tb")).Reload().Tags()["scalars"]
    expected = {"loss", "acc1", "pos_logit", "neg_logit", "lr", "grad_norm"}
    expected |= {"queue_fill", "momentum"} if method == "moco" else set()
    assert set(tags) == {f"train/{k}" for k in expected}


@pytest.mark.parametrize("method", ENGINES)
def test_compile_wraps_forward_but_checkpoints_stay_clean(method, tiny_encoder, view_batches):
    """``StepOptions(compile=True)`` compiles the forward callables (the cheap "eager" backend here); the modules that are
    checkpointed stay un-compiled, so their state_dict keys carry no ``_orig_mod.`` prefix."""
    net = tiny_encoder()
    trainer = ENGINES[method](net, view_batches(n_batches=1), optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
                              step=StepOptions(compile=True, compile_kwargs={"backend": "eager"}))
    trainer.run()
    assert trainer._network_fn is not net and trainer.network is net
    assert math.isfinite(trainer.state.output["loss"])
    for name, obj in checkpoint_dict(trainer).items():
        if isinstance(obj, torch.nn.Module):
            assert not any("_orig_mod" in k for k in obj.state_dict()), name
