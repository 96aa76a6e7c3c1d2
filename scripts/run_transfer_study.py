"""Label-fraction transfer study: does self-supervised pretraining help when labels are scarce?

The protocol of MoCo-CXR (Sowrirajan et al., "MoCo-CXR: MoCo Pretraining Improves Representation and Transferability
of Chest X-ray Models", MIDL 2021): backbones from {random init (``scratch``), ImageNet (``imagenet``, only with
``--imagenet_weights FILE``), SimCLR (Chen et al., ICML 2020), MoCo-v2 (Chen et al., 2020)} are trained on
{100 %, 10 %, 1 %} of the training labels (stratified, patient-grouped, nested subsets; several random draws) as a
linear probe (frozen backbone) and by fine-tuning; the checkpoint with the best AUC on a validation split carved
from train by patient is scored on the official test split, with patient-bootstrap 95 % intervals.

MoCo and SimCLR are pretrained first, on the training images only and without labels, with the pretraining bundles
(``bundles/moco_resnet50``, ``bundles/simclr_resnet50``) unless ``--moco_ckpt``/``--simclr_ckpt`` name existing
checkpoints. Every transfer run is one ``bundles/cxr_classifier`` train + evaluate.

Runs execute **in this process** through MONAI's ``ConfigWorkflow`` (the same code path as
``python -m monai.bundle run``): importing torch + MONAI + monai_moco costs about 10 s of CPU per process here, which
a subprocess per run would pay 2 x (strategies x fractions x draws x modes) times. Each finished run leaves
``<output_dir>/runs/<run>/record.json``; a second invocation skips those runs (resumable), and ``--force`` redoes them.

Outputs in ``--output_dir``: ``results.json`` (one record per run: strategy, fraction, draw, mode, auc, ci_low,
ci_high, accuracy, sensitivity, specificity, ...), ``results.csv``, ``summary.csv`` / ``summary.md`` (mean and
spread over draws) and ``auc_vs_label_fraction.png``.

Example::

    python scripts/run_transfer_study.py --dataset_dir data/kermany --output_dir runs/transfer_study --quick
    python scripts/run_transfer_study.py --dataset_dir data/kermany --output_dir runs/transfer_study \\
        --backbone resnet18 --image_size 64 --pretrain_epochs 3 --epochs 3 --draws 2
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = REPO / "bundles" / "cxr_classifier"
PRETRAIN_BUNDLES = {"moco": REPO / "bundles" / "moco_resnet50", "simclr": REPO / "bundles" / "simclr_resnet50"}
STRATEGIES = ("scratch", "imagenet", "simclr", "moco")
MODES = ("linear", "finetune")
QUICK = {
    "backbone": "resnet18",
    "image_size": 32,
    "max_images": 96,
    "pretrain_epochs": 1,
    "epochs": 1,
    "linear_epochs": 1,
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
        the parsed namespace, with ``--quick`` defaults filled in where not given explicitly.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_dir", default="data/kermany", help="labels.csv with a split column, or train/ and test/")
    p.add_argument("--output_dir", default="runs/transfer_study")
    p.add_argument("--quick", action="store_true", help="tiny budget (a few minutes on 2 CPU cores), for smoke runs")
    p.add_argument("--strategies", nargs="+", default=None, choices=STRATEGIES,
                   help="default: scratch simclr moco, plus imagenet when --imagenet_weights is given")
    p.add_argument("--fractions", type=float, nargs="+", default=None, help="label fractions in %% (default 100 10 1)")
    p.add_argument("--draws", type=int, default=None, help="random draws per fraction (default 3)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--backbone", default=None, help="build_backbone name (default resnet50; --quick resnet18)")
    p.add_argument("--image_size", type=int, default=None, help="default 224 (--quick 32)")
    p.add_argument("--batch_size", type=int, default=None, help="default 32 (--quick 16)")
    p.add_argument("--max_images", type=int, default=None, help="cap on train and test images, 0 = all")
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs at 100 %% labels (default 20)")
    p.add_argument("--linear_epochs", type=int, default=None, help="linear-probe epochs at 100 %% (default --epochs)")
    p.add_argument("--min_steps", type=int, default=None,
                   help="small fractions train at least this many optimizer steps (default 100)")
    p.add_argument("--max_epochs", type=int, default=200, help="upper bound on the epochs of one run")
    p.add_argument("--val_checks", type=int, default=5, help="about this many validations per run (model picking)")
    p.add_argument("--lr", type=float, default=None, help="head lr (bundle default: 1e-3 linear, 3e-4 fine-tune)")
    p.add_argument("--backbone_lr", type=float, default=None, help="fine-tuning backbone lr (default = lr)")
    p.add_argument("--pretrain_epochs", type=int, default=None, help="MoCo/SimCLR epochs (default 100)")
    p.add_argument("--pretrain_batch_size", type=int, default=None, help="default --batch_size")
    p.add_argument("--moco_ckpt", default=None, help="reuse this MoCo checkpoint instead of pretraining")
    p.add_argument("--simclr_ckpt", default=None, help="reuse this SimCLR checkpoint instead of pretraining")
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
                   help="put every finished run in --output_dir with the same backbone and image size in the tables, "
                        "not only this invocation's plan (e.g. after an earlier invocation with other --modes/--draws)")
    p.add_argument("--no_progress", action="store_true", help="no per-run progress bars")
    args = p.parse_args(argv)
    defaults = {
        "backbone": "resnet50", "image_size": 224, "max_images": 0, "pretrain_epochs": 100, "epochs": 20,
        "linear_epochs": None, "min_steps": 100, "draws": 3, "fractions": [100.0, 10.0, 1.0], "batch_size": 32,
        "n_bootstrap": 1000,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick and key in QUICK else value)
    if args.linear_epochs is None:
        args.linear_epochs = args.epochs
    if args.pretrain_batch_size is None:
        args.pretrain_batch_size = args.batch_size
    if args.strategies is None:
        args.strategies = ["scratch"] + (["imagenet"] if args.imagenet_weights else []) + ["simclr", "moco"]
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
    """Pretrain MoCo or SimCLR on the training images (labels ignored) with its bundle, or reuse a finished run.

    Args:
        method: ``"moco"`` or ``"simclr"``.
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
    if not (bundle / "train.json").is_file():
        raise FileNotFoundError(
            f"{method}: pretraining bundle {bundle}/train.json not found; pass --{method}_ckpt FILE or drop "
            f"'{method}' from --strategies."
        )
    files = [bundle / "train.json"] + ([bundle / "cpu.json"] if device == "cpu" and (bundle / "cpu.json").is_file()
                                       else [])
    train_dir = Path(args.dataset_dir) / "train"
    logger.info(f"{method}: pretraining {args.backbone} for {args.pretrain_epochs} epochs on {train_dir} -> {out}")
    start = time.time()
    run_bundle(
        files,
        dataset_dir=str(train_dir),
        output_dir=str(out),
        epochs=args.pretrain_epochs,
        batch_size=args.pretrain_batch_size,
        image_size=args.image_size,
        max_images=args.max_images,
        device=device,
        num_workers=args.num_workers,
        backbone=args.backbone,
        seed=args.seed,
    )
    ckpt = _find_checkpoint(out)
    if ckpt is None:
        raise FileNotFoundError(f"{method}: the pretraining bundle wrote no checkpoint under {out}.")
    _write_json({"checkpoint": str(ckpt), "seconds": round(time.time() - start, 1), "epochs": args.pretrain_epochs},
                marker)
    return ckpt


def _write_json(obj: Any, path: Path) -> None:
    from monai_moco.utils.io import write_json_atomic

    write_json_atomic(obj, path)


def run_name(strategy: str, mode: str, fraction: float, draw: int) -> str:
    """Folder name of one run, e.g. ``moco_linear_f10_d0``.

    Args:
        strategy: backbone source.
        mode: ``linear`` or ``finetune``.
        fraction: label fraction in %.
        draw: draw index.

    Returns:
        the name.
    """
    return f"{strategy}_{mode}_f{fraction:g}_d{draw}"


def schedule(n_train: int, fraction_epochs: int, args: argparse.Namespace) -> tuple[int, int]:
    """Epochs and validation interval of one run: at least ``--min_steps`` steps, about ``--val_checks`` validations.

    Args:
        n_train: labelled training images of the run.
        fraction_epochs: epochs asked for (at 100 % labels).
        args: the study's arguments.

    Returns:
        ``(epochs, val_interval)`` with ``epochs`` a multiple of ``val_interval`` (the last epoch is validated).
    """
    # the bundle's train loader drops the last partial batch when there is more than one batch
    steps_per_epoch = n_train // args.batch_size if n_train > args.batch_size else 1
    epochs = max(fraction_epochs, math.ceil(args.min_steps / steps_per_epoch))
    epochs = min(epochs, max(args.max_epochs, fraction_epochs))
    interval = max(1, epochs // max(1, args.val_checks))
    epochs = int(math.ceil(epochs / interval) * interval)
    return epochs, interval


def transfer_run(
    strategy: str, mode: str, fraction: float, draw: int, pretrained: str, args: argparse.Namespace, device: str
) -> dict[str, Any]:
    """Train and evaluate one classifier with ``bundles/cxr_classifier``; returns its record (also ``record.json``).

    Args:
        strategy: backbone source (``scratch``, ``imagenet``, ``simclr``, ``moco``).
        mode: ``linear`` (frozen backbone) or ``finetune``.
        fraction: label fraction in %.
        draw: draw of the labelled subset.
        pretrained: backbone checkpoint ("" for random init).
        args: the study's arguments.
        device: torch device string.

    Returns:
        the record.
    """
    from monai_moco.data import transfer_datalists

    run_dir = Path(args.output_dir) / "runs" / run_name(strategy, mode, fraction, draw)
    frac = fraction / 100.0
    n_train = len(transfer_datalists(args.dataset_dir, frac, draw, seed=args.seed, max_images=args.max_images)["train"])
    epochs, interval = schedule(n_train, args.linear_epochs if mode == "linear" else args.epochs, args)
    overrides: dict[str, Any] = {
        "dataset_dir": args.dataset_dir,
        "output_dir": str(run_dir),
        "epochs": epochs,
        "val_interval": interval,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "max_images": args.max_images,
        "device": device,
        "num_workers": args.num_workers,
        "backbone": args.backbone,
        "pretrained": pretrained,
        "frozen": mode == "linear",
        "label_fraction": frac,
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
        "fraction": frac,
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
            "n_train": metrics.get("n_train", n_train),
            "n_val": metrics.get("n_val"),
            "n_test": metrics["n"],
            "test_patients": metrics["n_groups"],
            "epochs": epochs,
            "val_interval": interval,
            "backbone": args.backbone,
            "image_size": args.image_size,
            "pretrained": pretrained,
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
              "specificity", "n_train", "n_val", "n_test", "epochs", "backbone", "image_size", "seconds")


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
    first = records[0]
    plot_label_fraction_curves(
        records,
        output_dir / "auc_vs_label_fraction.png",
        title=f"{first.get('backbone', '')} {first.get('image_size', '')} px: test AUC vs labels",
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
        for f in args.fractions
        for d in range(args.draws)
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
            if str(path) not in planned and (rec.get("backbone"), rec.get("image_size")) == (
                args.backbone, args.image_size
            ):
                records.append(rec)
    records.sort(key=_table_order)  # kept in table order from here on
    todo = [key for key in plan if key not in done]
    logger.info(f"{len(plan)} runs planned, {len(done)} already finished, {len(todo)} to run")
    sources: dict[str, str] = {"scratch": ""}
    if "imagenet" in args.strategies:
        sources["imagenet"] = str(args.imagenet_weights)
    for method in ("simclr", "moco"):
        if method in args.strategies and any(key[0] == method for key in todo):
            sources[method] = str(pretrain(method, args, device))
    bar = tqdm(total=len(plan), initial=len(done), desc="transfer runs", unit="run", file=sys.stdout, dynamic_ncols=True)
    for strategy, mode, fraction, draw in todo:
        bar.set_postfix_str(run_name(strategy, mode, fraction, draw))
        rec = transfer_run(strategy, mode, fraction, draw, sources[strategy], args, device)
        bisect.insort(records, rec, key=_table_order)
        bar.update(1)
        logger.info(
            f"[{bar.n}/{len(plan)}] {run_name(strategy, mode, fraction, draw)}: test AUC {rec['auc']:.4f} "
            f"[{rec['ci_low']:.4f}, {rec['ci_high']:.4f}] ({rec['n_train']} labelled images, {rec['epochs']} epochs, "
            f"{rec['seconds']:.0f} s)"
        )
        write_tables(records, output_dir)  # after every run, so an interrupted study keeps its tables
    bar.close()
    if records and not todo:  # nothing ran: the tables of the finished runs (else the loop has just written them)
        write_tables(records, output_dir)
    if records:
        print((output_dir / "summary.md").read_text())
    return records


if __name__ == "__main__":
    main()
