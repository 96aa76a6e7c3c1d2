"""Tests for evaluate_detector: test mAP with patient-bootstrap CIs and detections in original pixel coordinates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.data.utils import no_collation
from monai.transforms import Compose
from torch import nn

from monai_moco.data import coco_box_datalist
from monai_moco.evaluation import evaluate_detector
from monai_moco.transforms import LetterboxBoxd, LoadXRayd


class _Oracle(nn.Module):
    """Returns fixed detections per call (the ground truth of the images it is given, in order)."""

    def __init__(self, outputs: list[dict]) -> None:
        super().__init__()
        self.outputs, self.calls = outputs, 0
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, images):
        out = self.outputs[self.calls : self.calls + len(images)]
        self.calls += len(images)
        return out


@pytest.fixture(scope="module")
def lung_test(lung_boxes_dir: Path) -> list[dict]:
    items = coco_box_datalist(lung_boxes_dir / "boxes_coco.json")[:6]
    load = Compose([LoadXRayd("image", spatial_size=64), LetterboxBoxd("boxes", "image")])
    return [load(dict(d)) for d in items]


def test_perfect_detector_report_and_predictions(lung_test, lung_boxes_dir: Path, tmp_path: Path):
    outputs = [{"boxes": d["boxes"], "labels": torch.as_tensor(d["labels"]),
                "labels_scores": torch.tensor([0.9, 0.8])} for d in lung_test]
    loader = DataLoader(Dataset(lung_test), batch_size=4, collate_fn=no_collation)
    report = evaluate_detector(
        _Oracle(outputs), loader, ["Right Lung", "Left Lung"], tmp_path / "m.json", tmp_path / "p.json",
        n_bootstrap=50, extra={"backbone": "resnet18"},
    )
    assert report["map_50"]["value"] == pytest.approx(1.0) and report["map_50_95"]["ci_low"] == pytest.approx(1.0)
    assert report["n_images"] == 6 and report["n_patients"] == len({d["patient_id"] for d in lung_test})
    assert report["map_50"]["n_groups"] == report["n_patients"] and report["backbone"] == "resnet18"
    assert json.loads((tmp_path / "m.json").read_text())["map_50_95"]["value"] == pytest.approx(1.0)
    preds = json.loads((tmp_path / "p.json").read_text())
    originals = coco_box_datalist(lung_boxes_dir / "boxes_coco.json")[:6]
    for rec, item in zip(preds, originals, strict=True):  # back in the COCO file's pixel (x_min, y_min, x_max, y_max)
        assert rec["image_id"] == item["image_id"] and rec["labels"] == ["Right Lung", "Left Lung"]
        torch.testing.assert_close(torch.tensor(rec["boxes_xyxy"]), torch.from_numpy(item["boxes"]), atol=0.2, rtol=0)


def test_errors(lung_test, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        evaluate_detector(_Oracle([]), [], ["R", "L"], ckpt_path=tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="no images"):
        evaluate_detector(_Oracle([]), [], ["R", "L"])
    item = dict(lung_test[0])
    item.pop("patient_id")
    out = [{"boxes": item["boxes"], "labels": torch.tensor([0, 1]), "labels_scores": torch.tensor([0.9, 0.8])}]
    with pytest.raises(ValueError, match="has no 'patient_id'"):
        evaluate_detector(_Oracle(out), [[item]], ["R", "L"])
