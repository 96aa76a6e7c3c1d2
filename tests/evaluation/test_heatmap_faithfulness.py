"""Tests for monai_moco.evaluation.heatmap_faithfulness on the real lung-box radiographs (CPU-sized)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_moco.data.boxes import coco_box_datalist
from monai_moco.evaluation.heatmap_faithfulness import (
    load_box_images,
    overlay_figure,
    paired_difference,
    score_maps,
    summarise_scores,
)
from monai_moco.metrics import box_coverage_grid
from monai_moco.transforms import Letterbox

N_IMAGES = 12


@pytest.fixture(scope="module")
def box_images(lung_boxes_dir: Path):
    return load_box_images(lung_boxes_dir / "boxes_coco.json", 64, max_images=N_IMAGES)


@pytest.mark.parametrize("size, index", [(64, 0), (64, 7), (96, 3)])
def test_boxes_follow_the_letterbox_on_real_images(lung_boxes_dir: Path, size: int, index: int):
    """The union of the boxes rasterised on the original image and letterboxed like the pixels equals the union of
    the moved boxes rasterised on the network input (up to the resampling of the edge pixels)."""
    data = load_box_images(lung_boxes_dir / "boxes_coco.json", size, max_images=index + 1)
    item = coco_box_datalist(lung_boxes_dir / "boxes_coco.json")[index]
    h, w = item["height"], item["width"]
    xyxy = torch.as_tensor(item["boxes"], dtype=torch.float64)
    original = box_coverage_grid(xyxy[:, [1, 0, 3, 2]], (h, w), (h, w)).float()  # (row, col) corner order
    letterboxed = Letterbox(size)(MetaTensor(original[None]))[0].as_tensor().double()
    moved = box_coverage_grid(data.boxes[-1], size, size)
    assert data.images.shape == (index + 1, 1, size, size)
    assert (letterboxed - moved).abs().mean() < 0.01
    assert moved.sum().item() == pytest.approx(letterboxed.sum().item(), rel=0.02)
    interior = (moved == 1.0) & (letterboxed > 0)  # pixels wholly inside a moved box are inside after resampling too
    assert interior.sum() > 0.3 * size * size and letterboxed[moved == 1.0].min() > 0.99
    top, left, bottom, right = data.content[-1].tolist()
    assert 0 <= top < bottom <= size and 0 <= left < right <= size and (bottom - top == size or right - left == size)


def test_uniform_map_scores_chance_and_box_map_beats_it(box_images):
    n = len(box_images)
    uniform = score_maps(torch.ones(n, 8, 8), box_images)
    np.testing.assert_allclose(uniform["mass_in_boxes"], uniform["chance_mass"], atol=1e-12)
    np.testing.assert_allclose(uniform["pointing_hit"], uniform["chance_pointing"], atol=1e-12)
    assert np.all(uniform["chance_mass_content"] >= uniform["chance_mass"] - 1e-12)
    assert 0.3 < uniform["chance_mass"].mean() < 0.8  # lung boxes cover a large share of a radiograph
    cover = torch.stack([box_coverage_grid(b, 64, (8, 8)) for b in box_images.boxes])
    boxed = score_maps(cover, box_images)
    expected = (cover**2).sum((1, 2)) / cover.sum((1, 2))
    np.testing.assert_allclose(boxed["mass_in_boxes"], expected.numpy(), atol=1e-12)
    assert np.all(boxed["mass_in_boxes"] > boxed["chance_mass"]) and np.all(boxed["pointing_hit"] == 1.0)


def test_summary_counts_patients_and_empty_maps(box_images):
    n = len(box_images)
    maps = torch.ones(n, 4, 4)
    maps[0] = 0.0  # an empty map: no mass share, a pointing miss
    scores = score_maps(maps, box_images)
    summary = summarise_scores(scores, box_images.groups, n_bootstrap=200, seed=1)
    assert summary["n_images"] == n and summary["n_empty"] == 1
    assert summary["n_patients"] == len(set(box_images.groups))
    assert summary["mass_in_boxes"]["n"] == n - 1 and summary["pointing_game"]["n"] == n
    expected_hits = np.where(scores["empty"], 0.0, scores["pointing_hit"]).mean()
    assert summary["pointing_game"]["value"] == pytest.approx(expected_hits)
    for key in ("mass_in_boxes", "pointing_game", "mass_minus_chance"):
        assert summary[key]["ci_low"] <= summary[key]["value"] <= summary[key]["ci_high"]
    assert summary == summarise_scores(scores, box_images.groups, n_bootstrap=200, seed=1)
    same = paired_difference(scores, scores, box_images.groups, n_bootstrap=50)
    assert same["mass_in_boxes"]["value"] == 0.0 and same["pointing_game"]["ci_high"] == 0.0
    with pytest.raises(ValueError, match="every heat-map is empty"):
        summarise_scores(score_maps(torch.zeros(n, 4, 4), box_images), box_images.groups)


def test_overlay_figure_is_a_grid_of_panels(box_images):
    n = len(box_images)
    maps = {"pretrained": torch.rand(n, 8, 8), "random": torch.rand(n, 2, 2)}
    rgb = overlay_figure(box_images, maps, {"pretrained": torch.zeros(n, 3, dtype=torch.long), "random": None},
                         [0, 5], scale=2)
    assert rgb.shape == (2 * 128 + 2, 2 * 128 + 2, 3) and rgb.dtype == np.uint8
    with pytest.raises(ValueError, match=f"outside the {n} images"):
        overlay_figure(box_images, maps, {}, [n])
