"""End-to-end runs of ``bundles/cxr_detector`` through ``python -m monai.bundle run`` on the real lung boxes.

A few optimizer steps of a small RetinaNet (ResNet-18, 64 px, 16 FPN channels) from a MoCo-CXR-format checkpoint:
what a user relies on is checked, not the score: the best-validation checkpoint, ``val_metrics.json``, the test report
with mAP@0.5 and mAP@0.5:0.95 and their patient-bootstrap intervals, detections in the COCO file's pixel coordinates,
TensorBoard losses, ``evaluate.json`` reproducing the report, and the split (grouped by patient, fractions nested).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from monai_moco.networks.nets import build_backbone
from monai_moco.networks.weights import to_moco_state_dict

TRAIN = "bundles/cxr_detector/train.json"
CPU = "bundles/cxr_detector/cpu.json"
EVALUATE = "bundles/cxr_detector/evaluate.json"


def _tiny(lung_boxes_dir: Path, out: Path, **more):
    base = {
        "annotation_file": lung_boxes_dir / "boxes_coco.json",
        "output_dir": out,
        "image_size": 64,
        "fpn_channels": 16,
        "batch_size": 4,
        "epochs": 1,
        "min_steps": 3,
        "val_checks": 1,
        "label_fraction": 0.1,
        "n_bootstrap": 50,
        "progress": False,
    }
    base.update(more)
    return base


def test_train_and_evaluate_from_a_moco_cxr_checkpoint(bundles, lung_boxes_dir, tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "moco_cxr.pth.tar"
    torch.save({"state_dict": to_moco_state_dict(build_backbone("resnet18", in_channels=1).state_dict())}, ckpt)
    out = tmp_path / "det"
    bundles.run(bundles.command([TRAIN, CPU], _tiny(lung_boxes_dir, out, pretrained=ckpt)))
    state = bundles.load_checkpoint(out / "models" / "model.pt")
    state = state.get("model", state)  # ignite saves a lone object's state_dict unwrapped
    assert any(k.startswith("network.feature_extractor.body.layer3.") for k in state)
    assert state["network.classification_head.cls_logits.weight"].shape[0] == 3 * 2  # 3 anchor shapes x 2 classes
    val = json.loads((out / "val_metrics.json").read_text())
    assert 0.0 <= val["best_val_map"] <= 1.0 and val["n_val"] > 0 and val["label_fraction"] == 0.1
    report = json.loads((out / "test_metrics.json").read_text())
    for key in ("map_50", "map_50_95"):
        r = report[key]
        assert 0.0 <= r["ci_low"] <= r["value"] <= r["ci_high"] <= 1.0 and r["n_bootstrap"] == 50
        assert r["n_groups"] == len(report["patient_ids"]["test"]) < r["n"]  # patients resampled, not images
    ids = report["patient_ids"]
    assert not set(ids["train"]) & set(ids["val"]) and not set(ids["train"]) & set(ids["test"])
    assert not set(ids["val"]) & set(ids["test"])
    assert report["pretrained"] == str(ckpt) and report["n_test"] == report["n_images"]
    preds = json.loads((out / "test_predictions.json").read_text())
    assert len(preds) == report["n_images"] and all(len(p["boxes_xyxy"]) == len(p["scores"]) for p in preds)
    assert {"train_loss", "train_cls_loss", "train_box_loss", "val_map"} <= set(bundles.tensorboard_scalars(out))
    again = out / "again.json"
    bundles.run(bundles.command([TRAIN, EVALUATE, CPU], _tiny(lung_boxes_dir, out, pretrained=ckpt,
                                                               metrics_file=again)))
    assert json.loads(again.read_text())["map_50_95"] == report["map_50_95"]


@pytest.mark.parametrize("draw", [0, 2])
def test_split_is_grouped_and_fractions_nested(bundles, lung_boxes_dir, draw):
    """The bundle's own datalists: test/val fixed across fractions, training subsets nested, patients never shared."""
    lists = {}
    for fraction in (1.0, 0.25, 0.1):
        parser = ConfigParser()
        parser.read_config(str(bundles.root / TRAIN))
        parser.update({"annotation_file": str(lung_boxes_dir / "boxes_coco.json"), "label_fraction": fraction,
                       "draw": draw})
        lists[fraction] = parser.get_parsed_content("datalists")
    names = {f: {d["image"] for d in lists[f]["train"]} for f in lists}
    assert names[0.1] < names[0.25] < names[1.0]
    assert [d["image"] for d in lists[0.1]["test"]] == [d["image"] for d in lists[1.0]["test"]]
    full = lists[1.0]
    assert len(full["train"]) + len(full["val"]) + len(full["test"]) == 155
    pats = {k: {d["patient_id"] for d in full[k]} for k in ("train", "val", "test")}
    assert not pats["train"] & pats["val"] and not pats["train"] & pats["test"] and not pats["val"] & pats["test"]
