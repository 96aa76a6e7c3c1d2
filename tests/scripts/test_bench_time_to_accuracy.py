"""Tests for scripts/bench_time_to_accuracy.py (``monai_moco.benchmark.time_to_accuracy``): a tiny CPU-sized run of
the bundle's MoCo against lightly's loop prints the documented JSON lines, a target of 0 is reached at epoch 1 and a
target above 1 never; the interleaving and stopping rules and the summary are checked on stand-in runners.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from monai_moco.benchmark import time_to_accuracy as tta

EPOCH_KEYS = {"kind", "runner", "epoch", "train_seconds", "epoch_seconds", "knn_auc", "steps", "loss", "lr",
              "score_seconds", "uniformity", "mean_cosine", "effective_rank"}  # fmt: skip
RUNNER_KEYS = {"time_to_target", "epochs_to_target", "initial_knn_auc", "best_knn_auc", "epochs", "train_seconds",
               "stopped", "dtype"}  # fmt: skip
# 64 images at 32 px in batches of 16: 4 steps per epoch
TINY = ["--max_images", "64", "--image_size", "32", "--batch_size", "16", "--monitor_images", "64", "--queue_size",
        "64", "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def train_dir(kermany_dir: Path) -> Path:
    return kermany_dir / "train"


def _run(capsys, argv: list[str]) -> tuple[list[dict], dict, str]:
    threads = torch.get_num_threads()
    try:
        assert tta.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert [d["kind"] for d in lines[:-1]] == ["epoch"] * (len(lines) - 1) and lines[-1]["kind"] == "summary"
    return lines[:-1], lines[-1], err


@pytest.fixture()
def needs_lightly():
    pytest.importorskip("lightly", reason="lightly (the bench extra: pip install -e '.[bench]') is not installed")


def test_target_never_reached(needs_lightly, train_dir: Path, capsys):
    epochs, summary, err = _run(
        capsys, [*TINY, "--dataset_dir", str(train_dir), "--max_epochs", "2", "--target", "1.01"]
    )
    assert [(d["runner"], d["epoch"]) for d in epochs] == [
        ("ours", 0),
        ("lightly", 0),
        ("ours", 1),
        ("lightly", 1),
        ("lightly", 2),
        ("ours", 2),  # first alternates
    ]
    for d in epochs:
        assert EPOCH_KEYS <= set(d), EPOCH_KEYS - set(d)
        assert 0.0 <= d["knn_auc"] <= 1.0 and d["score_seconds"] >= 0
        assert d["steps"] == (0 if d["epoch"] == 0 else 4)
    by = {(d["runner"], d["epoch"]): d for d in epochs}
    # both start from the same weights, so the untrained scores agree
    assert by["ours", 0]["knn_auc"] == by["lightly", 0]["knn_auc"] and by["ours", 0]["train_seconds"] == 0
    for runner in tta.RUNNERS:
        first, second = by[runner, 1], by[runner, 2]
        assert first["train_seconds"] > 0 and first["loss"] > 0
        assert second["train_seconds"] == pytest.approx(first["train_seconds"] + second["epoch_seconds"], rel=1e-3)
        assert second["lr"] < first["lr"]  # the cosine schedule spans the 2 epochs
    assert by["ours", 1]["lr"] == by["lightly", 1]["lr"] == pytest.approx(0.12 * 16 / 256)  # the bundle's lr rule

    assert summary["target"] == 1.01 and summary["ratio"] is None and summary["max_epochs"] == 2
    assert summary["target_at_or_below_initial"] is False and "already scores" not in err
    for runner in tta.RUNNERS:
        info = summary["runners"][runner]
        assert set(info) == RUNNER_KEYS
        assert info["time_to_target"] is None and info["epochs_to_target"] is None
        assert info["stopped"] == "max_epochs" and info["epochs"] == 2
        assert info["train_seconds"] == by[runner, 2]["train_seconds"]
        assert info["best_knn_auc"] == max(by[runner, e]["knn_auc"] for e in (1, 2))  # trained epochs only
        assert info["initial_knn_auc"] == by[runner, 0]["knn_auc"]
    assert summary["runners"]["lightly"]["dtype"] == "float32"
    assert summary["amp"] == summary["runners"]["ours"]["dtype"] in ("bfloat16", "float16", "float32")
    recipe = summary["recipe"]
    assert recipe["backbone"] == "resnet18" and recipe["batch_size"] == 16 and recipe["image_size"] == 32
    assert recipe["temperature"] == 0.2 and recipe["key_momentum"] == 0.99 and recipe["crop_scale"] == [0.5, 1.0]
    assert set(summary["cpu_flags"]) == set(tta.CPU_FLAGS) and summary["threads"] == 1 and summary["k"] == 20
    assert summary["monitor_group_pattern"] == tta.KERMANY_PATIENT_PATTERN  # the subset is split by patient


def test_from_lines_matches_a_run_stopped_at_the_target(tmp_path: Path):
    """Re-summarising a long run at a lower target cuts each runner at its first epoch reaching it."""
    lines = [
        {"kind": "epoch", "runner": "ours", "epoch": 0, "train_seconds": 0.0, "knn_auc": 0.5},
        {"kind": "epoch", "runner": "lightly", "epoch": 0, "train_seconds": 0.0, "knn_auc": 0.5},
        {"kind": "epoch", "runner": "ours", "epoch": 1, "train_seconds": 10.0, "knn_auc": 0.8},
        {"kind": "epoch", "runner": "lightly", "epoch": 1, "train_seconds": 15.0, "knn_auc": 0.7},
        {"kind": "epoch", "runner": "lightly", "epoch": 2, "train_seconds": 30.0, "knn_auc": 0.85},
        {"kind": "epoch", "runner": "ours", "epoch": 2, "train_seconds": 20.0, "knn_auc": 0.75},
        {"kind": "summary", "target": 1.01, "ratio": None, "threads": 2, "amp": "bfloat16",
         "runners": {"ours": {"stopped": "max_epochs", "dtype": "bfloat16"},
                     "lightly": {"stopped": "max_epochs", "dtype": "float32"}}},
    ]  # fmt: skip
    summary = tta.summary_from_lines(lines, 0.8)
    assert summary["kind"] == "summary" and summary["resummarised"] and summary["threads"] == 2
    ours, ref = summary["runners"]["ours"], summary["runners"]["lightly"]
    assert (ours["time_to_target"], ours["epochs"], ours["best_knn_auc"], ours["stopped"]) == (10.0, 1, 0.8, "target")
    assert (ref["time_to_target"], ref["epochs"], ref["stopped"], ref["dtype"]) == (30.0, 2, "target", "float32")
    assert summary["ratio"] == pytest.approx(3.0) and summary["target"] == 0.8
    assert ours["initial_knn_auc"] == 0.5 and summary["target_at_or_below_initial"] is False
    unreached = tta.summary_from_lines(lines, 0.9)
    assert unreached["ratio"] is None and unreached["runners"]["ours"]["stopped"] == "max_epochs"

    saved = tmp_path / "run.jsonl"
    saved.write_text("".join(json.dumps(d) + "\n" for d in lines))
    assert tta.main(["--from_lines", str(saved), "--target", "0.8"]) == 0  # no lightly, no training needed


def test_target_reached_at_epoch_one(needs_lightly, train_dir: Path, capsys):
    epochs, summary, err = _run(
        capsys, [*TINY, "--dataset_dir", str(train_dir), "--max_epochs", "2", "--target", "0.0"]
    )
    assert [(d["runner"], d["epoch"]) for d in epochs] == [("ours", 0), ("lightly", 0), ("ours", 1), ("lightly", 1)]
    first = {d["runner"]: d for d in epochs if d["epoch"] == 1}
    for runner in tta.RUNNERS:
        info = summary["runners"][runner]
        assert info["stopped"] == "target" and info["epochs_to_target"] == 1
        assert info["time_to_target"] == first[runner]["train_seconds"] > 0
    expected = summary["runners"]["lightly"]["time_to_target"] / summary["runners"]["ours"]["time_to_target"]
    assert summary["ratio"] == pytest.approx(expected, rel=1e-2)
    assert summary["target_at_or_below_initial"] is True  # any untrained AUC is >= 0
    assert "already scores kNN AUC" in err


def test_without_lightly_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(tta, "lightly_available", lambda: False)
    assert tta.main(["--target", "0.5"]) == 2
    assert "--ours_only" in capsys.readouterr().err


class _Stand:
    """A runner whose kNN AUC after each epoch is given in advance (training takes no time)."""

    def __init__(self, name: str, aucs: list[float]) -> None:
        self.name, self.aucs, self.trained = name, aucs, 0
        self.network = SimpleNamespace(runner=self)

    def train_epoch(self) -> list[float]:
        self.trained += 1
        return [1.0, 3.0]


def _score(network: SimpleNamespace) -> tuple[float, dict]:
    runner = network.runner
    return (0.5 if runner.trained == 0 else runner.aucs[runner.trained - 1]), {}


def test_run_interleaved_stops_each_runner_on_its_own():
    ours, ref = _Stand("ours", [0.7, 0.95, 0.99]), _Stand("lightly", [0.6, 0.8, float("nan"), 0.96])
    lines: list[dict] = []
    results = tta.run_interleaved([ours, ref], _score, target=0.93, max_epochs=4, max_seconds=math.inf,
                                  emit=lines.append)  # fmt: skip
    assert ours.trained == 2 and ref.trained == 4  # ours stops at its target, lightly carries on alone
    assert [(d["runner"], d["epoch"]) for d in lines] == [
        ("ours", 0), ("lightly", 0), ("ours", 1), ("lightly", 1), ("lightly", 2), ("ours", 2), ("lightly", 3),
        ("lightly", 4),
    ]  # fmt: skip
    assert all(d["loss"] == 2.0 and d["steps"] == 2 for d in lines if d["epoch"] > 0)
    assert results["ours"]["stopped"] == "target" and results["lightly"]["stopped"] == "target"
    assert results["ours"]["initial_knn_auc"] == results["lightly"]["initial_knn_auc"] == 0.5
    summary = tta.summarise(results, 0.93)
    assert (
        summary["runners"]["ours"]["epochs_to_target"] == 2 and summary["runners"]["lightly"]["epochs_to_target"] == 4
    )
    assert summary["runners"]["lightly"]["best_knn_auc"] == 0.96  # the nan epoch is skipped
    assert summary["ratio"] == pytest.approx(
        summary["runners"]["lightly"]["time_to_target"] / summary["runners"]["ours"]["time_to_target"]
    )


def test_run_interleaved_max_seconds_and_max_epochs():
    slow, never = _Stand("ours", [0.1] * 5), _Stand("lightly", [0.2] * 5)
    results = tta.run_interleaved([slow, never], _score, target=0.9, max_epochs=3, max_seconds=0.0, emit=lambda d: None)
    assert slow.trained == never.trained == 1 and {r["stopped"] for r in results.values()} == {"max_seconds"}
    results = tta.run_interleaved([_Stand("ours", [0.1] * 5)], _score, 0.9, max_epochs=3, max_seconds=math.inf,
                                  emit=lambda d: None)  # fmt: skip
    assert results["ours"]["stopped"] == "max_epochs" and len(results["ours"]["history"]) == 3


def test_summarise_ratio_needs_both_runners():
    results = {
        "ours": {"history": [(1, 30.0, 0.95)], "stopped": "target", "dtype": "bfloat16"},
        "lightly": {"history": [(1, 50.0, 0.90), (2, 100.0, 0.91)], "stopped": "max_epochs", "dtype": "float32"},
    }
    summary = tta.summarise(results, 0.93)
    assert summary["ratio"] is None and summary["runners"]["ours"]["time_to_target"] == 30.0
    assert summary["runners"]["lightly"] == {"time_to_target": None, "epochs_to_target": None,
                                             "initial_knn_auc": None, "best_knn_auc": 0.91,
                                             "epochs": 2, "train_seconds": 100.0, "stopped": "max_epochs",
                                             "dtype": "float32"}  # fmt: skip
    assert summary["equal_epochs"] == 1 and summary["equal_epoch_time_ratio"] == pytest.approx(50.0 / 30.0)
    results["lightly"]["history"].append((3, 120.0, 0.94))
    assert tta.summarise(results, 0.93)["ratio"] == pytest.approx(4.0)
    alone = tta.summarise({"ours": results["ours"]}, 0.93)
    assert alone["equal_epochs"] is None and alone["equal_epoch_time_ratio"] is None


def test_cpu_flags_names():
    flags = tta.cpu_flags(("avx512_bf16", "no_such_flag"))
    assert set(flags) == {"avx512_bf16", "no_such_flag"} and flags["no_such_flag"] in (False, None)
