"""Do the heat-maps point at the lungs? Score top-K patch weights and Grad-CAM against lung boxes.

What ``scripts/score_heatmaps.py`` runs, in parts a study or a test can call alone:

* :func:`load_box_images`: the radiographs of a COCO box file loaded exactly as the networks see them
  (:class:`~monai_moco.transforms.LoadXRayd`, letterboxed to ``image_size``) with their boxes moved onto that frame by
  :class:`~monai_moco.transforms.LetterboxBoxd`, so boxes and pixels go through one preprocessing.
* :func:`topk_encoder` and :func:`probe_classifier`: the two kinds of model, from a checkpoint or at random init
  (the same architecture and seed), and :func:`heatmaps_of` their maps (top-K pooling weights on the token grid,
  Grad-CAM of one logit at a ResNet stage).
* :func:`score_maps` and :func:`summarise_scores`: :func:`~monai_moco.metrics.heatmap_box_scores` per image, then the
  mean mass-in-boxes share and pointing-game rate with patient-bootstrap intervals
  (:func:`~monai_moco.metrics.bootstrap_ci`, patients resampled) beside their chance levels; :func:`paired_difference`
  compares two models on the same images.

Empty maps (no positive mass, e.g. a Grad-CAM zeroed by its ReLU) have no mass share and are left out of that mean
(counted in ``n_empty``); in the pointing game they count as misses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from monai_moco.metrics import bootstrap_ci, box_coverage_grid, heatmap_box_scores

__all__ = [
    "BoxImages",
    "heatmaps_of",
    "load_box_images",
    "paired_difference",
    "probe_classifier",
    "score_maps",
    "summarise_scores",
    "topk_encoder",
]

logger = logging.getLogger(__name__)

#: the per-image columns :func:`score_maps` returns
SCORE_COLUMNS = ("mass_in_boxes", "pointing_hit", "chance_mass", "chance_pointing", "chance_mass_content", "empty")


@dataclass
class BoxImages:
    """Letterboxed radiographs with their boxes on the same frame.

    Args:
        images: ``B x 1 x S x S`` float tensor in [0, 1].
        boxes: ``B`` tensors ``N_i x 4`` ``(row_min, col_min, row_max, col_max)`` on the ``S x S`` frame.
        content: ``B x 4`` the image content inside the letterbox padding, same corner order.
        groups: patient id per image.
        files: image path per image.
    """

    images: torch.Tensor
    boxes: list[torch.Tensor]
    content: torch.Tensor
    groups: list[str]
    files: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_box_images(
    annotation_file: str | os.PathLike,
    image_size: int,
    image_root: str | os.PathLike | None = None,
    max_images: int = 0,
) -> BoxImages:
    """Load every image of a COCO box file as the networks see it, with its boxes moved onto the same frame.

    Args:
        annotation_file: COCO JSON (see :func:`~monai_moco.data.coco_box_datalist`), e.g.
            ``cxr_lung_boxes/boxes_coco.json``.
        image_size: side of the letterboxed network input.
        image_root: folder of the images; None = the JSON's folder.
        max_images: 0 = all; else the first ``max_images`` in image-id order (quick runs, tests).

    Returns:
        the :class:`BoxImages`, in image-id order.

    Raises:
        FileNotFoundError: when the annotation file or an image is missing.
        ValueError: for a malformed COCO file (see :func:`~monai_moco.data.coco_box_datalist`).

    Example::

        data = load_box_images("../shared/data/cxr_lung_boxes/boxes_coco.json", 64)
        data.images.shape, data.boxes[0]  # (155, 1, 64, 64), tensor([[5.19, 3.04, 41.51, 20.81], ...])
    """
    from monai.transforms import Compose

    from monai_moco.data.boxes import coco_box_datalist
    from monai_moco.transforms import LetterboxBoxd, LoadXRayd

    load = Compose([LoadXRayd(keys="image", spatial_size=image_size), LetterboxBoxd("boxes", "image")])
    images, boxes, content, groups, files = [], [], [], [], []
    items = coco_box_datalist(annotation_file, image_root)
    for item in items[: max_images or None]:
        d = load(item)
        meta = d["image"].meta
        top, _, left, _ = (int(v) for v in meta["letterbox_pad"])
        rh, rw = (int(v) for v in meta["letterbox_resized_shape"])
        images.append(d["image"].as_tensor().float())
        boxes.append(torch.as_tensor(d["boxes"]).as_subclass(torch.Tensor).to(torch.float64))
        content.append(torch.tensor([top, left, top + rh, left + rw], dtype=torch.float64))
        groups.append(str(item["patient_id"]))
        files.append(str(item["image"]))
    if not images:
        raise ValueError(f"load_box_images: {str(annotation_file)!r} lists no images.")
    return BoxImages(torch.stack(images), boxes, torch.stack(content), groups, files)


def topk_encoder(
    checkpoint: str | os.PathLike | None,
    image_size: int,
    patch_size: int,
    k: int,
    vit_preset: str = "tiny",
    embedding_dim: int = 128,
    head_batch_norm: bool = True,
    seed: int = 0,
) -> nn.Module:
    """The ``bundles/moco_vit`` / ``simclr_vit_topk`` encoder with a top-K head, trained or at random init.

    Args:
        checkpoint: a pretraining checkpoint of those bundles (its ``network`` entry is loaded strictly), or None
            for random init under ``seed``.
        image_size: input side the ViT was built for.
        patch_size: ViT patch side (the heat-map grid is ``image_size / patch_size`` square).
        k: patches kept by the head (the bundle's ``topk``).
        vit_preset: ``tiny`` / ``small`` / ``base``.
        embedding_dim: projection output width (the bundle's ``embedding_dim``).
        head_batch_norm: the bundle's ``head_batch_norm``.
        seed: seed of the random initialisation (also used before loading, so both paths build identically).

    Returns:
        a :class:`~monai_moco.networks.nets.ContrastiveEncoder` in eval mode on the CPU.

    Raises:
        ValueError: when the checkpoint has no ``network`` entry or its tensors do not fit the architecture (the
            file and the settings are named).

    Example::

        enc = topk_encoder("runs/heatmaps/moco_vit_topk/checkpoints/last.pt", 64, 8, 16)
    """
    from monai_moco.networks.blocks import MoCoV2ProjectionHead, TopKPatchHead
    from monai_moco.networks.nets import ContrastiveEncoder, build_backbone
    from monai_moco.networks.weights import load_checkpoint_file

    torch.manual_seed(seed)
    backbone = build_backbone(f"convstem_vit_{vit_preset}", in_channels=1, img_size=image_size, patch_size=patch_size,
                              pooling="none")
    width = backbone.out_features
    net = ContrastiveEncoder(
        backbone,
        patch_head=TopKPatchHead(width, k=k, pooling="weighted"),
        projection=MoCoV2ProjectionHead(width, 2048, embedding_dim, batch_norm=head_batch_norm),
    )
    if checkpoint is not None:
        ckpt = load_checkpoint_file(checkpoint)
        if not isinstance(ckpt, dict) or "network" not in ckpt:
            keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
            raise ValueError(f"topk_encoder: {str(checkpoint)!r} has no 'network' entry (found {keys}); expected a "
                             "moco_vit / simclr_vit_topk pretraining checkpoint.")
        try:
            net.load_state_dict(ckpt["network"])
        except RuntimeError as err:
            raise ValueError(
                f"topk_encoder: {str(checkpoint)!r} does not fit convstem_vit_{vit_preset} at {image_size} px, patch "
                f"{patch_size}, top-{k} head, embedding {embedding_dim}: {str(err).splitlines()[0]} Pass the "
                "settings the checkpoint was trained with."
            ) from None
    return net.eval()


def probe_classifier(
    weights: str | os.PathLike | None,
    dataset_dir: str | os.PathLike,
    image_size: int,
    backbone: str = "resnet18",
    seed: int = 0,
    val_fraction: float = 0.1,
    max_images: int = 0,
    batch_size: int = 128,
) -> tuple[nn.Module, dict[str, Any]]:
    """A frozen backbone with a logistic probe fitted on a labelled dataset's training pool (``C`` on validation).

    The same probe as ``bundles/cxr_classifier --frozen True`` and the transfer study: features from the frozen
    backbone, :class:`~monai_moco.evaluation.LogisticProbe` with ``C`` chosen by validation AUC on the
    patient-grouped validation split of :func:`~monai_moco.data.transfer_datalists`, folded into the linear head.
    The test split is not read.

    Args:
        weights: backbone checkpoint (ours, MoCo, torchvision), or None for random init under ``seed``.
        dataset_dir: labelled dataset root, e.g. ``data/kermany``.
        image_size: side of the letterboxed input.
        backbone: a :func:`~monai_moco.networks.nets.build_backbone` name with a ResNet layout for Grad-CAM.
        seed: seed of the validation split and of the random initialisation.
        val_fraction: share of the training images held out for validation.
        max_images: 0 = all; else seeded caps per split (quick runs, tests).
        batch_size: images per forward pass.

    Returns:
        ``(classifier in eval mode, {"c", "val_auc", "n_train", "n_val"})``.

    Example::

        model, info = probe_classifier("runs/transfer_study/pretrain/moco/checkpoints/last.pt", "data/kermany", 64)
    """
    from monai.data import DataLoader
    from monai.transforms import Compose

    from monai_moco.data import make_dataset, transfer_datalists
    from monai_moco.evaluation.linear_probe import LogisticProbe, embed_dataset
    from monai_moco.networks.nets import XRayClassifier, build_backbone
    from monai_moco.transforms import LoadXRayd

    torch.manual_seed(seed)
    lists = transfer_datalists(dataset_dir, 1.0, 0, val_fraction=val_fraction, seed=seed, max_images=max_images)
    model = XRayClassifier(build_backbone(backbone, in_channels=1, weights=weights or None), 2, frozen=True).eval()
    transform = Compose([LoadXRayd(keys="image", spatial_size=image_size)])
    feats = {}
    for split in ("train", "val"):
        ds = make_dataset(lists[split], transform, cache="none", progress=False)
        feats[split] = embed_dataset(model, DataLoader(ds, batch_size=batch_size, shuffle=False))
    probe = LogisticProbe().fit(feats["train"].features, feats["train"].labels, feats["val"].features,
                                feats["val"].labels)
    probe.load_into(model.head)
    info = {**probe.summary(), "n_train": len(feats["train"]), "n_val": len(feats["val"])}
    logger.info(f"probe on {backbone} ({weights or 'random init'}): C = {info['c']:g}, validation AUC "
                f"{info['val_auc']}")
    return model, info


def heatmaps_of(
    model: nn.Module,
    images: torch.Tensor,
    method: str,
    class_index: int = 1,
    layer: str = "layer4",
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Heat-maps of a batch as masses on their own grid.

    Args:
        model: a top-K encoder (``method="topk"``) or a ResNet classifier (``method="gradcam"``).
        images: ``B x 1 x S x S``.
        method: ``"topk"`` (top-K pooling weights, :func:`~monai_moco.visualize.topk_pooling_weights`) or
            ``"gradcam"`` (:func:`~monai_moco.visualize.gradcam_maps` of ``class_index`` at ``layer``).
        class_index: logit explained by Grad-CAM.
        layer: ResNet stage of Grad-CAM.
        batch_size: images per forward pass.

    Returns:
        ``(maps B x h x w, kept indices B x K or None)``.

    Raises:
        ValueError: for an unknown method.

    Example::

        maps, kept = heatmaps_of(encoder, data.images, "topk")
    """
    from monai_moco.visualize import gradcam_maps, topk_pooling_weights

    if method not in ("topk", "gradcam"):
        raise ValueError(f"heatmaps_of: method must be 'topk' or 'gradcam', got {method!r}.")
    maps, kept = [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size]
        if method == "topk":
            m, idx = topk_pooling_weights(model, x)
            kept.append(idx)
        else:
            m = gradcam_maps(model, x, class_index, layer)
        maps.append(m)
    return torch.cat(maps), (torch.cat(kept) if kept else None)


def score_maps(maps: torch.Tensor, data: BoxImages) -> dict[str, np.ndarray]:
    """Per-image faithfulness of ``maps`` against ``data.boxes``, plus the uniform-over-content chance level.

    Args:
        maps: ``B x h x w`` non-negative maps over the ``S x S`` frame of ``data``.
        data: the images and boxes.

    Returns:
        arrays ``(B,)`` named by :data:`SCORE_COLUMNS`: the four scores of
        :func:`~monai_moco.metrics.heatmap_box_scores`, ``chance_mass_content`` (the mass share of a map uniform over
        the image content, padding excluded: box area / content area) and ``empty``.

    Raises:
        ValueError: when ``maps`` and ``data`` disagree in length (see :func:`~monai_moco.metrics.heatmap_box_scores`).

    Example::

        scores = score_maps(maps, data)
        scores["mass_in_boxes"].mean()
    """
    frame = tuple(int(v) for v in data.images.shape[-2:])
    out = {k: v.numpy() for k, v in heatmap_box_scores(maps, data.boxes, image_size=frame).items()}
    union = np.array([float(box_coverage_grid(b, frame, frame).sum()) for b in data.boxes])
    area = ((data.content[:, 2] - data.content[:, 0]) * (data.content[:, 3] - data.content[:, 1])).numpy()
    out["chance_mass_content"] = union / area
    return {k: out[k] for k in SCORE_COLUMNS}


def _mean_ci(values: np.ndarray, groups: Sequence[str], n_bootstrap: int, seed: int) -> dict[str, Any]:
    mean: Callable[[np.ndarray, np.ndarray], float] = lambda _y, s: float(np.mean(s))  # noqa: E731
    res = bootstrap_ci(np.zeros(values.size), values, mean, n_bootstrap=n_bootstrap, groups=list(groups), seed=seed,
                       require_both_classes=False)
    return {k: res[k] for k in ("value", "ci_low", "ci_high", "n", "n_groups")}


def summarise_scores(
    scores: dict[str, np.ndarray], groups: Sequence[str], n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Mean scores with patient-bootstrap 95 % intervals, beside their chance levels.

    Args:
        scores: from :func:`score_maps`.
        groups: patient id per image (patients are resampled, each with all their images).
        n_bootstrap: resamples.
        seed: resampling seed.

    Returns:
        ``{"mass_in_boxes": {value, ci_low, ci_high, n, n_groups}, "pointing_game": {...}, "chance_mass",
        "chance_mass_content", "chance_pointing", "mass_minus_chance": {...}, "n_images", "n_empty"}``. Empty maps
        are left out of the mass means and count as pointing misses.

    Example::

        summary = summarise_scores(score_maps(maps, data), data.groups)
        summary["mass_in_boxes"]["value"], summary["chance_mass"]
    """
    groups = np.asarray(list(groups))
    empty = scores["empty"].astype(bool)
    ok = ~empty
    hits = np.where(empty, 0.0, scores["pointing_hit"])
    if not ok.any():
        raise ValueError("summarise_scores: every heat-map is empty (no positive mass); nothing to score.")
    return {
        "n_images": int(empty.size),
        "n_patients": int(np.unique(groups).size),
        "n_empty": int(empty.sum()),
        "mass_in_boxes": _mean_ci(scores["mass_in_boxes"][ok], groups[ok], n_bootstrap, seed),
        "mass_minus_chance": _mean_ci(scores["mass_in_boxes"][ok] - scores["chance_mass"][ok], groups[ok],
                                      n_bootstrap, seed),
        "pointing_game": _mean_ci(hits, groups, n_bootstrap, seed),
        "chance_mass": float(np.mean(scores["chance_mass"])),
        "chance_mass_content": float(np.mean(scores["chance_mass_content"])),
        "chance_pointing": float(np.mean(scores["chance_pointing"])),
    }


def paired_difference(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], groups: Sequence[str], n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """``a - b`` on the same images: mean difference of mass share and of pointing hits, patient-bootstrap CIs.

    Args:
        a: scores of one model (e.g. pretrained), from :func:`score_maps`.
        b: scores of the other (e.g. random init) on the same images in the same order.
        groups: patient id per image.
        n_bootstrap: resamples.
        seed: resampling seed.

    Returns:
        ``{"mass_in_boxes": {value, ci_low, ci_high, n, n_groups}, "pointing_game": {...}}``; mass over images
        where neither map is empty, pointing over all images (empty = miss).

    Raises:
        ValueError: when ``a`` and ``b`` have different lengths.

    Example::

        diff = paired_difference(pretrained_scores, random_scores, data.groups)
    """
    if a["empty"].size != b["empty"].size:
        raise ValueError(f"paired_difference: {a['empty'].size} and {b['empty'].size} images; expected the same images.")
    groups = np.asarray(list(groups))
    ok = ~(a["empty"].astype(bool) | b["empty"].astype(bool))
    hit_a = np.where(a["empty"], 0.0, a["pointing_hit"])
    hit_b = np.where(b["empty"], 0.0, b["pointing_hit"])
    return {
        "mass_in_boxes": _mean_ci(a["mass_in_boxes"][ok] - b["mass_in_boxes"][ok], groups[ok], n_bootstrap, seed),
        "pointing_game": _mean_ci(hit_a - hit_b, groups, n_bootstrap, seed),
    }


def overlay_figure(
    data: BoxImages,
    maps: dict[str, torch.Tensor],
    kept: dict[str, torch.Tensor | None],
    indices: Sequence[int],
    scale: int = 4,
) -> np.ndarray:
    """One row per image, one column per model: the map over the radiograph, the boxes outlined in green.

    Args:
        data: images and boxes.
        maps: model name -> ``B x h x w`` maps (column order = dict order).
        kept: model name -> top-K indices ``B x K`` to outline in white, or None.
        indices: rows of ``data`` to draw.
        scale: display magnification of the ``S x S`` frame.

    Returns:
        ``H x W x 3`` uint8 RGB (panels separated by 2-pixel black lines).

    Raises:
        ValueError: for an index outside ``data``.

    Example::

        rgb = overlay_figure(data, {"pretrained": a, "random": b}, {"pretrained": None, "random": None}, [0, 5])
    """
    import torch.nn.functional as F

    from monai_moco.visualize import draw_boxes, heatmap_overlay

    size = int(data.images.shape[-1]) * scale
    rows = []
    for i in indices:
        if not 0 <= int(i) < len(data):
            raise ValueError(f"overlay_figure: image index {i} is outside the {len(data)} images.")
        image = F.interpolate(data.images[int(i) : int(i) + 1], size=(size, size), mode="bilinear",
                              align_corners=False)[0].clamp(0, 1)
        panels = []
        for name, m in maps.items():
            grid = tuple(int(v) for v in m.shape[-2:])
            k = kept.get(name)
            rgb = heatmap_overlay(image, m[int(i)].flatten(), grid, None if k is None else k[int(i)])
            panels.append(draw_boxes(rgb, data.boxes[int(i)], colour=(0, 255, 0), scale=scale))
            panels.append(np.zeros((size, 2, 3), dtype=np.uint8))
        rows.append(np.concatenate(panels[:-1], axis=1))
        rows.append(np.zeros((2, rows[-1].shape[1], 3), dtype=np.uint8))
    return np.concatenate(rows[:-1], axis=0)


def run_heatmap_scoring(
    method: str,
    annotation_file: str | os.PathLike,
    output_dir: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    random_init: bool = True,
    image_size: int = 64,
    patch_size: int = 8,
    topk: int = 16,
    vit_preset: str = "tiny",
    embedding_dim: int = 128,
    dataset_dir: str | os.PathLike = "data/kermany",
    class_index: int = 1,
    gradcam_layer: str = "layer4",
    max_images: int = 0,
    probe_max_images: int = 0,
    n_bootstrap: int = 1000,
    seed: int = 0,
    overlays: Sequence[int] = (),
) -> dict[str, Any]:
    """Score the heat-maps of a pretrained model and of the same architecture at random init against the boxes.

    Writes ``scores.csv`` (one row per image and model: file, patient, the :data:`SCORE_COLUMNS`), ``summary.json``
    (settings, :func:`summarise_scores` per model, :func:`paired_difference` pretrained - random when both are
    scored) and, with ``overlays``, ``overlays.png`` (:func:`overlay_figure`).

    Args:
        method: ``"topk"`` (a ``moco_vit`` / ``simclr_vit_topk`` checkpoint with a top-K head) or ``"gradcam"`` (a
            ResNet checkpoint; a logistic probe is fitted on ``dataset_dir`` for each model, see
            :func:`probe_classifier`).
        annotation_file: COCO box file, e.g. ``cxr_lung_boxes/boxes_coco.json``.
        output_dir: where the outputs go.
        checkpoint: pretrained weights; None scores the random-init model only.
        random_init: also score the architecture at random init (seed ``seed``).
        image_size: side of the letterboxed input (as in pretraining).
        patch_size: ViT patch side (``topk``).
        topk: K of the top-K head (``topk``).
        vit_preset: ViT width preset (``topk``).
        embedding_dim: projection width of the pretraining bundle (``topk``).
        dataset_dir: labelled dataset for the Grad-CAM probe.
        class_index: logit explained by Grad-CAM (1 = pneumonia).
        gradcam_layer: ResNet stage of Grad-CAM.
        max_images: 0 = every box image; else the first ones (quick runs).
        probe_max_images: 0 = the whole probe dataset; else seeded caps per split.
        n_bootstrap: patient-bootstrap resamples.
        seed: seed of random init, probe split and bootstrap.
        overlays: rows of the box images drawn in ``overlays.png``.

    Returns:
        the summary dict written to ``summary.json``.

    Raises:
        ValueError: for an unknown method, or nothing to score (no checkpoint and ``random_init=False``).

    Example::

        run_heatmap_scoring("topk", "../shared/data/cxr_lung_boxes/boxes_coco.json", "runs/heatmaps/topk",
                            checkpoint="runs/heatmaps/moco_vit_topk/checkpoints/last.pt")
    """
    import csv
    import json
    from pathlib import Path

    from monai_moco.utils.io import atomic_write
    from monai_moco.visualize import write_rgb_png

    if method not in ("topk", "gradcam"):
        raise ValueError(f"run_heatmap_scoring: method must be 'topk' or 'gradcam', got {method!r}.")
    models: dict[str, str | os.PathLike | None] = {}
    if checkpoint is not None:
        models["pretrained"] = checkpoint
    if random_init:
        models["random"] = None
    if not models:
        raise ValueError("run_heatmap_scoring: nothing to score; give a checkpoint or keep random_init.")
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_box_images(annotation_file, image_size, max_images=max_images)
    logger.info(f"{len(data)} images of {len(set(data.groups))} patients from {annotation_file}, {image_size} px")
    maps: dict[str, torch.Tensor] = {}
    kept: dict[str, torch.Tensor | None] = {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    summary: dict[str, Any] = {
        "method": method, "annotation_file": str(annotation_file), "image_size": image_size, "seed": seed,
        "n_bootstrap": n_bootstrap, "models": {},
    }
    if method == "topk":
        summary.update({"vit_preset": vit_preset, "patch_size": patch_size, "topk": topk,
                        "grid": [image_size // patch_size] * 2})
    else:
        summary.update({"gradcam_layer": gradcam_layer, "class_index": class_index, "dataset_dir": str(dataset_dir)})
    for name, weights in models.items():
        extra: dict[str, Any] = {"checkpoint": None if weights is None else str(weights)}
        if method == "topk":
            model = topk_encoder(weights, image_size, patch_size, topk, vit_preset, embedding_dim, seed=seed)
        else:
            model, extra["probe"] = probe_classifier(weights, dataset_dir, image_size, seed=seed,
                                                     max_images=probe_max_images)
        maps[name], kept[name] = heatmaps_of(model, data.images, method, class_index, gradcam_layer)
        scores[name] = score_maps(maps[name], data)
        summary["models"][name] = {**extra, **summarise_scores(scores[name], data.groups, n_bootstrap, seed)}
        s = summary["models"][name]
        logger.info(
            f"{method} {name}: mass in boxes {s['mass_in_boxes']['value']:.3f} [{s['mass_in_boxes']['ci_low']:.3f}, "
            f"{s['mass_in_boxes']['ci_high']:.3f}] (chance {s['chance_mass']:.3f}), pointing "
            f"{s['pointing_game']['value']:.3f} (chance {s['chance_pointing']:.3f}), {s['n_empty']} empty maps"
        )
    summary["grid"] = list(next(iter(maps.values())).shape[-2:])
    if "pretrained" in scores and "random" in scores:
        summary["difference"] = paired_difference(scores["pretrained"], scores["random"], data.groups, n_bootstrap,
                                                  seed)

    def write_csv(path: Path) -> None:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["model", "file", "patient_id", *SCORE_COLUMNS])
            for name, sc in scores.items():
                for i in range(len(data)):
                    w.writerow([name, data.files[i], data.groups[i],
                                *(int(sc[c][i]) if c == "empty" else f"{sc[c][i]:.6f}" for c in SCORE_COLUMNS)])

    atomic_write(out_dir / "scores.csv", write_csv)
    atomic_write(out_dir / "summary.json", lambda p: Path(p).write_text(json.dumps(summary, indent=2) + "\n"))
    if overlays:
        write_rgb_png(out_dir / "overlays.png", overlay_figure(data, maps, kept, list(overlays)))
    return summary
