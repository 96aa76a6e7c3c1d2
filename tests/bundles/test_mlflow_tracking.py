"""``--tracking bundles/mlflow_tracking.json`` on the bundles, read back through the MLflow client.

Tiny CPU runs (the bundles' ``cpu.json`` shrunk further on the command line) of ``cxr_classifier`` (training, then
``evaluate.json``) and ``moco_vit``; the settings file is also resolved against every bundle's training config. Skipped
only when ``mlflow`` is not installed (extra ``mlflow``, installed by ``scripts/setup.sh`` by default).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow", reason="MLflow tracking needs the `mlflow` extra: pip install -e '.[mlflow]'")

from monai.bundle import ConfigWorkflow  # noqa: E402

from monai_moco.handlers import BundleMLFlowHandler  # noqa: E402

SETTINGS = "bundles/mlflow_tracking.json"


def _client(output_dir: Path) -> mlflow.MlflowClient:
    db = output_dir / "mlruns.db"
    assert db.is_file(), f"no SQLite tracking store at {db}; found {sorted(p.name for p in output_dir.iterdir())}"
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")


def _runs(client: mlflow.MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}: {[e.name for e in client.search_experiments()]}"
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def _history(client: mlflow.MlflowClient, run, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]


def _artifacts(client: mlflow.MlflowClient, run) -> list[str]:
    return sorted(a.path for a in client.list_artifacts(run.info.run_id))


@pytest.fixture(scope="module")
def shared_output_dir(tmp_path_factory) -> Path:
    """One ``output_dir`` for the resolution checks: its SQLite store is created (migrated) once."""
    return tmp_path_factory.mktemp("tracking") / "run"


def test_settings_resolve_for_every_bundle(bundles, bundle_name, shared_output_dir):
    """The settings attach a BundleMLFlowHandler to every bundle's trainer, named after the bundle, stored under
    ``output_dir``; the executed config it points at is the file MONAI wrote."""
    files = [str(bundles.root / "bundles" / bundle_name / "train.json")]
    out = shared_output_dir
    parser = ConfigWorkflow(config_file=files, workflow_type="train", tracking=str(bundles.root / SETTINGS),
                            output_dir=str(out)).parser
    handlers = parser["train#handlers"]
    index = len(handlers) - 1
    assert handlers[index]["_target_"] == "monai_moco.handlers.BundleMLFlowHandler", handlers[index]
    handler = parser.get_parsed_content(f"train#handlers#{index}")
    assert isinstance(handler, BundleMLFlowHandler)
    assert handler.experiment_name == bundle_name and handler.run_name == "run"
    assert handler.client.tracking_uri == f"sqlite:///{out / 'mlruns.db'}"
    assert handler.executed_config is not None and Path(handler.executed_config).parent == out
    assert Path(handler.executed_config).is_file(), handler.executed_config
    assert json.loads(Path(handler.executed_config).read_text())["output_dir"] == str(out)


def test_plain_tracking_mlflow_stores_under_output_dir(bundles, bundle_name, shared_output_dir):
    """MONAI's own ``--tracking mlflow`` also attaches to every bundle's trainer, with a SQLite store under
    ``output_dir`` (MONAI 1.6; it logs only the loss and ``engine.state.metrics``, see the settings file for more)."""
    files = [str(bundles.root / "bundles" / bundle_name / "train.json")]
    parser = ConfigWorkflow(config_file=files, workflow_type="train", tracking="mlflow",
                            output_dir=str(shared_output_dir)).parser
    index = len(parser["train#handlers"]) - 1
    handler = parser.get_parsed_content(f"train#handlers#{index}")
    assert type(handler).__name__ == "MLFlowHandler" and handler.experiment_name == "monai_experiment"
    assert handler.client.tracking_uri == f"sqlite:///{shared_output_dir / 'mlruns.db'}"


@pytest.mark.slow
def test_cxr_classifier_train_and_test_metrics(bundles, kermany_dir, tmp_path):
    """Training logs the loss per iteration, the validation AUC per epoch, the parameters and the best checkpoint;
    ``evaluate.json`` logs the test metrics (equal to test_metrics.json) in a run of the same name."""
    out = tmp_path / "cls"
    overrides = {"dataset_dir": kermany_dir, "output_dir": out, "backbone": "resnet18", "image_size": 32,
                 "max_images": 32, "batch_size": 8, "epochs": 2, "min_steps": 0, "device": "cpu",
                 "num_workers": 0, "progress": False, "tracking": SETTINGS}
    train = ["bundles/cxr_classifier/train.json", "bundles/cxr_classifier/cpu.json"]
    bundles.run(bundles.command(train, overrides))
    evaluate = [train[0], "bundles/cxr_classifier/evaluate.json", train[1]]
    bundles.run(bundles.command(evaluate, {**overrides, "n_bootstrap": 20}))

    client = _client(out)
    runs = _runs(client, "cxr_classifier")
    assert [r.info.run_name for r in runs] == ["cls", "cls"] and all(r.info.status == "FINISHED" for r in runs)
    fit, test = runs

    losses = _history(client, fit, "train_loss")
    steps = int(fit.data.params["epoch_length"]) * int(fit.data.params["max_epochs"])
    assert [s for s, _ in losses] == list(range(1, steps + 1)) and all(math.isfinite(v) for _, v in losses), losses
    val_auc = _history(client, fit, "val_auc")
    assert [s for s, _ in val_auc] == list(range(1, int(fit.data.params["max_epochs"]) + 1)), val_auc
    assert all(0.0 <= v <= 1.0 for _, v in val_auc), val_auc
    assert fit.data.params["backbone"] == "resnet18" and fit.data.params["max_images"] == "32"
    assert fit.data.params["image_size"] == "32" and fit.data.params["frozen"] == "False"
    fit_files = _artifacts(client, fit)
    assert "model.pt" in fit_files and any(f.startswith("config_") for f in fit_files), fit_files

    report = json.loads((out / "test_metrics.json").read_text())
    metrics = test.data.metrics
    for name in ("auc", "accuracy", "sensitivity", "specificity"):
        assert metrics[f"test_{name}"] == pytest.approx(report[name]["value"]), (name, metrics)
        assert metrics[f"test_{name}_ci_low"] <= metrics[f"test_{name}"] <= metrics[f"test_{name}_ci_high"]
    assert test.data.params["n_bootstrap"] == "20"
    assert {"test_metrics.json", "test_predictions.csv"} <= set(_artifacts(client, test))


@pytest.mark.slow
def test_moco_vit_contrastive_statistics(bundles, kermany_dir, tmp_path):
    """A MoCo run logs the contrastive top-1, queue fill and loss per iteration, the kNN AUC per epoch, its
    parameters and ``last.pt``; TensorBoard is still written (it stays the default)."""
    out = tmp_path / "moco"
    overrides = bundles.tiny_overrides(kermany_dir, out, monitor_interval=1, tracking=SETTINGS)
    bundles.run(bundles.command(["bundles/moco_vit/train.json", "bundles/moco_vit/cpu.json"], overrides))

    client = _client(out)
    (run,) = _runs(client, "moco_vit")
    assert run.info.run_name == "moco" and run.info.status == "FINISHED"
    acc1 = _history(client, run, "train/acc1")
    assert [s for s, _ in acc1] == [1, 2] and all(0.0 <= v <= 1.0 for _, v in acc1), acc1
    fill = [v for _, v in _history(client, run, "train/queue_fill")]
    queue_size = int(run.data.params["queue_size"])
    assert fill == pytest.approx([8 / queue_size, 16 / queue_size]), (fill, queue_size)
    assert all(math.isfinite(v) for _, v in _history(client, run, "train/loss"))
    knn = _history(client, run, "knn_auc")
    assert len(knn) == 1 and knn[0][0] == 1 and 0.0 <= knn[0][1] <= 1.0, knn
    assert run.data.params["image_size"] == "64" and run.data.params["vit_preset"] == "tiny"
    assert "last.pt" in _artifacts(client, run)
    assert "train/acc1" in bundles.tensorboard_scalars(out / "tensorboard")
