"""Tests for the per-sample two-view path: CXRAugmentConfig, resized_crop_boxes, RandResizedCropXRay, TwoView."""

from __future__ import annotations

import math

import pytest
import torch
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta

from monai_moco.transforms.ssl import (
    CXRAugmentConfig,
    RandResizedCropXRay,
    TwoView,
    cxr_ssl_augmentation,
    resized_crop_boxes,
)

# ---------------------------------------------------------------------------------------------------------- config


def test_config_defaults_and_json_lists() -> None:
    cfg = CXRAugmentConfig(spatial_size=[128, 96], crop_scale=[0.3, 1.0])  # lists, as a bundle JSON gives them
    assert cfg.output_size == (128, 96)
    assert cfg.crop_scale == (0.3, 1.0)
    assert CXRAugmentConfig().output_size == (224, 224)
    assert CXRAugmentConfig().crop_scale == (0.5, 1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
        ({"crop_scale": (0.8, 0.5)}, "crop_scale"),
        ({"crop_scale": 0.5}, "crop_scale"),
        ({"flip_prob": 1.5}, "flip_prob"),
        ({"spatial_size": 0}, "spatial_size"),
        ({"gamma": (0.0, 1.5)}, "gamma"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"brightness": 1.0}, "brightness"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CXRAugmentConfig(**kwargs)


def test_config_unknown_override_names_the_field() -> None:
    with pytest.raises(TypeError, match="crop_scales"):
        cxr_ssl_augmentation(crop_scales=(0.2, 1.0))


def test_moco_cxr_preset_is_rotation_and_flip_only() -> None:
    cfg = CXRAugmentConfig.moco_cxr(spatial_size=128)
    assert cfg.crop_scale == (1.0, 1.0) and cfg.rotate_degrees == 10.0 and cfg.flip_prob == 0.5
    assert cfg.jitter_prob == cfg.gamma_prob == cfg.blur_prob == cfg.noise_prob == 0.0
    names = [type(t).__name__ for t in cxr_ssl_augmentation(cfg).transforms]
    assert names == ["RandResizedCropXRay", "RandRotate", "RandFlip", "ScaleIntensityRange"]


# ------------------------------------------------------------------------------------------------------ crop boxes


@pytest.mark.parametrize("height, width, scale", [(224, 224, (0.2, 1.0)), (200, 300, (0.5, 1.0)), (64, 48, (0.9, 1.0))])
def test_resized_crop_boxes_inside_and_in_range(height: int, width: int, scale: tuple[float, float]) -> None:
    g = torch.Generator().manual_seed(0)
    n, ratio = 500, (3 / 4, 4 / 3)
    boxes = resized_crop_boxes(
        height, width, scale, ratio, *(torch.rand(n, 10, generator=g) for _ in range(2)), torch.rand(n), torch.rand(n)
    )
    y0, x0, h, w = boxes.unbind(1)
    assert (y0 >= 0).all() and (x0 >= 0).all()
    assert (y0 + h <= height + 1e-4).all() and (x0 + w <= width + 1e-4).all()
    area = h * w / (height * width)
    fits = (area >= scale[0] - 1e-5) & (area <= scale[1] + 1e-5)
    aspect_ok = (w / h >= ratio[0] - 1e-5) & (w / h <= ratio[1] + 1e-5)
    assert (fits & aspect_ok).float().mean() > 0.95  # the rest are centre-crop fallbacks
    assert area.std() > 0.01  # really random


def test_resized_crop_boxes_fallback_is_centred() -> None:
    # a 10 x 100 image cannot hold a square of 90 % of its area: fall back to the centred 10 x 10 square
    u = torch.rand(3, 10)
    boxes = resized_crop_boxes(10, 100, (0.9, 1.0), (1.0, 1.0), u, u, torch.rand(3), torch.rand(3))
    assert torch.allclose(boxes, torch.tensor([[0.0, 45.0, 10.0, 10.0]]).expand(3, 4))


def test_resized_crop_boxes_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="N x T"):
        resized_crop_boxes(8, 8, (0.5, 1.0), (1.0, 1.0), torch.rand(4), torch.rand(4), torch.rand(4), torch.rand(4))


def test_rand_resized_crop_scale_semantics() -> None:
    # x-ramp image; a square crop of a quarter of the area spans half the ramp after resizing back
    ramp = torch.linspace(0, 1, 64).expand(1, 64, 64).clone()
    crop = RandResizedCropXRay(64, scale=(0.25, 0.25), ratio=(1.0, 1.0))
    crop.set_random_state(seed=0)
    out = crop(ramp)
    assert crop.box is not None and crop.box[2:] == (32, 32)
    assert out.shape == (1, 64, 64)
    assert float(out[0, 0, -1] - out[0, 0, 0]) == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="C x H x W"):
        crop(torch.rand(64, 64))


# ---------------------------------------------------------------------------------------------------------- views


@pytest.mark.parametrize("in_size, out_size", [(224, 224), (256, 224), (64, 64), (300, 128)])
@pytest.mark.parametrize("track_meta", [True, False])
def test_views_shape_dtype_range(in_size: int, out_size: int, track_meta: bool) -> None:
    two = TwoView(cxr_ssl_augmentation(spatial_size=out_size), track_meta=track_meta).set_random_state(seed=1)
    img = MetaTensor(torch.rand(1, in_size, in_size))
    for v in two(img):
        assert v.shape == (1, out_size, out_size)  # one channel in, one channel out: no colour ops
        assert v.dtype == torch.float32
        assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
        assert isinstance(v, MetaTensor) == track_meta
    assert get_track_meta()  # the process-wide flag is restored


def test_views_differ_and_seed_reproduces(kermany_images: torch.Tensor) -> None:
    img = kermany_images[0]

    def views(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return TwoView(cxr_ssl_augmentation(), track_meta=False).set_random_state(seed=seed)(img)

    v1, v2 = views(7)
    assert (v1 - v2).abs().mean() > 0.02  # the two views are drawn independently
    w1, w2 = views(7)
    assert torch.equal(v1, w1) and torch.equal(v2, w2)
    x1, _ = views(8)
    assert not torch.equal(v1, x1)


def test_asymmetric_transforms_seeded_separately() -> None:
    img = torch.rand(1, 64, 64)
    t1, t2 = cxr_ssl_augmentation(spatial_size=64), cxr_ssl_augmentation(spatial_size=64)
    a = TwoView(t1, t2).set_random_state(seed=3)(img)
    t1b, t2b = cxr_ssl_augmentation(spatial_size=64), cxr_ssl_augmentation(spatial_size=64)
    b = TwoView(t1b, t2b).set_random_state(seed=3)(img)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], a[1])


@pytest.mark.parametrize("flip_prob, expect_flips", [(0.0, False), (1.0, True)])
def test_flip_probability(left_bright: torch.Tensor, flip_prob: float, expect_flips: bool) -> None:
    aug = cxr_ssl_augmentation(CXRAugmentConfig.moco_cxr(spatial_size=64, flip_prob=flip_prob)).set_random_state(0)
    for _ in range(20):
        v = aug(left_bright)
        flipped = float(v[..., 32:].mean()) > float(v[..., :32].mean())
        assert flipped == expect_flips


def test_rotation_bounded(horizontal_bar: torch.Tensor, bar_angle) -> None:
    cfg = CXRAugmentConfig.moco_cxr(spatial_size=96, flip_prob=0.0)
    aug = cxr_ssl_augmentation(cfg).set_random_state(seed=0)
    angles = [bar_angle(aug(horizontal_bar)) for _ in range(20)]
    assert max(abs(a) for a in angles) <= 10.5
    assert max(abs(a) for a in angles) > 3.0  # it really rotates
    none = cxr_ssl_augmentation(cfg.replace(rotate_degrees=0.0))
    assert torch.allclose(none(horizontal_bar), horizontal_bar, atol=1e-5)  # crop (1, 1), no jitter: identity


def test_real_radiograph_views_plausible(kermany_images: torch.Tensor) -> None:
    two = TwoView(cxr_ssl_augmentation(spatial_size=128), track_meta=False).set_random_state(seed=0)
    for img in kermany_images:
        for v in two(img):
            assert v.shape == (1, 128, 128)
            assert 0.1 < float(v.mean()) < 0.9  # neither black nor saturated
            assert float(v.std()) > 0.05  # structure kept
            assert float((v >= 1.0).float().mean()) < 0.5
    assert math.isfinite(float(v.sum()))
