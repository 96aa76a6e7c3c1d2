"""Tests for ConvStem (Xiao et al. 2021) and PatchifyStem."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_moco.networks.blocks.conv_stem import ConvStem, PatchifyStem, default_stem_channels, num_stem_convs


@pytest.mark.parametrize("patch_size, n_convs", [(2, 1), (4, 2), (8, 3), (16, 4), (32, 5)])
def test_conv_stem_is_strided_3x3_convs_then_1x1(patch_size: int, n_convs: int) -> None:
    stem = ConvStem(in_channels=1, hidden_size=64, patch_size=patch_size)
    convs = [m for m in stem.modules() if isinstance(m, nn.Conv2d)]
    strided, last = convs[:-1], convs[-1]
    assert len(strided) == n_convs == num_stem_convs(patch_size)
    assert all(c.kernel_size == (3, 3) and c.stride == (2, 2) and c.padding == (1, 1) for c in strided)
    assert last.kernel_size == (1, 1) and last.stride == (1, 1) and last.out_channels == 64
    # every strided conv is followed by BatchNorm + ReLU
    seq = list(stem.convs)
    assert len(seq) == 3 * n_convs
    for i in range(n_convs):
        assert isinstance(seq[3 * i], nn.Conv2d)
        assert isinstance(seq[3 * i + 1], nn.BatchNorm2d)
        assert isinstance(seq[3 * i + 2], nn.ReLU)


def test_default_channels_follow_the_paper() -> None:
    # ViT_C-1GF (width 192) and ViT_C-4GF (width 384) stems of Xiao et al.
    assert default_stem_channels(192, 16) == (24, 48, 96, 192)
    assert default_stem_channels(384, 16) == (48, 96, 192, 384)
    assert default_stem_channels(192, 8) == (48, 96, 192)
    stem = ConvStem(hidden_size=192, patch_size=16)
    assert [m.out_channels for m in stem.convs if isinstance(m, nn.Conv2d)] == [24, 48, 96, 192]


@pytest.mark.parametrize("stem_cls", [ConvStem, PatchifyStem])
@pytest.mark.parametrize("hw", [(224, 224), (128, 128), (160, 128)])
def test_output_shape(stem_cls: type, hw: tuple[int, int]) -> None:
    stem = stem_cls(in_channels=1, hidden_size=32, patch_size=16)
    out = stem(torch.randn(2, 1, *hw))
    assert out.shape == (2, 32, hw[0] // 16, hw[1] // 16)


def test_custom_channels_and_3d() -> None:
    stem = ConvStem(in_channels=2, hidden_size=24, patch_size=8, channels=[4, 8, 16])
    assert [m.out_channels for m in stem.convs if isinstance(m, nn.Conv2d)] == [4, 8, 16]
    stem3 = ConvStem(in_channels=1, hidden_size=12, patch_size=4, spatial_dims=3)
    assert stem3(torch.randn(1, 1, 8, 16, 16)).shape == (1, 12, 2, 4, 4)
    assert any(isinstance(m, nn.BatchNorm3d) for m in stem3.modules())


def test_patchify_stem_is_one_conv_kernel_eq_stride() -> None:
    stem = PatchifyStem(in_channels=1, hidden_size=48, patch_size=16)
    convs = [m for m in stem.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1
    assert convs[0].kernel_size == (16, 16) and convs[0].stride == (16, 16)


@pytest.mark.parametrize("bad", [12, 3, 1, 0])
def test_non_power_of_two_is_rejected_with_the_value(bad: int) -> None:
    with pytest.raises(ValueError, match=str(bad)):
        ConvStem(patch_size=bad)


def test_wrong_channel_count_names_both() -> None:
    with pytest.raises(ValueError, match=r"\(8, 16\).*patch_size=16.*4"):
        ConvStem(patch_size=16, channels=(8, 16))


@pytest.mark.parametrize("stem_cls", [ConvStem, PatchifyStem])
@pytest.mark.parametrize(
    "spatial_dims, size",
    [(2, (32, 24)), (3, (32, 32, 32)), (3, (16, 32, 24))],
    ids=["2d", "3d-cube", "3d-anisotropic"],
)
def test_stems_2d_and_3d_shapes_and_gradients(stem_cls: type, spatial_dims: int, size: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    stem = stem_cls(in_channels=1, hidden_size=12, patch_size=8, spatial_dims=spatial_dims)
    x = torch.randn(2, 1, *size, requires_grad=True)
    out = stem(x)
    assert out.shape == (2, 12, *(s // 8 for s in size))
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in stem.parameters())
    conv_type = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    convs = [m for m in stem.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    assert convs and all(isinstance(c, conv_type) for c in convs)
    if stem_cls is ConvStem:  # log2(8) = 3 strided 3x3(x3) convs, then the 1x1(x1) projection
        assert [c.kernel_size for c in convs] == [(3,) * spatial_dims] * 3 + [(1,) * spatial_dims]
        assert all(c.stride == (2,) * spatial_dims for c in convs[:-1])
