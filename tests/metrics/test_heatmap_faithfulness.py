"""Tests for monai_moco.metrics.heatmap_faithfulness: mass in boxes, pointing game and their chance levels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_moco.metrics.heatmap_faithfulness import box_coverage_grid, cell_centres_in_boxes, heatmap_box_scores

# boxes are (row_min, col_min, row_max, col_max) on the frame
COVERAGE_CASES = [
    # left half of a 64 x 64 frame on a 2 x 2 grid
    ([[0, 0, 64, 32]], (64, 64), (2, 2), [[1.0, 0.0], [1.0, 0.0]]),
    # two overlapping 16 px squares on a 32 px frame: the overlap counts once
    ([[0, 0, 16, 16], [8, 8, 24, 24]], (32, 32), (2, 2), [[1.0, 0.25], [0.25, 0.25]]),
    # a box reaching outside the frame is clipped to it
    ([[-10, -10, 8, 8]], (16, 16), (2, 2), [[1.0, 0.0], [0.0, 0.0]]),
    # non-square frame and grid: a 2 x 4 grid over 32 x 64, box covering rows 0-8 and columns 0-24
    ([[0, 0, 8, 24]], (32, 64), (2, 4), [[0.5, 0.25, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]),
    # no boxes
    (np.zeros((0, 4)), (8, 8), (2, 2), [[0.0, 0.0], [0.0, 0.0]]),
]


@pytest.mark.parametrize("boxes, frame, grid, expected", COVERAGE_CASES)
def test_box_coverage_grid_exact(boxes, frame, grid, expected):
    cov = box_coverage_grid(boxes, frame, grid)
    assert cov.shape == tuple(grid)
    np.testing.assert_allclose(cov.numpy(), expected, atol=1e-12)


def test_box_coverage_at_pixel_resolution_is_the_rasterised_union():
    """On the pixel grid the coverage of integer boxes is their 0/1 mask; fractional edges give partial pixels."""
    boxes = [[2, 3, 10, 7], [5, 5, 12, 9]]
    mask = np.zeros((16, 16))
    for r0, c0, r1, c1 in boxes:
        mask[r0:r1, c0:c1] = 1.0
    np.testing.assert_allclose(box_coverage_grid(boxes, 16, 16).numpy(), mask)
    half = box_coverage_grid([[0.0, 0.0, 1.0, 1.5]], 4, 4)
    assert half[0, 0] == 1.0 and half[0, 1] == 0.5 and half.sum() == 1.5


@pytest.mark.parametrize(
    "boxes, frame, grid, expected",
    [
        ([[0, 0, 64, 40]], 64, 2, [[True, False], [True, False]]),
        ([[0, 0, 64, 32]], 64, 2, [[True, False], [True, False]]),  # centre 16 inside, centre 48 not
        ([[16, 16, 17, 17]], 32, 2, [[False, False], [False, False]]),  # covers no centre (8 or 24)
        ([[0, 0, 16, 48]], (32, 64), (2, 4), [[True, True, True, False], [False, False, False, False]]),
    ],
)
def test_cell_centres_in_boxes(boxes, frame, grid, expected):
    assert cell_centres_in_boxes(boxes, frame, grid).tolist() == expected


SCORE_CASES = [
    # map, boxes, frame, mass, hit, chance_mass, chance_pointing
    ([[1.0, 0.0], [3.0, 0.0]], [[0, 0, 64, 32]], 64, 1.0, 1.0, 0.5, 0.5),
    ([[1.0, 3.0], [0.0, 0.0]], [[0, 0, 64, 32]], 64, 0.25, 0.0, 0.5, 0.5),
    # uniform map scores exactly its chance levels (ties share the hit)
    ([[2.0, 2.0], [2.0, 2.0]], [[0, 0, 64, 32]], 64, 0.5, 0.5, 0.5, 0.5),
    # two tied maxima, one inside: hit 0.5
    ([[4.0, 4.0], [0.0, 1.0]], [[0, 0, 64, 32]], 64, 4.0 / 9.0, 0.5, 0.5, 0.5),
    # a box covering a quarter of the top-left cell: cell centre (8, 8) outside
    ([[1.0, 0.0], [0.0, 0.0]], [[0, 0, 8, 8]], 32, 0.25, 0.0, 1.0 / 16.0, 0.0),
]


@pytest.mark.parametrize("heat, boxes, frame, mass, hit, chance_mass, chance_pointing", SCORE_CASES)
def test_heatmap_box_scores_exact(heat, boxes, frame, mass, hit, chance_mass, chance_pointing):
    s = heatmap_box_scores(torch.tensor([heat]), [boxes], image_size=frame)
    assert s["mass_in_boxes"].item() == pytest.approx(mass, abs=1e-12)
    assert s["pointing_hit"].item() == pytest.approx(hit, abs=1e-12)
    assert s["chance_mass"].item() == pytest.approx(chance_mass, abs=1e-12)
    assert s["chance_pointing"].item() == pytest.approx(chance_pointing, abs=1e-12)
    assert not s["empty"].item()


def test_empty_map_is_flagged_not_scored_and_channel_dim_is_accepted():
    maps = torch.zeros(2, 1, 4, 4)
    maps[1, 0, 0, 0] = 1.0
    s = heatmap_box_scores(maps, [[[0, 0, 8, 8]], [[0, 0, 8, 8]]], image_size=16)
    assert s["empty"].tolist() == [True, False]
    assert math.isnan(s["mass_in_boxes"][0]) and math.isnan(s["pointing_hit"][0])
    assert s["chance_mass"][0].item() == 0.25  # chance does not depend on the map
    assert s["mass_in_boxes"][1].item() == 1.0 and s["pointing_hit"][1].item() == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_score_equals_nearest_upsampled_score(seed):
    """Scoring a coarse map on its grid equals scoring its nearest-neighbour upsampling at pixel resolution."""
    g = torch.Generator().manual_seed(seed)
    grid, frame = (4, 4), (64, 64)
    heat = torch.rand(1, *grid, generator=g)
    corners = torch.randint(0, 64, (3, 4), generator=g).float()
    boxes = torch.stack([corners[:, [0, 2]].amin(1), corners[:, [1, 3]].amin(1),
                         corners[:, [0, 2]].amax(1) + 1, corners[:, [1, 3]].amax(1) + 1], dim=1)
    coarse = heatmap_box_scores(heat, [boxes], image_size=frame)
    fine_map = torch.nn.functional.interpolate(heat[None], size=frame, mode="nearest")[0]
    fine = heatmap_box_scores(fine_map, [boxes])
    assert coarse["mass_in_boxes"].item() == pytest.approx(fine["mass_in_boxes"].item(), abs=1e-9)
    assert coarse["chance_mass"].item() == pytest.approx(fine["chance_mass"].item(), abs=1e-9)


@pytest.mark.parametrize(
    "maps, boxes, match",
    [
        (torch.rand(2, 3, 4, 4), [[[0, 0, 1, 1]]] * 2, r"B x h x w or B x 1 x h x w, got shape \[2, 3, 4, 4\]"),
        (torch.rand(4, 4), [[[0, 0, 1, 1]]], r"got shape \[4, 4\]"),
        (-torch.rand(1, 4, 4), [[[0, 0, 1, 1]]], r"finite and non-negative"),
        (torch.rand(2, 4, 4), [[[0, 0, 1, 1]]], r"1 box arrays for 2 heat-maps \(shape \[2, 4, 4\]\)"),
        (torch.rand(1, 4, 4), [[[0, 0, 1]]], r"N x 4 \(row_min, col_min, row_max, col_max\), got shape \[1, 3\]"),
        (torch.rand(1, 4, 4), [[[2, 0, 1, 1]]], r"row_min <= row_max"),
    ],
)
def test_errors_name_the_shapes(maps, boxes, match):
    with pytest.raises(ValueError, match=match):
        heatmap_box_scores(maps, boxes)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match=r"image_size must be \(H, W\)"):
        box_coverage_grid([[0, 0, 1, 1]], (0, 4), (2, 2))
