"""Linear-probe AUC of one pretrained backbone at several label fractions and draws (JSON lines on stdout).

Every labelled image is embedded once; one logistic probe per (fraction, draw) is fitted on the subset that
``bundles/cxr_classifier`` would train on. With ``--eval_split val`` (the default) the test split is never read: the
probe's regularisation is chosen on one patient-grouped half of the validation split and scored on the other, which is
how pretraining recipes are compared before the study reports test AUC once.

Example::

    python scripts/probe_checkpoint.py --checkpoint runs/moco_resnet50/checkpoints/last.pt --backbone resnet18 \\
        --image_size 64 --fractions 0.01 0.1 1 --draws 5
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

import numpy as np


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Probe the checkpoint; print one JSON line per run and one summary line per fraction.

    Args:
        argv: command-line arguments (see ``--help``).

    Returns:
        the records.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="", help="backbone or pretraining checkpoint; empty = random init")
    p.add_argument("--backbone", default="resnet18", help="build_backbone name")
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--dataset_dir", default="data/kermany")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="label fractions in (0, 1]")
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--eval_split", default="val", choices=("val", "test"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_images", type=int, default=0)
    p.add_argument("--cache_dir", default="runs/cache/probe", help="decode-once disk cache (shared between calls)")
    p.add_argument("--device", default="cuda:0" if _cuda() else "cpu")
    p.add_argument("--n_bootstrap", type=int, default=200)
    p.add_argument("--tag", default="", help="copied into every JSON line (e.g. the recipe's name)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(message)s")

    from monai_moco.evaluation.study import embed_transfer_splits, linear_probe_records

    kwargs = {"img_size": args.image_size} if "vit" in args.backbone else {}
    feats = embed_transfer_splits(
        args.backbone, args.checkpoint or None, args.dataset_dir, args.image_size, seed=args.seed,
        max_images=args.max_images, cache_dir=f"{args.cache_dir}/{args.image_size}px", device=args.device,
        backbone_kwargs=kwargs,
    )
    records = linear_probe_records(
        feats, args.dataset_dir, args.fractions, args.draws, seed=args.seed, max_images=args.max_images,
        eval_split=args.eval_split, n_bootstrap=args.n_bootstrap,
    )
    common = {"tag": args.tag, "checkpoint": args.checkpoint, "backbone": args.backbone, "image_size": args.image_size}
    for rec in records:
        print(json.dumps({**common, **rec}))
    for fraction in args.fractions:
        aucs = np.asarray([r["auc"] for r in records if r["fraction"] == fraction])
        print(json.dumps({**common, "summary": True, "eval_split": args.eval_split, "fraction": fraction,
                          "draws": len(aucs), "auc_mean": round(float(aucs.mean()), 4),
                          "auc_sd": round(float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0, 4)}))
    return records


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
