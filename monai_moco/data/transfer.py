"""The train / validation / test datalists of one transfer-learning run (label fraction, draw, patient-grouped val).

The protocol of MoCo-CXR (Sowrirajan et al., "MoCo-CXR: MoCo Pretraining Improves Representation and Transferability
of Chest X-ray Models", MIDL 2021): the training labels are a stratified, patient-grouped, nested fraction of the
labelled training data (:func:`~monai_moco.data.label_fraction_split`), validation is for model picking only, and the
test set is the official one, untouched.

Two layouts are read:

* ``labels.csv`` with a ``split`` column (the Kermany manifest of ``../shared/data``: ``path, split, label,
  label_name, ..., patient_id``). Kermany et al. (Cell 2018) ship an official validation split of only 16 images, so
  its ``val`` rows are deliberately **not** used: validation is carved out of train by patient
  (:func:`~monai_moco.data.group_train_val_split`).
* split folders ``train/``, ``test/`` and optionally ``val/``, ``valid/`` or ``validation/`` (names matched
  case-insensitively; folders and files may be symbolic links), each holding the same class folders with any names
  (``NORMAL/ PNEUMONIA/``, ``0_normal/ 1_abnormal/``; labels are the indices of the sorted ``train/`` class names).
  A validation folder, when present, **is** the validation split; only without one is validation carved from train.

Patient ids come from the ``patient_id`` column of ``labels.csv`` or from a file-name pattern (``group_pattern``);
without either, splits and bootstrap intervals are per image, and a warning says so once per dataset.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .datalists import _subfolders, class_folder_datalist, csv_datalist
from .splits import group_train_val_split, label_fraction_split

__all__ = ["train_test_datalists", "transfer_datalists"]

logger = logging.getLogger(__name__)

_VAL_FOLDERS: tuple[str, ...] = ("val", "valid", "validation")
_NO_GROUPS_WARNED: set[str] = set()


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


def _split_folder(root: Path, names: Sequence[str]) -> Path | None:
    """The one sub-folder of ``root`` named like ``names`` (case-insensitive), None when there is none."""
    found = [n for n in _subfolders(root) if n.lower() in names] if root.is_dir() else []
    if len(found) > 1:
        raise ValueError(f"{str(root)!r} has several folders {found} for one split; keep one of them.")
    return root / found[0] if found else None


def _folder_split(folder: Path, classes: list[str], train_dir: Path) -> list[dict]:
    """A val/test split folder read with the train classes (each present; no class the train folder lacks)."""
    extra = [c for c in _subfolders(folder) if c not in classes]
    if extra:
        raise ValueError(
            f"{str(folder)!r} holds class folder(s) {extra} that {str(train_dir)!r} lacks (train classes: "
            f"{classes}); every split needs the same class folders, or those images would be dropped."
        )
    return class_folder_datalist(folder, classes=classes)


def _csv_class_names(
    manifest: Path, rows: list[dict], items: list[dict], label_columns: str | Sequence[str]
) -> list[str]:
    """Class names in label order: the label columns (multi-label), else ``label_name`` per label, else the labels."""
    if not isinstance(label_columns, str):
        return list(label_columns)
    values = [float(d["label"]) for d in items if not math.isnan(float(d["label"]))]
    names = [str(i) for i in range(int(max(values)) + 1 if values else 0)]
    seen: dict[int, str] = {}
    for line, row in enumerate(rows, start=2):
        text, name = row[label_columns].strip(), (row.get("label_name") or "").strip()
        try:
            value = float(text)
        except ValueError:
            continue  # blank, or a row of an unused split that csv_datalist did not read
        if not name or not value.is_integer() or value < 0:
            continue
        if seen.setdefault(int(value), name) != name:
            raise ValueError(
                f"{manifest}, line {line}: label {int(value)} is named {name!r} here but {seen[int(value)]!r} "
                "above; expected one 'label_name' per label."
            )
    return [seen.get(i, default) for i, default in enumerate(names)]


def _apply_group_pattern(splits: dict[str, list[dict]], pattern: str, root: Path) -> None:
    """Set each item's ``group`` to the match of ``pattern`` in its path relative to ``root`` (group 1 if any)."""
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"group_pattern '{pattern}' is not a valid regular expression: {err}.") from None
    unmatched: list[str] = []
    total = 0
    for items in splits.values():
        for item in items:
            rel = Path(os.path.relpath(item["image"], root)).as_posix()
            match = regex.search(rel)
            item["group"] = ((match.group(1) if regex.groups else None) or match.group(0)) if match else rel
            unmatched += [] if match else [rel]
            total += 1
    if len(unmatched) == total:
        raise ValueError(
            f"group_pattern '{pattern}' matched none of the {total} image paths under {str(root)!r} (searched in "
            f"paths like {unmatched[0]!r}); expected a pattern whose first group is the patient id, e.g. "
            r"r'(person\d+)_' for Kermany file names."
        )
    if unmatched:
        logger.warning(
            "group_pattern '%s' matched %d of %d image paths under %s; the other %d are each their own group "
            "(e.g. %s).", pattern, total - len(unmatched), total, root, len(unmatched), unmatched[:3],
        )


def _counts(items: Sequence[dict], class_names: Sequence[str]) -> str:
    """``"12 (NORMAL 6, PNEUMONIA 6)"``: images, then images per class (positives per column for multi-label)."""
    if not items:
        return "0"
    labels = _labels(items)
    if labels.ndim == 1:
        per_class = [int(np.sum(labels == i)) for i in range(len(class_names))]
    else:
        per_class = [int(np.nansum(labels[:, i] > 0)) for i in range(labels.shape[1])]
    return f"{len(items)} (" + ", ".join(f"{c} {n}" for c, n in zip(class_names, per_class, strict=True)) + ")"


def _read_splits(
    dataset_dir: str | os.PathLike,
    label_columns: str | Sequence[str],
    group_column: str | None,
    group_pattern: str | None,
    uncertain: str,
) -> dict[str, Any]:
    """The official splits of ``dataset_dir`` (see the module docstring) and what was found, logged once read."""
    dataset_dir = Path(dataset_dir)
    manifest = dataset_dir / "labels.csv"
    header = _csv_header(manifest) if manifest.is_file() else []
    if "split" in header:
        column = group_column if group_column in header and group_pattern is None else None
        splits: dict[str, list[dict]] = {
            s: csv_datalist(manifest, label_columns=label_columns, group_column=column, split=s, uncertain=uncertain)
            for s in ("train", "test")
        }
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        class_names = _csv_class_names(manifest, rows, splits["train"] + splits["test"], label_columns)
        unused = Counter(row["split"] for row in rows if row["split"] not in ("train", "test"))
        source = f"{manifest} (split column" + (f"; rows not used: {dict(unused)})" if unused else ")")
        val = None
        patient_ids = f"{column} column" if column else "none"
    else:
        train_dir, test_dir = _split_folder(dataset_dir, ("train",)), _split_folder(dataset_dir, ("test",))
        if train_dir is None or test_dir is None:
            missing = [str(dataset_dir / s) for s, d in (("train", train_dir), ("test", test_dir)) if d is None]
            raise FileNotFoundError(
                f"{str(dataset_dir)!r} has neither a labels.csv with a 'split' column nor the split folders {missing} "
                f"(expected train/<CLASS>/*, test/<CLASS>/* and optionally val/<CLASS>/* or valid/<CLASS>/*)."
            )
        val_dir = _split_folder(dataset_dir, _VAL_FOLDERS)
        train = class_folder_datalist(train_dir)
        class_names = list(dict.fromkeys(d["label_name"] for d in train))
        splits = {"train": train}
        if val_dir is not None:
            splits["val"] = _folder_split(val_dir, class_names, train_dir)
        splits["test"] = _folder_split(test_dir, class_names, train_dir)
        names = "/ ".join(d.name for d in (train_dir, val_dir, test_dir) if d is not None)
        source, val = f"{dataset_dir}: {names}/ class folders", val_dir.name if val_dir else None
        patient_ids = "none"
    if group_pattern is not None:
        _apply_group_pattern(splits, group_pattern, dataset_dir)
        patient_ids = "filename pattern"
    found = "; ".join(f"{name} {_counts(items, class_names)}" for name, items in splits.items())
    logger.info("%s: found %s; classes %s; patient ids: %s.", source, found, class_names, patient_ids)
    if patient_ids == "none" and str(dataset_dir) not in _NO_GROUPS_WARNED:
        _NO_GROUPS_WARNED.add(str(dataset_dir))
        logger.warning(
            "%s has no patient ids (no %r column in a labels.csv, no group_pattern): validation, label fractions and "
            "bootstrap intervals are per image, so one patient's images may fall on both sides of a split. Add a "
            "patient_id column to labels.csv or pass group_pattern (e.g. r'(person\\d+)_' for Kermany file names).",
            dataset_dir, group_column or "patient_id",
        )
    return {**splits, "val_folder": val, "class_names": class_names, "patient_ids": patient_ids, "source": source}


def train_test_datalists(
    dataset_dir: str | os.PathLike,
    label_columns: str | Sequence[str] = "label",
    group_column: str | None = "patient_id",
    uncertain: str = "ones",
    group_pattern: str | None = None,
) -> tuple[list[dict], list[dict], str]:
    """Labelled datalists of the official ``train`` and ``test`` splits of a dataset folder, and the layout read.

    Reads ``dataset_dir/labels.csv`` when it has a ``split`` column (the Kermany manifest of ``../shared/data``:
    ``path, split, label, ..., patient_id``; rows of other splits such as ``val`` are left out), else the split folders
    ``dataset_dir/train/<CLASS>`` and ``dataset_dir/test/<CLASS>`` (labels = indices of the sorted train class names,
    the test folder labelled with the same classes; see the module docstring). A validation split is not returned
    here; :func:`transfer_datalists` reads it.

    Args:
        dataset_dir: dataset root.
        label_columns: label column(s) of ``labels.csv``; a list gives multi-label rows (float vectors).
        group_column: patient-id column of ``labels.csv``, copied to each item's ``group`` (ignored when absent).
        uncertain: CheXpert ``-1`` policy of :func:`~monai_moco.data.csv_datalist`.
        group_pattern: optional regular expression searched in each image path relative to ``dataset_dir`` (``/``
            separators, e.g. ``train/PNEUMONIA/person1_bacteria_1.jpeg``); its first group (else the whole match) is
            the item's ``group``; a path it does not match is its own group. Overrides ``group_column``.

    Returns:
        ``(train, test, source)``: items ``{"image": path, "label": ..., ["label_name": class], ["group": patient
        id]}`` and a description of the layout that was read.

    Raises:
        FileNotFoundError: when neither layout is found under ``dataset_dir``, or a split folder lacks a train class.
        ValueError: when a split folder has a class the train folder lacks, several folders name one split, or
            ``group_pattern`` is invalid or matches no path.

    Example::

        train, test, source = train_test_datalists("data/kermany")
        len(train), len(test)  # 5216, 624
    """
    splits = _read_splits(dataset_dir, label_columns, group_column, group_pattern, uncertain)
    return splits["train"], splits["test"], splits["source"]


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
    group_pattern: str | None = None,
) -> dict[str, Any]:
    r"""Datalists ``train`` (a label fraction), ``val`` (a validation folder, else carved from train) and ``test``.

    The splits are read as the module docstring says: ``labels.csv`` with a ``split`` column (its ``val`` rows, the
    16-image Kermany official split, are deliberately not used), else ``train/``, ``test/`` and an optional ``val/``,
    ``valid/`` or ``validation/`` folder of class folders. One log line says what was found (layout, images per split
    and class, classes, patient ids) and one what is used; a missing patient id is warned about once per dataset.

    Order of operations: (1) with ``max_images > 0`` seeded stratified subsets of ``max_images`` images of train, of
    test and of a validation folder (for quick runs); (2) the validation set: the validation folder when there is
    one (nothing is carved from train and ``val_fraction`` is unused), else ``val_fraction`` of the train images,
    grouped by patient when ids exist (no patient on both sides) and independent of ``draw``; (3) ``label_fraction``
    of the remaining train images for ``(seed, draw)``, stratified, grouped and nested across fractions.

    Args:
        dataset_dir: dataset root (see the module docstring).
        label_fraction: fraction of the labelled training pool to train on, in (0, 1].
        draw: which random draw of that fraction.
        val_fraction: fraction of the train images held out for validation when there is no validation folder, in
            (0, 1).
        seed: seed of the subsets (the validation split depends on it only, not on ``draw``).
        max_images: 0 uses everything; a positive number caps each split to a seeded subset of that size.
        label_columns: label column(s) of ``labels.csv`` (see :func:`train_test_datalists`).
        group_column: patient-id column of ``labels.csv`` (ignored when absent).
        uncertain: CheXpert ``-1`` policy of :func:`~monai_moco.data.csv_datalist`.
        group_pattern: regular expression giving the patient id from the image path relative to ``dataset_dir``
            (see :func:`train_test_datalists`), e.g. ``r"(person\d+)_"`` for Kermany file names; overrides
            ``group_column``.

    Returns:
        ``{"train": [...], "val": [...], "test": [...], "source": str, "class_names": [...], "patient_ids": str,
        "val_source": str}``; items are ``{"image": path, "label": ..., ["label_name": class], ["group": patient
        id]}``. ``class_names`` are in label order: the class folder names, else ``labels.csv``'s ``label_name`` per
        label, else ``"0", "1", ...`` (the label columns for multi-label data). ``patient_ids`` says where the groups
        came from: ``"patient_id column"`` (``"<group_column> column"``), ``"filename pattern"`` or ``"none"``.
        ``val_source`` says where validation came from (the folder, or carved from train and how).

    Raises:
        FileNotFoundError: when neither layout is found under ``dataset_dir``.
        ValueError: for a fraction outside its interval, too few images to carve a validation set, or a bad layout
            or ``group_pattern`` (see :func:`train_test_datalists`).

    Example::

        lists = transfer_datalists("data/kermany", label_fraction=0.01, draw=1)
        len(lists["train"]), len(lists["val"]), len(lists["test"])  # about 47, 522, 624
        lists = transfer_datalists("my_data", 0.1)  # my_data/{train,valid,test}/{0_normal,1_abnormal}/*.png
        lists["class_names"], lists["val_source"]  # ['0_normal', '1_abnormal'], "folder 'valid/'"
    """
    splits = _read_splits(dataset_dir, label_columns, group_column, group_pattern, uncertain)
    train = _subset(splits["train"], int(max_images), seed)
    test = _subset(splits["test"], int(max_images), seed)
    if "val" in splits:
        pool, val = train, _subset(splits["val"], int(max_images), seed)
        val_source = f"folder {splits['val_folder']!r}"
    else:
        pool_idx, val_idx = group_train_val_split(_labels(train), _groups(train), val_fraction=val_fraction, seed=seed)
        pool, val = [train[i] for i in pool_idx], [train[i] for i in val_idx]
        by = "per image" if splits["patient_ids"] == "none" else f"by patient ({splits['patient_ids']})"
        val_source = f"carved from train: {val_fraction:g} of the images, {by}"
    chosen = label_fraction_split(_labels(pool), label_fraction, draw=draw, groups=_groups(pool), seed=seed)
    lists = {
        "train": [pool[i] for i in chosen],
        "val": val,
        "test": test,
        "source": splits["source"],
        "class_names": splits["class_names"],
        "patient_ids": splits["patient_ids"],
        "val_source": val_source,
    }
    logger.info(
        "%s: using train %s (label_fraction %g, draw %d), val %s (%s), test %s.",
        splits["source"], _counts(lists["train"], lists["class_names"]), label_fraction, draw,
        _counts(val, lists["class_names"]), val_source, _counts(test, lists["class_names"]),
    )
    return lists
