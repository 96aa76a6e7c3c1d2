"""Datalists with bounding boxes from a COCO annotation file, for detection and for scoring heat-maps against boxes.

COCO (Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014) stores a box as ``[x, y, width, height]`` in
pixels; MONAI's detection stack (``monai.apps.detection``, after Lin et al., "Focal Loss for Dense Object Detection",
ICCV 2017) and torchvision take corner boxes ``(x_min, y_min, x_max, y_max)``. :func:`coco_box_datalist` turns one
COCO file into one datalist item per image with corner boxes, 0-based labels and the per-image fields a study needs
(``patient_id`` to group splits by patient; ``finding`` and ``view`` when present), in image-id order.

:func:`box_datalist_splits` makes the patient-grouped train/validation/test split and the nested label-fraction
subsets of a box datalist with :func:`monai_moco.data.group_train_val_split` and
:func:`monai_moco.data.label_fraction_split`; :func:`box_split_datalists` gives the datalists of one run of a study.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .splits import _fraction_key, group_train_val_split, label_fraction_split

__all__ = ["coco_box_datalist", "box_datalist_splits", "box_split_datalists", "COCO_EXTRA_FIELDS"]

#: optional per-image COCO fields copied into each item when the image entry has them
COCO_EXTRA_FIELDS: tuple[str, ...] = ("finding", "view", "license", "source_url", "doi")


def _entry_error(annotation_file: Path, what: str, entry: Any, expected: str) -> ValueError:
    return ValueError(f"{str(annotation_file)!r}: {what} {entry!r} is invalid; expected {expected}.")


def coco_box_datalist(
    annotation_file: str | os.PathLike, image_root: str | os.PathLike | None = None, check_files: bool = True
) -> list[dict]:
    """One datalist item per image of a COCO detection file, boxes in pixel corner form.

    Categories are numbered 0, 1, ... in the order of their COCO ``id`` (so ``labels`` index ``label_names``, the
    same for every item). Boxes are converted from COCO ``[x, y, w, h]`` to ``(x_min, y_min, x_max, y_max)``, the
    ``xyxy`` mode of ``monai.data.box_utils`` and ``monai.apps.detection``.

    Args:
        annotation_file: COCO JSON with ``images``, ``annotations`` and ``categories``; image entries need
            ``id``, ``file_name``, ``width``, ``height`` and ``patient_id`` (the id that groups a patient's images).
        image_root: folder that ``file_name`` is relative to; None uses the JSON file's folder.
        check_files: raise when an image file does not exist.

    Returns:
        ``[{"image": absolute path, "boxes": float32 N x 4, "labels": int64 N, "label_names": [str, ...],
        "patient_id": str, "width": int, "height": int, "image_id": int, ...}]`` with ``finding``, ``view`` etc.
        (:data:`COCO_EXTRA_FIELDS`) when the image entry has them; sorted by image id.

    Raises:
        FileNotFoundError: when the annotation file or (``check_files``) an image file does not exist.
        ValueError: when the JSON is not a COCO detection file, or an entry is malformed (the file and the entry
            are named): a missing field, a duplicate image id, an annotation for an unknown image or category, or a
            box with non-positive size or outside its image.

    Example::

        items = coco_box_datalist("../shared/data/cxr_lung_boxes/boxes_coco.json")
        items[0]["boxes"]  # array([[ 24.2,  41.5, 165.5, 332.1], [219.1, 6.9, 488.9, 279.6]], dtype=float32)
    """
    annotation_file = Path(annotation_file)
    if not annotation_file.is_file():
        raise FileNotFoundError(f"COCO annotation file {str(annotation_file)!r} does not exist.")
    try:
        with open(annotation_file) as f:
            coco = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(annotation_file)!r} is not valid JSON: {err}.") from err
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(coco, dict) or k not in coco]
    if missing:
        raise ValueError(
            f"{str(annotation_file)!r} is not a COCO detection file: missing key(s) {missing} "
            "(expected 'images', 'annotations' and 'categories')."
        )
    root = annotation_file.resolve().parent if image_root is None else Path(image_root).resolve()

    for cat in coco["categories"]:
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise _entry_error(annotation_file, "category", cat, "a dict with 'id' and 'name'")
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    if not categories:
        raise ValueError(f"{str(annotation_file)!r} has no categories.")
    label_of = {c["id"]: i for i, c in enumerate(categories)}
    label_names = [str(c["name"]) for c in categories]

    images: dict[int, dict] = {}
    for entry in coco["images"]:
        need = [k for k in ("id", "file_name", "width", "height", "patient_id") if k not in entry]
        if need:
            raise _entry_error(annotation_file, "image entry", entry, f"the field(s) {need} as well")
        if entry["id"] in images:
            raise _entry_error(annotation_file, "image entry", entry, f"a unique id, but id {entry['id']} repeats")
        images[entry["id"]] = entry

    boxes: dict[int, list[list[float]]] = {i: [] for i in images}
    labels: dict[int, list[int]] = {i: [] for i in images}
    for ann in coco["annotations"]:
        if not all(k in ann for k in ("image_id", "category_id", "bbox")):
            raise _entry_error(annotation_file, "annotation", ann, "the fields 'image_id', 'category_id' and 'bbox'")
        if ann["image_id"] not in images:
            raise _entry_error(annotation_file, "annotation", ann, "an 'image_id' listed in 'images'")
        if ann["category_id"] not in label_of:
            raise _entry_error(annotation_file, "annotation", ann, f"a 'category_id' in {sorted(label_of)}")
        bbox = ann["bbox"]
        image = images[ann["image_id"]]
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
            raise _entry_error(annotation_file, "annotation", ann, "'bbox' = [x, y, width, height]")
        x, y, w, h = (float(v) for v in bbox)
        tol = 1.0  # COCO boxes are rounded to 0.1 px; allow a pixel of slack at the border
        if w <= 0 or h <= 0 or x < -tol or y < -tol or x + w > image["width"] + tol or y + h > image["height"] + tol:
            raise _entry_error(
                annotation_file,
                "annotation",
                ann,
                f"a box of positive size inside its {image['width']}x{image['height']} image",
            )
        boxes[ann["image_id"]].append([x, y, x + w, y + h])
        labels[ann["image_id"]].append(label_of[ann["category_id"]])

    items = []
    for image_id in sorted(images):
        entry = images[image_id]
        path = (root / entry["file_name"]).resolve()
        if check_files and not path.is_file():
            raise FileNotFoundError(
                f"{str(annotation_file)!r}: image {entry['file_name']!r} (id {image_id}) not found at {str(path)!r}; "
                "pass image_root if the images live elsewhere."
            )
        item = {
            "image": str(path),
            "boxes": np.asarray(boxes[image_id], dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(labels[image_id], dtype=np.int64),
            "label_names": list(label_names),
            "patient_id": str(entry["patient_id"]),
            "width": int(entry["width"]),
            "height": int(entry["height"]),
            "image_id": int(image_id) if isinstance(image_id, (int, np.integer)) else image_id,
        }
        item.update({k: entry[k] for k in COCO_EXTRA_FIELDS if k in entry})
        items.append(item)
    return items


def box_datalist_splits(
    datalist: Sequence[dict],
    fractions: Sequence[float] = (1.0, 0.25, 0.1),
    draws: int = 3,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    stratify_key: str | None = "view",
    seed: int = 0,
) -> dict[str, Any]:
    """Patient-grouped test / validation / training split of a box datalist, with nested label-fraction subsets.

    The test set is carved first, then the validation set from the rest (both with :func:`group_train_val_split`),
    then the label-fraction subsets are drawn from what remains with :func:`label_fraction_split` (MoCo-CXR protocol,
    Sowrirajan et al., MIDL 2021): for one draw the 10 % subset lies inside the 25 % one, inside the 100 % one. No
    patient is in two of test, validation and training. Every image has a box of every class in lung-box data, so
    the split is stratified on ``stratify_key`` (the radiograph's view: PA, AP, AP supine) rather than on labels.

    Args:
        datalist: items from :func:`coco_box_datalist` (need ``patient_id`` and, when given, ``stratify_key``).
        fractions: label fractions of the training pool, in (0, 1].
        draws: random draws per fraction.
        val_fraction: fraction of all images for validation, in (0, 1).
        test_fraction: fraction of all images for test, in (0, 1).
        stratify_key: item field to stratify on; None does not stratify.
        seed: base seed; the split is a pure function of the datalist order, the fractions and the seed.

    Returns:
        ``{"test": idx, "val": idx, "pool": idx, "train": {"0.25": {"0": idx, ...}, ...}}`` with sorted int64
        indices into ``datalist``; keys as in :func:`monai_moco.data.fraction_splits`.

    Raises:
        KeyError: when an item lacks ``patient_id`` or ``stratify_key`` (the item index is named).
        ValueError: for fractions out of range, ``draws < 1`` or when nothing would be left for training.

    Example::

        items = coco_box_datalist("boxes_coco.json")
        split = box_datalist_splits(items, seed=0)
        train_10pc_draw1 = [items[i] for i in split["train"]["0.1"]["1"]]
    """
    if int(draws) < 1:
        raise ValueError(f"draws must be at least 1, got {draws}.")
    for i, item in enumerate(datalist):
        for key in ("patient_id",) + ((stratify_key,) if stratify_key else ()):
            if key not in item:
                raise KeyError(f"box datalist item {i} ({item.get('image', '?')!r}) has no {key!r} field.")
    n = len(datalist)
    groups = np.asarray([str(d["patient_id"]) for d in datalist])
    strata = np.asarray([str(d[stratify_key]) if stratify_key else "all" for d in datalist])
    rest, test = group_train_val_split(strata, groups, val_fraction=test_fraction, seed=seed)
    # the validation share is of all images, so rescale it to the remaining ones
    val_share = val_fraction * n / len(rest)
    train_rel, val_rel = group_train_val_split(strata[rest], groups[rest], val_fraction=val_share, seed=seed + 1)
    pool, val = rest[train_rel], rest[val_rel]
    train = {
        _fraction_key(f): {
            str(d): pool[label_fraction_split(strata[pool], f, draw=d, groups=groups[pool], seed=seed)]
            for d in range(int(draws))
        }
        for f in fractions
    }
    return {"test": np.sort(test), "val": np.sort(val), "pool": np.sort(pool), "train": train}


def box_split_datalists(
    annotation_file: str | os.PathLike,
    label_fraction: float = 1.0,
    draw: int = 0,
    image_root: str | os.PathLike | None = None,
    **split_options: Any,
) -> dict[str, Any]:
    """Train / validation / test datalists of a COCO box file for one ``(label_fraction, draw)`` of a study.

    The split is :func:`box_datalist_splits` of :func:`coco_box_datalist`; the validation and test sets do not depend
    on ``label_fraction`` or ``draw``, so every run of a study is scored on the same images.

    Args:
        annotation_file: COCO JSON (see :func:`coco_box_datalist`).
        label_fraction: fraction of the training pool to train on; must be one of ``fractions`` (so the subsets of
            one draw stay nested).
        draw: which draw of that fraction (below ``draws``).
        image_root: folder the file names are relative to; None uses the JSON's folder.
        split_options: ``fractions`` (every fraction of the study: the nesting is built over them), ``draws``,
            ``val_fraction``, ``test_fraction``, ``stratify_key`` and ``seed`` of :func:`box_datalist_splits`
            (same defaults).

    Returns:
        ``{"train", "val", "test": datalists, "class_names": [...], "patient_ids": {"train"|"val"|"test": sorted
        ids}, "n_pool": training-pool images}``.

    Raises:
        ValueError: when ``label_fraction`` is not in ``fractions`` or ``draw`` is not below ``draws`` (the study's
            values are named), or as :func:`coco_box_datalist` and :func:`box_datalist_splits`.
        TypeError: for an unknown split option (the known ones are listed).

    Example::

        lists = box_split_datalists("../shared/data/cxr_lung_boxes/boxes_coco.json", label_fraction=0.1, draw=2)
        len(lists["train"]), len(lists["val"]), len(lists["test"])
    """
    defaults = inspect.signature(box_datalist_splits).parameters
    known = sorted(set(defaults) - {"datalist"})
    unknown = sorted(set(split_options) - set(known))
    if unknown:
        raise TypeError(f"box_split_datalists: unknown split option(s) {unknown}; known: {known}.")
    fractions = split_options.get("fractions", defaults["fractions"].default)
    draws = split_options.get("draws", defaults["draws"].default)
    if _fraction_key(label_fraction) not in [_fraction_key(f) for f in fractions]:
        raise ValueError(
            f"label_fraction {label_fraction!r} is not one of the study's fractions {list(fractions)}; add it to "
            "fractions so its subsets are nested with the others."
        )
    if not 0 <= int(draw) < int(draws):
        raise ValueError(f"draw must be in 0..{int(draws) - 1} (draws={draws}), got {draw}.")
    items = coco_box_datalist(annotation_file, image_root=image_root)
    split = box_datalist_splits(items, **split_options)
    out: dict[str, Any] = {
        "train": [items[i] for i in split["train"][_fraction_key(label_fraction)][str(int(draw))]],
        "val": [items[i] for i in split["val"]],
        "test": [items[i] for i in split["test"]],
        "class_names": list(items[0]["label_names"]) if items else [],
        "n_pool": int(len(split["pool"])),
    }
    out["patient_ids"] = {k: sorted({d["patient_id"] for d in out[k]}) for k in ("train", "val", "test")}
    return out
