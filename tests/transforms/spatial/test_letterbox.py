"""Tests for Letterbox / Letterboxd / unletterbox on a real chest radiograph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor

from monai_moco.transforms import Letterbox, Letterboxd, unletterbox
from monai_moco.transforms.spatial import resize_spatial


@pytest.fixture(scope="module")
def chest(shared_data: Path) -> np.ndarray:
    """The SIIM chest (MONOCHROME2), 8-bit, scaled to [0, 1], 1024x1024."""
    path = next((shared_data / "cxr_dicom").glob("siim_*.dcm"))
    return pydicom.dcmread(path).pixel_array.astype(np.float32) / 255.0


@pytest.mark.parametrize(
    "in_shape,spatial_size",
    [
        ((1955, 1841), 224),
        ((1024, 512), (64, 64)),
        ((256, 1024), (100, 100)),
        ((30, 40), (64, 48)),  # enlarging
        ((224, 224), 224),  # identity
        ((300, 200), (96, 160)),  # wide frame, tall image
    ],
)
def test_letterbox_keeps_aspect_and_exact_size(chest: np.ndarray, in_shape: tuple, spatial_size) -> None:
    src = torch.from_numpy(chest[: in_shape[0], : in_shape[1]].copy()) if max(in_shape) <= 1024 else None
    if src is None:
        src = torch.nn.functional.interpolate(torch.from_numpy(chest)[None, None], size=in_shape)[0, 0]
    out = Letterbox(spatial_size, pad_value=-1.0)(MetaTensor(src[None]))
    target = (spatial_size, spatial_size) if isinstance(spatial_size, int) else spatial_size
    assert tuple(out.shape) == (1, *target)
    rh, rw = out.meta["letterbox_resized_shape"]
    assert abs(rh / rw - in_shape[0] / in_shape[1]) <= 1.0 / min(rh, rw) + 1e-6
    assert rh == target[0] or rw == target[1]  # the longer side (relative to the frame) fits
    top, bottom, left, right = out.meta["letterbox_pad"]
    assert (top + rh + bottom, left + rw + right) == target and abs(top - bottom) <= 1 and abs(left - right) <= 1
    mask = torch.ones(target, dtype=torch.bool)
    mask[top : top + rh, left : left + rw] = False
    assert torch.all(out[0][mask] == -1.0)
    assert float(out[0][~mask].min()) >= 0.0
    assert out.meta["letterbox_scale"] == pytest.approx((rh / in_shape[0], rw / in_shape[1]))
    assert out.meta["letterbox_input_shape"] == in_shape


def test_affine_follows_the_resampling() -> None:
    img = MetaTensor(torch.rand(1, 200, 100), affine=torch.diag(torch.tensor([0.5, 0.25, 1.0, 1.0])))
    out = Letterbox(100)(img)  # scale 0.5, pad 25 columns each side
    assert torch.allclose(torch.diag(out.affine)[:2], torch.tensor([1.0, 0.5], dtype=torch.float64))
    # the centre of output column 25 (first image column) lies at input column (0 + 0.5) / 0.5 - 0.5 = 0.5
    world = out.affine @ torch.tensor([0.0, 25.0, 0.0, 1.0], dtype=torch.float64)
    assert float(world[1]) == pytest.approx(0.25 * 0.5)


def test_plain_resize_without_aspect(chest: np.ndarray) -> None:
    out = Letterbox((64, 32), keep_aspect=False)(MetaTensor(torch.from_numpy(chest)[None]))
    assert out.shape == (1, 64, 32) and out.meta["letterbox_pad"] == (0, 0, 0, 0)


def test_unletterbox_maps_heatmap_back(chest: np.ndarray) -> None:
    src = torch.from_numpy(chest[:, 128:896].copy())[None]  # 1024x768
    boxed = Letterbox(128)(MetaTensor(src))
    back = unletterbox(boxed, boxed.meta)
    assert back.shape == src.shape
    assert np.corrcoef(back.numpy().ravel(), src.numpy().ravel())[0, 1] > 0.97
    coarse = unletterbox(torch.rand(1, 8, 8), boxed.meta)  # e.g. a ViT patch map
    assert coarse.shape == src.shape
    with pytest.raises(KeyError, match="letterbox_pad"):
        unletterbox(boxed, {})


@pytest.mark.parametrize("mode", ["area", "bilinear", "bicubic", "nearest"])
def test_modes_and_numpy_input(chest: np.ndarray, mode: str) -> None:
    out = Letterbox(96, mode=mode)(chest[None, :512, :256])
    assert out.shape == (1, 96, 96)
    ref = resize_spatial(torch.from_numpy(chest[None, :512, :256].copy()), (96, 48), mode)
    torch.testing.assert_close(out[..., 24:72].as_tensor(), ref)


def test_letterbox_rejects_wrong_rank_and_mode() -> None:
    with pytest.raises(ValueError, match=r"C×H×W image, got shape \(8, 8\)"):
        Letterbox(4)(torch.zeros(8, 8))
    with pytest.raises(ValueError):
        Letterbox(4, mode="lanczos")
    with pytest.raises(ValueError, match="spatial_size"):
        Letterbox((4, 4, 4))


def test_letterboxd_holds_letterbox(chest: np.ndarray) -> None:
    t = Letterboxd(["image", "mask"], 64, allow_missing_keys=True)
    assert isinstance(t.letterbox, Letterbox)
    out = t({"image": MetaTensor(torch.from_numpy(chest[:, :512].copy())[None]), "label": 1})
    assert out["image"].shape == (1, 64, 64) and out["label"] == 1 and "mask" not in out
