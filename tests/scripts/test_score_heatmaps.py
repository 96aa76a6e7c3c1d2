"""scripts/score_heatmaps.py on a few real lung-box images: a saved top-K checkpoint vs random init, and Grad-CAM."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from testing_helpers import load_module_from_path

from monai_moco.evaluation.heatmap_faithfulness import topk_encoder

REPO = Path(__file__).resolve().parents[2]
SCRIPT = load_module_from_path(REPO / "scripts" / "score_heatmaps.py")
TINY = ["--image_size", "32", "--patch_size", "8", "--topk", "4", "--max_images", "5", "--n_bootstrap", "20"]


@pytest.fixture(scope="module")
def topk_checkpoint(tmp_path_factory) -> Path:
    """A pretraining-style checkpoint ({"network": ...}) of the top-K encoder, initialised with another seed."""
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    torch.save({"network": topk_encoder(None, 32, 8, 4, seed=1).state_dict()}, path)
    return path


def test_topk_pretrained_vs_random_writes_scores_summary_and_overlays(lung_boxes_dir, topk_checkpoint, tmp_path):
    out = tmp_path / "topk"
    summary = SCRIPT.main(["--method", "topk", "--checkpoint", str(topk_checkpoint), "--output_dir", str(out),
                           "--annotation_file", str(lung_boxes_dir / "boxes_coco.json"), "--overlays", "0", "4", *TINY])
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["grid"] == [4, 4] and set(summary["models"]) == {"pretrained", "random"}
    for s in summary["models"].values():
        assert s["n_images"] == 5 and s["n_empty"] == 0
        assert 0.0 <= s["mass_in_boxes"]["value"] <= 1.0 and 0.0 < s["chance_mass"] < 1.0
    assert summary["models"]["pretrained"]["checkpoint"] == str(topk_checkpoint)
    assert summary["models"]["random"]["checkpoint"] is None
    assert summary["difference"]["mass_in_boxes"]["value"] == pytest.approx(
        summary["models"]["pretrained"]["mass_in_boxes"]["value"] - summary["models"]["random"]["mass_in_boxes"]["value"]
    )
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 10 and {r["model"] for r in rows} == {"pretrained", "random"}
    assert (out / "overlays.png").stat().st_size > 0


def test_a_checkpoint_of_another_architecture_is_named(lung_boxes_dir, topk_checkpoint, tmp_path):
    with pytest.raises(ValueError, match=r"last\.pt' does not fit convstem_vit_tiny at 32 px, patch 16"):
        SCRIPT.main(["--method", "topk", "--checkpoint", str(topk_checkpoint), "--output_dir", str(tmp_path),
                     "--annotation_file", str(lung_boxes_dir / "boxes_coco.json"), *TINY, "--patch_size", "16"])


def test_gradcam_random_init_with_a_small_probe(lung_boxes_dir, kermany_dir, tmp_path):
    summary = SCRIPT.main(["--method", "gradcam", "--output_dir", str(tmp_path), "--dataset_dir", str(kermany_dir),
                           "--annotation_file", str(lung_boxes_dir / "boxes_coco.json"), "--image_size", "64",
                           "--max_images", "4", "--probe_max_images", "120", "--n_bootstrap", "20",
                           "--gradcam_layer", "layer3"])
    assert summary["grid"] == [4, 4] and list(summary["models"]) == ["random"] and "difference" not in summary
    assert summary["models"]["random"]["probe"]["n_train"] > 0
    assert summary["models"]["random"]["pointing_game"]["n"] == 4
