"""ClassificationReport: the predictions CSV (exact bytes, ``\\r\\n`` line ends as the csv module writes them) and the
metrics JSON are written together through utils.io, with no temporary file left behind and nothing half-written when
the write fails."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from monai_moco.handlers import ClassificationReport

# softmax of each row: (0.5, 0.5), (0.25, 0.75), (0.75, 0.25), (0.5, 0.5)
LOGITS = torch.tensor([[0.0, 0.0], [0.0, math.log(3)], [math.log(3), 0.0], [0.0, 0.0]])
LABELS = torch.tensor([0, 1, 0, 1])
FILES = ["/data/a.png", "/data/b,1.png", "/data/c.png", "/data/d.png"]  # the comma is quoted by the csv module


def _evaluator(with_groups: bool, with_files: bool) -> tuple[Engine, list]:
    batches = []
    for start in (0, 2):
        image = MetaTensor(torch.zeros(2, 1, 4, 4))
        if with_files:
            image.meta["filename_or_obj"] = FILES[start : start + 2]
        batch = {"image": image, "label": LABELS[start : start + 2]}
        if with_groups:
            batch["group"] = [f"patient{(start + i) // 2}" for i in range(2)]
        batches.append((batch, LOGITS[start : start + 2]))

    def step(engine: Engine, item: tuple[dict, torch.Tensor]) -> dict:
        engine.state.batch = item[0]
        return {"pred": item[1]}

    return Engine(step), batches


@pytest.mark.parametrize(
    "with_groups, with_files, expected",
    [
        (
            True,
            True,
            "file,group,label,p_normal,p_pneumonia\r\n/data/a.png,patient0,0.0,0.5,0.5\r\n"
            '"/data/b,1.png",patient0,1.0,0.25,0.75\r\n/data/c.png,patient1,0.0,0.75,0.25\r\n'
            "/data/d.png,patient1,1.0,0.5,0.5\r\n",
        ),
        (
            False,
            False,
            "file,group,label,p_normal,p_pneumonia\r\n,,0.0,0.5,0.5\r\n,,1.0,0.25,0.75\r\n,,0.0,0.75,0.25\r\n"
            ",,1.0,0.5,0.5\r\n",
        ),
    ],
)
def test_predictions_csv_bytes_and_no_temporary(tmp_path: Path, with_groups: bool, with_files: bool, expected: str):
    engine, batches = _evaluator(with_groups, with_files)
    report = ClassificationReport(
        str(tmp_path / "metrics.json"), "binary", ["normal", "pneumonia"], n_bootstrap=10,
        predictions_file=str(tmp_path / "preds" / "test_predictions.csv"),
    )  # fmt: skip
    report.attach(engine)
    engine.run(batches, max_epochs=1)
    assert (tmp_path / "preds" / "test_predictions.csv").read_bytes() == expected.encode()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(report.report)) and saved["n"] == 4
    assert saved["resampled"] == ("patients" if with_groups else "images")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["metrics.json", "preds", "test_predictions.csv"]


def test_a_failing_predictions_write_leaves_the_old_metrics_and_no_temporary(tmp_path: Path):
    (tmp_path / "metrics.json").write_text('{"old": true}\n')
    (tmp_path / "test_predictions.csv").mkdir()  # a folder where the CSV should go: the rename fails
    engine, batches = _evaluator(True, True)
    report = ClassificationReport(
        str(tmp_path / "metrics.json"), "binary", ["normal", "pneumonia"], n_bootstrap=10,
        predictions_file=str(tmp_path / "test_predictions.csv"),
    )  # fmt: skip
    report.attach(engine)
    with pytest.raises(OSError):
        engine.run(batches, max_epochs=1)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "test_predictions.csv"]
    assert not list((tmp_path / "test_predictions.csv").iterdir())
