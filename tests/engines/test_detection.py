"""Tests for the detection iteration functions in MONAI's SupervisedTrainer / SupervisedEvaluator."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader
from monai.data.utils import no_collation
from monai.engines import SupervisedEvaluator, SupervisedTrainer

from monai_moco.engines import detection_eval_iteration, detection_prepare_batch, detection_train_iteration
from monai_moco.handlers import DetectionMAP
from monai_moco.networks.nets import build_backbone, build_retinanet_detector


def _items(n: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        image = torch.rand(1, 64, 64, generator=gen) * 0.2
        image[:, 8:56, 6:30] += 0.7  # two bright "lungs" where the boxes are
        image[:, 8:56, 34:58] += 0.7
        boxes = torch.tensor([[8.0, 6.0, 56.0, 30.0], [8.0, 34.0, 56.0, 58.0]])
        items.append({"image": image, "boxes": boxes, "labels": torch.tensor([0, 1]), "patient_id": f"p{i // 2}",
                      "image_id": i})
    return items


def _detector():
    torch.manual_seed(0)
    return build_retinanet_detector(build_backbone("resnet18", in_channels=1), 2, [[12.0, 6.0], [16.0, 8.0]],
                                    fpn_channels=16)


def test_train_and_validate_in_monai_engines():
    loader = DataLoader(_items(4), batch_size=2, collate_fn=no_collation)
    detector = _detector()
    evaluator = SupervisedEvaluator(
        "cpu", loader, detector, prepare_batch=detection_prepare_batch, iteration_update=detection_eval_iteration,
        key_val_metric={"val_map": DetectionMAP(["R", "L"], metric="map_50")}, decollate=False,
    )
    trainer = SupervisedTrainer(
        "cpu", 3, loader, detector, torch.optim.AdamW(detector.parameters(), 1e-3), loss_function=None,
        prepare_batch=detection_prepare_batch, iteration_update=detection_train_iteration, decollate=False,
    )
    before = [p.detach().clone() for p in detector.parameters()]
    trainer.run()
    out = trainer.state.output
    assert set(out) == {"loss", "cls_loss", "box_loss"} and torch.isfinite(out["loss"])
    assert out["loss"] == pytest.approx(float(out["cls_loss"] + out["box_loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, detector.parameters(), strict=True))
    evaluator.run()
    assert 0.0 <= evaluator.state.metrics["val_map"] <= 1.0
    assert evaluator.state.output["patient_id"] == ["p1", "p1"] and evaluator.state.output["image_id"] == [2, 3]
    assert len(evaluator.state.output["pred"]) == 2 and "labels_scores" in evaluator.state.output["pred"][0]


def test_prepare_batch_errors():
    with pytest.raises(TypeError, match="no_collation"):
        detection_prepare_batch({"image": torch.zeros(1, 8, 8)})
    with pytest.raises(KeyError, match=r"item 1 lacks \['boxes'\]"):
        detection_prepare_batch([_items(1)[0], {"image": torch.zeros(1, 8, 8), "labels": torch.tensor([0])}])
    images, targets = detection_prepare_batch(_items(2), "cpu")
    assert len(images) == 2 and targets[0]["labels"].dtype == torch.long and targets[0]["boxes"].shape == (2, 4)
