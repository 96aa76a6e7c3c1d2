"""Label-fraction transfer study: does self-supervised pretraining help when labels are scarce?

The protocol of MoCo-CXR (Sowrirajan et al., "MoCo-CXR: MoCo Pretraining Improves Representation and Transferability
of Chest X-ray Models", MIDL 2021): backbones from {random init (``scratch``), ImageNet (``imagenet``, only with
``--imagenet_weights FILE``), SimCLR (Chen et al., ICML 2020), MoCo-v2 (Chen et al., 2020), MoCo-v1 (``moco_v1``, He
et al., CVPR 2020), supervised contrastive (``supcon``, Khosla et al., NeurIPS 2020) and MoCo-v2 with a ConvStem ViT
(``moco_vit``, against its own random init ``scratch_vit``)} are evaluated on {100 %, 10 %, 1 %} of the
training labels (stratified, patient-grouped, nested subsets; several random draws) by

- ``linear``: the frozen-feature linear probe (every image embedded once, an L2 logistic regression per draw with its
  strength chosen on the validation split; :mod:`monai_moco.evaluation`), seconds per draw;
- ``finetune``: ``bundles/cxr_classifier`` training everything, at least ``--min_steps`` optimizer steps, the
  checkpoint with the best validation AUC kept;
- ``knn``: a weighted kNN classifier (k = 20) on the frozen features of all training labels.

The validation split is carved from train by patient; the official test split is scored once per run, with
patient-bootstrap 95 % intervals.

MoCo and SimCLR are pretrained first, on the training images only and without labels, with the pretraining bundles
(``bundles/moco_resnet50``, ``bundles/simclr_resnet50``, ``bundles/moco_vit``; plus ``--pretrain_overlay``) unless
``--moco_ckpt``/``--simclr_ckpt``/``--moco_vit_ckpt`` name existing checkpoints. The variants are one overlay each
(:data:`VARIANT_OVERLAYS`, between ``train.json`` and ``--pretrain_overlay``): ``moco_v1`` is ``moco_resnet50`` with
``moco_v1.json``; ``supcon`` is ``simclr_resnet50`` with ``supcon.json`` and uses the labels of 100 % of the study's
training part (never its validation or test images: the datalist comes from the same ``transfer_datalists`` split), so
it is a labelled baseline, not a label-efficient method. ``--moco_v1_ckpt``/``--supcon_ckpt`` reuse checkpoints.

Fine-tuning runs execute **in this process** through MONAI's ``ConfigWorkflow`` (the same code path as
``python -m monai.bundle run``), which saves the import cost of a subprocess per run. Each finished run leaves
``<output_dir>/runs/<run>/record.json``; a second invocation skips those runs (resumable), and ``--force`` redoes them.

Outputs in ``--output_dir``: ``results.json`` (one record per run: strategy, fraction, draw, mode, auc, ci_low,
ci_high, accuracy, sensitivity, specificity, ...), ``results.csv``, ``summary.csv`` / ``summary.md`` (mean and
spread over draws) and ``auc_vs_label_fraction.png``.

Example::

    python scripts/run_transfer_study.py --dataset_dir data/kermany --output_dir runs/transfer_study --quick
    # the CPU study of docs/transfer_study.md (pretraining included, a few hours on 2 cores):
    python scripts/run_transfer_study.py --preset cpu_study --output_dir runs/transfer_study
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = REPO / "bundles" / "cxr_classifier"
PRETRAIN_BUNDLES = {
    "moco": REPO / "bundles" / "moco_resnet50",
    "simclr": REPO / "bundles" / "simclr_resnet50",
    "moco_vit": REPO / "bundles" / "moco_vit",
    "moco_v1": REPO / "bundles" / "moco_resnet50",
    "supcon": REPO / "bundles" / "simclr_resnet50",
}
#: the method variants: the overlay merged over their bundle's train.json (before ``--pretrain_overlay``)
VARIANT_OVERLAYS = {"moco_v1": "moco_v1.json", "supcon": "supcon.json"}
STRATEGIES = ("scratch", "imagenet", "simclr", "moco", "moco_v1", "supcon", "scratch_vit", "moco_vit")
MODES = ("linear", "finetune", "knn")
#: the study of docs/transfer_study.md: ResNet-18 and ConvStemViT-tiny at 64 px, pretraining with cpu_study.json
PRESETS: dict[str, dict[str, Any]] = {
    "cpu_study": {
        "dataset_dir": "data/kermany",
        "strategies": ["scratch", "simclr", "moco", "scratch_vit", "moco_vit"],
        "modes": ["linear", "finetune", "knn"],
        "backbone": "resnet18",
        "vit_backbone": "convstem_vit_tiny",
        "image_size": 64,
        "batch_size": 32,
        "epochs": 2,
        "min_steps": 200,
        "draws": 3,
        "small_fraction_draws": 5,
        "finetune_strategies": ["scratch", "simclr", "moco", "scratch_vit", "moco_vit"],
        "pretrain_overlay": "cpu_study.json",
    },
}
QUICK = {
    "backbone": "resnet18",
    "image_size": 32,
    "max_images": 96,
    "pretrain_epochs": 1,
    "epochs": 1,
    "min_steps": 1,
    "draws": 1,
    "fractions": [100.0, 10.0],
    "batch_size": 16,
    "n_bootstrap": 200,
}

logger = logging.getLogger("run_transfer_study")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line interface (see the module docstring).

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        the parsed namespace, with ``--preset`` / ``--quick`` defaults filled in where not given explicitly.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a documented study (cpu_study: the one in docs/transfer_study.md); explicit flags override it")
    p.add_argument("--dataset_dir", default=None, help="labels.csv with a split column, or train/ and test/")
    p.add_argument("--output_dir", default="runs/transfer_study")
    p.add_argument("--quick", action="store_true", help="tiny budget (a few minutes on 2 CPU cores), for smoke runs")
    p.add_argument("--strategies", nargs="+", default=None, choices=STRATEGIES,
                   help="default: scratch simclr moco, plus imagenet when --imagenet_weights is given")
    p.add_argument("--fractions", type=float, nargs="+", default=None, help="label fractions in %% (default 100 10 1)")
    p.add_argument("--draws", type=int, default=None, help="random draws per fraction (default 3)")
    p.add_argument("--small_fraction_draws", type=int, default=None,
                   help="draws for fractions <= 1 %% (default --draws)")
    p.add_argument("--full_finetune_draws", type=int, default=None,
                   help="fine-tuning draws at 100 %% labels, where a draw changes only the seed (default --draws)")
    p.add_argument("--finetune_strategies", nargs="+", default=None, choices=STRATEGIES,
                   help="strategies that are also fine-tuned (default: all of --strategies)")
    p.add_argument("--modes", nargs="+", default=None, choices=MODES, help="default: linear finetune")
    p.add_argument("--backbone", default=None, help="build_backbone name (default resnet50; --quick resnet18)")
    p.add_argument("--vit_backbone", default=None, help="backbone of scratch_vit/moco_vit (default convstem_vit_tiny)")
    p.add_argument("--image_size", type=int, default=None, help="default 224 (--quick 32)")
    p.add_argument("--batch_size", type=int, default=None, help="fine-tuning batch (default 32; --quick 16)")
    p.add_argument("--max_images", type=int, default=None, help="cap on train and test images, 0 = all")
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs at 100 %% labels (default 20)")
    p.add_argument("--min_steps", type=int, default=None,
                   help="fine-tuning trains at least this many optimizer steps (default 200)")
    p.add_argument("--val_checks", type=int, default=10, help="about this many validations per fine-tuning run")
    p.add_argument("--lr", type=float, default=None, help="fine-tuning head lr (bundle default 3e-4)")
    p.add_argument("--backbone_lr", type=float, default=None, help="fine-tuning backbone lr (default = lr)")
    p.add_argument("--pretrain_epochs", type=int, default=None,
                   help="MoCo/SimCLR epochs (default: the pretraining bundle's, or its --pretrain_overlay's)")
    p.add_argument("--pretrain_batch_size", type=int, default=None, help="default: the pretraining bundle's")
    p.add_argument("--pretrain_overlay", default=None,
                   help="config file beside each pretraining bundle's train.json (e.g. cpu_study.json); default "
                        "cpu.json on a CPU")
    p.add_argument("--moco_ckpt", default=None, help="reuse this MoCo checkpoint instead of pretraining")
    p.add_argument("--simclr_ckpt", default=None, help="reuse this SimCLR checkpoint instead of pretraining")
    p.add_argument("--moco_vit_ckpt", default=None, help="reuse this MoCo ConvStemViT checkpoint")
    p.add_argument("--moco_v1_ckpt", default=None, help="reuse this MoCo-v1 checkpoint instead of pretraining")
    p.add_argument("--supcon_ckpt", default=None, help="reuse this SupCon checkpoint instead of pretraining")
    p.add_argument("--imagenet_weights", default=None, help="local torchvision/timm ImageNet state-dict file")
    p.add_argument("--n_bootstrap", type=int, default=None, help="bootstrap resamples for test CIs (default 1000)")
    p.add_argument("--device", default=None, help="cpu, cuda:0, ... (default: cuda when available)")
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--cache", default="disk", choices=("disk", "memory", "none"),
                   help="decode-once cache; 'disk' is shared by all runs of the study")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep_checkpoints", action="store_true", help="keep every run's best model.pt")
    p.add_argument("--force", action="store_true", help="redo runs that are already finished")
    p.add_argument("--include_finished", action="store_true",
                   help="put every finished run in --output_dir in the tables, not only this invocation's plan")
    p.add_argument("--no_progress", action="store_true", help="no per-run progress bars")
    args = p.parse_args(argv)
    defaults = {
        "dataset_dir": "data/kermany", "strategies": None, "modes": ["linear", "finetune"], "backbone": "resnet50",
        "vit_backbone": "convstem_vit_tiny", "image_size": 224, "max_images": 0, "pretrain_epochs": None,
        "epochs": 20, "min_steps": 200, "draws": 3, "small_fraction_draws": None, "fractions": [100.0, 10.0, 1.0],
        "batch_size": 32, "n_bootstrap": 1000, "pretrain_overlay": None, "full_finetune_draws": None,
        "finetune_strategies": None,
    }
    preset = PRESETS.get(args.preset or "", {})
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, preset.get(key, QUICK[key] if args.quick and key in QUICK else value))
    if args.small_fraction_draws is None:
        args.small_fraction_draws = args.draws
    if args.full_finetune_draws is None:
        args.full_finetune_draws = args.draws
    if args.strategies is None:
        args.strategies = ["scratch"] + (["imagenet"] if args.imagenet_weights else []) + ["simclr", "moco"]
    if args.finetune_strategies is None:
        args.finetune_strategies = list(args.strategies)
    if "imagenet" in args.strategies and not args.imagenet_weights:
        p.error("strategy 'imagenet' needs --imagenet_weights FILE (a local torchvision/timm state dict; no downloads)")
    bad = [f for f in args.fractions if not 0.0 < f <= 100.0]
    if bad:
        p.error(f"--fractions are percentages in (0, 100], got {bad}")
    return args


def _device(args: argparse.Namespace) -> str:
    if args.device:
        return args.device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def backbone_of(strategy: str, args: argparse.Namespace) -> str:
    """The backbone a strategy is evaluated with: ``--vit_backbone`` for the ``*_vit`` ones, else ``--backbone``."""
    return args.vit_backbone if strategy.endswith("_vit") else args.backbone


def draws_of(fraction: float, mode: str, args: argparse.Namespace) -> int:
    """Draws of a label fraction (in %) and mode: ``--small_fraction_draws`` at 1 % and below, kNN once,
    ``--full_finetune_draws`` for fine-tuning at 100 %, else ``--draws``."""
    if mode == "knn":
        return 1
    if fraction <= 1.0:
        return args.small_fraction_draws
    if mode == "finetune" and fraction >= 100.0:
        return args.full_finetune_draws
    return args.draws


def run_bundle(config_files: Sequence[Path | str], **overrides: Any) -> None:
    """Run a bundle in this process exactly as ``python -m monai.bundle run --config_file [...] --k v ...``.

    Args:
        config_files: the config JSONs, later ones overriding earlier ones.
        overrides: config ids and their values.

    Raises:
        Exception: whatever the bundle raises.
    """
    from monai.bundle import ConfigWorkflow

    files = [str(f) for f in config_files]
    workflow = ConfigWorkflow(config_file=files, workflow_type=None, **overrides)
    workflow.initialize()
    try:
        workflow.run()
    finally:
        workflow.finalize()
        del workflow
        gc.collect()


def _find_checkpoint(folder: Path) -> Path | None:
    for name in ("last.pt", "checkpoint_final.pt"):
        hits = sorted(folder.rglob(name))
        if hits:
            return hits[0]
    hits = sorted(folder.rglob("*.pt"), key=lambda p: p.stat().st_mtime)
    return hits[-1] if hits else None


def pretrain(method: str, args: argparse.Namespace, device: str) -> Path:
    """Pretrain a strategy of :data:`PRETRAIN_BUNDLES` on the training images, or reuse a finished run.

    Labels are ignored except by ``supcon``, which reads those of the study's training part (``--dataset_dir`` split
    by ``transfer_datalists`` with ``--seed`` and ``--max_images``, as the transfer runs split it).

    Args:
        method: the strategy, a key of :data:`PRETRAIN_BUNDLES`.
        args: the study's arguments.
        device: torch device string.

    Returns:
        the checkpoint to transfer from.

    Raises:
        FileNotFoundError: when the pretraining bundle is missing or wrote no checkpoint.
    """
    given = getattr(args, f"{method}_ckpt")
    if given:
        if not Path(given).is_file():
            raise FileNotFoundError(f"--{method}_ckpt {given!r} does not exist.")
        return Path(given)
    out = Path(args.output_dir) / "pretrain" / method
    marker = out / "done.json"
    if marker.is_file() and not args.force:
        ckpt = Path(json.loads(marker.read_text())["checkpoint"])
        if ckpt.is_file():
            logger.info(f"{method}: reusing the finished pretraining {ckpt}")
            return ckpt
    bundle = PRETRAIN_BUNDLES[method]
    overlay = args.pretrain_overlay or ("cpu.json" if device == "cpu" else None)
    variant = VARIANT_OVERLAYS.get(method)
    files = [bundle / "train.json"] + ([bundle / variant] if variant else []) + ([bundle / overlay] if overlay else [])
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{method}: pretraining config {missing} not found; pass --{method}_ckpt FILE or drop '{method}' from "
            "--strategies."
        )
    train_dir = Path(args.dataset_dir) / "train"
    overrides: dict[str, Any] = {"dataset_dir": str(train_dir), "output_dir": str(out), "device": device,
                                 "num_workers": args.num_workers, "seed": args.seed, "image_size": args.image_size}
    if method != "moco_vit":
        overrides["backbone"] = args.backbone
    if method == "supcon":  # the labelled datalist is the study's own training part
        overrides["labelled_dataset_dir"] = str(args.dataset_dir)
    for key, value in (("epochs", args.pretrain_epochs), ("batch_size", args.pretrain_batch_size)):
        if value is not None:
            overrides[key] = value
    if args.max_images:
        overrides["max_images"] = args.max_images
    logger.info(f"{method}: pretraining with {[str(f) for f in files]} on {train_dir} -> {out}")
    start = time.time()
    run_bundle(files, **overrides)
    ckpt = _find_checkpoint(out)
    if ckpt is None:
        raise FileNotFoundError(f"{method}: the pretraining bundle wrote no checkpoint under {out}.")
    _write_json({"checkpoint": str(ckpt), "seconds": round(time.time() - start, 1), "configs": [str(f) for f in files],
                 "overrides": overrides}, marker)
    return ckpt


def _write_json(obj: Any, path: Path) -> None:
    from monai_moco.utils.io import write_json_atomic

    write_json_atomic(obj, path)


def run_name(strategy: str, mode: str, fraction: float, draw: int) -> str:
    """Folder name of one run, e.g. ``moco_finetune_f10_d0``.

    Args:
        strategy: backbone source.
        mode: ``linear``, ``finetune`` or ``knn``.
        fraction: label fraction in %.
        draw: draw index.

    Returns:
        the name.
    """
    return f"{strategy}_{mode}_f{fraction:g}_d{draw}"


def _common(strategy: str, pretrained: str, args: argparse.Namespace) -> dict[str, Any]:
    return {"strategy": strategy, "backbone": backbone_of(strategy, args), "image_size": args.image_size,
            "pretrained": pretrained}


def frozen_runs(
    strategy: str, pretrained: str, plan: Sequence[tuple[str, float, int]], args: argparse.Namespace, device: str
) -> list[dict[str, Any]]:
    """The ``linear`` and ``knn`` runs of one strategy from features embedded once (see :mod:`monai_moco.evaluation`).

    Args:
        strategy: backbone source.
        pretrained: its checkpoint ("" for random init).
        plan: ``(mode, fraction %, draw)`` of the runs to do.
        args: the study's arguments.
        device: torch device string.

    Returns:
        one record per run (also written to ``runs/<run>/record.json``).
    """
    from monai_moco.evaluation.study import embed_transfer_splits, knn_records, linear_probe_records

    start = time.time()
    backbone = backbone_of(strategy, args)
    feats = embed_transfer_splits(
        backbone, pretrained or None, args.dataset_dir, args.image_size, seed=args.seed, max_images=args.max_images,
        cache=args.cache, cache_dir=str(Path(args.output_dir) / "cache" / f"{args.image_size}px"), device=device,
        progress=not args.no_progress,
        backbone_kwargs={"img_size": args.image_size} if "vit" in backbone else None,
    )
    embedded = time.time() - start
    records = []
    for mode, fraction, draw in plan:
        t0 = time.time()
        if mode == "linear":
            rec = linear_probe_records(
                feats, args.dataset_dir, [fraction / 100.0], [draw], seed=args.seed, max_images=args.max_images,
                n_bootstrap=args.n_bootstrap,
            )[0]
        else:  # knn: weighted vote of the k most similar labelled training images of the draw
            rec = knn_records(feats, args.dataset_dir, [fraction / 100.0], [draw], seed=args.seed,
                              max_images=args.max_images, n_bootstrap=args.n_bootstrap)[0]
        rec.update(_common(strategy, pretrained, args))
        rec["seconds"] = round(time.time() - t0 + embedded / max(1, len(plan)), 1)
        _write_json(rec, Path(args.output_dir) / "runs" / run_name(strategy, mode, fraction, draw) / "record.json")
        records.append(rec)
    return records


def transfer_run(
    strategy: str, mode: str, fraction: float, draw: int, pretrained: str, args: argparse.Namespace, device: str
) -> dict[str, Any]:
    """Fine-tune and evaluate one classifier with ``bundles/cxr_classifier``; returns its record (also ``record.json``).

    Args:
        strategy: backbone source.
        mode: ``finetune``.
        fraction: label fraction in %.
        draw: draw of the labelled subset.
        pretrained: backbone checkpoint ("" for random init).
        args: the study's arguments.
        device: torch device string.

    Returns:
        the record.
    """
    run_dir = Path(args.output_dir) / "runs" / run_name(strategy, mode, fraction, draw)
    overrides: dict[str, Any] = {
        "dataset_dir": args.dataset_dir,
        "output_dir": str(run_dir),
        "epochs": args.epochs,
        "min_steps": args.min_steps,
        "val_checks": args.val_checks,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "max_images": args.max_images,
        "device": device,
        "num_workers": args.num_workers,
        "backbone": backbone_of(strategy, args),
        "pretrained": pretrained,
        "frozen": mode == "linear",
        "label_fraction": fraction / 100.0,
        "draw": draw,
        "seed": args.seed,
        "cache": args.cache,
        "cache_dir": str(Path(args.output_dir) / "cache" / f"{args.image_size}px"),
        "progress": not args.no_progress,
        "n_bootstrap": args.n_bootstrap,
    }
    if args.lr is not None:
        overrides["lr"] = args.lr
    if args.backbone_lr is not None:
        overrides["backbone_lr"] = args.backbone_lr
    start = time.time()
    train_overrides = {k: v for k, v in overrides.items() if k != "n_bootstrap"}
    bundle = Path(args.classifier_dir)
    run_bundle([bundle / "train.json"], **train_overrides)
    trained = time.time() - start
    run_bundle([bundle / "train.json", bundle / "evaluate.json"], **{**overrides, "pretrained": ""})
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    record: dict[str, Any] = {
        "strategy": strategy,
        "fraction": fraction / 100.0,
        "fraction_pct": fraction,
        "draw": draw,
        "mode": mode,
        "auc": metrics["auc"]["value"],
        "ci_low": metrics["auc"]["ci_low"],
        "ci_high": metrics["auc"]["ci_high"],
    }
    for name in ("accuracy", "sensitivity", "specificity"):
        if name in metrics:
            record[name] = metrics[name]["value"]
            record[f"{name}_ci_low"] = metrics[name]["ci_low"]
            record[f"{name}_ci_high"] = metrics[name]["ci_high"]
    record.update(
        {
            "n_train": metrics.get("n_train"),
            "n_val": metrics.get("n_val"),
            "n_test": metrics["n"],
            "test_patients": metrics["n_groups"],
            **_common(strategy, pretrained, args),
            "train_seconds": round(trained, 1),
            "seconds": round(time.time() - start, 1),
        }
    )
    if not args.keep_checkpoints:
        for ckpt in (run_dir / "models").glob("*.pt"):
            ckpt.unlink()
    _write_json(record, run_dir / "record.json")
    return record


CSV_FIELDS = ("strategy", "mode", "fraction_pct", "draw", "auc", "ci_low", "ci_high", "accuracy", "sensitivity",
              "specificity", "n_train", "n_val", "n_test", "backbone", "image_size", "seconds")


def write_tables(records: list[dict[str, Any]], output_dir: Path) -> list[dict[str, Any]]:
    """Write results.json/.csv, summary.csv/.md and the plot; returns the summary rows.

    Args:
        records: one per finished run.
        output_dir: the study folder.

    Returns:
        rows of :func:`monai_moco.visualize.summarize_transfer_results`.
    """
    from monai_moco.utils.io import atomic_write_all, csv_writer, json_writer
    from monai_moco.visualize import plot_label_fraction_curves, summarize_transfer_results

    rows = summarize_transfer_results(records)
    lines = ["| mode | strategy | labels | draws | test AUC mean ± sd | min-max | mean 95 % CI |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['strategy']} | {100 * r['fraction']:g} % | {r['n_draws']} | "
            f"{r['mean']:.3f} ± {r['std']:.3f} | {r['min']:.3f}-{r['max']:.3f} | [{r['ci_low']:.3f}, {r['ci_high']:.3f}] |"
        )
    markdown = "\n".join(lines) + "\n"
    atomic_write_all([  # the four tables of one set of records, all or nothing
        (output_dir / "results.csv", csv_writer(CSV_FIELDS, records)),
        (output_dir / "summary.csv", csv_writer(list(rows[0]), rows)),
        (output_dir / "summary.md", lambda p: p.write_text(markdown)),
        (output_dir / "results.json", json_writer(records)),
    ])
    backbones = ", ".join(dict.fromkeys(str(r.get("backbone", "")) for r in records))
    plot_label_fraction_curves(
        [r for r in records if r["mode"] != "knn"],
        output_dir / "auc_vs_label_fraction.png",
        title=f"{records[0].get('image_size', '')} px, {backbones}: test AUC vs labels",
    )
    return rows


def _table_order(record: dict[str, Any]) -> tuple[str, str, float, int]:
    """Sort key of the records in the tables: strategy, mode, label fraction (largest first), draw."""
    return record["strategy"], record["mode"], -record["fraction"], record["draw"]


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the study (see the module docstring); returns the records.

    Args:
        argv: command-line arguments.

    Returns:
        one record per run.
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(message)s")
    from tqdm import tqdm

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = _device(args)
    # the classifier bundle is copied once per study, so later edits of bundles/ do not mix into a resumed study
    snapshot = output_dir / "bundles" / CLASSIFIER.name
    if not snapshot.is_dir():
        shutil.copytree(CLASSIFIER, snapshot)
    args.classifier_dir = str(snapshot)
    _write_json({k: v for k, v in vars(args).items()}, output_dir / "study_args.json")
    plan = [
        (s, m, f, d)
        for s in args.strategies
        for m in args.modes
        if m != "finetune" or s in args.finetune_strategies
        for f in (args.fractions if m != "knn" else [100.0])
        for d in range(draws_of(f, m, args))
    ]
    done = {
        key: output_dir / "runs" / run_name(*key) / "record.json"
        for key in plan
        if (output_dir / "runs" / run_name(*key) / "record.json").is_file() and not args.force
    }
    records: list[dict[str, Any]] = [json.loads(p.read_text()) for p in done.values()]
    if args.include_finished:  # runs of earlier invocations with other plans (e.g. fewer fine-tuning draws)
        planned = {str(p) for p in done.values()}
        for path in sorted((output_dir / "runs").glob("*/record.json")):
            rec = json.loads(path.read_text())
            if str(path) not in planned and rec.get("image_size") == args.image_size:
                records.append(rec)
    records.sort(key=_table_order)  # kept in table order from here on
    todo = [key for key in plan if key not in done]
    logger.info(f"{len(plan)} runs planned, {len(done)} already finished, {len(todo)} to run")
    sources: dict[str, str] = {"scratch": "", "scratch_vit": ""}
    if "imagenet" in args.strategies:
        sources["imagenet"] = str(args.imagenet_weights)
    for method in PRETRAIN_BUNDLES:
        if method in args.strategies and any(key[0] == method for key in todo):
            sources[method] = str(pretrain(method, args, device))
    bar = tqdm(total=len(plan), initial=len(done), desc="transfer runs", unit="run", file=sys.stdout, dynamic_ncols=True)

    def finished(rec: dict[str, Any]) -> None:
        bisect.insort(records, rec, key=_table_order)
        bar.update(1)
        logger.info(
            f"[{bar.n}/{len(plan)}] {run_name(rec['strategy'], rec['mode'], rec['fraction_pct'], rec['draw'])}: test "
            f"AUC {rec['auc']:.4f} [{rec['ci_low']:.4f}, {rec['ci_high']:.4f}] ({rec['n_train']} labelled images, "
            f"{rec['seconds']:.0f} s)"
        )
        write_tables(records, output_dir)  # after every run, so an interrupted study keeps its tables

    for strategy in args.strategies:
        frozen = [(m, f, d) for s, m, f, d in todo if s == strategy and m != "finetune"]
        if frozen:
            bar.set_postfix_str(f"{strategy} linear/knn")
            for rec in frozen_runs(strategy, sources[strategy], frozen, args, device):
                finished(rec)
    for strategy, mode, fraction, draw in todo:
        if mode == "finetune":
            bar.set_postfix_str(run_name(strategy, mode, fraction, draw))
            finished(transfer_run(strategy, mode, fraction, draw, sources[strategy], args, device))
    bar.close()
    if records and not todo:  # nothing ran: the tables of the finished runs (else the loop has just written them)
        write_tables(records, output_dir)
    if records:
        print((output_dir / "summary.md").read_text())
    return records


if __name__ == "__main__":
    main()
