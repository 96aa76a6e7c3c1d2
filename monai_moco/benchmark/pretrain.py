"""Benchmark a full contrastive training step (augment + forward + backward + optimizer + momentum update) of our
engines side by side with a reference assembled from lightly's public building blocks; ``scripts/bench_pretrain.py``
is its command line (``main``).

Methods: MoCo-v2 (He et al., CVPR 2020; Chen et al., arXiv:2003.04297) and SimCLR (Chen et al., ICML 2020).
Ours is ``monai_moco.engines.MoCoTrainer`` / ``SimCLRTrainer`` with ``BatchedTwoView`` as the on-device view
transform, in fp32 and in our fast path (bf16 autocast where the CPU has native bf16, channels-last convolutions, a
fused optimizer step that does not copy channels-last weights (``monai_moco.optimizers.FlatViewSGD``),
``torch.compile`` with ``--compile``). The reference is the training loop of lightly's own
examples (``examples/pytorch/moco.py``, ``simclr.py``): lightly's ``MoCoProjectionHead`` / ``SimCLRProjectionHead``,
``NTXentLoss`` (with a memory bank for MoCo), ``update_momentum`` and ``deactivate_requires_grad``, in fp32, with the
same backbone (``monai_moco.networks.nets.build_backbone``), batch, image size, optimizer and augmentation
(``--lightly_augment same``: the views come from the same ``BatchedTwoView``, so the ratio measures the step itself;
``transform``: lightly's ``MoCoV2Transform`` on PIL images in the loop instead). lightly's SimCLR loop forwards each
view on its own, so ours does too by default (``--simclr_views separate``: ``SimCLRTrainer(joint_forward=False)``, each
BatchNorm normalises one view's batch in both); ``--simclr_views joint`` times the engine's default single ``2N`` batch.

Every case times its runners interleaved (each repeat runs ours-fp32, ours-fast and lightly once, in rotating order)
on real Kermany radiographs; a line reports medians over repeats and the median of the per-repeat (paired) ratios,
which is robust to other jobs on a shared machine. The process starts with
``monai_moco.utils.cpu.reuse_freed_memory()`` as the pretraining bundles do (glibc keeps freed memory instead of
page-faulting it in again each step; ``--glibc_malloc`` keeps the defaults): it applies to lightly's loop too, which
gains more from it than ours. JSON lines, one per result, with ``kind``:

* ``peak``: this machine's matmul FLOP/s in fp32 and bf16 (``timing.matmul_peak_flops``);
* ``step``: one per (method, backbone, size, dtype): ``case``, ``dtype`` (``float32``: ours fp32 vs lightly fp32;
  ``bfloat16`` or ``fast``: our fast path vs lightly fp32), ``ours_img_s``, ``lightly_img_s``, ``ratio``, the
  FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``), achieved FLOP/s and MFU against the measured peak
  of that dtype, and ``augment_img_s`` / ``augment_headroom`` (BatchedTwoView throughput / images the step consumes);
* ``augment``: ``BatchedTwoView`` vs lightly's ``MoCoV2Transform`` images/s (the cases of ``monai_moco.benchmark.augment``);
* ``profile`` (with ``--profile``): per case and runner (``ours_fp32``, ``ours_fast``, ``lightly_fp32``), where one
  repeat's operator time goes: ``torch.profiler`` self time by operator family (matmul, convolution, copy/cast,
  normalisation, ...; ``timing.op_time_shares``) and the largest operators;
* ``accuracy``: short runs (``--accuracy_steps``) on real images of fp32 vs our fast path from the same seeds
  (``--accuracy_seeds``): the training contrastive top-1 (mean of the last 10 steps) and, after training, the top-1 of
  matching two views of ``--accuracy_heldout`` radiographs the runs never saw (in groups of ``--batch_size``), per
  seed, so the fast path's difference can be read against fp32's seed-to-seed spread.

lightly is in the ``bench`` extra (``pip install -e .[bench]``, or ``.venv/bin/python -m pip install lightly``; it
installs with its dependencies and keeps the installed torch/torchvision, no ``--no-deps`` needed with torch 2.14.1).
Without lightly the script stops with exit code 2, unless ``--ours_only`` (lightly columns are then ``null``).

Example::

    .venv/bin/python scripts/bench_pretrain.py --quick
    nohup .venv/bin/python scripts/bench_pretrain.py > runs/bench_pretrain.jsonl 2> runs/bench_pretrain.err &
    .venv/bin/python scripts/bench_pretrain.py --methods simclr --backbones resnet18 --sizes 128 --repeats 7
    .venv/bin/python scripts/bench_pretrain.py --table runs/bench_pretrain.jsonl  # the README tables
    .venv/bin/python scripts/bench_pretrain.py --table runs/bench_pretrain.jsonl --plot runs/bench_pretrain.png
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events
from torch import nn

from monai_moco.benchmark.augment import CASES as AUGMENT_CASES
from monai_moco.benchmark.augment import lightly_available, load_images
from monai_moco.benchmark.timing import (
    count_flops,
    machine_info,
    matmul_peak_flops,
    median,
    op_time_shares,
    paired_ratios,
    print_json_line,
    time_interleaved,
)
from monai_moco.engines import ContrastiveTrainer, MoCoTrainer, SimCLRTrainer, StepOptions
from monai_moco.losses import InfoNCELoss, NTXentLoss
from monai_moco.networks.blocks.projection_head import MoCoV2ProjectionHead, SimCLRProjectionHead
from monai_moco.networks.nets import build_backbone
from monai_moco.networks.nets.contrastive_encoder import ContrastiveEncoder
from monai_moco.optimizers import FlatViewSGD
from monai_moco.transforms.ssl import BatchedTwoView
from monai_moco.utils.cpu import reuse_freed_memory
from monai_moco.utils.io import atomic_write

METHODS = ("moco", "simclr")
BACKBONES = ("resnet18", "resnet50", "convstem_vit_tiny", "convstem_vit_small")
QUEUE_SIZE = 4096
EMBED_DIM = 128
LR = 0.03
TEMPERATURE = {"moco": 0.2, "simclr": 0.1}
MOMENTUM = 0.99

Runner = Callable[[], int]


def make_backbone(name: str, size: int, seed: int) -> nn.Module:
    """The backbone ``name`` for 1-channel ``size`` px images, with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"img_size": size} if "vit" in name else {}
    return build_backbone(name, in_channels=1, **kwargs)


def autocast_dtype(trainer: ContrastiveTrainer) -> str:
    """Returns: the dtype a trainer's forward passes run in (``"bfloat16"`` where ``amp="auto"`` switched autocast
    on, else ``"float32"``), as the JSON lines name it."""
    return str(trainer.amp_dtype).removeprefix("torch.") if trainer.amp else "float32"


def make_optimizer(params: Any, fast: bool) -> torch.optim.Optimizer:
    """MoCo v2's SGD (momentum 0.9, weight decay 1e-4); the fast path uses ``FlatViewSGD``'s fused (else foreach)
    kernel, which steps channels-last weights without copying them."""
    if fast:
        params = list(params)
        try:
            return FlatViewSGD(params, lr=LR, momentum=0.9, weight_decay=1e-4, fused=True)
        except (RuntimeError, ValueError):
            return FlatViewSGD(params, lr=LR, momentum=0.9, weight_decay=1e-4, foreach=True)
    return torch.optim.SGD(params, lr=LR, momentum=0.9, weight_decay=1e-4)


def batches_of(images: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Consecutive full batches of ``images`` (cycled if there are fewer than ``batch_size`` images)."""
    if len(images) < batch_size:
        images = images.repeat((batch_size + len(images) - 1) // len(images), 1, 1, 1)
    return [b for b in images.split(batch_size) if len(b) == batch_size]


class CyclingLoader:
    """A data loader of ``length`` batches ``{"image": B x 1 x H x W}`` that continues through ``batches`` (cycling)
    from one pass to the next, so successive timed repeats see different real images.

    Args:
        batches: the image batches.
        length: batches per pass (the engine's epoch length).
    """

    def __init__(self, batches: list[torch.Tensor], length: int) -> None:
        self.batches, self.length, self.next = batches, length, 0

    def __len__(self) -> int:
        return self.length

    def __iter__(self):  # noqa: ANN204
        for _ in range(self.length):
            yield {"image": self.batches[self.next % len(self.batches)]}
            self.next += 1


def build_ours(
    method: str,
    backbone: str,
    size: int,
    batches: list[torch.Tensor],
    steps: int,
    fast: bool,
    args: argparse.Namespace,
    **engine_kwargs: Any,
) -> tuple[ContrastiveTrainer, Runner]:
    """Our engine for ``method`` on ``backbone`` (fp32, or the fast path), and ``run() -> images`` doing ``steps``
    training iterations (each: BatchedTwoView on the batch, forward, loss, backward, step, momentum update);
    ``engine_kwargs`` override the engine's arguments (for A/B runs of an option)."""
    net = make_backbone(backbone, size, args.seed)
    feat = net.out_features
    head = MoCoV2ProjectionHead(feat, feat, EMBED_DIM) if method == "moco" else SimCLRProjectionHead(feat, feat, EMBED_DIM)
    encoder = ContrastiveEncoder(net, head)
    optimizer = make_optimizer(encoder.parameters(), fast)
    loader = CyclingLoader(batches, steps)
    common: dict[str, Any] = {
        "device": "cpu",
        "max_epochs": 1,
        "train_data_loader": loader,
        "network": encoder,
        "optimizer": optimizer,
        "view_transform": BatchedTwoView(spatial_size=size, seed=args.seed),
        "step": StepOptions(
            amp="auto" if fast else False,  # bf16 autocast only where the CPU has native bf16
            channels_last=fast and not args.no_channels_last,
            compile=fast and args.compile,
        ),
    }
    common.update(engine_kwargs)
    if method == "moco":
        trainer: ContrastiveTrainer = MoCoTrainer(
            loss_function=InfoNCELoss(temperature=TEMPERATURE["moco"]), queue_size=QUEUE_SIZE, momentum=MOMENTUM, **common
        )
    else:
        trainer = SimCLRTrainer(
            loss_function=NTXentLoss(temperature=TEMPERATURE["simclr"]),
            joint_forward=args.simclr_views == "joint",
            **common,
        )

    def run() -> int:
        trainer.run()  # a finished run restarts from iteration 0: one call = one epoch = ``steps`` iterations
        return steps * batches[0].shape[0]

    return trainer, run


def build_lightly(
    method: str, backbone: str, size: int, batches: list[torch.Tensor], steps: int, args: argparse.Namespace
) -> Runner:
    """lightly's reference loop (its ``examples/pytorch/moco.py`` and ``simclr.py``) in fp32, ``run() -> images``."""
    from lightly.loss import NTXentLoss as LightlyNTXentLoss
    from lightly.models.modules import MoCoProjectionHead
    from lightly.models.modules import SimCLRProjectionHead as LightlySimCLRHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum

    net = make_backbone(backbone, size, args.seed)
    feat = net.out_features
    head = MoCoProjectionHead(feat, feat, EMBED_DIM) if method == "moco" else LightlySimCLRHead(feat, feat, EMBED_DIM)
    model = nn.Sequential(net, head)
    if method == "moco":
        model_momentum = copy.deepcopy(model)
        deactivate_requires_grad(model_momentum)
        criterion = LightlyNTXentLoss(temperature=TEMPERATURE["moco"], memory_bank_size=(QUEUE_SIZE, EMBED_DIM))
    else:
        criterion = LightlyNTXentLoss(temperature=TEMPERATURE["simclr"])
    optimizer = make_optimizer(model.parameters(), fast=False)
    augment = lightly_views(size, args) if args.lightly_augment == "transform" else None
    two_view = BatchedTwoView(spatial_size=size, seed=args.seed)
    state = {"i": 0}

    def run() -> int:
        model.train()
        for _ in range(steps):
            batch = batches[state["i"] % len(batches)]
            state["i"] += 1
            if augment is not None:
                x0, x1 = augment(batch)
            else:
                with torch.no_grad():
                    x0, x1 = two_view(batch)
            if method == "moco":
                model_momentum.train()
                update_momentum(model, model_momentum, m=MOMENTUM)
                query = model(x0)
                key = model_momentum(x1).detach()
                loss = criterion(query, key)
            else:
                loss = criterion(model(x0), model(x1))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return steps * batches[0].shape[0]

    return run


def lightly_views(size: int, args: argparse.Namespace) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """lightly's ``MoCoV2Transform`` (``monai_moco.benchmark.augment``'s ``lightly_mocov2`` case) as a batch -> two 1-channel view
    batches (lightly outputs RGB; the channel mean keeps the same 1-channel backbone)."""
    run = AUGMENT_CASES["lightly_mocov2"](size, args.seed)

    def views(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = run(batch)
        v0 = torch.stack([p[0] for p in pairs]).mean(1, keepdim=True)  # type: ignore[union-attr]
        v1 = torch.stack([p[1] for p in pairs]).mean(1, keepdim=True)  # type: ignore[union-attr]
        return v0, v1

    return views


def augment_runner(name: str, size: int, batches: list[torch.Tensor], seed: int) -> Runner:
    """``run() -> images`` applying ``monai_moco.benchmark.augment``'s case ``name`` to every batch once."""
    run_case = AUGMENT_CASES[name](size, seed)

    def run() -> int:
        for b in batches:
            run_case(b)
        return sum(len(b) for b in batches)

    return run


def bench_augment_sizes(
    sizes: Sequence[int], images: torch.Tensor, args: argparse.Namespace, lightly: bool
) -> dict[int, float]:
    """``augment`` lines (BatchedTwoView vs lightly's MoCoV2Transform, interleaved); returns size -> ours img/s."""
    ours_rates: dict[int, float] = {}
    batches = batches_of(images[: args.aug_images], args.batch_size)
    for size in sizes:
        runners = {"ours": augment_runner("batched_two_view", size, batches, args.seed)}
        if lightly:
            runners["lightly"] = augment_runner("lightly_mocov2", size, batches, args.seed)
        rates = time_interleaved(runners, repeats=args.repeats, warmup=1)
        ours_rates[size] = median(rates["ours"])
        record: dict[str, Any] = {
            "kind": "augment",
            "case": f"augment_{size}",
            "dtype": "float32",
            "ours": "BatchedTwoView",
            "lightly": "MoCoV2Transform",
            "size": size,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "ours_img_s": ours_rates[size],
            "lightly_img_s": median(rates["lightly"]) if lightly else None,
            "ratio": median(paired_ratios(rates["ours"], rates["lightly"])) if lightly else None,
            **machine_info(),
        }
        print_json_line(record)
    return ours_rates


def bench_step(
    method: str,
    backbone: str,
    size: int,
    images: torch.Tensor,
    args: argparse.Namespace,
    lightly: bool,
    peaks: dict[str, float],
    augment_img_s: float | None,
) -> None:
    """Time ours-fp32, ours-fast and lightly-fp32 interleaved on one case and print its two ``step`` lines."""
    batch_size = args.batch_size
    batches = batches_of(images, batch_size)
    steps = args.steps
    _, run32 = build_ours(method, backbone, size, batches, steps, fast=False, args=args)
    ours_fast, run_fast = build_ours(method, backbone, size, batches, steps, fast=True, args=args)
    runners: dict[str, Runner] = {"ours_fp32": run32, "ours_fast": run_fast}
    if lightly:
        runners["lightly_fp32"] = build_lightly(method, backbone, size, batches, steps, args)
    rates = time_interleaved(runners, repeats=args.repeats, warmup=1)
    if args.profile:
        for name, runner in runners.items():
            print_json_line(
                {
                    "kind": "profile",
                    "case": f"{method}_{backbone}_{size}",
                    "runner": name,
                    "dtype": autocast_dtype(ours_fast) if name == "ours_fast" else "float32",
                    "compile": name == "ours_fast" and args.compile,
                    "batch_size": batch_size,
                    "steps": steps,
                    **op_time_shares(runner),
                    **machine_info(),
                }
            )

    # FLOPs of our fp32 iterations (forward + backward of the query/online encoder, forward of the key encoder; the
    # augmentation's few matmuls are included and negligible), per input image: one more run of ``steps`` iterations
    # (the engine keeps the epoch length it was built with)
    flops_per_image = count_flops(run32) / (steps * batch_size)

    fast_dtype = autocast_dtype(ours_fast)
    for label, key in (("float32", "ours_fp32"), ("fast", "ours_fast")):
        ours = median(rates[key])
        achieved = flops_per_image * ours
        peak = peaks[fast_dtype if label == "fast" else "float32"]
        record: dict[str, Any] = {
            "kind": "step",
            "case": f"{method}_{backbone}_{size}",
            "method": method,
            "backbone": backbone,
            "size": size,
            "dtype": fast_dtype if label == "fast" else "float32",
            "path": label,
            "ours_img_s": ours,
            "lightly_img_s": median(rates["lightly_fp32"]) if lightly else None,
            "lightly_dtype": "float32",
            "ratio": median(paired_ratios(rates[key], rates["lightly_fp32"])) if lightly else None,
            "ours_rates": rates[key],
            "lightly_rates": rates["lightly_fp32"] if lightly else None,
            "batch_size": batch_size,
            "steps_per_repeat": steps,
            "repeats": args.repeats,
            "lightly_augment": args.lightly_augment if lightly else None,
            "simclr_views": args.simclr_views if method == "simclr" else None,
            "channels_last": label == "fast" and not args.no_channels_last,
            "compile": label == "fast" and args.compile,
            "gflops_per_image": flops_per_image / 1e9,
            "achieved_gflop_s": achieved / 1e9,
            "peak_gflop_s": peak / 1e9,
            "mfu": achieved / peak,
            "augment_img_s": augment_img_s,
            "augment_headroom": None if augment_img_s is None else augment_img_s / ours,
            "reuse_freed_memory": args.reuse_freed_memory,
            **machine_info(),
        }
        print_json_line(record)


def heldout_top1(trainer: ContrastiveTrainer, images: torch.Tensor, size: int, seed: int, group: int) -> float:
    """Contrastive top-1 on images the run never trained on: two ``BatchedTwoView`` views of each held-out image (from
    ``seed``, so every run sees the same views), both embedded by the trained (query / online) encoder in eval mode and
    fp32; within each group of ``group`` images (the training batch size, so chance is ``1 / group`` as in training),
    the share whose nearest other-view embedding (cosine) is their own, averaged over both directions and all groups."""
    network = trainer.network
    network.eval()
    with torch.no_grad():
        view1, view2 = BatchedTwoView(spatial_size=size, seed=seed)(images)
        z1 = nn.functional.normalize(network(view1).float(), dim=1)
        z2 = nn.functional.normalize(network(view2).float(), dim=1)
    network.train()
    hits = 0.0
    for a, b in zip(z1.split(group), z2.split(group), strict=True):
        sim, own = a @ b.T, torch.arange(len(a))
        hits += ((sim.argmax(1) == own).sum().item() + (sim.argmax(0) == own).sum().item()) / 2
    return hits / len(images)


def short_run_acc1(
    method: str, fast: bool, images: torch.Tensor, heldout: torch.Tensor, args: argparse.Namespace
) -> dict[str, Any]:
    """Train ``args.accuracy_steps`` iterations from ``args.seed`` and return the last-10-step mean training acc1 and
    loss, the held-out contrastive top-1 after training (``heldout_top1``), the steps run and the forward dtype."""
    size = args.accuracy_size
    batches = batches_of(images, args.batch_size)
    trainer, run = build_ours(method, args.accuracy_backbone, size, batches, args.accuracy_steps, fast, args)
    history: list[dict[str, float]] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: history.append(dict(e.state.output)))
    run()
    tail = history[-10:]
    return {
        "acc1": sum(h["acc1"] for h in tail) / len(tail),
        "loss": sum(h["loss"] for h in tail) / len(tail),
        "heldout_top1": heldout_top1(trainer, heldout, size, seed=10_000 + args.seed, group=args.batch_size),
        "steps": len(history),
        "dtype": autocast_dtype(trainer),
    }


def _mean(rows: Sequence[dict[str, Any]], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def bench_accuracy(images: torch.Tensor, heldout: torch.Tensor, args: argparse.Namespace) -> None:
    """``accuracy`` lines: the same short runs in fp32 and in our fast path from ``args.accuracy_seeds`` seeds; per
    path the training acc1 / loss and the held-out contrastive top-1 of each seed, so the fast path's difference can
    be read against the seed-to-seed spread of fp32."""
    seeds = [args.seed + i for i in range(args.accuracy_seeds)]
    for method in args.methods:
        runs: dict[str, list[dict[str, Any]]] = {"fp32": [], "fast": []}
        for seed in seeds:
            seeded = argparse.Namespace(**{**vars(args), "seed": seed})
            runs["fp32"].append(short_run_acc1(method, False, images, heldout, seeded))
            runs["fast"].append(short_run_acc1(method, True, images, heldout, seeded))

        fp32_heldout = [r["heldout_top1"] for r in runs["fp32"]]
        print_json_line(
            {
                "kind": "accuracy",
                "case": f"accuracy_{method}_{args.accuracy_backbone}_{args.accuracy_size}",
                "dtype": runs["fast"][0]["dtype"],
                "compile": args.compile,  # of the fast path (fp32 runs eager)
                "steps": runs["fp32"][0]["steps"],
                "batch_size": args.batch_size,
                "images": len(images),
                "seeds": seeds,
                "fp32_acc1": _mean(runs["fp32"], "acc1"),
                "fast_acc1": _mean(runs["fast"], "acc1"),
                "acc1_diff": _mean(runs["fast"], "acc1") - _mean(runs["fp32"], "acc1"),
                "fp32_loss": _mean(runs["fp32"], "loss"),
                "fast_loss": _mean(runs["fast"], "loss"),
                "acc1_over": "mean of the last 10 training steps, mean over seeds",
                "heldout_images": len(heldout),
                "fp32_heldout_top1": fp32_heldout,
                "fast_heldout_top1": [r["heldout_top1"] for r in runs["fast"]],
                "heldout_top1_diff": _mean(runs["fast"], "heldout_top1") - _mean(runs["fp32"], "heldout_top1"),
                "fp32_heldout_spread": max(fp32_heldout) - min(fp32_heldout),
                **machine_info(),
            }
        )


# what makes two step lines of a case the same measurement (so several runs of it are summarised together)
RUN_CONFIG = ("dtype", "batch_size", "steps_per_repeat", "lightly_augment", "simclr_views", "channels_last", "compile")
# the fields of a case summarised over runs by their median
RUN_MEDIANS = ("ours_img_s", "lightly_img_s", "ratio", "mfu", "achieved_gflop_s", "augment_img_s", "augment_headroom")


def summarise_runs(group: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One step line for several runs of the same case and path: the last line with ``RUN_MEDIANS`` replaced by
    their median over the runs, plus ``runs`` (how many), ``run_ratios`` (each run's ratio, in order) and
    ``ratio_range`` (the lowest and highest run's ratio, or None with fewer than two ratios)."""
    out = dict(group[-1])
    for key in RUN_MEDIANS:
        values = [float(d[key]) for d in group if d.get(key) is not None]
        out[key] = median(values) if values else None
    out["runs"] = len(group)
    out["run_ratios"] = [d.get("ratio") for d in group]
    ratios = [float(r) for r in out["run_ratios"] if r is not None]
    out["ratio_range"] = (min(ratios), max(ratios)) if len(ratios) > 1 else None
    return out


def step_lines_by_case(lines: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``case -> path ("float32" | "fast") -> step line``, in first-seen case order.

    Lines of a case and path from several runs with the same ``RUN_CONFIG`` are summarised by ``summarise_runs``
    (the median over runs, as the README tables report); a line whose configuration differs from the earlier lines of
    its case and path (a re-run with other options appended to a saved file) replaces them.
    """
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for d in lines:
        if d.get("kind") != "step":
            continue
        group = groups.setdefault(d["case"], {}).setdefault(d["path"], [])
        if group and [group[-1].get(k) for k in RUN_CONFIG] != [d.get(k) for k in RUN_CONFIG]:
            group.clear()
        group.append(d)
    return {case: {path: summarise_runs(g) for path, g in paths.items()} for case, paths in groups.items()}


def markdown_table(lines: Sequence[dict[str, Any]]) -> str:
    """The README tables of the JSON lines of one or more runs: training steps (ours fp32 and fast path vs lightly fp32,
    MFU, augmentation headroom; with several runs of a case the median over runs and, beside each ratio, the lowest
    and highest run), augmentation, short-run accuracy.

    Args:
        lines: the parsed JSON lines of one or more runs.

    Returns:
        Markdown text.

    Example::

        print(markdown_table([json.loads(x) for x in open("runs/bench_pretrain.jsonl")]))
    """
    by_case = step_lines_by_case(lines)
    out = []
    if by_case:
        out += [
            "| case | batch | runs x repeats | lightly fp32 img/s | ours fp32 img/s | ratio | ours fast img/s | "
            "ratio | MFU fp32 | MFU fast | augment / step |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]

        def fmt(v: Any, spec: str = ".3g", unit: str = "") -> str:
            return "-" if v is None else format(v, spec) + unit

        def ratio(line: dict[str, Any]) -> str:  # the median, and with several runs the lowest and highest run
            span = line.get("ratio_range")
            return fmt(line.get("ratio"), ".2f", "x") + (f" ({span[0]:.2f}-{span[1]:.2f})" if span else "")

        for name, paths in by_case.items():
            f32, fast = paths.get("float32", {}), paths.get("fast", {})
            out.append(
                f"| {name} | {f32.get('batch_size')} | {f32.get('runs')} x {f32.get('repeats')} | "
                f"{fmt(f32.get('lightly_img_s'))} | {fmt(f32.get('ours_img_s'))} | {ratio(f32)} | "
                f"{fmt(fast.get('ours_img_s'))} ({fast.get('dtype')}) | {ratio(fast)} | {fmt(f32.get('mfu'), '.0%')} | "
                f"{fmt(fast.get('mfu'), '.0%')} | {fmt(fast.get('augment_headroom'), '.1f', 'x')} |"
            )
    for d in lines:
        if d.get("kind") == "peak":
            out.append(f"\nmatmul peak ({d['threads']} threads): fp32 {d['fp32_gflop_s']:.0f} GFLOP/s, "
                       f"bf16 {d['bf16_gflop_s']:.0f} GFLOP/s")
        elif d.get("kind") == "augment":
            lightly = "-" if d["lightly_img_s"] is None else f"{d['lightly_img_s']:.3g}"
            ratio = "-" if d["ratio"] is None else f"{d['ratio']:.2f}x"
            out.append(f"\naugmentation at {d['size']} px: BatchedTwoView {d['ours_img_s']:.3g} img/s, lightly "
                       f"MoCoV2Transform {lightly} img/s, ratio {ratio} ({d['repeats']} repeats)")
        elif d.get("kind") == "profile":
            shares = ", ".join(f"{k} {v:.0%}" for k, v in d["shares"].items())
            compiled = ", compiled" if d.get("compile") else ""
            out.append(f"\nprofile of {d['case']}, {d['runner']} ({d['dtype']}{compiled}; operators "
                       f"{d['op_ms'] / 1e3:.3g} s of {d['wall_ms'] / 1e3:.3g} s wall): {shares}")
        elif d.get("kind") == "accuracy":
            fast = "fast path (compiled)" if d.get("compile") else "fast path"
            out.append(f"\n{d['case']} ({d['steps']} steps, batch {d['batch_size']}, {d['images']} real images): "
                       f"acc1 fp32 {d['fp32_acc1']:.3f}, {d['dtype']} {fast} {d['fast_acc1']:.3f} "
                       f"(loss {d['fp32_loss']:.3f} vs {d['fast_loss']:.3f})")
            if "fp32_heldout_top1" in d:  # lines written before the held-out check lack it

                def seeds(values: Sequence[float]) -> str:
                    return " / ".join(f"{v:.3f}" for v in values)

                out.append(f"held-out top-1 over {d['heldout_images']} images (groups of {d['batch_size']}), seeds "
                           f"{d['seeds']}: fp32 {seeds(d['fp32_heldout_top1'])}, fast path "
                           f"{seeds(d['fast_heldout_top1'])} (difference of means {d['heldout_top1_diff']:+.3f}, fp32 "
                           f"seed spread {d['fp32_heldout_spread']:.3f})")
    return "\n".join(out)


def plot_ratios(lines: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Bar chart of the ``step`` lines' ratios to lightly's fp32 (ours fp32 and our fast path per case; with several
    runs the median, whiskers at the lowest and highest run), with the speed targets (1x for fp32, 2x for the fast
    path) drawn as lines; written atomically.

    Args:
        lines: parsed JSON lines (other kinds are ignored; several runs of a case as in ``step_lines_by_case``).
        path: the image file (``.png``; any matplotlib format by extension).
        title: the figure title (e.g. the machine).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: when ``lines`` hold no ``step`` line with a ratio (an ``--ours_only`` run).

    Example::

        plot_ratios([json.loads(x) for x in open("runs/bench_pretrain.jsonl")], "docs/figures/bench_pretrain.png")
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    by_case = {
        case: {path: d for path, d in paths.items() if d.get("ratio") is not None}
        for case, paths in step_lines_by_case(lines).items()
    }
    by_case = {case: paths for case, paths in by_case.items() if paths}
    if not by_case:
        raise ValueError("plot_ratios: no 'step' line with a lightly ratio (was the run --ours_only?).")
    cases = list(by_case)
    fig = Figure(figsize=(7.5, 0.32 * len(cases) + 1.6), dpi=120)
    ax = fig.add_subplot()
    height = 0.38
    for offset, (path_name, label, color) in enumerate(
        (("float32", "ours fp32", "#4c72b0"), ("fast", "ours fast path", "#dd8452"))
    ):
        ys = [i + (offset - 0.5) * height for i in range(len(cases))]
        found = [by_case[c].get(path_name) or {} for c in cases]
        values = [float(d.get("ratio", 0.0)) for d in found]
        spans = [d.get("ratio_range") or (v, v) for d, v in zip(found, values, strict=True)]
        low = [v - span[0] for v, span in zip(values, spans, strict=True)]
        high = [span[1] - v for v, span in zip(values, spans, strict=True)]
        errors = [low, high] if any(low) or any(high) else None  # the lowest and highest of several runs
        ax.barh(ys, values, height=height, label=label, color=color, xerr=errors, error_kw={"lw": 0.8, "capsize": 2})
    ax.axvline(1.0, color="black", lw=1, ls="--", label="1x (fp32 target)")
    ax.axvline(2.0, color="grey", lw=1, ls=":", label="2x (fast-path target)")
    ax.set_yticks(range(len(cases)), cases, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("step throughput / lightly's fp32 (median; whiskers: lowest and highest run)", fontsize=9)
    ax.set_title(title, fontsize=9, pad=18)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False)  # above the bars
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", type=Path, default=Path("../shared/data/kermany_pneumonia_224"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 128])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="training iterations per timed repeat")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed repeats (medians reported)")
    parser.add_argument("--images", type=int, default=256, help="distinct real radiographs cycled through")
    parser.add_argument("--aug_images", type=int, default=256, help="images per augmentation repeat")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--compile", action="store_true", help="torch.compile in our fast path")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after timing a case, one 'profile' line per runner: torch.profiler operator self time by family",
    )
    parser.add_argument("--no_channels_last", action="store_true", help="keep NCHW in our fast path")
    parser.add_argument("--lightly_augment", choices=("same", "transform"), default="same")
    parser.add_argument(
        "--simclr_views",
        choices=("separate", "joint"),
        default="separate",
        help="SimCLRTrainer(joint_forward=...): 'separate' forwards each view on its own, as lightly's reference loop "
        "does (so both normalise BatchNorm per view: the same algorithm); 'joint' is the engine's default 2N batch",
    )
    parser.add_argument("--accuracy_steps", type=int, default=100, help="0 skips the short accuracy runs")
    parser.add_argument("--accuracy_backbone", default="resnet18")
    parser.add_argument("--accuracy_size", type=int, default=64)
    parser.add_argument("--accuracy_seeds", type=int, default=3, help="seeds of the short runs (fp32 and fast each)")
    parser.add_argument(
        "--accuracy_heldout", type=int, default=256, help="radiographs after the --images ones for held-out top-1"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=("peak", "augment", "step", "accuracy"))
    parser.add_argument("--ours_only", action="store_true", help="run without lightly (lightly columns null)")
    parser.add_argument(
        "--glibc_malloc",
        action="store_true",
        help="keep glibc's default malloc thresholds instead of monai_moco.utils.cpu.reuse_freed_memory() (both loops)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", nargs="+", type=Path, help="print the Markdown tables of saved JSON lines and exit")
    parser.add_argument("--plot", type=Path, help="with --table: also draw the ratio bar chart to this image file")
    parser.add_argument("--plot_title", default="", help="title of the --plot figure (e.g. the machine)")
    parser.add_argument(
        "--quick", action="store_true", help="ResNet-18 and ConvStemViT-tiny at 128, batch 16, 3 repeats: minutes"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.backbones = [b for b in args.backbones if b in ("resnet18", "convstem_vit_tiny")] or args.backbones
        args.sizes = [min(args.sizes)] if 128 not in args.sizes else [128]
        # quick lowers only what was left at its default
        quick = {"batch_size": 16, "repeats": 3, "images": 64, "aug_images": 64, "accuracy_steps": 50,
                 "accuracy_seeds": 1, "accuracy_heldout": 64}  # fmt: skip
        for name, value in quick.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        lines = [json.loads(x) for p in args.table for x in p.read_text().splitlines() if x.startswith("{")]
        print(markdown_table(lines))
        if args.plot:
            plot_ratios(lines, args.plot, args.plot_title)
        return 0
    lightly = lightly_available() and not args.ours_only
    if not lightly and not args.ours_only:
        print(
            "bench_pretrain: lightly is not installed, so there is no reference to compare with. Install the bench "
            "extra (.venv/bin/python -m pip install -e '.[bench]' or pip install lightly), or pass --ours_only.",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(args.threads)
    # as the pretraining bundles' initialize does; process-wide, so lightly's loop runs with it too
    args.reuse_freed_memory = not args.glibc_malloc and reuse_freed_memory()
    accuracy = "accuracy" not in args.skip and args.accuracy_steps > 0
    # one read of the radiographs: the first --images for every case, the next --accuracy_heldout held out
    pool = load_images(args.data_dir, args.images + (args.accuracy_heldout if accuracy else 0))
    images, heldout = pool[: args.images], pool[args.images :]
    if accuracy and len(heldout) == 0:
        raise ValueError(f"{args.data_dir} has no training radiographs left after --images {args.images} to hold out")
    peaks = {"float32": matmul_peak_flops(torch.float32), "bfloat16": matmul_peak_flops(torch.bfloat16)}
    if "peak" not in args.skip:
        print_json_line(
            {
                "kind": "peak",
                "case": "matmul_peak",
                "fp32_gflop_s": peaks["float32"] / 1e9,
                "bf16_gflop_s": peaks["bfloat16"] / 1e9,
                "matmul": "best of torch.mm up to 2048^3 and a oneDNN 3x3 channels-last convolution up to "
                "32x256x16x16 (sizes doubled from 256 while 5 products fit in 3 s), median of 5",
                **machine_info(),
            }
        )
    augment: dict[int, float | None] = {s: None for s in args.sizes}
    if "augment" not in args.skip:
        augment = bench_augment_sizes(args.sizes, images, args, lightly)
    if "step" not in args.skip:
        for size in args.sizes:
            for backbone in args.backbones:
                for method in args.methods:
                    bench_step(method, backbone, size, images, args, lightly, peaks, augment[size])
    if accuracy:
        bench_accuracy(images, heldout, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
