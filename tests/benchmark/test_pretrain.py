"""Tests for monai_moco.benchmark.pretrain (scripts/bench_pretrain.py): its quickest run on a tiny case prints the
documented JSON lines.

With lightly (the ``bench`` extra) installed the run compares against lightly's reference; without it the same run
goes ours-only (``--ours_only``), so the test runs in CI either way, and the script's refusal without lightly is
checked too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from monai_moco.benchmark import pretrain

STEP_KEYS = {"kind", "case", "dtype", "ours_img_s", "lightly_img_s", "ratio", "mfu", "gflops_per_image",
             "augment_img_s", "augment_headroom", "batch_size", "repeats"}  # fmt: skip
TINY = ["--quick", "--backbones", "resnet18", "--sizes", "32", "--batch_size", "4", "--repeats", "1", "--steps", "1",
        "--images", "8", "--aug_images", "8", "--accuracy_steps", "3", "--accuracy_size", "32",
        "--accuracy_heldout", "6", "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def bench():
    threads = torch.get_num_threads()
    yield pretrain
    torch.set_num_threads(threads)


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_tiny_run_prints_schema(bench, kermany_dir: Path, capsys, method: str):
    lightly = bench.lightly_available()
    argv = [*TINY, "--methods", method, "--data_dir", str(kermany_dir)] + ([] if lightly else ["--ours_only"])
    assert bench.main(argv) == 0
    lines = _lines(capsys.readouterr().out)
    kinds = [line["kind"] for line in lines]
    assert kinds == ["peak", "augment", "step", "step", "accuracy"]
    peak = lines[0]
    assert peak["fp32_gflop_s"] > 0 and peak["bf16_gflop_s"] > 0

    augment = lines[1]
    assert augment["case"] == "augment_32" and augment["ours_img_s"] > 0

    steps = lines[2:4]
    for line in steps:
        assert STEP_KEYS <= set(line), STEP_KEYS - set(line)
        assert line["case"] == f"{method}_resnet18_32" and line["ours_img_s"] > 0
        assert 0 < line["mfu"] < 1.5 and line["gflops_per_image"] > 0
        assert line["simclr_views"] == ("separate" if method == "simclr" else None)  # lightly's loop: one per view
        assert line["reuse_freed_memory"] is (sys.platform.startswith("linux"))  # glibc: applied for both loops
        assert line["augment_headroom"] == pytest.approx(line["augment_img_s"] / line["ours_img_s"], rel=1e-2)
        if lightly:
            assert line["lightly_img_s"] > 0 and line["lightly_dtype"] == "float32"
            assert line["ratio"] == pytest.approx(line["ours_img_s"] / line["lightly_img_s"], rel=1e-2)  # 1 repeat
        else:
            assert line["lightly_img_s"] is None and line["ratio"] is None
    assert [line["path"] for line in steps] == ["float32", "fast"]
    assert steps[0]["dtype"] == "float32" and steps[1]["dtype"] in ("bfloat16", "float32")
    # ResNet-18: 3.64 GFLOPs per 224 px forward, about (32/224)^2 of it at 32 px; backward costs 2 forwards. Per input
    # image SimCLR runs forward + backward on both views (6 forwards), MoCo on the query plus the key forward (4)
    forwards = 6 if method == "simclr" else 4
    assert steps[0]["gflops_per_image"] == pytest.approx(forwards * 3.64 * (32 / 224) ** 2, rel=0.3)

    acc = lines[4]
    assert acc["case"] == f"accuracy_{method}_resnet18_32" and acc["steps"] == 3
    assert 0 <= acc["fp32_acc1"] <= 1 and 0 <= acc["fast_acc1"] <= 1 and acc["fp32_loss"] > 0
    assert acc["seeds"] == [0] and acc["heldout_images"] == 6  # --quick: one seed
    for key in ("fp32_heldout_top1", "fast_heldout_top1"):  # views of 6 unseen images matched in groups of 4 and 2
        assert len(acc[key]) == 1 and acc[key][0] * 12 == pytest.approx(round(acc[key][0] * 12), abs=1e-3)
    assert acc["fp32_heldout_spread"] == 0 and acc["heldout_top1_diff"] == pytest.approx(
        acc["fast_heldout_top1"][0] - acc["fp32_heldout_top1"][0], abs=1e-3
    )

    table = bench.markdown_table(lines).splitlines()
    assert table[0].startswith("| case |") and table[2].startswith(f"| {method}_resnet18_32 | 4 | 1 x 1 |")
    assert any(t.startswith("augmentation at 32 px") for t in table) and any(t.startswith(acc["case"]) for t in table)
    assert any(t.startswith("held-out top-1 over 6 images (groups of 4), seeds [0]") for t in table)


def test_profile_lines_per_runner(bench, kermany_dir: Path, capsys):
    lightly = bench.lightly_available()
    argv = [*TINY, "--methods", "moco", "--data_dir", str(kermany_dir), "--profile", "--skip", "peak", "augment",
            "accuracy"] + ([] if lightly else ["--ours_only"])  # fmt: skip
    assert bench.main(argv) == 0
    lines = _lines(capsys.readouterr().out)
    profiles = [line for line in lines if line["kind"] == "profile"]
    assert [p["runner"] for p in profiles] == ["ours_fp32", "ours_fast"] + (["lightly_fp32"] if lightly else [])
    for p in profiles:
        assert p["case"] == "moco_resnet18_32" and p["steps"] == 1 and p["batch_size"] == 4
        assert sum(p["shares"].values()) == pytest.approx(1.0, abs=1e-3) and p["shares"]["convolution"] > 0
        assert 0 < p["op_ms"] <= p["wall_ms"] * 1.05 and len(p["top_ops"]) == 10
    assert [line["kind"] for line in lines if line["kind"] != "profile"] == ["step", "step"]
    table = bench.markdown_table(lines)
    assert "profile of moco_resnet18_32, ours_fast (" in table and "convolution " in table


def test_refuses_without_lightly(bench, monkeypatch, capsys):
    monkeypatch.setattr(bench, "lightly_available", lambda: False)
    assert bench.main(["--quick"]) == 2
    assert "lightly is not installed" in capsys.readouterr().err


def test_table_and_plot_of_saved_lines(bench, tmp_path, capsys):
    lines = [
        {"kind": "step", "case": "moco_resnet18_128", "path": "float32", "ratio": 0.9, "batch_size": 16, "repeats": 3,
         "ours_img_s": 7.0, "lightly_img_s": 7.8, "mfu": 0.5, "dtype": "float32"},
        {"kind": "step", "case": "moco_resnet18_128", "path": "fast", "ratio": 1.2, "batch_size": 16, "repeats": 3,
         "ours_img_s": 9.4, "lightly_img_s": 7.8, "mfu": 0.6, "dtype": "float32", "augment_headroom": 50.0},
    ]  # fmt: skip
    saved = tmp_path / "bench.jsonl"
    saved.write_text("".join(json.dumps(d) + "\n" for d in lines))
    png = tmp_path / "figs" / "ratios.png"
    assert bench.main(["--table", str(saved), "--plot", str(png), "--plot_title", "test machine"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2].startswith("| moco_resnet18_128 | 16 | 1 x 3 |") and "0.90x" in table[2] and "1.20x" in table[2]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and [p.name for p in png.parent.iterdir()] == ["ratios.png"]
    with pytest.raises(ValueError, match="ours_only"):
        bench.plot_ratios([{**lines[0], "ratio": None}], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_several_runs_are_summarised_by_their_median_and_other_options_replace(bench, tmp_path):
    def step(path: str, ratio: float, ours: float, **extra) -> dict:
        return {"kind": "step", "case": "simclr_resnet18_128", "path": path, "dtype": "float32", "batch_size": 16,
                "repeats": 3, "ratio": ratio, "ours_img_s": ours, "lightly_img_s": 10.0, "mfu": ratio / 2, **extra}  # fmt: skip

    runs = [step("float32", r, o) for r, o in ((0.9, 9.0), (1.1, 11.0), (0.95, 9.5))]
    runs += [step("fast", r, o) for r, o in ((1.8, 18.0), (2.2, 22.0), (2.0, 20.0))]
    summary = bench.step_lines_by_case(runs)["simclr_resnet18_128"]
    assert summary["float32"]["ratio"] == 0.95 and summary["float32"]["ours_img_s"] == 9.5
    assert summary["float32"]["runs"] == 3 and summary["float32"]["run_ratios"] == [0.9, 1.1, 0.95]
    assert summary["fast"]["ratio"] == 2.0 and summary["fast"]["mfu"] == 1.0
    row = bench.markdown_table(runs).splitlines()[2]
    assert row.startswith("| simclr_resnet18_128 | 16 | 3 x 3 |") and "0.95x (0.90-1.10)" in row and "2.00x (1.80-2.20)" in row

    # a re-run with another option (SimCLR's joint batch) appended to the file replaces the earlier runs of the case
    rerun = step("float32", 1.3, 13.0, simclr_views="joint")
    summary = bench.step_lines_by_case([*runs, rerun])["simclr_resnet18_128"]
    assert summary["float32"]["ratio"] == 1.3 and summary["float32"]["runs"] == 1 and summary["fast"]["runs"] == 3
    png = bench.plot_ratios(runs, tmp_path / "runs.png")  # whiskers from the runs
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_script_reprints_the_stored_benchmark_table():
    """``scripts/bench_pretrain.py`` is a thin command line over this module; docs/benchmarks.md's table comes from it."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "scripts/bench_pretrain.py", "--table", "docs/figures/bench_pretrain.jsonl"],
                         cwd=repo, capture_output=True, text=True, check=True).stdout
    assert "| moco_convstem_vit_tiny_128 | 16 | 5 x 3 |" in out and "2.38x (2.20-2.56)" in out
