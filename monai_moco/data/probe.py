"""Small labelled subsets for watching self-supervised pretraining: the kNN-monitor datalists and a fixed image batch.

MoCo (He et al., CVPR 2020) and InstDisc (Wu et al., CVPR 2018) judge a representation during pretraining by a kNN
classifier on labelled images; :class:`~monai_moco.handlers.RepresentationMonitor` does that every N epochs. These
helpers give it a seeded, stratified reference/validation pair taken from class folders (the labels are never used for
the pretraining itself), and give :class:`~monai_moco.handlers.PatchHeatmapWriter` its fixed batch of radiographs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from monai_moco.data.datalists import _refuse_split_root, _subfolders, class_folder_datalist
from monai_moco.data.splits import group_train_val_split, label_fraction_split
from monai_moco.data.transfer import _apply_group_pattern

__all__ = ["fixed_image_batch", "probe_datalists"]


def probe_datalists(
    root: str | os.PathLike,
    num_images: int = 512,
    val_fraction: float = 0.5,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    group_pattern: str | None = None,
) -> tuple[list[dict], list[dict]]:
    """A stratified ``(reference, validation)`` pair of labelled datalists from a folder-per-class layout.

    Without patient ids the split is per image, and two radiographs of one patient can sit on both sides, which
    flatters the kNN score (a near-duplicate neighbour); ``group_pattern`` keeps each patient on one side.

    Args:
        root: folder with one sub-folder per class (e.g. Kermany's ``train/NORMAL``, ``train/PNEUMONIA``); symbolic
            links are followed.
        num_images: images in both parts together (a stratified seeded subset); 0 uses every image.
        val_fraction: share of the subset that goes to validation, in (0, 1).
        seed: seed of the subset and of the split.
        classes: class folder names in label order (default: every sub-folder, sorted).
        group_pattern: optional regular expression whose first group (or whole match) in each image's path relative
            to ``root`` is the patient id, e.g. ``r"((?:NORMAL2-)?IM-\\d+|person\\d+)"`` for Kermany file names;
            the subset and the split then keep each patient's images together.

    Returns:
        ``(reference, validation)``: disjoint lists of ``{"image", "label", "label_name"}`` dicts, every class in
        both.

    Raises:
        ValueError: for a negative ``num_images``, an invalid ``group_pattern`` or one that matches no path, when the subset is too small to hold every class on both sides, or
            when ``root``'s sub-folders are splits (``train``, ``val``, ``valid``, ``validation``, ``test``) rather than
            classes: pass one split, e.g. ``data/kermany/train``, not the dataset root.
        FileNotFoundError: when ``root`` does not exist (see :func:`~monai_moco.data.class_folder_datalist`).

    Example::

        reference, validation = probe_datalists("data/kermany/train", num_images=512)
        by_patient = probe_datalists("data/kermany/train", group_pattern=r"((?:NORMAL2-)?IM-\\d+|person\\d+)")
    """
    if int(num_images) < 0:
        raise ValueError(f"probe_datalists: num_images must be 0 (all) or positive, got {num_images}.")
    if Path(root).is_dir():
        _refuse_split_root(Path(root), _subfolders(Path(root)), "probe_datalists (the kNN monitor's folder)")
    datalist = class_folder_datalist(root, classes)
    if group_pattern:
        _apply_group_pattern({"train": datalist}, group_pattern, Path(root))

    def groups() -> list | None:
        return [d["group"] for d in datalist] if group_pattern else None

    if 0 < int(num_images) < len(datalist):
        fraction = int(num_images) / len(datalist)
        keep = label_fraction_split([d["label"] for d in datalist], fraction, groups=groups(), seed=seed)
        datalist = [datalist[i] for i in keep]
    labels = [d["label"] for d in datalist]
    ref_idx, val_idx = group_train_val_split(labels, groups=groups(), val_fraction=val_fraction, seed=seed)
    return [datalist[i] for i in ref_idx], [datalist[i] for i in val_idx]


def fixed_image_batch(dataset: Sequence[dict], num_images: int = 8, key: str = "image") -> torch.Tensor:
    """The first ``num_images`` items' ``key`` of a dataset stacked into one ``B x C x H x W`` float tensor.

    Args:
        dataset: a (MONAI) dataset of dicts, e.g. the loaded, un-augmented pretraining images.
        num_images: how many items (fewer when the dataset is smaller).
        key: the image key.

    Returns:
        plain float tensor ``B x C x H x W`` on the CPU.

    Raises:
        ValueError: when the dataset is empty or ``num_images < 1``.

    Example::

        images = fixed_image_batch(probe_dataset, 8)  # for PatchHeatmapWriter
    """
    n = min(int(num_images), len(dataset))
    if n < 1:
        raise ValueError(f"fixed_image_batch: need num_images >= 1 and a non-empty dataset, got {num_images}, {len(dataset)}.")
    images = [torch.as_tensor(dataset[i][key]) for i in range(n)]
    return torch.stack([img.as_tensor() if hasattr(img, "as_tensor") else img for img in images]).float().cpu()
