"""Tests for scripts/run_transfer_study.py: a tiny study on real Kermany images writes the table and plot, and a second
invocation skips the finished runs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from testing_helpers import load_module_from_path

from monai_moco.networks.blocks import MoCoV2ProjectionHead
from monai_moco.networks.nets import ContrastiveEncoder, build_backbone

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_transfer_study.py"


@pytest.fixture(scope="module")
def study():
    return load_module_from_path(SCRIPT)


def _moco_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    encoder = ContrastiveEncoder(build_backbone("resnet18", in_channels=1), MoCoV2ProjectionHead(512, 512, 32))
    torch.save({"network": encoder.state_dict(), "momentum_network": encoder.state_dict()}, path)
    return path


def test_tiny_study_table_plot_and_resume(study, kermany_dir, tmp_path, monkeypatch):
    out = tmp_path / "study"
    argv = [
        "--dataset_dir", str(kermany_dir), "--output_dir", str(out), "--strategies", "scratch", "moco",
        "--moco_ckpt", str(_moco_checkpoint(tmp_path / "moco.pt")), "--fractions", "100", "50", "--draws", "1",
        "--backbone", "resnet18", "--image_size", "32", "--max_images", "32", "--batch_size", "8", "--epochs", "1",
        "--min_steps", "1", "--n_bootstrap", "100", "--device", "cpu", "--no_progress", "--threads", "1",
    ]  # fmt: skip
    records = study.main(argv)
    assert len(records) == 8  # 2 strategies x 2 modes x 2 fractions x 1 draw
    assert {(r["strategy"], r["mode"], r["fraction"]) for r in records} == {
        (s, m, f) for s in ("scratch", "moco") for m in ("linear", "finetune") for f in (1.0, 0.5)
    }
    assert all(r["probe_c"] > 0 for r in records if r["mode"] == "linear")  # the logistic probe, C from validation
    for r in records:
        assert 0.0 <= r["ci_low"] <= r["auc"] <= r["ci_high"] <= 1.0, r
        assert r["n_test"] == 32 and r["draw"] == 0
        assert r["pretrained"] == ("" if r["strategy"] == "scratch" else str(tmp_path / "moco.pt"))
    n_half = {r["n_train"] for r in records if r["fraction"] == 0.5}
    n_all = {r["n_train"] for r in records if r["fraction"] == 1.0}
    assert len(n_half) == len(n_all) == 1 and n_half.pop() < n_all.pop()

    saved = json.loads((out / "results.json").read_text())
    assert len(saved) == 8 and {"strategy", "fraction", "draw", "mode", "auc", "ci_low", "ci_high"} <= set(saved[0])
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 8
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 8 and all(int(r["n_draws"]) == 1 for r in summary)
    assert "| linear | moco | 100 % | 1 |" in (out / "summary.md").read_text()
    with Image.open(out / "auc_vs_label_fraction.png") as img:
        assert img.width > 400 and img.height > 200
    # checkpoints are removed after evaluation unless --keep_checkpoints
    assert not list((out / "runs").rglob("model.pt"))

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(study, "transfer_run", must_not_run)
    monkeypatch.setattr(study, "frozen_runs", must_not_run)
    again = study.main(argv)
    assert sorted(json.dumps(r, sort_keys=True) for r in again) == sorted(json.dumps(r, sort_keys=True) for r in records)
    # a narrower plan reports only its runs, unless --include_finished adds the folder's other finished runs
    assert {r["mode"] for r in study.main([*argv, "--modes", "linear"])} == {"linear"}
    assert len(study.main([*argv, "--modes", "linear", "--include_finished"])) == 8
    assert len(json.loads((out / "results.json").read_text())) == 8


def test_knn_and_small_fraction_draws(study, kermany_dir, tmp_path):
    """kNN runs once per strategy at 100 %; fractions <= 1 % get --small_fraction_draws draws."""
    out = tmp_path / "study"
    records = study.main([
        "--dataset_dir", str(kermany_dir), "--output_dir", str(out), "--strategies", "scratch", "--modes", "linear",
        "knn", "--fractions", "100", "1", "--draws", "1", "--small_fraction_draws", "2", "--backbone", "resnet18",
        "--image_size", "32", "--max_images", "200", "--n_bootstrap", "50", "--device", "cpu", "--no_progress",
    ])  # fmt: skip
    assert sorted((r["mode"], r["fraction_pct"], r["draw"]) for r in records) == [
        ("knn", 100.0, 0), ("linear", 1.0, 0), ("linear", 1.0, 1), ("linear", 100.0, 0)
    ]
    for r in records:
        assert 0.0 <= r["ci_low"] <= r["auc"] <= r["ci_high"] <= 1.0 and r["n_test"] == 200, r


@pytest.mark.parametrize(
    "method,overlay,bundle", [("moco_v1", "moco_v1.json", "moco_resnet50"), ("supcon", "supcon.json", "simclr_resnet50")]
)
def test_variant_pretraining_composes_the_overlay(study, method, overlay, bundle, kermany_dir, tmp_path, monkeypatch):
    """``moco_v1``/``supcon`` pretrain through their bundle with the variant overlay between train.json and
    --pretrain_overlay; SupCon is pointed at the study's own dataset, so its labels come from the same split."""
    calls = []

    def fake_run_bundle(files, **overrides):
        calls.append(([Path(f).name for f in files], [Path(f).parent.name for f in files], overrides))
        ckpt = Path(overrides["output_dir"]) / "checkpoints" / "last.pt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"")

    monkeypatch.setattr(study, "run_bundle", fake_run_bundle)
    args = study.parse_args(["--preset", "cpu_study", "--dataset_dir", str(kermany_dir), "--output_dir",
                             str(tmp_path), "--strategies", method])
    ckpt = study.pretrain(method, args, "cpu")
    assert ckpt == tmp_path / "pretrain" / method / "checkpoints" / "last.pt"
    (names, bundles, overrides), = calls
    assert names == ["train.json", overlay, "cpu_study.json"] and set(bundles) == {bundle}
    assert overrides["dataset_dir"] == str(kermany_dir / "train") and overrides["backbone"] == "resnet18"
    assert overrides.get("labelled_dataset_dir") == (str(kermany_dir) if method == "supcon" else None)
    assert json.loads((tmp_path / "pretrain" / method / "done.json").read_text())["checkpoint"] == str(ckpt)
    # a given checkpoint is reused without pretraining
    given = _moco_checkpoint(tmp_path / f"{method}.pt")
    reuse = study.parse_args(["--output_dir", str(tmp_path / "other"), f"--{method}_ckpt", str(given)])
    assert study.pretrain(method, reuse, "cpu") == given and len(calls) == 1
    missing = study.parse_args([f"--{method}_ckpt", str(tmp_path / "nope.pt")])
    with pytest.raises(FileNotFoundError, match=f"--{method}_ckpt"):
        study.pretrain(method, missing, "cpu")


def test_supcon_overlay_datalist_is_the_study_training_split(kermany_dir):
    """The SupCon overlay's datalist is exactly the study's training part at 100 %: no validation or test image and no
    patient shared with validation (the leakage rule), all of it labelled."""
    from monai.bundle import ConfigParser

    from monai_moco.data import transfer_datalists

    bundle = SCRIPT.parents[1] / "bundles" / "simclr_resnet50"
    parser = ConfigParser()
    parser.read_config([str(bundle / "train.json"), str(bundle / "supcon.json"), str(bundle / "cpu_study.json")])
    parser["labelled_dataset_dir"] = str(kermany_dir)
    parser["max_images"] = 400
    items = parser.get_parsed_content("train#datalist")
    lists = transfer_datalists(kermany_dir, seed=0, max_images=400)
    assert [it["image"] for it in items] == [it["image"] for it in lists["train"]]
    images = {str(it["image"]) for it in items}
    assert not images & {str(it["image"]) for it in lists["val"] + lists["test"]}
    assert not {it["group"] for it in items} & {it["group"] for it in lists["val"]}
    assert {int(it["label"]) for it in items} == {0, 1}
    assert parser.get_parsed_content("train#trainer#label_key") == "label"
    assert type(parser.get_parsed_content("loss")).__name__ == "SupConLoss"


def test_args_defaults_and_imagenet_needs_a_file(study):
    args = study.parse_args([])
    assert args.strategies == ["scratch", "simclr", "moco"] and args.fractions == [100.0, 10.0, 1.0]
    assert args.draws == 3 and args.small_fraction_draws == 3 and args.modes == ["linear", "finetune"]
    preset = study.parse_args(["--preset", "cpu_study", "--epochs", "5"])
    assert preset.backbone == "resnet18" and preset.image_size == 64 and preset.epochs == 5
    assert preset.small_fraction_draws == 5 and preset.pretrain_overlay == "cpu_study.json"
    assert preset.strategies == ["scratch", "simclr", "moco", "scratch_vit", "moco_vit"]
    assert preset.finetune_strategies == preset.strategies and preset.full_finetune_draws == 3
    assert [study.draws_of(f, m, preset) for f, m in [(100, "linear"), (100, "finetune"), (1, "finetune"),
                                                       (10, "finetune"), (100, "knn")]] == [3, 3, 5, 3, 1]
    one = study.parse_args(["--preset", "cpu_study", "--full_finetune_draws", "1"])
    assert study.draws_of(100, "finetune", one) == 1 and study.draws_of(100, "linear", one) == 3
    assert study.parse_args(["--imagenet_weights", "w.pth"]).strategies == ["scratch", "imagenet", "simclr", "moco"]
    quick = study.parse_args(["--quick", "--image_size", "48"])
    assert quick.image_size == 48 and quick.backbone == "resnet18" and quick.max_images == 96
    with pytest.raises(SystemExit):
        study.parse_args(["--strategies", "imagenet"])
    with pytest.raises(SystemExit):
        study.parse_args(["--fractions", "0.5", "150"])


def _csv_reference(fieldnames: list[str], rows: list[dict], extrasaction: str = "raise") -> bytes:
    """The bytes the tables had when write_tables wrote them with csv.DictWriter on a newline="" file."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, extrasaction=extrasaction)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def test_write_tables_bytes_and_no_temporary(study, tmp_path):
    records = [
        {"strategy": s, "mode": "linear", "fraction": f, "fraction_pct": 100 * f, "draw": d, "auc": 0.6 + 0.1 * d,
         "ci_low": 0.5, "ci_high": 0.9, "n_train": int(100 * f), "backbone": "resnet18", "image_size": 32,
         "pretrained": "", "extra": [1, 2]}
        for s in ("scratch", "moco") for f in (1.0, 0.1) for d in (0, 1)
    ]  # fmt: skip
    (tmp_path / "summary.md").write_text("an old table\n")
    rows = study.write_tables(records, tmp_path)
    assert (tmp_path / "results.json").read_text() == json.dumps(records, indent=2) + "\n"
    assert (tmp_path / "results.csv").read_bytes() == _csv_reference(list(study.CSV_FIELDS), records, "ignore")
    assert (tmp_path / "summary.csv").read_bytes() == _csv_reference(list(rows[0]), rows)
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("| mode | strategy |") and md.endswith("|\n") and len(md.splitlines()) == 2 + len(rows) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "auc_vs_label_fraction.png", "results.csv", "results.json", "summary.csv", "summary.md",
    ]  # fmt: skip
