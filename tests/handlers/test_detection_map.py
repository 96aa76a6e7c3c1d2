"""Tests for the DetectionMAP Ignite metric (COCO mAP over an evaluator's run)."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from monai_moco.handlers import DetectionMAP

GT = {"boxes": torch.tensor([[10.0, 10.0, 90.0, 50.0], [10.0, 60.0, 90.0, 100.0]]), "labels": torch.tensor([0, 1])}
HIT = {"boxes": GT["boxes"].clone(), "labels": torch.tensor([0, 1]), "labels_scores": torch.tensor([0.9, 0.9])}
MISS = {"boxes": GT["boxes"] + 60.0, "labels": torch.tensor([0, 1]), "labels_scores": torch.tensor([0.5, 0.5])}


@pytest.mark.parametrize("metric, batches, expected", [
    ("map_50", [[HIT, HIT]], 1.0),
    ("map_50_95", [[MISS], [MISS]], 0.0),
    ("map_50", [[HIT], [MISS]], 0.505),  # precision 1 up to recall 0.5, then nothing: 51 of 101 recall points
])
def test_accumulates_over_batches_and_resets(metric, batches, expected):
    engine = Engine(lambda e, b: {"pred": b, "label": [GT] * len(b)})
    DetectionMAP(["R", "L"], metric=metric).attach(engine, "map")
    engine.run(batches, max_epochs=1)
    assert engine.state.metrics["map"] == pytest.approx(expected, abs=0.01)
    engine.run([[HIT]], max_epochs=2)  # a new run starts from nothing
    assert engine.state.metrics["map"] == pytest.approx(1.0)


def test_errors():
    with pytest.raises(ValueError, match="map_50_95"):
        DetectionMAP(["R"], metric="auc")
    with pytest.raises(RuntimeError, match="no images"):
        DetectionMAP(["R"]).compute()
