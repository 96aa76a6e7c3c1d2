"""End-to-end runs of ``bundles/cxr_classifier`` through ``python -m monai.bundle run``, on real Kermany radiographs.

Each case is one tiny epoch (ResNet-18, 32 px, 32 train + 32 test images) with the README's config-file lists; the
checks are what a user relies on: the best-validation-AUC checkpoint, the test report with bootstrap intervals over
patients, ``B x C`` inference, a frozen linear probe that leaves the pretrained backbone exactly as loaded, and
backbones loaded through ``pretrained`` from our pretraining checkpoint format and a facebookresearch/moco state dict.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from monai_moco.networks.blocks import MoCoV2ProjectionHead
from monai_moco.networks.nets import ContrastiveEncoder, build_backbone
from monai_moco.networks.weights import to_moco_state_dict

TRAIN = "bundles/cxr_classifier/train.json"
EVALUATE = "bundles/cxr_classifier/evaluate.json"
INFERENCE = "bundles/cxr_classifier/inference.json"


def _tiny(kermany_dir, out, **more):
    base = {
        "dataset_dir": kermany_dir,
        "output_dir": out,
        "backbone": "resnet18",
        "image_size": 32,
        "max_images": 32,
        "batch_size": 8,
        "epochs": 1,
        "min_steps": 0,
        "device": "cpu",
        "num_workers": 0,
        "progress": False,
    }
    base.update(more)
    return base


def _backbone_state(path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}


def test_train_evaluate_inference(bundles, kermany_dir, tmp_path):
    """train.json keeps the best checkpoint by validation AUC; evaluate.json writes test AUC/accuracy/sensitivity/
    specificity with patient-bootstrap CIs; inference.json writes one probability row per image."""
    out = tmp_path / "cls"
    bundles.run(bundles.command([TRAIN], _tiny(kermany_dir, out)))
    ckpt = out / "models" / "model.pt"
    state = bundles.load_checkpoint(ckpt)
    state = state.get("model", state)
    assert state["head.weight"].shape == (2, 512), state["head.weight"].shape
    assert any(k.startswith("backbone.layer4.") for k in state)
    assert "val_auc" in bundles.tensorboard_scalars(out / "tensorboard")

    bundles.run(bundles.command([TRAIN, EVALUATE], _tiny(kermany_dir, out)))
    report = json.loads((out / "test_metrics.json").read_text())
    assert report["task"] == "binary" and report["n"] == 32 and report["resampled"] == "patients"
    assert 0 < report["n_groups"] <= 32
    for name in ("auc", "accuracy", "sensitivity", "specificity"):
        m = report[name]
        assert 0.0 <= m["ci_low"] <= m["value"] <= m["ci_high"] <= 1.0, (name, m)
        assert m["n_bootstrap"] == 1000
    with open(out / "test_predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 32 and all(r["file"].endswith(".jpeg") and r["group"] for r in rows)
    assert all(math.isclose(float(r["p_normal"]) + float(r["p_pneumonia"]), 1.0, abs_tol=1e-5) for r in rows)

    bundles.run(bundles.command(
        [INFERENCE],
        {"dataset_dir": kermany_dir / "test", "output_dir": out, "backbone": "resnet18", "image_size": 32,
         "max_images": 12, "device": "cpu", "num_workers": 0},
    ))  # fmt: skip
    with open(out / "predictions.csv") as f:
        preds = list(csv.reader(f))
    assert len(preds) == 12 and all(len(r) == 3 for r in preds), preds[:2]
    assert all(math.isclose(float(r[1]) + float(r[2]), 1.0, abs_tol=1e-5) for r in preds)


def test_linear_probe_from_moco_format_keeps_backbone(bundles, kermany_dir, tmp_path):
    """A facebookresearch/moco-style checkpoint (``module.encoder_q.*`` + ``fc`` head) loads through ``pretrained``;
    with ``frozen`` the saved backbone, BatchNorm running statistics included, equals the loaded one exactly."""
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", in_channels=1)
    with torch.no_grad():  # non-default BN statistics, so "unchanged" cannot pass by accident
        for m in backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.9, 1.1)
    moco_state = to_moco_state_dict(backbone.state_dict())
    moco_state["module.encoder_q.fc.0.weight"] = torch.zeros(512, 512)  # the MLP head, dropped by the loader
    path = tmp_path / "moco_v2_format.pth.tar"
    torch.save({"state_dict": moco_state, "epoch": 200, "arch": "resnet18"}, path)

    out = tmp_path / "probe"
    bundles.run(bundles.command([TRAIN], _tiny(kermany_dir, out, pretrained=path, frozen=True)))
    saved = _backbone_state(out / "models" / "model.pt")
    expected = backbone.state_dict()
    assert set(saved) == set(expected)
    changed = [k for k in expected if not torch.equal(saved[k], expected[k])]
    assert not changed, f"frozen probe changed backbone tensors: {changed[:5]}"


def test_frozen_fits_a_logistic_probe_and_reports_test(bundles, kermany_dir, tmp_path):
    """``--frozen True`` embeds the images once, chooses C on validation AUC, folds the probe into the head and writes
    the test report; evaluate.json on the saved model reproduces the same test AUC."""
    out = tmp_path / "probe"
    bundles.run(bundles.command([TRAIN], _tiny(kermany_dir, out, max_images=64, frozen=True)))
    report = json.loads((out / "test_metrics.json").read_text())
    probe = report["probe"]
    assert probe["c"] in [float(c) for c in probe["grid"]] and len(probe["grid"]) == 11
    assert report["n"] == 64 and report["frozen"] is True and report["n_train"] > 0
    assert 0.0 <= report["auc"]["ci_low"] <= report["auc"]["value"] <= report["auc"]["ci_high"] <= 1.0
    assert "probe/val_auc" in bundles.tensorboard_scalars(out / "tensorboard")
    again = tmp_path / "again"
    again.mkdir()
    bundles.run(bundles.command(
        [TRAIN, EVALUATE],
        _tiny(kermany_dir, out, max_images=64, frozen=True, metrics_file=again / "m.json",
              predictions_file=again / "p.csv"),
    ))  # fmt: skip
    assert json.loads((again / "m.json").read_text())["auc"]["value"] == pytest.approx(report["auc"]["value"], abs=1e-6)


def test_finetune_makes_at_least_min_steps(bundles, kermany_dir, tmp_path):
    """A subset smaller than the batch trains with a batch of the subset and enough epochs for ``min_steps``."""
    out = tmp_path / "small"
    bundles.run(bundles.command([TRAIN], _tiny(kermany_dir, out, label_fraction=0.1, min_steps=6, val_checks=2)))
    loss = bundles.tensorboard_scalars(out / "tensorboard")["train_loss"]
    assert len(loss) == 6, len(loss)  # 2-3 labelled images: one step per epoch, 6 epochs
    assert (out / "models" / "model.pt").is_file()


def test_finetune_from_our_pretraining_checkpoint(bundles, kermany_dir, tmp_path):
    """Our pretraining checkpoint layout (``network`` = ContrastiveEncoder, plus key encoder, queue, optimizer) loads
    through ``pretrained``; fine-tuning with lr 0 keeps every weight as loaded while BatchNorm statistics move (the
    backbone trains in train mode, unlike the frozen probe)."""
    torch.manual_seed(1)
    encoder = ContrastiveEncoder(build_backbone("resnet18", in_channels=1), MoCoV2ProjectionHead(512, 512, 128))
    path = tmp_path / "last.pt"
    torch.save(
        {"network": encoder.state_dict(), "momentum_network": encoder.state_dict(),
         "queue": {"keys": torch.randn(64, 128), "ptr": torch.tensor(0)}, "trainer": {"epoch": 1, "iteration": 2}},
        path,
    )  # fmt: skip
    out = tmp_path / "finetune"
    bundles.run(bundles.command([TRAIN], _tiny(kermany_dir, out, pretrained=path, frozen=False, lr=0.0)))
    saved = _backbone_state(out / "models" / "model.pt")
    expected = encoder.backbone.state_dict()
    weights = [k for k, v in expected.items() if v.is_floating_point() and "running_" not in k]
    assert all(torch.equal(saved[k], expected[k]) for k in weights), "lr=0 fine-tuning changed weights"
    assert not torch.equal(saved["bn1.running_mean"], expected["bn1.running_mean"])


@pytest.mark.parametrize("task", ["multilabel"])
def test_multilabel_train_and_evaluate(bundles, kermany_dir, tmp_path, task):
    """A CSV with two finding columns (pneumonia, bacterial) trains with BCE and reports per-class AUC with CIs."""
    rows = list(csv.DictReader(open(kermany_dir / "labels.csv")))
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "split", "pneumonia", "bacteria", "patient_id"])
        for r in rows:
            if r["split"] != "val":
                path = str(kermany_dir / r["path"])
                writer.writerow([path, r["split"], r["label"], int(r["subtype"] == "bacteria"), r["patient_id"]])
    out = tmp_path / "ml"
    more = {"task": task, "label_columns": "['pneumonia','bacteria']", "class_names": "['pneumonia','bacteria']"}
    bundles.run(bundles.command([TRAIN], _tiny(data, out, max_images=48, **more)))
    bundles.run(bundles.command([TRAIN, EVALUATE], _tiny(data, out, max_images=48, **more)))
    report = json.loads((out / "test_metrics.json").read_text())
    assert report["task"] == "multilabel" and set(report["per_class"]) == {"pneumonia", "bacteria"}
    for m in [report["auc"], *report["per_class"].values()]:
        assert 0.0 <= m["ci_low"] <= m["value"] <= m["ci_high"] <= 1.0, m
