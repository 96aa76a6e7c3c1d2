"""Tests for the detection label-fraction study driver (resumable records, validation-only mode, tables, figure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_moco.evaluation.detection_study import detection_run_name, run_detection_study, write_detection_tables


class _FakeBundle:
    """Writes what bundles/cxr_detector writes, with a score that depends on the source and the fraction."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, config_files, **overrides) -> None:
        self.calls.append(overrides)
        out = Path(overrides["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        score = 0.5 + 0.1 * bool(overrides["pretrained"]) + 0.2 * overrides["label_fraction"] + 0.01 * overrides["draw"]
        val = {"best_val_map": score, "best_epoch": 3, "n_train": int(80 * overrides["label_fraction"]), "steps": 9,
               "image_size": overrides["image_size"], "lr": 0.001, "pretrained": overrides["pretrained"]}
        (out / "val_metrics.json").write_text(json.dumps(val))
        if overrides["evaluate_test"]:
            test = {k: {"value": score - d, "ci_low": score - d - 0.05, "ci_high": score - d + 0.05}
                    for k, d in (("map_50", -0.3), ("map_50_95", 0.0))}
            (out / "test_metrics.json").write_text(json.dumps({**test, "n_images": 31, "n_patients": 20}))


def test_study_runs_resumes_and_tabulates(tmp_path: Path):
    fake = _FakeBundle()
    sources = {"scratch": "", "moco": "moco.pt"}
    draws = {1.0: 1, 0.1: 3}
    records = run_detection_study(fake, ["train.json"], sources, draws, tmp_path, {"image_size": 64})
    assert len(records) == len(fake.calls) == 2 * (1 + 3)
    assert all(c["fractions"] == [1.0, 0.1] and c["draws"] == 3 and c["evaluate_test"] for c in fake.calls)
    assert (tmp_path / "runs" / "moco_f10_d2" / "record.json").is_file()
    again = run_detection_study(fake, ["train.json"], sources, draws, tmp_path, {"image_size": 64})
    assert len(fake.calls) == 8 and again == records  # resumed: nothing re-run
    table = write_detection_tables(records, tmp_path, tmp_path / "fig.png", title="t")
    assert "| moco | 10 % (8) | 3 | 0.930 ± 0.010 |" in table and "| scratch | 100 % (80) | 1 |" in table
    assert (tmp_path / "fig.png").stat().st_size > 0
    assert len(json.loads((tmp_path / "results.json").read_text())) == 8


def test_validation_only_never_reads_test(tmp_path: Path):
    fake = _FakeBundle()
    records = run_detection_study(fake, ["train.json"], {"scratch": ""}, {0.25: 2}, tmp_path, {"image_size": 64},
                                  evaluate_test=False)
    assert [r["best_val_map"] for r in records] == pytest.approx([0.55, 0.56])
    assert not list(tmp_path.rglob("test_metrics.json")) and all("map_50" not in r for r in records)
    with pytest.raises(ValueError, match=r"\['scratch_f25_d0', 'scratch_f25_d1'\] have no test metrics"):
        write_detection_tables(records, tmp_path)


def test_names_and_errors(tmp_path: Path):
    assert detection_run_name("simclr", 0.25, 1) == "simclr_f25_d1"
    with pytest.raises(ValueError, match="need sources and fractions"):
        run_detection_study(_FakeBundle(), [], {}, {1.0: 1}, tmp_path)
