"""Tests for monai_moco.benchmark.vit_stems (scripts/compare_vit_stems.py): a --quick run on real Kermany images, determinism, the stability stats."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_moco.benchmark import vit_stems

ARMS = ["patchify_vit_tiny", "convstem_vit_tiny", "convstem_vit_tiny_topk"]


@pytest.fixture(scope="module")
def compare():
    return vit_stems


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The tests run on one torch thread (--threads 1: tiny ops on 2 busy cores are faster so); restored after."""
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def test_quick_run_on_kermany_writes_json_csv_png(compare, kermany_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "cmp"
    records = compare.main(["--quick", "--dataset_dir", str(kermany_dir), "--output_dir", str(out), "--threads", "1"])
    table = capsys.readouterr().out
    for name in ("results.json", "results.csv", "compare_vit_stems.png", "results.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert [r["arm"] for r in saved] == ARMS == [r["arm"] for r in records]
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["arm"] for r in rows] == ARMS
    for r in saved:
        assert r["steps"] == 4 and not r["diverged"]
        assert len(r["curves"]["loss"]) == 4 and all(math.isfinite(v) for v in r["curves"]["loss"])
        assert r["config"]["test_images"] == 624 and r["config"]["pretrain_images"] == 64  # official test split
        for key in ("linear_auc", "knn_auc"):
            assert 0.0 <= r[f"{key}_low"] <= r[key] <= r[f"{key}_high"] <= 1.0, (r["arm"], key)
        assert 0.0 <= r["init_linear_auc"] <= 1.0 and 0.0 <= r["acc1_last"] <= 1.0
    # FLOPs parity as in Xiao et al.: the conv-stem arms have one transformer block fewer
    assert [r["blocks"] for r in saved] == [2, 1, 1]
    assert all(arm in table for arm in ARMS) and "linear-probe AUC" in table
    png = (out / "compare_vit_stems.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    again = compare.main(["--quick", "--dataset_dir", str(kermany_dir), "--output_dir", str(out), "--threads", "1",
                          "--resume", "--arms", "convstem_vit_tiny"])  # nothing retrained: the stored record is reused
    assert again == [saved[1]]


def test_run_arm_is_deterministic_under_a_seed(compare, kermany_dir: Path):
    from monai_moco.data import class_folder_datalist
    from monai_moco.transforms import LoadXRayd

    torch.set_num_threads(1)
    load = LoadXRayd("image", spatial_size=32)
    data = class_folder_datalist(kermany_dir / "test")
    items = [load(d) for d in data[:12] + data[-12:]]  # both classes
    x = torch.stack([d["image"].as_tensor() for d in items])
    y = torch.tensor([d["label"] for d in items])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=12)
    probe = {"train": loader, "test": loader, "groups": None}
    args = compare.parse_args(["--quick", "--steps", "2", "--batch_size", "8", "--n_bootstrap", "50"])
    first, second = (compare.run_arm("convstem_vit_tiny_topk", 3, x, probe, args) for _ in range(2))
    assert first["curves"] == second["curves"] and first["linear_auc"] == second["linear_auc"]
    other = compare.run_arm("convstem_vit_tiny_topk", 4, x, probe, args)
    assert other["curves"]["loss"] != first["curves"]["loss"]


def test_loss_stability_counts_spikes_after_the_queue_fills(compare):
    rng = np.random.default_rng(0)
    curve = 5.0 - np.linspace(0, 1, 100) + 0.02 * rng.standard_normal(100)
    assert compare.loss_stability(curve, last_n=20, skip=0)["loss_spikes"] == 0
    assert compare.loss_stability(curve[::-1] + 3.0, last_n=20, skip=0)["loss_spikes"] == 0  # a steady rise is no spike
    spiky = curve.copy()
    spiky[[30, 70]] += 1.0
    stats = compare.loss_stability(spiky, last_n=20, skip=0)
    assert stats["loss_spikes"] == 2
    assert compare.loss_stability(spiky, last_n=20, skip=50)["loss_spikes"] == 1  # spike at 30 is in the skipped fill
    assert stats["loss_last_mean"] == pytest.approx(spiky[-20:].mean())
    steps = np.arange(20)
    residual = spiky[-20:] - np.polyval(np.polyfit(steps, spiky[-20:], 1), steps)
    assert stats["loss_last_std"] == pytest.approx(residual.std()) and stats["loss_last_std"] < 0.03  # trend removed
    assert compare.loss_stability([1.0, 2.0], last_n=50, skip=0)["loss_last_mean"] == 2.0  # window capped at N / 4


@pytest.mark.parametrize("old", [False, True])
def test_write_results_json_and_csv_together(compare, tmp_path: Path, old: bool):
    records = [{"arm": arm, "seed": 0, "linear_auc": 0.5 + 0.1 * i, "curves": {"loss": [1.0, 0.5]}, "note": "a,b"}
               for i, arm in enumerate(ARMS)]
    if old:
        (tmp_path / "results.json").write_text("[]\n")
        (tmp_path / "results.csv").write_text("stale\n")
    compare._write(records, tmp_path)
    assert (tmp_path / "results.json").read_text() == json.dumps(records, indent=1) + "\n"
    text = (tmp_path / "results.csv").read_bytes().decode()
    assert text.startswith(",".join(compare.CSV_FIELDS) + "\r\n") and text.count("\r\n") == 1 + len(ARMS)
    assert text.splitlines()[1] == "patchify_vit_tiny,0" + "," * 11 + "0.5" + "," * 8  # the csv module's layout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.json"]
