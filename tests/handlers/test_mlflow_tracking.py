"""The pieces of ``BundleMLFlowHandler``: the executed-config path MONAI builds, parameters of a config, metrics of a
report, the per-iteration scalars of both engine kinds, and the handler itself on a small ignite engine."""

from __future__ import annotations

import json
import math

import pytest
import torch
from ignite.engine import Engine, Events

from monai_moco.handlers.mlflow_tracking import (
    BundleMLFlowHandler,
    config_params,
    executed_config_path,
    report_metrics,
    tracking_output_transform,
)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("runs/moco + '/config_20261204_152201.json'", "runs/moco/config_20261204_152201.json"),
        ("/tmp/a b + '/config_20261204_152201.json'", "/tmp/a b/config_20261204_152201.json"),
        ("runs/moco/eval/config_20261204_152201.json", "runs/moco/eval/config_20261204_152201.json"),
        ("runs/moco + '/other.json'", "runs/moco + '/other.json'"),
        (None, None),
        ("", None),
    ],
)
def test_executed_config_path(value, expected):
    assert executed_config_path(value) == expected


def test_config_params_keeps_literals_only():
    config = {
        "epochs": 3, "lr": "$@base_lr * 2", "frozen": False, "backbone": "resnet18", "ref": "@other",
        "macro": "%train.json#x", "crop_scale": [0.5, 1.0], "imports": ["$import os"], "network_def": {"_target_": "X"},
        "_meta_": {"name": "x"}, "save_execute_config": "runs/x + '/config.json'", "class names": ["a", "b"],
        "empty": [], "none": None,
    }
    assert config_params(config) == {"epochs": "3", "frozen": "False", "backbone": "resnet18",
                                     "crop_scale": "[0.5, 1.0]", "class names": '["a", "b"]'}


@pytest.mark.parametrize(
    "report, prefix, expected",
    [
        ({"auc": {"value": 0.9, "ci_low": 0.8, "ci_high": 0.95, "n": 10}, "n": 10, "backbone": "resnet18"}, "test_",
         {"test_auc": 0.9, "test_auc_ci_low": 0.8, "test_auc_ci_high": 0.95}),
        ({"per_class": {"Pleural Effusion (L)": {"auc": {"value": 0.7}}}}, "test_",
         {"test_per_class_Pleural Effusion _L__auc": 0.7}),
        ({"accuracy": {"value": 1, "ci_low": None}}, "", {"accuracy": 1.0}),
        ({"frozen": {"value": True}, "resampled": "patients"}, "test_", {}),
        ({"value": 0.5}, "test_", {}),
    ],
)
def test_report_metrics(report, prefix, expected):
    assert report_metrics(report, prefix) == expected


@pytest.mark.parametrize(
    "output, expected",
    [
        ({"loss": 5.0, "acc1": 0.25, "queue_fill": 0.5, "note": "x"},
         {"train/loss": 5.0, "train/acc1": 0.25, "train/queue_fill": 0.5}),
        ([{"loss": torch.tensor(0.75), "pred": torch.zeros(2)}, {"loss": torch.tensor(0.75)}], {"train_loss": 0.75}),
        (torch.tensor(1.5), {"train_loss": 1.5}),
        (2.0, {"train_loss": 2.0}),
        ([], {}),
    ],
)
def test_tracking_output_transform(output, expected):
    assert tracking_output_transform()(output) == expected


def test_handler_logs_params_report_and_existing_artifacts(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="BundleMLFlowHandler needs the `mlflow` extra")
    config = tmp_path / "config_20261204_152201.json"
    config.write_text(json.dumps({"epochs": 2, "lr": "$1e-3", "backbone": "resnet18"}))
    report = tmp_path / "test_metrics.json"
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"

    def step(engine, batch):
        return {"loss": float(batch), "acc1": 0.5}

    engine = Engine(step)

    @engine.on(Events.COMPLETED)
    def _write_report(_):  # stands in for ClassificationReport, which runs before the tracking handler
        report.write_text(json.dumps({"auc": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}, "n": 4}))

    handler = BundleMLFlowHandler(
        executed_config=f"{tmp_path} + '/{config.name}'", report_file=report, tracking_uri=uri,
        experiment_name="bundle", run_name="run", output_transform=tracking_output_transform(),
        artifacts=[str(checkpoint), str(tmp_path / "last.pt")], close_on_complete=True,
    )
    handler.attach(engine)
    engine.run([1.0, 2.0, 3.0], max_epochs=1)

    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("bundle").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert {k: run.data.params[k] for k in ("epochs", "backbone")} == {"epochs": "2", "backbone": "resnet18"}
    assert "lr" not in run.data.params
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")] == [
        (1, 1.0), (2, 2.0), (3, 3.0)]
    assert math.isclose(run.data.metrics["test_auc"], 0.8) and math.isclose(run.data.metrics["test_auc_ci_high"], 0.9)
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == [config.name, "model.pt"]
