"""Patchify ViT vs ConvStemViT vs ConvStemViT + top-K patch head, pretrained by MoCo-v2 on the same small budget.

The evidence behind the project's two ideas; ``scripts/compare_vit_stems.py`` is its command line (``main``). Every
arm is pretrained with MoCo-v2 (He et al., CVPR 2020; Chen et al., arXiv:2003.04297) on the same unlabeled Kermany
training images, the same number of steps, batch, image size, optimizer, learning-rate schedule, augmentation draws
and seed:

* ``patchify_vit_tiny`` -- plain ViT-Tiny, patchify stem (Dosovitskiy et al., ICLR 2021), 12 blocks, CLS pooling;
* ``convstem_vit_tiny`` -- ViT-Tiny with the convolutional stem of Xiao et al. ("Early Convolutions Help
  Transformers See Better", NeurIPS 2021), one block fewer to keep FLOPs level (11 blocks), CLS pooling;
* ``convstem_vit_tiny_topk`` -- the same conv-stem ViT whose patch tokens go through
  :class:`~monai_moco.networks.blocks.TopKPatchHead` (score every patch, keep the top K, score-weighted mean).

Reported per arm and seed:

* training-loss stability: the per-step loss (and contrastive top-1, gradient norm) curve; the mean and standard
  deviation of the loss about its linear trend over the last ``N`` steps; the number of loss spikes after the queue
  has filled (a step-to-step rise larger than the median step change plus 4 robust standard deviations of the step
  changes, 1.4826 x MAD, floored at 0.01); whether the run stopped on a non-finite loss;
* representation quality: the frozen ``embed`` features (before the projection head; the top-K pooled embedding for
  the top-K arm) of labelled Kermany **train** images fit a logistic regression
  (:func:`~monai_moco.metrics.logistic_probe`), scored by ROC AUC on the official 624-image **test** split with a
  patient-clustered bootstrap 95 % CI (:func:`~monai_moco.metrics.auc_with_ci`, patients from ``labels.csv``); the
  weighted kNN AUC (:func:`~monai_moco.metrics.knn_predict`, k = 20, T = 0.07) and the same linear probe on the
  untrained network (same seed) as a baseline.

Outputs in ``--output_dir``: ``results.json`` (one record per arm and seed, with the curves), ``results.csv`` (the
same without the curves), ``compare_vit_stems.png`` (loss curves per arm and AUC bars with CIs); a Markdown table is
printed. Images are decoded once (``LoadXRayd`` into a memory cache) and augmented on the fly by ``BatchedTwoView``.

Example::

    python scripts/compare_vit_stems.py --quick --output_dir runs/compare_vit_stems_quick
    python scripts/compare_vit_stems.py --image_size 64 --patch_size 8 --steps 150 --batch_size 64 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from monai.handlers import LrScheduleHandler
from monai.optimizers import WarmupCosineSchedule
from monai.utils import look_up_option, set_determinism
from tqdm.auto import tqdm

from monai_moco.data import label_fraction_split, make_dataset, train_test_datalists, unlabeled_datalist
from monai_moco.engines import MoCoTrainer, StepOptions
from monai_moco.engines.contrastive import NonFiniteLossError
from monai_moco.losses import InfoNCELoss
from monai_moco.metrics import auc_with_ci, extract_features, knn_predict, logistic_probe
from monai_moco.networks.blocks import MoCoV2ProjectionHead, TopKPatchHead
from monai_moco.networks.nets import ContrastiveEncoder, convstem_vit_tiny, patchify_vit_tiny
from monai_moco.transforms import LoadXRayd
from monai_moco.transforms.ssl import BatchedTwoView
from monai_moco.utils.io import atomic_write, atomic_write_all, csv_writer, json_writer

__all__ = ["ARMS", "build_encoder", "loss_stability", "main", "parse_args", "run_arm"]

#: Arm name -> (ViT factory, use the top-K patch head).
ARMS: dict[str, tuple[Any, bool]] = {
    "patchify_vit_tiny": (patchify_vit_tiny, False),
    "convstem_vit_tiny": (convstem_vit_tiny, False),
    "convstem_vit_tiny_topk": (convstem_vit_tiny, True),
}

SPIKE_SIGMAS = 4.0
SPIKE_FLOOR = 0.01
#: Options that must match for a stored record to be reused by ``--resume`` (with the number of steps).
RUN_KEYS = ("image_size", "patch_size", "num_layers", "batch_size", "lr", "weight_decay", "warmup", "queue_size",
            "momentum", "temperature", "amp", "max_images", "probe_images", "topk")
CSV_FIELDS = (
    "arm", "seed", "steps", "params", "blocks", "diverged", "loss_last_mean", "loss_last_std", "loss_spikes",
    "acc1_last", "grad_norm_median", "grad_norm_max", "linear_auc", "linear_auc_low", "linear_auc_high", "knn_auc",
    "knn_auc_low", "knn_auc_high", "init_linear_auc", "train_seconds", "images_per_second",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``).

    Args:
        argv: arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        the parsed namespace, with ``--quick`` defaults applied.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset_dir", default="data/kermany", help="Kermany folder with train/ and test/ class folders")
    p.add_argument("--output_dir", default="runs/compare_vit_stems", help="where results.json/csv and the plot go")
    p.add_argument("--quick", action="store_true", help="tiny smoke budget (< 1 min): 32 px, 4 steps, 2 layers")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), help="arms to train")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="one full run of every arm per seed")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per arm (overrides --epochs)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the pretraining images (if --steps unset)")
    p.add_argument("--image_size", type=int, default=None, help="square input size (default 64; quick 32)")
    p.add_argument("--patch_size", type=int, default=8, help="ViT patch size (power of two for the conv stem)")
    p.add_argument("--num_layers", type=int, default=None, help="transformer blocks before the conv-stem -1 "
                   "(default: the tiny preset's 12; quick 2)")
    p.add_argument("--batch_size", type=int, default=None, help="pretraining batch (default 64; quick 16)")
    p.add_argument("--max_images", type=int, default=None,
                   help="pretraining images: 0 = all train images, else a seeded subset (quick 64)")
    p.add_argument("--probe_images", type=int, default=None,
                   help="labelled train images for the linear/kNN probe: 0 = all, else a stratified patient-grouped "
                   "subset (quick 64)")
    p.add_argument("--topk", type=int, default=None, help="patches kept by the top-K head (default: a quarter)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate")
    p.add_argument("--weight_decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps of linear warm-up (then cosine)")
    p.add_argument("--queue_size", type=int, default=None, help="MoCo queue length (default 2048; quick 64)")
    p.add_argument("--momentum", type=float, default=0.99, help="key-encoder momentum")
    p.add_argument("--temperature", type=float, default=0.2, help="InfoNCE temperature (MoCo v2: 0.2)")
    p.add_argument("--last_n", type=int, default=50, help="loss statistics over the last N steps (capped at 1/4)")
    p.add_argument("--n_bootstrap", type=int, default=1000, help="bootstrap resamples of each AUC CI")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CPU (fp16 on CUDA)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--num_workers", type=int, default=2, help="threads that decode the images once")
    p.add_argument("--from_json", default=None,
                   help="skip training: rewrite results.json/csv, the plot and the table of an existing results.json "
                   "into --output_dir (stability statistics recomputed from its loss curves)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the records of --output_dir/results.json made with the same options (e.g. to add "
                   "seeds); the others are trained")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (0: torch's default); 1 is faster on oversubscribed cores")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    quick = {"image_size": 32, "num_layers": 2, "batch_size": 16, "max_images": 64, "probe_images": 64,
             "queue_size": 64, "steps": 4}
    full = {"image_size": 64, "num_layers": 12, "batch_size": 64, "max_images": 0, "probe_images": 0,
            "queue_size": 2048, "steps": None}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.image_size % args.patch_size:
        p.error(f"--image_size {args.image_size} must be a multiple of --patch_size {args.patch_size}.")
    return args


def _decode(items: list[dict], image_size: int, num_workers: int, desc: str) -> torch.Tensor:
    """``N x 1 x S x S`` float32 images in [0, 1], each file decoded once (``LoadXRayd`` in a memory cache)."""
    print(f"decoding {len(items)} {desc} images at {image_size} px", file=sys.stderr, flush=True)
    data = make_dataset([{"image": d["image"]} for d in items], LoadXRayd("image", spatial_size=image_size),
                        cache="memory", num_workers=num_workers, progress=True)
    return torch.stack([torch.as_tensor(data[i]["image"]).as_subclass(torch.Tensor) for i in range(len(data))])


def build_encoder(arm: str, image_size: int, patch_size: int, num_layers: int, topk: int | None) -> ContrastiveEncoder:
    """MoCo-v2 encoder of an arm: ViT-Tiny backbone (+ top-K head), ``MoCoV2ProjectionHead(192, 512, 128)``.

    Args:
        arm: a key of :data:`ARMS`.
        image_size: training input size.
        patch_size: ViT patch size.
        num_layers: transformer blocks (the conv-stem arms build one fewer, Xiao et al.'s FLOPs parity).
        topk: patches kept by the top-K head; default a quarter of the tokens.

    Returns:
        the query encoder.
    """
    factory, use_topk = look_up_option(arm, ARMS)
    backbone = factory(img_size=image_size, patch_size=patch_size, num_layers=num_layers,
                       pooling="none" if use_topk else "cls")
    width = backbone.out_features
    head = None
    if use_topk:
        n_tokens = (image_size // patch_size) ** 2
        head = TopKPatchHead(width, k=topk if topk else max(1, n_tokens // 4), pooling="weighted")
    return ContrastiveEncoder(backbone, MoCoV2ProjectionHead(width, 512, 128), head)


def loss_stability(losses: Sequence[float], last_n: int, skip: int) -> dict[str, float]:
    """Stability statistics of a per-step loss curve.

    Args:
        losses: the loss of every step.
        last_n: window of the final statistics (capped at a quarter of the steps, at least 1).
        skip: steps ignored by the spike count (MoCo's loss rises while its queue fills).

    Returns:
        ``loss_last_mean`` over the last steps; ``loss_last_std``, the standard deviation of the last steps about
        their least-squares line (step-to-step noise, not the trend); ``loss_spikes``: steps after ``skip`` whose
        loss rises from the previous step by more than the median step change plus ``SPIKE_SIGMAS`` robust standard
        deviations of the step changes (1.4826 x MAD, at least ``SPIKE_FLOOR``), so a steady trend is no spike.

    Example::

        loss_stability([5.0, 4.9, 4.8, 4.7, 4.6, 4.5, 9.0, 4.4], last_n=4, skip=0)["loss_spikes"]  # 1
    """
    arr = np.asarray(losses, dtype=np.float64)
    if arr.size == 0:
        return {"loss_last_mean": float("nan"), "loss_last_std": float("nan"), "loss_spikes": 0}
    n = max(1, min(int(last_n), arr.size // 4 or 1))
    tail = arr[-n:]
    if n >= 3:
        steps = np.arange(n, dtype=np.float64)
        tail = tail - np.polyval(np.polyfit(steps, tail, 1), steps)
    diffs = np.diff(arr)[max(int(skip), 1) - 1 :]  # diffs[i] = change into step max(skip, 1) + i
    spikes = 0
    if diffs.size:
        med = np.median(diffs)
        scale = max(1.4826 * float(np.median(np.abs(diffs - med))), SPIKE_FLOOR)
        spikes = int(np.sum(diffs > med + SPIKE_SIGMAS * scale))
    return {"loss_last_mean": float(arr[-n:].mean()), "loss_last_std": float(tail.std()), "loss_spikes": spikes}


def _probe(encoder: torch.nn.Module, probe: dict[str, Any], device: torch.device, n_bootstrap: int,
           seed: int, knn: bool = True) -> dict[str, Any]:
    """Linear-probe (and kNN) test AUC with patient-clustered bootstrap CIs of frozen ``embed`` features."""
    train_x, train_y = extract_features(encoder, probe["train"], device, progress=True)
    test_x, test_y = extract_features(encoder, probe["test"], device, progress=True)
    out: dict[str, Any] = {}
    linear = auc_with_ci(test_y, logistic_probe(train_x, train_y, test_x)[:, 1], n_bootstrap, groups=probe["groups"],
                         seed=seed)
    out.update(linear_auc=linear["value"], linear_auc_low=linear["ci_low"], linear_auc_high=linear["ci_high"])
    if knn:
        scores = knn_predict(train_x, train_y, test_x, k=20, temperature=0.07, num_classes=2)[:, 1].numpy()
        res = auc_with_ci(test_y, scores, n_bootstrap, groups=probe["groups"], seed=seed)
        out.update(knn_auc=res["value"], knn_auc_low=res["ci_low"], knn_auc_high=res["ci_high"])
    return out


def run_arm(arm: str, seed: int, images: torch.Tensor, probe: dict[str, Any], args: argparse.Namespace) -> dict:
    """Pretrain one arm with MoCo-v2 for ``args.steps`` steps, then probe it.

    Args:
        arm: a key of :data:`ARMS`.
        seed: seed of weights, data order, augmentations and ShuffleBN.
        images: ``N x 1 x S x S`` pretraining images.
        probe: ``{"train": loader, "test": loader, "groups": test patient ids or None}``.
        args: the parsed options.

    Returns:
        the result record (configuration, curves, stability and probe metrics).
    """
    device = torch.device(args.device)
    set_determinism(seed=seed)
    encoder = build_encoder(arm, args.image_size, args.patch_size, args.num_layers, args.topk).to(device)
    init = _probe(encoder, probe, device, args.n_bootstrap, seed, knn=False)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(images, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         generator=generator)
    if len(loader) == 0:
        raise ValueError(f"{len(images)} pretraining images give no full batch of {args.batch_size}.")
    steps = args.steps if args.steps else args.epochs * len(loader)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = WarmupCosineSchedule(optimizer, warmup_steps=int(round(args.warmup * steps)), t_total=steps)
    trainer = MoCoTrainer(
        device=device, max_epochs=1, epoch_length=steps, train_data_loader=loader, network=encoder,
        optimizer=optimizer, loss_function=InfoNCELoss(temperature=args.temperature), queue_size=args.queue_size,
        momentum=args.momentum, view_transform=BatchedTwoView(spatial_size=args.image_size, seed=seed),
        step=StepOptions(amp=args.amp), train_handlers=[LrScheduleHandler(schedule, print_lr=False, epoch_level=False)],
    )
    curves: dict[str, list[float]] = {"loss": [], "acc1": [], "grad_norm": [], "lr": []}
    bar = tqdm(total=steps, desc=f"{arm} seed {seed}", leave=False)

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine: MoCoTrainer) -> None:
        for key, values in curves.items():
            values.append(float(engine.state.output[key]))
        bar.update(1)
        bar.set_postfix(loss=f"{curves['loss'][-1]:.3f}", acc1=f"{curves['acc1'][-1]:.2f}")

    diverged = False
    start = time.perf_counter()
    try:
        trainer.run()
    except NonFiniteLossError as err:  # the weights are the last good step's; probe them and report the divergence
        diverged = True
        print(f"{arm} seed {seed}: {err}", file=sys.stderr)
    seconds = time.perf_counter() - start
    bar.close()
    n_last = max(1, min(args.last_n, len(curves["loss"]) // 4 or 1))
    grads = np.asarray(curves["grad_norm"]) if curves["grad_norm"] else np.full(1, np.nan)
    record: dict[str, Any] = {
        "arm": arm,
        "seed": seed,
        "steps": len(curves["loss"]),
        "params": int(sum(p.numel() for p in encoder.parameters())),
        "blocks": int(encoder.backbone.num_blocks),
        "diverged": diverged,
        **loss_stability(curves["loss"], args.last_n, skip=math.ceil(args.queue_size / args.batch_size)),
        "acc1_last": float(np.mean(curves["acc1"][-n_last:])) if curves["acc1"] else float("nan"),
        "grad_norm_median": float(np.median(grads)),
        "grad_norm_max": float(grads.max()),
        **_probe(encoder, probe, device, args.n_bootstrap, seed),
        "init_linear_auc": init["linear_auc"],
        "train_seconds": seconds,
        "images_per_second": len(curves["loss"]) * args.batch_size / max(seconds, 1e-9),
        "config": {k: getattr(args, k) for k in RUN_KEYS + ("last_n",)},
        "curves": curves,
    }
    record["config"].update(pretrain_images=int(len(images)), probe_train_images=len(probe["train"].dataset),
                            test_images=len(probe["test"].dataset), torch_threads=torch.get_num_threads(),
                            command=" ".join(["python", "scripts/compare_vit_stems.py", *args.argv]))
    return record


def _fmt_ci(value: float, low: float, high: float) -> str:
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def markdown_table(records: list[dict]) -> str:
    """Markdown table of the records (one row per arm and seed; plus a mean +- s.d. over seeds with several seeds).

    Args:
        records: result records of :func:`run_arm`.

    Returns:
        the table text.
    """
    lines = [
        "| arm | seed | loss (last N) mean ± detrended sd | spikes | contrastive top-1 | linear-probe AUC [95% CI] | "
        "kNN AUC [95% CI] | random-init linear AUC | img/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['arm']}{' (diverged)' if r['diverged'] else ''} | {r['seed']} | {r['loss_last_mean']:.3f} ± "
            f"{r['loss_last_std']:.3f} | {r['loss_spikes']} | {r['acc1_last']:.3f} | "
            f"{_fmt_ci(r['linear_auc'], r['linear_auc_low'], r['linear_auc_high'])} | "
            f"{_fmt_ci(r['knn_auc'], r['knn_auc_low'], r['knn_auc_high'])} | {r['init_linear_auc']:.3f} | "
            f"{r['images_per_second']:.0f} |"
        )
    seeds = sorted({r["seed"] for r in records})
    if len(seeds) > 1:
        lines += ["", "| arm | seeds | linear-probe AUC mean ± sd | kNN AUC mean ± sd | detrended loss sd (last N) mean | spikes total |",
                  "|---|---|---|---|---|---|"]
        for arm in dict.fromkeys(r["arm"] for r in records):
            rs = [r for r in records if r["arm"] == arm]
            lin, knn = np.array([r["linear_auc"] for r in rs]), np.array([r["knn_auc"] for r in rs])
            lines.append(
                f"| {arm} | {len(rs)} | {lin.mean():.3f} ± {lin.std(ddof=1):.3f} | {knn.mean():.3f} ± "
                f"{knn.std(ddof=1):.3f} | {np.mean([r['loss_last_std'] for r in rs]):.3f} | "
                f"{sum(r['loss_spikes'] for r in rs)} |"
            )
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    """Loss curves per arm (one line per seed) and linear-probe/kNN AUC bars with their 95 % CIs.

    Args:
        records: result records of :func:`run_arm`.
        path: PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(r["arm"] for r in records))
    colours = {a: plt.get_cmap("tab10")(i) for i, a in enumerate(arms)}
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(11, 4))
    for r in records:
        loss = np.asarray(r["curves"]["loss"])
        ax_loss.plot(np.arange(1, loss.size + 1), loss, color=colours[r["arm"]], lw=1,
                     alpha=0.9 if r["seed"] == records[0]["seed"] else 0.5,
                     label=r["arm"] if r["seed"] == records[0]["seed"] else None)
    fill = records[0]["config"]["queue_size"] / records[0]["config"]["batch_size"]
    ax_loss.axvline(fill, color="grey", ls=":", lw=1, label="queue full")
    ax_loss.set(xlabel="step", ylabel="InfoNCE loss", title="MoCo-v2 training loss (one line per seed)")
    ax_loss.legend(fontsize=8)
    seeds = sorted({r["seed"] for r in records})
    width = 0.8 / (2 * len(seeds))
    for ai, arm in enumerate(arms):
        for si, seed in enumerate(seeds):
            r = next((x for x in records if x["arm"] == arm and x["seed"] == seed), None)
            if r is None:
                continue
            for pi, (key, hatch) in enumerate((("linear_auc", None), ("knn_auc", "//"))):
                x = ai - 0.4 + width * (2 * si + pi + 0.5)
                err = [[r[key] - r[f"{key}_low"]], [r[f"{key}_high"] - r[key]]]
                ax_auc.bar(x, r[key], width, yerr=err, color=colours[arm], hatch=hatch, edgecolor="black",
                           capsize=2, alpha=0.9)
                if key == "linear_auc":  # the same probe on the untrained network
                    ax_auc.hlines(r["init_linear_auc"], x - width / 2, x + width / 2, colors="black",
                                  linestyles="dotted", label="random-init linear probe" if ai == si == 0 else None)
    ax_auc.set_xticks(range(len(arms)), [a.replace("_", "\n", 1) for a in arms], fontsize=8)
    lows = [r[k] for r in records for k in ("linear_auc_low", "knn_auc_low", "init_linear_auc")]
    ax_auc.set_ylim(max(0.0, min(lows) - 0.05), 1.0)
    ax_auc.set(ylabel="test AUC (624 images)", title="linear probe (plain) / kNN (hatched), 95% CI; bars = seeds")
    ax_auc.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def _write(records: list[dict], out: Path) -> None:
    """results.csv and results.json, together (the JSON last: ``--resume`` reads it)."""
    atomic_write_all([(out / "results.csv", csv_writer(CSV_FIELDS, records)),
                      (out / "results.json", json_writer(records, indent=1))])


def _resumable(path: Path, args: argparse.Namespace, steps: int) -> dict[tuple[str, int], dict]:
    """With ``--resume``: the stored records of ``path`` trained with the same options and number of steps."""
    if not args.resume or not path.is_file():
        return {}
    return {
        (r["arm"], int(r["seed"])): r
        for r in json.loads(path.read_text())
        if all(r["config"].get(k) == getattr(args, k) for k in RUN_KEYS) and (r["steps"] == steps or r["diverged"])
    }


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run every arm for every seed; write results.json, results.csv and the plot; print the Markdown table.

    Args:
        argv: command-line arguments (see :func:`parse_args`).

    Returns:
        the result records.
    """
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dataset_dir, out = Path(args.dataset_dir), Path(args.output_dir)
    if args.from_json:
        records = json.loads(Path(args.from_json).read_text())
        for r in records:  # stability statistics recomputed from the stored curves, by the current definition
            cfg = r["config"]
            r.update(loss_stability(r["curves"]["loss"], cfg["last_n"], math.ceil(cfg["queue_size"] / cfg["batch_size"])))
        _write(records, out)
        return _report(records, out)
    train_items, test_items, _ = train_test_datalists(dataset_dir)
    pretrain_items = unlabeled_datalist(dataset_dir / "train", max_images=args.max_images, seed=0)
    train_labels = np.array([int(d["label"]) for d in train_items])
    if args.probe_images and args.probe_images < len(train_items):
        groups = [d.get("group", i) for i, d in enumerate(train_items)]
        keep = label_fraction_split(train_labels, args.probe_images / len(train_items), groups=groups, seed=0)
        train_items, train_labels = [train_items[i] for i in keep], train_labels[keep]
    # decode each file once, shared by pretraining (labels unused) and the probe's labelled train features
    key = lambda path: os.path.realpath(path)  # noqa: E731
    unique = list(dict.fromkeys(key(d["image"]) for d in pretrain_items + train_items))
    decoded = _decode([{"image": p} for p in unique], args.image_size, args.num_workers, "train")
    row = {p: i for i, p in enumerate(unique)}
    images = decoded[[row[key(d["image"])] for d in pretrain_items]]
    test_x = _decode(test_items, args.image_size, args.num_workers, "test")
    test_y = torch.tensor([int(d["label"]) for d in test_items])
    probe_train = torch.utils.data.TensorDataset(decoded[[row[key(d["image"])] for d in train_items]],
                                                 torch.as_tensor(train_labels))
    probe = {
        "train": torch.utils.data.DataLoader(probe_train, batch_size=256),
        "test": torch.utils.data.DataLoader(torch.utils.data.TensorDataset(test_x, test_y), batch_size=256),
        "groups": [d["group"] for d in test_items] if all("group" in d for d in test_items) else None,
    }
    print(f"pretraining on {len(images)} train images (labels unused); probe: {len(probe_train)} labelled train, "
          f"{len(test_y)} test images", file=sys.stderr, flush=True)
    done = _resumable(out / "results.json", args, args.steps or args.epochs * (len(images) // args.batch_size))
    records: list[dict] = []
    for seed in args.seeds:
        for arm in args.arms:
            if (arm, seed) in done:
                records.append(done[(arm, seed)])
                print(f"{arm} seed {seed}: reusing the stored record (--resume)", file=sys.stderr, flush=True)
                continue
            records.append(run_arm(arm, seed, images, probe, args))
            _write(records, out)  # partial results survive an interrupted run
            print(f"{arm} seed {seed}: linear AUC {records[-1]['linear_auc']:.3f}, "
                  f"{records[-1]['train_seconds']:.0f} s", file=sys.stderr, flush=True)
    return _report(records, out)


def _report(records: list[dict], out: Path) -> list[dict]:
    """Draw the plot, print the Markdown table and save it as ``results.md``; returns ``records``."""
    out.mkdir(parents=True, exist_ok=True)
    plot(records, out / "compare_vit_stems.png")
    table = markdown_table(records)
    print(table)
    atomic_write(out / "results.md", lambda p: p.write_text(table + "\n"))
    return records


if __name__ == "__main__":
    main()
