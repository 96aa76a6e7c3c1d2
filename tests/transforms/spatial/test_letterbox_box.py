"""Tests for LetterboxBox / LetterboxBoxd / unletterbox_boxes: COCO pixel boxes follow the letterbox and come back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_moco.data import coco_box_datalist
from monai_moco.transforms import Letterbox, LetterboxBox, LetterboxBoxd, LoadXRayd, unletterbox_boxes


@pytest.mark.parametrize(
    "in_shape, size, box, expected",
    [
        ((50, 200), 100, [20.0, 10.0, 60.0, 30.0], [42.0, 10.0, 52.0, 30.0]),  # wide: rows padded (37 on top)
        ((200, 50), 100, [10.0, 20.0, 30.0, 60.0], [10.0, 42.0, 30.0, 52.0]),  # tall: columns padded
        ((64, 64), 128, [0.0, 0.0, 64.0, 32.0], [0.0, 0.0, 64.0, 128.0]),  # enlarged 2x, (x, y) -> (row, col)
    ],
)
def test_boxes_move_with_the_image_and_back(in_shape, size, box, expected):
    img = Letterbox(size)(MetaTensor(torch.rand(1, *in_shape)))
    moved = LetterboxBox()(np.asarray([box]), img.meta)
    assert moved.dtype == torch.float32
    torch.testing.assert_close(moved, torch.tensor([expected]), atol=0.6, rtol=0)
    torch.testing.assert_close(unletterbox_boxes(moved, img.meta), torch.tensor([box]), atol=1e-4, rtol=0)


def test_box_marks_the_same_pixels_on_a_real_radiograph(lung_boxes_dir: Path):
    """A box's pixel mean is the same on the original image and inside the moved box on the letterboxed one."""
    item = coco_box_datalist(lung_boxes_dir / "boxes_coco.json")[3]
    full = LoadXRayd("image")(dict(item))["image"][0]
    out = LetterboxBoxd("boxes", "image")(LoadXRayd("image", spatial_size=256)(dict(item)))
    assert out["image"].shape == (1, 256, 256) and out["boxes"].shape == (2, 4)
    for (x0, y0, x1, y1), (r0, c0, r1, c1) in zip(item["boxes"], out["boxes"].tolist(), strict=True):
        original = float(full[int(y0) : int(y1), int(x0) : int(x1)].mean())
        moved = float(out["image"][0, round(r0) : round(r1), round(c0) : round(c1)].mean())
        assert abs(original - moved) < 0.02, (original, moved)
    assert out["labels"].tolist() == item["labels"].tolist()


def test_errors():
    with pytest.raises(KeyError, match="letterbox_scale.*LoadXRayd"):
        LetterboxBox()(np.zeros((1, 4)), {})
    with pytest.raises(ValueError, match=r"N x 4.*\(2, 3\)"):
        LetterboxBox()(np.zeros((2, 3)), {"letterbox_scale": (1, 1), "letterbox_pad": (0, 0, 0, 0)})
    with pytest.raises(ValueError, match=r"2 box key.*3 reference"):
        LetterboxBoxd(["boxes", "more"], ["image", "image", "image"])
    with pytest.raises(KeyError, match="'image' of box key 'boxes'"):
        LetterboxBoxd("boxes", "image")({"boxes": np.zeros((1, 4))})
