"""Tests for patch-score heat-maps: upsampling, overlay colours, outlines, PNG size (on a real radiograph)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_moco.visualize.heatmap import heatmap_overlay, patch_score_map, save_heatmap_png


def _radiograph(kermany_dir: Path, hw: tuple[int, int]) -> torch.Tensor:
    path = sorted((kermany_dir / "test").rglob("*.jpeg"))[0]
    img = Image.open(path).convert("L").resize((hw[1], hw[0]), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]


@pytest.mark.parametrize("batched", [False, True])
def test_patch_score_map(batched: bool) -> None:
    scores = torch.arange(6.0)  # grid 2 x 3, increasing row-major
    s = scores[None].repeat(2, 1) if batched else scores
    m = patch_score_map(s, (2, 3), (40, 60))
    assert m.shape == ((2, 40, 60) if batched else (40, 60))
    m = m[0] if batched else m
    assert m.min() == 0.0 and m.max() == 1.0
    assert m[5, 5] < m[5, 55] < m[35, 55]  # increases left->right and top->bottom
    assert torch.count_nonzero(patch_score_map(torch.ones(6), (2, 3), (8, 8))) == 0  # constant -> zeros
    with pytest.raises(ValueError, match=r"\(2, 3\).*N = 6"):
        patch_score_map(torch.ones(5), (2, 3), (8, 8))


def test_overlay_and_png_on_a_real_radiograph(kermany_dir: Path, tmp_path: Path) -> None:
    hw = (160, 128)  # non-square: grid 10 x 8 for patch 16
    image = _radiograph(kermany_dir, hw)
    grid = (10, 8)
    scores = torch.zeros(80)
    scores.view(10, 8)[:, :4] = 5.0  # left half salient
    out = save_heatmap_png(tmp_path / "sub" / "h.png", image, scores, grid, topk_indices=[0, 79])
    png = Image.open(out)
    assert png.size == (hw[1], hw[0]) and png.mode == "RGB"
    rgb = np.asarray(png).astype(np.int32)
    assert np.array_equal(rgb, heatmap_overlay(image, scores, grid, topk_indices=[0, 79]))
    # jet: high scores red, low scores blue -> red minus blue is larger on the left than on the right
    red_minus_blue = rgb[..., 0] - rgb[..., 2]
    assert red_minus_blue[30:130, 10:50].mean() > red_minus_blue[30:130, 78:118].mean() + 100
    # outlines of the selected patches (first and last) are white, a patch interior is not forced white
    assert (rgb[0, 0:16] == 255).all() and (rgb[159, 112:128] == 255).all() and (rgb[150:160, 127] == 255).all()
    assert not (rgb[80, 60] == 255).all()
    # the radiograph still shows through: the overlay is not constant inside a region of constant score
    assert rgb[20:140, 70:120, 1].std() > 5


def test_overlay_alpha_and_errors() -> None:
    image = torch.linspace(0, 1, 32)[None].repeat(32, 1)
    scores = torch.rand(16)
    gray = heatmap_overlay(image, scores, (4, 4), alpha=0.0)
    assert np.array_equal(gray[..., 0], gray[..., 2])  # only the grey image
    assert np.array_equal(gray[..., 0], np.rint(image.numpy() * 255).astype(np.uint8))
    assert heatmap_overlay(image[None], scores[None], (4, 4), cmap="viridis").shape == (32, 32, 3)
    with pytest.raises(ValueError, match="outside the 4 x 4"):
        heatmap_overlay(image, scores, (4, 4), topk_indices=[16])
    with pytest.raises(ValueError, match=r"\[2, 32, 32\]"):
        heatmap_overlay(torch.rand(2, 32, 32), scores, (4, 4))
