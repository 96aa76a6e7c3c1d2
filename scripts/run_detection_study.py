"""Localisation study: RetinaNet lung boxes from scratch vs MoCo vs SimCLR backbones at 100 / 25 / 10 % of the labels.

Thin command line over :mod:`monai_moco.evaluation.detection_study`: ``bundles/cxr_detector`` (with its ``cpu.json``)
runs in this process for every (backbone, label fraction, draw), resumably (``<output_dir>/runs/<run>/record.json``);
then ``results.json``, ``summary.md`` (mean ± sd over draws, mean patient-bootstrap 95 % CI) and the figure are
written. ``--validation_only`` never touches the test split: it records the best validation mAP of each run, for
choosing settings (image size, learning rate) before the one test evaluation.

Example::

    # the study of docs/localisation.md (ResNet-18 at 128 px, lr 1e-3, 150 steps per run, CPU; about 20 core-minutes)
    python scripts/run_detection_study.py --output_dir runs/detection_study \
        --figure docs/figures/localisation_map_vs_label_fraction.png
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from run_transfer_study import run_bundle  # noqa: E402  (the in-process ConfigWorkflow runner of the transfer study)

from monai_moco.evaluation.detection_study import run_detection_study, write_detection_tables  # noqa: E402

DETECTOR = REPO / "bundles" / "cxr_detector"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line interface (see the module docstring).

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        the parsed arguments.
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default="runs/detection_study")
    p.add_argument("--moco_ckpt", default="runs/transfer_study/pretrain/moco/checkpoints/last.pt",
                   help="MoCo ResNet-18 checkpoint (default: where the transfer study's cpu_study preset writes it)")
    p.add_argument("--simclr_ckpt", default="runs/transfer_study/pretrain/simclr/checkpoints/last.pt",
                   help="SimCLR ResNet-18 checkpoint (default: where the transfer study's cpu_study preset writes it)")
    p.add_argument("--strategies", nargs="+", default=["scratch", "moco", "simclr"],
                   help="backbone sources: scratch, moco, simclr")
    p.add_argument("--draws", nargs="+", default=["1:1", "0.25:2", "0.1:3"],
                   help="label fraction:number of draws pairs")
    p.add_argument("--image_size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--min_steps", type=int, default=150)
    p.add_argument("--annotation_file", default=None, help="COCO file (default: the bundle's)")
    p.add_argument("--overlay", default=str(DETECTOR / "cpu.json"), help="bundle overlay after train.json")
    p.add_argument("--set", nargs="*", default=[], metavar="ID=VALUE", help="more bundle overrides (JSON values)")
    p.add_argument("--validation_only", action="store_true", help="validate only; never evaluate the test split")
    p.add_argument("--figure", default=None, help="where to write the mAP vs label fraction figure")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    p.add_argument("--force", action="store_true", help="re-run finished runs")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Parse ``argv``, run (or resume) every planned run, print and write the tables.

    Args:
        argv: command-line arguments (see :func:`parse_args`).

    Returns:
        the study's records, one per (backbone, fraction, draw).
    """
    import json

    import torch

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(message)s")
    torch.set_num_threads(args.threads or torch.get_num_threads())
    known = {"scratch": "", "moco": args.moco_ckpt, "simclr": args.simclr_ckpt}
    unknown = [s for s in args.strategies if s not in known]
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; choose from {sorted(known)}")
    draws = {float(f): int(n) for f, n in (pair.split(":") for pair in args.draws)}
    overrides: dict[str, Any] = {"image_size": args.image_size, "lr": args.lr, "min_steps": args.min_steps}
    if args.annotation_file:
        overrides["annotation_file"] = args.annotation_file
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    records = run_detection_study(
        run_bundle, [DETECTOR / "train.json", args.overlay], {s: known[s] for s in args.strategies}, draws,
        args.output_dir, overrides, evaluate_test=not args.validation_only, force=args.force,
    )
    if args.validation_only:
        for r in records:
            print(f"{r['strategy']:8s} {100 * r['fraction']:5g} % draw {r['draw']}: best val mAP@0.5:0.95 "
                  f"{r['best_val_map']:.4f} (epoch {r['best_epoch']}, {r['seconds']:.0f} s)")
        return records
    print(write_detection_tables(records, args.output_dir, args.figure,
                                 title=f"RetinaNet lung boxes, ResNet-18 {args.image_size} px"))
    return records


if __name__ == "__main__":
    main()
