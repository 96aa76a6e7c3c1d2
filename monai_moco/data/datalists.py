"""Datalists (lists of ``{"image": ..., "label": ...}`` dicts) for the chest X-ray layouts users have.

MONAI datasets take a *datalist* plus a transform (see :func:`monai_moco.data.make_dataset`). This module builds
datalists from

* a folder per class (Kermany et al., "Identifying Medical Diagnoses and Treatable Diseases by Image-Based Deep
  Learning", Cell 2018: ``train/NORMAL``, ``train/PNEUMONIA``) -> :func:`class_folder_datalist`;
* a CSV manifest with one or many label columns (CheXpert, Irvin et al., AAAI 2019; NIH ChestX-ray14, Wang et al.,
  CVPR 2017; Kermany's ``labels.csv``) -> :func:`csv_datalist`;
* a MedMNIST ``.npz`` (Yang et al., "MedMNIST v2", Scientific Data 2023) -> :func:`medmnist_datalist`;
* any folder of radiographs, for self-supervised pretraining (He et al., MoCo, CVPR 2020) -> :func:`unlabeled_datalist`.

All orders are deterministic (sorted paths / file order). Paths are strings.

Bad files: the functions that list files take ``skip_bad`` and ``report``. With ``skip_bad=True`` every file is
checked with :func:`monai_moco.transforms.check_xray_file` (a cheap header/validity check, no full decode); bad files
are left out, one ``logging`` warning lists them, and when ``report`` is a list each ``(path, reason)`` pair is
appended to it. Without ``skip_bad`` nothing is opened here and a bad file raises ``XRayReadError`` at load time.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.utils import look_up_option

from monai_moco.transforms import XRayReadError, check_xray_file

__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLIT_FOLDER_NAMES",
    "UNCERTAIN_POLICIES",
    "class_folder_datalist",
    "csv_datalist",
    "medmnist_datalist",
    "unlabeled_datalist",
    "find_images",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".nii", ".nii.gz")
UNCERTAIN_POLICIES: tuple[str, ...] = ("ones", "zeros", "ignore")
#: folder names (matched case-insensitively) that hold a split of a dataset rather than a class
SPLIT_FOLDER_NAMES: tuple[str, ...] = ("train", "val", "valid", "validation", "test")


def _has_extension(name: str, extensions: Sequence[str] | None) -> bool:
    if name.startswith("."):
        return False
    if extensions is None:
        return True
    lower = name.lower()
    return any(lower.endswith(ext.lower()) for ext in extensions)


def _walk_files(folder: Path, recursive: bool) -> list[str]:
    """Paths of the files under ``folder``, following symbolic links to folders, each real folder visited once."""
    files: list[str] = []
    seen: set[str] = set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")] if recursive else []
        files.extend(os.path.join(top, n) for n in names if os.path.isfile(os.path.join(top, n)))
    return files


def find_images(
    folder: str | os.PathLike, extensions: Sequence[str] | None = IMAGE_EXTENSIONS, recursive: bool = True
) -> list[str]:
    """Sorted image files under ``folder`` (hidden files and folders skipped; extensions matched case-insensitively).

    Symbolic links are followed: a linked sub-folder is searched like a real one (each real folder once, so a link
    back to a parent does not loop) and a linked file is listed under its link's path.

    Args:
        folder: folder to search.
        extensions: file name endings to keep (``".nii.gz"`` works); None keeps every non-hidden file (DICOM exports
            often have no extension).
        recursive: search sub-folders too.

    Returns:
        Sorted list of file paths (strings).

    Raises:
        FileNotFoundError: when ``folder`` does not exist or is not a folder.
        ValueError: when no file matches, naming the folder and the extensions searched.

    Example::

        paths = find_images("data/unlabeled", extensions=(".dcm",))
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist or is not a folder.")
    if isinstance(extensions, str):
        extensions = (extensions,)
    found = sorted(p for p in _walk_files(folder, recursive) if _has_extension(os.path.basename(p), extensions))
    if not found:
        searched = "any extension" if extensions is None else f"extensions {tuple(extensions)}"
        where = "recursively" if recursive else "non-recursively"
        raise ValueError(f"no images found in {str(folder)!r} (searched {where} for {searched}).")
    return found


def _check_files(paths: Sequence[str], report: list | None) -> set[str]:
    """Run the loader's cheap validity check on each file; return the bad paths (logged and reported)."""
    bad: list[tuple[str, str]] = []
    for path in paths:
        try:
            check_xray_file(path)
        except (XRayReadError, OSError) as err:
            bad.append((str(path), str(err)))
    if bad:
        listing = "\n".join(f"  {p}: {reason}" for p, reason in bad)
        logger.warning("skipped %d unreadable image file(s) of %d:\n%s", len(bad), len(paths), listing)
        if report is not None:
            report.extend(bad)
    return {p for p, _ in bad}


def _drop_bad(datalist: list[dict], skip_bad: bool, report: list | None) -> list[dict]:
    if not skip_bad:
        return datalist
    bad = _check_files([d["image"] for d in datalist], report)
    return [d for d in datalist if d["image"] not in bad]


def _subfolders(root: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``root`` (symbolic links to folders included)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _refuse_split_root(root: Path, present: Sequence[str], caller: str) -> None:
    """Raise when ``root``'s sub-folders are dataset splits (``train``, ``val``, ...) where classes are expected."""
    splits = [name for name in present if name.lower() in SPLIT_FOLDER_NAMES]
    if splits:
        example = next((s for s in splits if s.lower() == "train"), splits[0])
        raise ValueError(
            f"{caller}: {str(root)!r} holds split folders {splits} (sub-folders found: {list(present)}), but one "
            f"sub-folder per class was expected (e.g. NORMAL/, PNEUMONIA/); point it at one split instead, "
            f"e.g. {str(root / example)!r}."
        )


def class_folder_datalist(
    root: str | os.PathLike,
    classes: Sequence[str] | None = None,
    extensions: Sequence[str] | None = IMAGE_EXTENSIONS,
    recursive: bool = True,
    skip_bad: bool = False,
    report: list | None = None,
) -> list[dict]:
    """Datalist for a folder-per-class layout (Kermany et al., Cell 2018: ``train/NORMAL``, ``train/PNEUMONIA``).

    Class folders, nested folders and files may be symbolic links; they are followed (see :func:`find_images`).

    Args:
        root: folder holding one sub-folder per class.
        classes: class folder names in label order; None uses every sub-folder, sorted by name.
        extensions: file endings to keep (see :func:`find_images`).
        recursive: also list files in nested folders inside each class folder.
        skip_bad: check each file and leave out unreadable ones (see the module docstring).
        report: when a list and ``skip_bad``, receives ``(path, reason)`` for each skipped file.

    Returns:
        ``[{"image": path, "label": int, "label_name": class}, ...]`` sorted by class then path.

    Raises:
        FileNotFoundError: when ``root`` or a named class folder does not exist.
        ValueError: when ``root`` has no class folders, a class folder holds no images, or (``classes`` None) the
            sub-folders are splits such as ``train``/``test`` (:data:`SPLIT_FOLDER_NAMES`) rather than classes.

    Example::

        train = class_folder_datalist("data/kermany/train")  # NORMAL -> 0, PNEUMONIA -> 1
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {str(root)!r} does not exist or is not a folder.")
    present = _subfolders(root)
    if classes is None:
        _refuse_split_root(root, present, "class_folder_datalist")
        if not present:
            raise ValueError(
                f"dataset root {str(root)!r} has no class sub-folders (expected e.g. NORMAL/, PNEUMONIA/)."
            )
        classes = present
    else:
        missing = [c for c in classes if c not in present]
        if missing:
            raise FileNotFoundError(
                f"class folder(s) {missing} not found in {str(root)!r}; sub-folders present: {present}."
            )
    datalist = [
        {"image": path, "label": label, "label_name": name}
        for label, name in enumerate(classes)
        for path in find_images(root / name, extensions, recursive)
    ]
    return _drop_bad(datalist, skip_bad, report)


def _parse_label(value: str, uncertain: str, where: str) -> float:
    """One label cell -> float: blank -> 0 (CheXpert: not mentioned), -1 -> uncertain policy (NaN for "ignore")."""
    text = value.strip()
    if text == "":
        return 0.0
    try:
        number = float(text)
    except ValueError:
        raise ValueError(
            f"{where}: label cell {value!r} is not a number (expected an integer class, 0/1, -1 or blank)."
        ) from None
    if number == -1.0:
        return {"ones": 1.0, "zeros": 0.0, "ignore": math.nan}[uncertain]
    return number


def csv_datalist(
    csv_path: str | os.PathLike,
    image_column: str = "path",
    label_columns: str | Sequence[str] = "label",
    root: str | os.PathLike | None = None,
    uncertain: str = "ones",
    group_column: str | None = None,
    split: str | None = None,
    split_column: str = "split",
    skip_bad: bool = False,
    report: list | None = None,
) -> list[dict]:
    """Datalist from a CSV manifest with one or many label columns (CheXpert, NIH ChestX-ray14, Kermany ``labels.csv``).

    Label cells follow the CheXpert convention (Irvin et al., AAAI 2019): ``1`` positive, ``0`` negative, blank
    means "not mentioned" and is read as ``0``, ``-1`` is uncertain and handled by ``uncertain``:

    * ``"ones"`` (U-Ones): uncertain -> 1;
    * ``"zeros"`` (U-Zeros): uncertain -> 0;
    * ``"ignore"`` (U-Ignore): the label is stored as NaN and every item gets a ``label_mask`` (1 = use, 0 = ignore)
      so a masked BCE can skip it: ``(bce(logit, nan_to_num(label), reduction="none") * mask).sum() / mask.sum()``.

    One label column (a string) -> ``label`` is an ``int`` (a ``float`` with a scalar ``label_mask`` under
    ``"ignore"``); several columns (a list) -> ``label`` is a float32 vector (and ``label_mask`` a float32 vector under
    ``"ignore"``).

    Args:
        csv_path: the CSV file (first row is the header).
        image_column: column with image paths; relative paths are joined to ``root``.
        label_columns: one column name, or a list of names for multi-label data.
        root: folder relative paths are resolved against; None means the CSV's own folder.
        uncertain: ``"ones"``, ``"zeros"`` or ``"ignore"`` (see above).
        group_column: optional column (e.g. ``patient_id``) copied to the ``group`` key, for grouped splits.
        split: keep only rows whose ``split_column`` equals this (e.g. ``"train"``); None keeps all rows.
        split_column: column holding the split name.
        skip_bad: check each file and leave out unreadable ones (see the module docstring).
        report: when a list and ``skip_bad``, receives ``(path, reason)`` for each skipped file.

    Returns:
        ``[{"image": path, "label": ..., ["label_mask": ...], ["group": str]}, ...]`` in CSV row order.

    Raises:
        FileNotFoundError: when the CSV does not exist.
        ValueError: for a missing column (named, with the columns present), an unknown ``uncertain`` option, a
            non-numeric label cell (file, line and column named), a ``split`` with no rows, or an empty CSV.

    Example::

        train = csv_datalist("data/kermany/labels.csv", split="train", group_column="patient_id")
        chexpert = csv_datalist("CheXpert-v1.0/train.csv", "Path", ["Atelectasis", "Edema"], root="/data",
                                uncertain="ignore", group_column="patient")
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"CSV manifest {str(csv_path)!r} does not exist.")
    uncertain = look_up_option(uncertain, UNCERTAIN_POLICIES)
    multi = not isinstance(label_columns, str)
    columns = list(label_columns) if multi else [label_columns]
    if multi and not columns:
        raise ValueError(f"label_columns for {str(csv_path)!r} is empty; name at least one label column.")
    base = Path(root) if root is not None else csv_path.parent

    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        if not header:
            raise ValueError(f"CSV manifest {str(csv_path)!r} is empty (no header row).")
        needed = [("image_column", image_column)] + [("label_columns", c) for c in columns]
        if group_column is not None:
            needed.append(("group_column", group_column))
        if split is not None:
            needed.append(("split_column", split_column))
        for arg, column in needed:
            if column not in header:
                raise ValueError(
                    f"column {column!r} ({arg}) not found in {str(csv_path)!r}; columns present: {header}."
                )
        rows = [(line, row) for line, row in enumerate(reader, start=2)]

    if split is not None:
        splits_present = sorted({row[split_column] for _, row in rows})
        rows = [(line, row) for line, row in rows if row[split_column] == split]
        if not rows:
            raise ValueError(
                f"no rows with {split_column}={split!r} in {str(csv_path)!r}; values present: {splits_present}."
            )

    datalist: list[dict] = []
    for line, row in rows:
        values = [_parse_label(row[c], uncertain, f"{csv_path}, line {line}, column {c!r}") for c in columns]
        image = row[image_column].strip()
        if not image:
            raise ValueError(f"{csv_path}, line {line}: empty {image_column!r} cell.")
        item: dict[str, Any] = {"image": image if os.path.isabs(image) else str(base / image)}
        if multi:
            label = np.asarray(values, dtype=np.float32)
            item["label"] = label
            if uncertain == "ignore":
                item["label_mask"] = (~np.isnan(label)).astype(np.float32)
        elif uncertain == "ignore":
            item["label"] = values[0]
            item["label_mask"] = 0.0 if math.isnan(values[0]) else 1.0
        else:
            item["label"] = int(values[0]) if float(values[0]).is_integer() else values[0]
        if group_column is not None:
            item["group"] = row[group_column]
        datalist.append(item)
    if not datalist:
        raise ValueError(f"CSV manifest {str(csv_path)!r} has a header but no rows.")
    return _drop_bad(datalist, skip_bad, report)


def medmnist_datalist(npz_path: str | os.PathLike, split: str = "train") -> list[dict]:
    """Datalist from a MedMNIST ``.npz`` (Yang et al., "MedMNIST v2", Scientific Data 2023), e.g. PneumoniaMNIST.

    Args:
        npz_path: the ``.npz`` with ``{split}_images`` (N x H x W uint8) and ``{split}_labels`` (N x 1 or N x K).
        split: ``"train"``, ``"val"`` or ``"test"`` (any prefix present in the file works).

    Returns:
        ``[{"image": H x W uint8 array, "label": int}, ...]`` in file order; multi-label files (N x K, K > 1) give a
        float32 vector label.

    Raises:
        FileNotFoundError: when the file does not exist.
        KeyError: when a key is missing (naming the file, the key and the keys present).
        ValueError: when images and labels disagree in length.

    Example::

        train = medmnist_datalist("pneumoniamnist.npz", "train")  # 4708 items, label 0 normal / 1 pneumonia
    """
    npz_path = Path(npz_path)
    if not npz_path.is_file():
        raise FileNotFoundError(f"MedMNIST file {str(npz_path)!r} does not exist.")
    with np.load(npz_path) as npz:
        for key in (f"{split}_images", f"{split}_labels"):
            if key not in npz.files:
                raise KeyError(
                    f"{str(npz_path)!r} has no key {key!r} (split={split!r}); keys present: {sorted(npz.files)}."
                )
        images = npz[f"{split}_images"]
        labels = npz[f"{split}_labels"]
    if len(images) != len(labels):
        raise ValueError(
            f"{str(npz_path)!r}: {split}_images has {len(images)} entries but {split}_labels has {len(labels)}."
        )
    labels = labels.reshape(len(labels), -1)
    if labels.shape[1] == 1:
        return [{"image": img, "label": int(lab[0])} for img, lab in zip(images, labels, strict=True)]
    return [{"image": img, "label": lab.astype(np.float32)} for img, lab in zip(images, labels, strict=True)]


def unlabeled_datalist(
    root: str | os.PathLike,
    recursive: bool = True,
    extensions: Sequence[str] | None = IMAGE_EXTENSIONS,
    max_images: int = 0,
    seed: int = 0,
    skip_bad: bool = False,
    report: list | None = None,
) -> list[dict]:
    """Datalist of every radiograph under a folder, for self-supervised pretraining (He et al., MoCo, CVPR 2020).

    ``max_images > 0`` takes a seeded random subset: files are visited in a random order drawn from
    ``numpy.random.default_rng(seed)`` and the first ``max_images`` (good ones, with ``skip_bad``) are kept, then
    returned in sorted path order. With ``skip_bad`` only the visited files are checked, so a subset is cheap.

    Args:
        root: folder to search (nested folders are fine).
        recursive: search sub-folders too.
        extensions: file endings to keep; None keeps every non-hidden file (extension-less DICOM).
        max_images: 0 keeps all files; a positive number keeps a seeded random subset of that size.
        seed: seed of the subset.
        skip_bad: check each file and leave out unreadable ones (see the module docstring).
        report: when a list and ``skip_bad``, receives ``(path, reason)`` for each skipped file.

    Returns:
        ``[{"image": path}, ...]`` sorted by path.

    Raises:
        FileNotFoundError: when ``root`` does not exist.
        ValueError: when no images are found, or ``max_images`` is negative.

    Example::

        pretrain = unlabeled_datalist("/data/cxr_dicom", extensions=None, max_images=10000, seed=0)
    """
    if int(max_images) < 0:
        raise ValueError(f"max_images must be 0 (all) or a positive count, got {max_images}.")
    paths = find_images(root, extensions, recursive)
    if max_images == 0 or max_images >= len(paths):
        keep = paths if not skip_bad else [p for p in paths if p not in _check_files(paths, report)]
    else:
        order = np.random.default_rng(seed).permutation(len(paths))
        keep = []
        start = 0
        while len(keep) < max_images and start < len(order):
            batch = [paths[i] for i in order[start : start + max_images - len(keep)]]
            start += len(batch)
            bad = _check_files(batch, report) if skip_bad else set()
            keep.extend(p for p in batch if p not in bad)
        keep.sort()
    return [{"image": p} for p in keep]
