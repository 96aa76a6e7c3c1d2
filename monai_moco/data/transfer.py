"""The train / validation / test datalists of one transfer-learning run (label fraction, draw, patient-grouped val).

The protocol of MoCo-CXR (Sowrirajan et al., "MoCo-CXR: MoCo Pretraining Improves Representation and Transferability
of Chest X-ray Models", MIDL 2021): a validation set for model picking is carved out of the labelled training data by
patient (:func:`~monai_moco.data.group_train_val_split`), the training labels are a stratified, patient-grouped,
nested fraction of the rest (:func:`~monai_moco.data.label_fraction_split`), and the test set is the official one,
untouched. Kermany et al. (Cell 2018) ship an official validation split of only 16 images, so it is not used.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .datalists import class_folder_datalist, csv_datalist
from .splits import group_train_val_split, label_fraction_split

__all__ = ["train_test_datalists", "transfer_datalists"]


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


def _labels(datalist: Sequence[dict]) -> np.ndarray:
    return np.asarray([np.asarray(item["label"], dtype=np.float64) for item in datalist])


def _groups(datalist: Sequence[dict]) -> np.ndarray | None:
    return np.asarray([item["group"] for item in datalist]) if datalist and "group" in datalist[0] else None


def _subset(datalist: list[dict], max_images: int, seed: int) -> list[dict]:
    """A seeded, stratified subset of ``max_images`` items (0 or more than available keeps all)."""
    if max_images <= 0 or max_images >= len(datalist):
        return datalist
    idx = label_fraction_split(_labels(datalist), max_images / len(datalist), draw=0, seed=seed)
    return [datalist[i] for i in idx]


def train_test_datalists(
    dataset_dir: str | os.PathLike,
    label_columns: str | Sequence[str] = "label",
    group_column: str | None = "patient_id",
    uncertain: str = "ones",
) -> tuple[list[dict], list[dict], str]:
    """Labelled datalists of the official ``train`` and ``test`` splits of a dataset folder, and the layout read.

    Reads ``dataset_dir/labels.csv`` when it has a ``split`` column (the Kermany manifest of ``../shared/data``:
    ``path, split, label, ..., patient_id``; rows of other splits such as ``val`` are left out), else the class folders
    ``dataset_dir/train/<CLASS>`` and ``dataset_dir/test/<CLASS>`` (labels = indices of the sorted train class names,
    the test folder labelled with the same classes; no patient ids).

    Args:
        dataset_dir: dataset root.
        label_columns: label column(s) of ``labels.csv``; a list gives multi-label rows (float vectors).
        group_column: patient-id column of ``labels.csv``, copied to each item's ``group`` (ignored when absent).
        uncertain: CheXpert ``-1`` policy of :func:`~monai_moco.data.csv_datalist`.

    Returns:
        ``(train, test, source)``: items ``{"image": path, "label": ..., ["group": patient id]}`` and a description
        of the layout that was read.

    Raises:
        FileNotFoundError: when neither layout is found under ``dataset_dir``.

    Example::

        train, test, source = train_test_datalists("data/kermany")
        len(train), len(test)  # 5216, 624
    """
    dataset_dir = Path(dataset_dir)
    manifest = dataset_dir / "labels.csv"
    if manifest.is_file():
        header = _csv_header(manifest)
        if "split" in header:
            group = group_column if group_column in header else None
            lists = [
                csv_datalist(manifest, label_columns=label_columns, group_column=group, split=s, uncertain=uncertain)
                for s in ("train", "test")
            ]
            return lists[0], lists[1], f"{manifest} (split column)"
    missing = [s for s in ("train", "test") if not (dataset_dir / s).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"train_test_datalists: {str(dataset_dir)!r} has neither a labels.csv with a 'split' column nor the class "
            f"folders {[str(dataset_dir / s) for s in missing]} (expected train/<CLASS>/*, test/<CLASS>/*)."
        )
    train = class_folder_datalist(dataset_dir / "train")
    test = class_folder_datalist(dataset_dir / "test", classes=sorted({d["label_name"] for d in train}))
    return train, test, f"{dataset_dir}/train|test class folders"


def transfer_datalists(
    dataset_dir: str | os.PathLike,
    label_fraction: float = 1.0,
    draw: int = 0,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_images: int = 0,
    label_columns: str | Sequence[str] = "label",
    group_column: str | None = "patient_id",
    uncertain: str = "ones",
) -> dict[str, Any]:
    """Datalists ``train`` (a label fraction), ``val`` (carved from train by patient) and ``test`` (official split).

    The official splits are read by :func:`train_test_datalists` (``labels.csv`` with a ``split`` column, else
    ``train/<CLASS>`` and ``test/<CLASS>`` folders); rows of the official ``val`` split are ignored.

    Order of operations: (1) with ``max_images > 0`` a seeded stratified subset of ``max_images`` train images and of
    ``max_images`` test images (for quick runs); (2) the validation set, ``val_fraction`` of the train images, grouped
    by ``group_column`` when present (no patient on both sides) and independent of ``draw``; (3) ``label_fraction``
    of the remaining train images for ``(seed, draw)``, stratified, grouped and nested across fractions.

    Args:
        dataset_dir: dataset root (see :func:`train_test_datalists`).
        label_fraction: fraction of the labelled training pool to train on, in (0, 1].
        draw: which random draw of that fraction.
        val_fraction: fraction of the train images held out for validation, in (0, 1).
        seed: seed of the subsets (the validation split depends on it only, not on ``draw``).
        max_images: 0 uses everything; a positive number caps train and test to seeded subsets of that size.
        label_columns: label column(s) of ``labels.csv`` (see :func:`train_test_datalists`).
        group_column: patient-id column of ``labels.csv`` (ignored when absent).
        uncertain: CheXpert ``-1`` policy of :func:`~monai_moco.data.csv_datalist`.

    Returns:
        ``{"train": [...], "val": [...], "test": [...], "source": str}``; items are
        ``{"image": path, "label": ..., ["group": patient id]}``.

    Raises:
        FileNotFoundError: when neither layout is found under ``dataset_dir``.
        ValueError: for a fraction outside its interval or too few images to carve a validation set.

    Example::

        lists = transfer_datalists("data/kermany", label_fraction=0.01, draw=1)
        len(lists["train"]), len(lists["val"]), len(lists["test"])  # about 47, 522, 624
    """
    train, test, source = train_test_datalists(dataset_dir, label_columns, group_column, uncertain)
    train = _subset(train, int(max_images), seed)
    test = _subset(test, int(max_images), seed)
    pool_idx, val_idx = group_train_val_split(_labels(train), _groups(train), val_fraction=val_fraction, seed=seed)
    pool = [train[i] for i in pool_idx]
    pool_groups = _groups(pool)
    chosen = label_fraction_split(_labels(pool), label_fraction, draw=draw, groups=pool_groups, seed=seed)
    return {
        "train": [pool[i] for i in chosen],
        "val": [train[i] for i in val_idx],
        "test": test,
        "source": source,
    }
