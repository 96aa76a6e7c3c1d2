"""Write the label-fraction splits of a transfer study to one JSON file, for reproducible experiments.

Follows the label-fraction protocol of MoCo-CXR (Sowrirajan et al., MIDL 2021): a patient-grouped validation set is
carved out of the training data, then for each fraction (e.g. 100 %, 10 %, 1 %, 0.1 %) and each draw a stratified,
patient-grouped subset of the rest; subsets of one draw are nested across fractions (see
``monai_moco.data.label_fraction_split``). Files are stored by path relative to the data root, so the splits survive
reordering and moving the data; read them back with ``monai_moco.data.datalist_from_splits``.

Example::

    python scripts/make_splits.py --csv data/kermany/labels.csv --split train --group_column patient_id \\
        --fractions 1.0 0.1 0.01 0.001 --draws 3 --seed 0 --val_fraction 0.1 --output_dir splits/kermany
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monai_moco.data import class_folder_datalist, csv_datalist, fraction_splits
from monai_moco.utils.io import atomic_write, json_writer


def _relative(path: str, root: Path) -> str:
    rel = os.path.relpath(path, root)
    return Path(path).as_posix() if rel.startswith("..") else Path(rel).as_posix()


def _count(labels: np.ndarray, idx: np.ndarray) -> str:
    counts = Counter(str(v) for v in labels[idx].tolist()) if labels.ndim == 1 else None
    return f"{len(idx)}" + (f" {dict(sorted(counts.items()))}" if counts is not None else "")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="CSV manifest (paths relative to its folder unless --root is given)")
    source.add_argument("--folder", type=Path, help="folder with one sub-folder per class")
    parser.add_argument(
        "--root", type=Path, default=None, help="data root for relative CSV paths (default: the CSV's folder)"
    )
    parser.add_argument("--image_column", default="path")
    parser.add_argument("--label_column", default="label", help="label column of the CSV (stratification key)")
    parser.add_argument("--split", default=None, help="keep only CSV rows of this split, e.g. train")
    parser.add_argument("--split_column", default="split")
    parser.add_argument("--group_column", default=None, help="CSV column grouping images, e.g. patient_id")
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.1, 0.01, 0.001])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val_fraction", type=float, default=0.1, help="0 to keep everything for training")
    parser.add_argument("--output_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.folder is not None and args.group_column is not None:
        parser.error("--group_column needs --csv (class folders have no group column)")
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Build the datalist, compute the splits, write ``splits.json`` and print a summary; returns the JSON path."""
    args = parse_args(argv)
    if args.csv is not None:
        root = args.root if args.root is not None else args.csv.parent
        datalist = csv_datalist(
            args.csv,
            image_column=args.image_column,
            label_columns=args.label_column,
            root=root,
            group_column=args.group_column,
            split=args.split,
            split_column=args.split_column,
        )
        source = {"csv": str(args.csv), "split": args.split, "label_column": args.label_column}
    else:
        root = args.folder
        datalist = class_folder_datalist(args.folder)
        source = {"folder": str(args.folder)}
    labels = np.asarray([d["label"] for d in datalist])
    groups = [d["group"] for d in datalist] if args.group_column else None
    study = fraction_splits(labels, args.fractions, args.draws, groups, args.seed, args.val_fraction)

    paths = [_relative(d["image"], root) for d in datalist]

    def to_paths(idx: np.ndarray) -> list[str]:
        return [paths[i] for i in idx]

    out = {
        "source": source,
        "root": str(root),
        "seed": args.seed,
        "group_column": args.group_column,
        "val_fraction": args.val_fraction,
        "n_total": len(datalist),
        "val": to_paths(study["val"]),
        "train": {f: {d: to_paths(idx) for d, idx in per_draw.items()} for f, per_draw in study["train"].items()},
    }
    out_path = atomic_write(args.output_dir / "splits.json", json_writer(out, indent=1))

    print(f"{len(datalist)} images from {source}; labels {_count(labels, np.arange(len(labels)))}")
    print(f"val: {_count(labels, study['val'])}; training pool: {len(study['pool'])}")
    for f, per_draw in study["train"].items():
        sizes = ", ".join(_count(labels, idx) for idx in per_draw.values())
        print(f"fraction {f}: draws {sizes}")
    print(f"wrote {out_path}")
    return out_path


if __name__ == "__main__":
    main(sys.argv[1:])
