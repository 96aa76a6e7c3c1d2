"""3D two-view augmentation (VolumeAugmentConfig, volume_ssl_augmentation, VolumeTwoView, VolumeTwoViewd) on the real
CT volume (stent.npz), read by MONAI's LoadImaged and windowed with ScaleIntensityRanged as the simclr_3d bundle does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.transforms import Compose, LoadImaged, Resized, ScaleIntensityRanged

from monai_moco.transforms.ssl import (
    VolumeAugmentConfig,
    VolumeTwoView,
    VolumeTwoViewd,
    volume_ssl_augmentation,
)

SIZE = 16


@pytest.fixture(scope="module")
def ct(stent_volume: Path) -> torch.Tensor:
    """The stent CT as ``1 x 64 x 32 x 32`` in [0, 1] (window 0-400, longest side 64)."""
    pre = Compose([
        LoadImaged("image", ensure_channel_first=True),
        ScaleIntensityRanged("image", a_min=0, a_max=400, b_min=0.0, b_max=1.0, clip=True),
        Resized("image", spatial_size=64, size_mode="longest", mode="area"),
    ])
    volume = pre({"image": str(stent_volume)})["image"]
    assert volume.shape == (1, 64, 32, 32)
    return volume


def test_views_have_the_size_and_range_and_differ(ct: torch.Tensor) -> None:
    two = VolumeTwoView(spatial_size=SIZE).set_random_state(seed=0)
    pairs = [two(ct) for _ in range(6)]
    for v1, v2 in pairs:
        assert v1.shape == v2.shape == (1, SIZE, SIZE, SIZE)
        assert float(v1.min()) >= 0.0 and float(v1.max()) <= 1.0
        assert not torch.allclose(v1, v2)  # two independent draws
    firsts = torch.stack([p[0] for p in pairs])
    assert firsts.std(dim=0).mean() > 0.01  # many different sub-volumes, not one crop


def test_same_seed_same_views_and_dictionary_wraps_the_array(ct: torch.Tensor) -> None:
    a = VolumeTwoView(spatial_size=SIZE, crop_scale=(0.4, 0.9)).set_random_state(seed=3)
    b = VolumeTwoView(spatial_size=SIZE, crop_scale=(0.4, 0.9)).set_random_state(seed=3)
    d = VolumeTwoViewd("image", spatial_size=SIZE, crop_scale=(0.4, 0.9), delete_original=True).set_random_state(seed=3)
    for _ in range(3):
        (a1, a2), (b1, b2) = a(ct), b(ct)
        out = d({"image": ct, "id": 7})
        torch.testing.assert_close(a1, b1)
        torch.testing.assert_close(a2, b2)
        torch.testing.assert_close(out["view1"], a1)
        torch.testing.assert_close(out["view2"], a2)
        assert "image" not in out and out["id"] == 7
    assert isinstance(d.two_view, VolumeTwoView) and d.config.crop_scale == (0.4, 0.9)


def test_without_randomness_the_view_is_the_resized_volume(ct: torch.Tensor) -> None:
    plain = volume_ssl_augmentation(spatial_size=(32, 16, 16), crop_scale=(1.0, 1.0), flip_prob=0.0,
                                    intensity_prob=0.0, gamma_prob=0.0, noise_prob=0.0)
    expected = torch.nn.functional.interpolate(ct.as_tensor()[None], size=(32, 16, 16), mode="trilinear",
                                               align_corners=False)[0]
    torch.testing.assert_close(torch.as_tensor(plain(ct)), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flips_reach_every_axis(ct: torch.Tensor, axis: int) -> None:
    """With only flips (probability 1 on ``axis``, never on the others) the view is the volume flipped on ``axis``."""
    aug = volume_ssl_augmentation(spatial_size=(64, 32, 32), crop_scale=(1.0, 1.0), flip_prob=1.0,
                                  intensity_prob=0.0, gamma_prob=0.0, noise_prob=0.0)
    for i, t in enumerate(aug.transforms[2:5]):
        t.prob = 1.0 if i == axis else 0.0
    torch.testing.assert_close(torch.as_tensor(aug(ct)), ct.as_tensor().flip(axis + 1), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        ({"crop_scale": (0.0, 1.0)}, ValueError, r"VolumeAugmentConfig.crop_scale must satisfy 0 < low"),
        ({"crop_scale": 0.5}, ValueError, r"VolumeAugmentConfig.crop_scale must be a \(low, high\) pair"),
        ({"spatial_size": (32, 32)}, ValueError, r"VolumeAugmentConfig.spatial_size .*\(32, 32\)"),
        ({"flip_prob": 1.5}, ValueError, r"VolumeAugmentConfig.flip_prob must be a probability"),
        ({"scale": 1.0}, ValueError, r"VolumeAugmentConfig.scale must be < 1"),
        ({"rotate_degrees": 10}, TypeError, r"VolumeAugmentConfig has no field\(s\) \['rotate_degrees'\]"),
    ],
)
def test_bad_settings_are_named(overrides: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        VolumeTwoViewd("image", **overrides)


def test_an_image_is_refused_with_its_shape() -> None:
    with pytest.raises(ValueError, match=r"C x D x H x W, got shape \(1, 32, 32\)"):
        VolumeTwoView(spatial_size=SIZE)(torch.rand(1, 32, 32))
    with pytest.raises(TypeError, match="VolumeAugmentConfig or None"):
        volume_ssl_augmentation(config={"spatial_size": 8})  # type: ignore[arg-type]
    assert VolumeAugmentConfig(spatial_size=8).output_size == (8, 8, 8)
