"""Tests for COCO mAP and its patient bootstrap (monai_moco.metrics.detection)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_moco.metrics import coco_map, coco_map_with_ci, match_detections

CLASSES = ["Right Lung", "Left Lung"]
GT = torch.tensor([[10.0, 10.0, 90.0, 50.0], [10.0, 60.0, 90.0, 100.0]])


def _target():
    return {"boxes": GT.clone(), "labels": torch.tensor([0, 1])}


def _pred(shift: float = 0.0, swap: bool = False, scores=(0.9, 0.8)):
    labels = torch.tensor([1, 0]) if swap else torch.tensor([0, 1])
    return {"boxes": GT + shift, "labels": labels, "labels_scores": torch.tensor(scores)}


@pytest.mark.parametrize(
    "pred, map_50, map_50_95",
    [
        (_pred(), 1.0, 1.0),  # exact boxes
        (_pred(swap=True), 0.0, 0.0),  # right boxes, wrong classes
        (_pred(shift=6.0), 1.0, None),  # IoU about 0.74 / 0.72: found at 0.5, not at 0.75+
        (_pred(shift=60.0), 0.0, 0.0),  # nowhere near
    ],
)
def test_map_values(pred, map_50, map_50_95):
    out = coco_map([pred] * 3, [_target()] * 3, CLASSES)
    assert out["map_50"] == pytest.approx(map_50, abs=1e-6)
    if map_50_95 is not None:
        assert out["map_50_95"] == pytest.approx(map_50_95, abs=1e-6)
    else:
        assert 0.2 < out["map_50_95"] < 0.8
    assert set(out) >= {"map_50/Right Lung", "map_50_95/Left Lung"}


def test_bootstrap_resamples_patients():
    """Half the patients detected perfectly and half missed: the CI spans the mix, grouped by patient."""
    preds = [_pred() if i % 2 == 0 else _pred(shift=60.0, scores=(0.5, 0.4)) for i in range(20)]
    targets = [_target() for _ in range(20)]
    patients = [f"p{i // 2}" for i in range(20)]  # each patient has one good and one bad image
    grouped = coco_map_with_ci(preds, targets, CLASSES, groups=patients, n_bootstrap=200, seed=0)
    by_image = coco_map_with_ci(preds, targets, CLASSES, n_bootstrap=200, seed=0)
    assert grouped["map_50"]["n_groups"] == 10 and by_image["map_50"]["n_groups"] == 20
    assert grouped["map_50"]["ci_low"] <= grouped["map_50"]["value"] <= grouped["map_50"]["ci_high"]
    # every patient holds one hit and one miss, so patient resamples barely move the score; image resamples do
    width = lambda r: r["map_50"]["ci_high"] - r["map_50"]["ci_low"]  # noqa: E731
    assert width(grouped) < width(by_image)
    again = coco_map_with_ci(preds, targets, CLASSES, groups=patients, n_bootstrap=200, seed=0)
    assert again["map_50_95"] == grouped["map_50_95"]
    assert set(grouped["per_class"]) == {f"{m}/{c}" for m in ("map_50", "map_50_95") for c in CLASSES}


def test_errors():
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        match_detections([_pred(), _pred()], [_target()], CLASSES)
    with pytest.raises(ValueError, match=r"image 0 lacks \[\"pred\['labels_scores'\]\"\]"):
        match_detections([{"boxes": GT, "labels": torch.tensor([0, 1])}], [_target()], CLASSES)
    with pytest.raises(ValueError, match="no images"):
        coco_map_with_ci([], [], CLASSES)


def test_empty_predictions_score_zero():
    empty = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0), "labels_scores": np.zeros(0)}
    assert coco_map([empty], [_target()], CLASSES)["map_50"] == 0.0
