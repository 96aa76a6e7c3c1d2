"""Test evaluation of a trained box detector: COCO mAP with patient-bootstrap intervals and per-image detections.

What ``bundles/cxr_detector`` runs after training: the checkpoint with the best validation mAP is loaded, every test
image is detected once, and :func:`monai_moco.metrics.coco_map_with_ci` scores mAP@0.5 and mAP@0.5:0.95 (COCO, Lin
et al., ECCV 2014) with a 95 % interval from resampling patients (Field & Welsh, JRSS-B 2007). Detections are also
written back in the original images' pixel coordinates ``(x_min, y_min, x_max, y_max)``
(:func:`monai_moco.transforms.unletterbox_boxes`), the coordinates of the COCO file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from monai_moco.engines.detection import detection_prepare_batch
from monai_moco.metrics.detection import coco_map_with_ci
from monai_moco.transforms.spatial.array import unletterbox_boxes
from monai_moco.utils.io import write_json_atomic

__all__ = ["evaluate_detector"]

logger = logging.getLogger(__name__)


def evaluate_detector(
    detector: nn.Module,
    loader: Iterable[Sequence[dict]],
    class_names: Sequence[str],
    metrics_file: str | os.PathLike | None = None,
    predictions_file: str | os.PathLike | None = None,
    ckpt_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    n_bootstrap: int = 1000,
    seed: int = 0,
    max_detections: int = 100,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Detect every image of ``loader`` once and report COCO mAP@0.5 and mAP@0.5:0.95 with patient-bootstrap CIs.

    Args:
        detector: a ``monai.apps.detection`` ``RetinaNetDetector`` (see
            :func:`monai_moco.networks.nets.build_retinanet_detector`).
        loader: batches as lists of dicts (``collate_fn=monai.data.utils.no_collation``) with ``image``
            (a letterboxed ``MetaTensor``), ``boxes`` (on the letterboxed frame), ``labels`` and ``patient_id``.
        class_names: one name per label index.
        metrics_file: where to write the metrics JSON (None: not written).
        predictions_file: where to write per-image detections in original pixel coordinates (None: not written).
        ckpt_path: checkpoint ``{"model": state_dict}`` to load into ``detector`` first (None: use it as it is).
        device: device of the forward passes.
        n_bootstrap: bootstrap resamples.
        seed: bootstrap seed.
        max_detections: detections per image evaluated.
        extra: more fields for the metrics JSON (recipe, backbone, split sizes...).

    Returns:
        ``{"map_50": {"value", "ci_low", "ci_high", ...}, "map_50_95": {...}, "per_class": {...}, "n_images",
        "n_patients", **extra}``.

    Raises:
        FileNotFoundError: when ``ckpt_path`` is given and does not exist.
        ValueError: when the loader yields no images or an item has no ``patient_id``.

    Example::

        report = evaluate_detector(detector, test_loader, ["Right Lung", "Left Lung"], "runs/det/test_metrics.json",
                                   ckpt_path="runs/det/models/model.pt")
    """
    if ckpt_path is not None:
        if not os.path.isfile(ckpt_path):
            raise FileNotFoundError(f"evaluate_detector: checkpoint {str(ckpt_path)!r} does not exist (train first).")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        detector.load_state_dict(state["model"] if "model" in state else state)
    detector.to(device).eval()
    preds: list[dict] = []
    targets: list[dict] = []
    records: list[dict] = []
    with torch.no_grad():
        for batch in loader:
            images, batch_targets = detection_prepare_batch(batch, device)
            for item, pred, target in zip(batch, detector(images), batch_targets, strict=True):
                if item.get("patient_id") is None:
                    raise ValueError(f"evaluate_detector: test item {item.get('image', '?')!r} has no 'patient_id'.")
                pred = {k: v.detach().cpu() for k, v in pred.items()}
                preds.append(pred)
                targets.append({k: v.cpu() for k, v in target.items()})
                meta = getattr(item["image"], "meta", {})
                boxes = unletterbox_boxes(pred["boxes"], meta) if "letterbox_scale" in meta else pred["boxes"]
                records.append(
                    {
                        "image": str(meta.get("filename_or_obj", item.get("image_path", ""))),
                        "image_id": item.get("image_id"),
                        "patient_id": str(item["patient_id"]),
                        "boxes_xyxy": [[round(float(v), 1) for v in b] for b in boxes.tolist()],
                        "labels": [class_names[int(k)] for k in pred["labels"].tolist()],
                        "scores": [round(float(s), 4) for s in pred["labels_scores"].tolist()],
                    }
                )
    if not preds:
        raise ValueError("evaluate_detector: the test loader yielded no images.")
    groups = [r["patient_id"] for r in records]
    report = coco_map_with_ci(
        preds, targets, class_names, groups=groups, n_bootstrap=n_bootstrap, seed=seed, max_detections=max_detections
    )
    report.update({"n_images": len(preds), "n_patients": len(set(groups)), "class_names": list(class_names)})
    report.update(extra or {})
    if metrics_file is not None:
        write_json_atomic(report, metrics_file)
    if predictions_file is not None:
        write_json_atomic(records, predictions_file)
    logger.info(
        "test mAP@0.5 %.3f [%.3f, %.3f], mAP@0.5:0.95 %.3f [%.3f, %.3f] on %d images of %d patients",
        report["map_50"]["value"], report["map_50"]["ci_low"], report["map_50"]["ci_high"],
        report["map_50_95"]["value"], report["map_50_95"]["ci_low"], report["map_50_95"]["ci_high"],
        report["n_images"], report["n_patients"],
    )
    return report
