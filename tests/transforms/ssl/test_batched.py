"""Tests for the batched two-view path: BatchedCXRAugment, BatchedTwoView."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from monai_moco.transforms.ssl import (
    BatchedCXRAugment,
    BatchedTwoView,
    CXRAugmentConfig,
    RandResizedCropXRay,
    cxr_ssl_augmentation,
)


@pytest.mark.parametrize("in_size, out_size", [(224, 224), (256, 224), (64, 64), ((200, 160), (96, 128))])
def test_shape_dtype_range(in_size, out_size) -> None:
    h, w = (in_size, in_size) if isinstance(in_size, int) else in_size
    two = BatchedTwoView(spatial_size=out_size, seed=0)
    views = two(torch.rand(4, 1, h, w))
    expected = (4, 1, *((out_size, out_size) if isinstance(out_size, int) else out_size))
    for v in views:
        assert v.shape == expected  # one channel in, one channel out: no colour ops
        assert v.dtype == torch.float32
        assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
        assert type(v) is torch.Tensor


def test_accepts_metatensor_and_integer_input() -> None:
    aug = BatchedCXRAugment(spatial_size=32, seed=0)
    assert type(aug(MetaTensor(torch.rand(2, 1, 40, 40)))) is torch.Tensor
    assert aug((torch.rand(2, 1, 40, 40) > 0.5).to(torch.uint8)).dtype == torch.float32


def test_rejects_non_batch() -> None:
    with pytest.raises(ValueError, match="B x C x H x W"):
        BatchedTwoView(seed=0)(torch.rand(1, 64, 64))


def test_views_differ_and_seed_reproduces(kermany_images: torch.Tensor) -> None:
    v1, v2 = BatchedTwoView(seed=5)(kermany_images)
    assert ((v1 - v2).abs().mean(dim=(1, 2, 3)) > 0.02).all()  # two views drawn independently, for every sample
    w1, w2 = BatchedTwoView(seed=5)(kermany_images)
    assert torch.equal(v1, w1) and torch.equal(v2, w2)
    x1, _ = BatchedTwoView(seed=6)(kermany_images)
    assert not torch.equal(v1, x1)


def test_set_generator_and_manual_seed() -> None:
    images = torch.rand(3, 1, 48, 48)
    two = BatchedTwoView(spatial_size=32)
    two.set_generator(torch.Generator().manual_seed(11))
    a = two(images)
    two.manual_seed(11)
    b = two(images)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert two.generator_for(images.device) is two.generator_for(images.device)  # one stream per device


def test_per_sample_parameters_differ() -> None:
    batch = torch.rand(1, 1, 64, 64).expand(16, 1, 64, 64)  # 16 copies of one image
    view, _ = BatchedTwoView(spatial_size=64, seed=0)(batch)
    flat = view.flatten(1)
    dist = torch.cdist(flat, flat)
    off_diagonal = dist[~torch.eye(16, dtype=torch.bool)]
    assert (off_diagonal > 1e-3).all()


@pytest.mark.parametrize("flip_prob", [0.0, 0.5, 1.0])
def test_per_sample_flips(left_bright: torch.Tensor, flip_prob: float) -> None:
    cfg = CXRAugmentConfig.moco_cxr(spatial_size=64, flip_prob=flip_prob)
    view = BatchedCXRAugment(cfg, seed=0)(left_bright.expand(64, 1, 64, 64))
    flipped = view[..., 32:].mean(dim=(1, 2, 3)) > view[..., :32].mean(dim=(1, 2, 3))
    if flip_prob == 0.0:
        assert not flipped.any()
    elif flip_prob == 1.0:
        assert flipped.all()
    else:
        assert 16 < int(flipped.sum()) < 48  # flips drawn per sample, not per batch


def test_rotation_bounded(horizontal_bar: torch.Tensor, bar_angle) -> None:
    cfg = CXRAugmentConfig.moco_cxr(spatial_size=96, flip_prob=0.0)
    views = BatchedCXRAugment(cfg, seed=0)(horizontal_bar.expand(32, 1, 96, 96))
    angles = [bar_angle(v) for v in views]
    assert max(abs(a) for a in angles) <= 10.5
    assert max(abs(a) for a in angles) > 5.0
    assert len({round(a, 2) for a in angles}) > 16  # per-sample angles
    identity = BatchedCXRAugment(cfg.replace(rotate_degrees=0.0), seed=0)(horizontal_bar[None])
    assert torch.allclose(identity[0], horizontal_bar, atol=1e-5)  # crop (1, 1), no jitter: identity


def test_rotated_corners_are_zero_like_per_sample_path() -> None:
    cfg = CXRAugmentConfig.moco_cxr(spatial_size=64, flip_prob=0.0, crop_scale=(0.3, 0.3), crop_ratio=(1.0, 1.0))
    batched = BatchedCXRAugment(cfg, seed=0)(torch.ones(32, 1, 128, 128))
    per_sample = cxr_ssl_augmentation(cfg).set_random_state(seed=0)
    single = torch.stack([per_sample(torch.ones(1, 128, 128)).as_tensor() for _ in range(32)])
    zero_batched = (batched < 0.5).float().mean()
    zero_single = (single < 0.5).float().mean()
    # E|zero fraction| of a square rotated by U(-10, 10) degrees is about 4.4 %: both paths must show it
    assert 0.02 < float(zero_batched) < 0.08
    assert float(zero_batched) == pytest.approx(float(zero_single), abs=0.015)


def test_crop_scale_semantics_match_per_sample_path() -> None:
    # x-ramp; crop a quarter of the area: both paths show half of the ramp
    ramp = torch.linspace(0, 1, 64).expand(1, 64, 64).clone()
    cfg = CXRAugmentConfig.moco_cxr(
        spatial_size=64, rotate_degrees=0.0, flip_prob=0.0, crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0)
    )
    batched = BatchedCXRAugment(cfg, seed=0)(ramp.expand(8, 1, 64, 64))
    span_batched = batched[:, 0, 32, -1] - batched[:, 0, 32, 0]
    crop = RandResizedCropXRay(64, cfg.crop_scale, cfg.crop_ratio)
    single = crop(ramp)
    span_single = single[0, 32, -1] - single[0, 32, 0]
    assert torch.allclose(span_batched, torch.full((8,), 0.5), atol=0.03)
    assert float(span_single) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize(
    "overrides",
    [
        {"brightness": 0.4, "contrast": 0.0, "jitter_prob": 1.0},
        {"brightness": 0.0, "contrast": 0.4, "jitter_prob": 1.0},
        {"gamma_prob": 1.0},
        {"blur_prob": 1.0},
        {"noise_prob": 1.0},
    ],
)
def test_intensity_ops_match_per_sample_statistics(kermany_images: torch.Tensor, overrides: dict) -> None:
    # one intensity op at a time, no geometry: mean and spread of per-image statistics agree between the paths
    cfg = CXRAugmentConfig.moco_cxr(spatial_size=64, rotate_degrees=0.0, flip_prob=0.0).replace(**overrides)
    img = torch.nn.functional.interpolate(kermany_images[:1], size=(64, 64), mode="area")
    batched = BatchedCXRAugment(cfg, seed=0)(img.expand(100, 1, 64, 64))
    per_sample = cxr_ssl_augmentation(cfg).set_random_state(seed=0)
    single = torch.stack([per_sample(img[0]).as_tensor() for _ in range(100)])
    assert not torch.equal(batched[0], img[0])  # the op is applied
    for stat in (lambda v: v.mean(dim=(1, 2, 3)), lambda v: v.std(dim=(1, 2, 3))):
        sb, ss = stat(batched), stat(single)
        standard_error = float((sb.var() / len(sb) + ss.var() / len(ss)).sqrt())
        assert abs(float(sb.mean() - ss.mean())) <= 4 * standard_error + 1e-3  # same mean (z-test, 4 sigma)
        assert float(sb.std()) == pytest.approx(float(ss.std()), rel=0.35, abs=0.003)  # same spread


def test_real_radiograph_views_plausible(kermany_images: torch.Tensor) -> None:
    v1, v2 = BatchedTwoView(spatial_size=128, seed=0)(kermany_images)
    for v in (v1, v2):
        means = v.mean(dim=(1, 2, 3))
        assert ((means > 0.1) & (means < 0.9)).all()  # neither black nor saturated
        assert (v.std(dim=(1, 2, 3)) > 0.05).all()
        assert float((v >= 1.0).float().mean()) < 0.2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda() -> None:
    v1, _ = BatchedTwoView(seed=0)(torch.rand(4, 1, 64, 64, device="cuda"))
    assert v1.device.type == "cuda"
