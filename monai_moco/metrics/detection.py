"""COCO mean average precision of detected boxes, with a patient-bootstrap confidence interval.

The score is MONAI's COCO metric (:class:`monai.apps.detection.metrics.coco.COCOMetric`, the protocol of Lin et al.,
"Microsoft COCO: Common Objects in Context", ECCV 2014): average precision per class at IoU 0.5 (``map_50``, the
PASCAL VOC criterion) and averaged over IoU 0.50:0.05:0.95 (``map_50_95``, COCO's primary metric), averaged over
classes, at most ``max_detections`` detections per image. Detections are matched to ground truth once per image
(:func:`monai.apps.detection.metrics.matching.matching_batch`); a bootstrap resample only re-aggregates the per-image
matches, so 1000 patient resamples cost about as much as 1000 calls of the cheap accumulation step. The interval is
the percentile cluster bootstrap of :func:`monai_moco.metrics.bootstrap_ci` (Field & Welsh, JRSS-B 2007): whole
patients are resampled, because a patient's radiographs are not independent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.apps.detection.metrics.coco import COCOMetric
from monai.apps.detection.metrics.matching import matching_batch
from monai.data.box_utils import box_iou

from .bootstrap import bootstrap_ci

__all__ = ["DETECTION_METRICS", "coco_map", "coco_map_with_ci", "match_detections"]

#: our metric names -> the COCOMetric keys they read
DETECTION_METRICS: dict[str, str] = {
    "map_50": "AP_IoU_0.50_MaxDet_{max_det}",
    "map_50_95": "mAP_IoU_0.50_0.95_0.05_MaxDet_{max_det}",
}


def _np(x: Any, dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _coco(class_names: Sequence[str], max_detections: int) -> COCOMetric:
    return COCOMetric(
        classes=list(class_names),
        iou_list=(0.5,),
        iou_range=(0.5, 0.95, 0.05),
        max_detection=(int(max_detections),),
        per_class=True,
        verbose=False,
    )


def match_detections(
    preds: Sequence[dict],
    targets: Sequence[dict],
    class_names: Sequence[str],
    max_detections: int = 100,
    score_key: str = "labels_scores",
) -> list[dict]:
    """Match each image's detections to its ground-truth boxes at the COCO IoU thresholds (one entry per image).

    Args:
        preds: per image ``{"boxes": D x 4, "labels": D, score_key: D}`` (tensors or arrays), as
            ``RetinaNetDetector`` returns in eval mode.
        targets: per image ``{"boxes": G x 4, "labels": G}`` in the same box coordinates as ``preds``.
        class_names: one name per label index.
        max_detections: detections per image evaluated (highest scores first).
        score_key: key of the detection scores in ``preds``.

    Returns:
        MONAI's per-image match records (input of ``COCOMetric``), in image order.

    Raises:
        ValueError: when ``preds`` and ``targets`` differ in length, or an entry lacks a key (its index is named).

    Example::

        matches = match_detections(detector(images), targets, ["Right Lung", "Left Lung"])
    """
    if len(preds) != len(targets):
        raise ValueError(f"match_detections: {len(preds)} predictions but {len(targets)} targets; one per image.")
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        missing = [f"pred[{k!r}]" for k in ("boxes", "labels", score_key) if k not in p]
        missing += [f"target[{k!r}]" for k in ("boxes", "labels") if k not in t]
        if missing:
            raise ValueError(f"match_detections: image {i} lacks {missing}.")
    metric = _coco(class_names, max_detections)
    return matching_batch(
        iou_fn=box_iou,
        iou_thresholds=metric.iou_thresholds,
        pred_boxes=[_np(p["boxes"], np.float32).reshape(-1, 4) for p in preds],
        pred_classes=[_np(p["labels"], np.int64).reshape(-1) for p in preds],
        pred_scores=[_np(p[score_key], np.float32).reshape(-1) for p in preds],
        gt_boxes=[_np(t["boxes"], np.float32).reshape(-1, 4) for t in targets],
        gt_classes=[_np(t["labels"], np.int64).reshape(-1) for t in targets],
        max_detections=int(max_detections),
    )


def _summarise(matches: Sequence[dict], class_names: Sequence[str], max_detections: int) -> dict[str, float]:
    coco_logger = logging.getLogger("monai.apps.detection.metrics.coco")
    level = coco_logger.level
    coco_logger.setLevel(logging.ERROR)  # "no results for class" warnings on bootstrap resamples
    try:
        raw = _coco(class_names, max_detections)(list(matches))[0]
    finally:
        coco_logger.setLevel(level)
    out = {name: float(raw[key.format(max_det=max_detections)]) for name, key in DETECTION_METRICS.items()}
    for name, key in DETECTION_METRICS.items():
        for cls in class_names:
            out[f"{name}/{cls}"] = float(raw[f"{cls}_{key.format(max_det=max_detections)}"])
    return out


def coco_map(
    preds: Sequence[dict], targets: Sequence[dict], class_names: Sequence[str], max_detections: int = 100
) -> dict[str, float]:
    """COCO mAP at IoU 0.5 and 0.5:0.95 (class means and per class) of a set of images.

    Args:
        preds: per image detections (see :func:`match_detections`).
        targets: per image ground truth.
        class_names: one name per label index.
        max_detections: detections per image evaluated.

    Returns:
        ``{"map_50": float, "map_50_95": float, "map_50/<class>": float, "map_50_95/<class>": float, ...}``.

    Raises:
        ValueError: as :func:`match_detections`.

    Example::

        scores = coco_map(preds, targets, ["Right Lung", "Left Lung"])  # {"map_50": 0.93, ...}
    """
    return _summarise(match_detections(preds, targets, class_names, max_detections), class_names, max_detections)


def coco_map_with_ci(
    preds: Sequence[dict],
    targets: Sequence[dict],
    class_names: Sequence[str],
    groups: Sequence[Any] | None = None,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    max_detections: int = 100,
) -> dict[str, dict[str, Any]]:
    """COCO mAP@0.5 and mAP@0.5:0.95 with percentile bootstrap intervals, resampling patients when ``groups`` given.

    Both metrics use the same resamples (same ``seed``). Per-class values are reported without intervals.

    Args:
        preds: per image detections (see :func:`match_detections`).
        targets: per image ground truth.
        class_names: one name per label index.
        groups: optional per-image patient ids (cluster bootstrap).
        n_bootstrap: number of resamples.
        ci: coverage of the interval.
        seed: resampling seed.
        max_detections: detections per image evaluated.

    Returns:
        ``{"map_50": {"value", "ci_low", "ci_high", "n", "n_groups", "n_bootstrap", "ci"}, "map_50_95": {...},
        "per_class": {"map_50/<class>": float, ...}}``.

    Raises:
        ValueError: as :func:`match_detections`, for no images, or ``groups`` of the wrong length.

    Example::

        res = coco_map_with_ci(preds, targets, ["Right Lung", "Left Lung"], groups=patient_ids)
        print(res["map_50"]["value"], res["map_50"]["ci_low"], res["map_50"]["ci_high"])
    """
    matches = match_detections(preds, targets, class_names, max_detections)
    if not matches:
        raise ValueError("coco_map_with_ci: got no images.")
    point = _summarise(matches, class_names, max_detections)
    index = np.arange(len(matches))
    result: dict[str, dict[str, Any]] = {}
    for name in DETECTION_METRICS:

        def metric_fn(idx: np.ndarray, _unused: np.ndarray, name: str = name) -> float:
            return _summarise([matches[i] for i in idx], class_names, max_detections)[name]

        result[name] = bootstrap_ci(
            index, index, metric_fn, n_bootstrap=n_bootstrap, ci=ci, groups=groups, seed=seed,
            require_both_classes=False,
        )
        result[name]["value"] = point[name]
    result["per_class"] = {k: v for k, v in point.items() if "/" in k}
    return result
