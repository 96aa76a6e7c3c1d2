"""Tests for ConvStemViT: shapes, stems, presets (parameters, FLOPs), position-embedding interpolation, TorchScript."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from monai_moco.networks.blocks.conv_stem import ConvStem, PatchifyStem
from monai_moco.networks.nets.convstem_vit import (
    CONVSTEM_VIT_PRESETS,
    ConvStemViT,
    convstem_vit_small,
    patchify_vit_tiny,
)

SMALL = {"hidden_size": 32, "mlp_dim": 64, "num_layers": 2, "num_heads": 2}


def _tiny_vit(**kw) -> ConvStemViT:
    torch.manual_seed(0)
    return ConvStemViT(**{**SMALL, "img_size": 224, "patch_size": 16, **kw}).eval()


@pytest.mark.parametrize("hw", [(224, 224), (128, 128), (96, 96), (160, 128)])
@pytest.mark.parametrize("stem", ["conv", "patchify"])
@pytest.mark.parametrize("pooling", ["cls", "mean", "none"])
def test_output_shapes(hw: tuple[int, int], stem: str, pooling: str) -> None:
    net = _tiny_vit(stem=stem, pooling=pooling)
    with torch.no_grad():
        out = net(torch.randn(2, 1, *hw))
    n = (hw[0] // 16) * (hw[1] // 16)
    assert net.grid_size(hw) == (hw[0] // 16, hw[1] // 16)
    if pooling == "none":
        assert out.shape == (2, n, 32)
    else:
        assert out.shape == (2, 32)
    assert net.out_features == 32 and net.patch_size == 16
    assert torch.isfinite(out).all()


def test_cls_mean_none_are_views_of_the_same_tokens() -> None:
    x = torch.randn(2, 1, 96, 128)
    nets = {p: _tiny_vit(pooling=p) for p in ("cls", "mean", "none")}  # same seed -> same weights
    with torch.no_grad():
        outs = {p: n(x) for p, n in nets.items()}
        emb, tokens = nets["cls"].forward_features(x)
    torch.testing.assert_close(outs["mean"], outs["none"].mean(dim=1))
    assert not torch.allclose(outs["cls"], outs["mean"])
    torch.testing.assert_close(emb, outs["cls"])
    torch.testing.assert_close(tokens, outs["none"])
    assert nets["mean"].forward_features(x, return_tokens=False).shape == (2, 32)


def test_stem_choice_and_depth_reduction() -> None:
    conv = _tiny_vit(stem="conv", num_layers=3)
    patch = _tiny_vit(stem="patchify", num_layers=3)
    assert isinstance(conv.stem, ConvStem) and isinstance(patch.stem, PatchifyStem)
    # the paper drops one transformer block when the conv stem is used (FLOPs parity)
    assert conv.num_blocks == len(conv.blocks) == 2
    assert patch.num_blocks == len(patch.blocks) == 3
    assert _tiny_vit(stem="conv", num_layers=3, reduce_depth_for_stem=False).num_blocks == 3
    conv_c = _tiny_vit(stem="conv", patch_size=8, stem_channels=(4, 8, 16))
    assert [m.out_channels for m in conv_c.stem.modules() if isinstance(m, nn.Conv2d)] == [4, 8, 16, 32]


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _flops(net: nn.Module, size: int = 224) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.empty(1, 1, size, size, device="meta"))
    return counter.get_total_flops()


def test_preset_parameter_counts_and_flops() -> None:
    """Parameters at 224, 1 input channel, no classifier head (measured; timm's ViT-Ti/S/B without head and with 3
    channels are 5.5/21.7/85.8 M). FLOPs are measured on the meta device (no compute), with the einsum attention that
    FlopCounterMode counts on CPU (it does not count scaled_dot_product_attention there)."""
    expected_m = {"tiny": (5.38, 5.48), "small": (21.40, 21.55), "base": (85.3, 85.5)}
    with torch.device("meta"):
        for name, (lo, hi) in expected_m.items():
            plain = ConvStemViT.from_preset(name, stem="patchify", use_flash_attention=False)
            assert lo <= _count(plain) / 1e6 <= hi, (name, _count(plain))
            cfg = CONVSTEM_VIT_PRESETS[name]
            assert (plain.hidden_size, len(plain.blocks)) == (cfg["hidden_size"], 12)
            assert plain.blocks[0].mlp.linear1.out_features == 4 * cfg["hidden_size"]
            conv = ConvStemViT.from_preset(name, stem="conv", use_flash_attention=False)
            conv_full = ConvStemViT.from_preset(name, stem="conv", use_flash_attention=False, reduce_depth_for_stem=False)
            f_plain, f_conv, f_full = _flops(plain), _flops(conv), _flops(conv_full)
            # measured: conv/patchify = 0.997 (tiny), 1.006 (small), 1.011 (base) with one block removed
            assert abs(f_conv / f_plain - 1.0) < 0.03, (name, f_conv / f_plain)
            # without the reduction the stem adds about one block (1/12 ~ 8 %)
            assert f_full / f_plain > 1.05, (name, f_full / f_plain)
            # the conv stem itself is a few percent of the parameters, and one block fewer
            assert _count(conv) < _count(plain)
    # ViT-B/16 at 224: about 17.6 GMACs = 35 GFLOPs
    assert 34e9 < f_plain < 36e9


def test_tiny_matches_timm_vit_parameter_count() -> None:
    timm = pytest.importorskip("timm")
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, in_chans=1)
    with torch.device("meta"):
        ours = ConvStemViT.from_preset("tiny", stem="patchify")
    # MONAI's TransformerBlock always holds a (here unused) cross-attention LayerNorm; our CLS token has no extra
    # position embedding.
    extra = 12 * 2 * 192 - 192
    assert _count(ours) == _count(ref) + extra


def test_position_embedding_interpolation() -> None:
    net = _tiny_vit(pooling="none")
    assert net.base_grid == [14, 14]
    # identity at the training size: the stored table itself
    assert net._pos_embed_for([14, 14]) is net.pos_embed
    for size, grid in ((128, [8, 8]), (256, [16, 16])):
        table = net._pos_embed_for(grid)
        assert table.shape == (1, grid[0] * grid[1], 32)
        with torch.no_grad():
            assert net(torch.randn(1, 1, size, size)).shape == (1, grid[0] * grid[1], 32)
    # bicubic interpolation of a linear ramp stays (nearly) a ramp: the table is resampled, not cropped
    with torch.no_grad():
        ramp = torch.linspace(0, 1, 14).repeat_interleave(14)  # rows 0..1
        net.pos_embed.copy_(ramp[None, :, None].expand(1, 196, 32))
    up = net._pos_embed_for([28, 28])[0, :, 0].reshape(28, 28)
    assert torch.all(up[1:, 5] >= up[:-1, 5] - 1e-4) and up[0, 0] < 0.05 and up[-1, 0] > 0.95
    # gradients reach the learnable table through the interpolation
    net.train()
    net(torch.randn(1, 1, 128, 128)).sum().backward()
    assert net.pos_embed.grad is not None and net.pos_embed.grad.abs().sum() > 0


def test_sincos_is_fixed() -> None:
    net = _tiny_vit(pos_embed="sincos", pooling="mean")
    assert not net.pos_embed.requires_grad
    assert net(torch.randn(1, 1, 128, 96)).shape == (1, 32)


def test_3d() -> None:
    net = ConvStemViT(in_channels=1, img_size=32, patch_size=8, spatial_dims=3, pooling="none", **SMALL).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 32, 32, 32)).shape == (1, 64, 32)
        assert net(torch.randn(1, 1, 16, 32, 24)).shape == (1, 2 * 4 * 3, 32)
    assert net.grid_size((16, 32, 24)) == (2, 4, 3)


def test_errors_name_the_problem() -> None:
    net = _tiny_vit()
    with pytest.raises(ValueError, match=r"\[100, 96\].*patch_size=16"):
        net(torch.randn(1, 1, 100, 96))
    with pytest.raises(ValueError, match=r"\(100, 96\)"):
        net.grid_size((100, 96))
    with pytest.raises(ValueError, match="stem_channels"):
        ConvStemViT(stem="patchify", stem_channels=(8, 16, 32, 64), **SMALL)
    with pytest.raises(ValueError, match="pooling|avg"):
        ConvStemViT(pooling="avg", **SMALL)
    with pytest.raises(ValueError, match="huge"):
        ConvStemViT.from_preset("huge")


def test_factories_and_overrides() -> None:
    with torch.device("meta"):
        a = patchify_vit_tiny(img_size=96, pooling="none")
        b = convstem_vit_small(num_layers=4)
    assert isinstance(a.stem, PatchifyStem) and a.base_grid == [6, 6] and a.pooling == "none"
    assert isinstance(b.stem, ConvStem) and b.out_features == 384 and b.num_blocks == 3


def test_torchscript_trace_and_script() -> None:
    x = torch.randn(2, 1, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls_net = _tiny_vit(pooling="cls", img_size=64)
        traced = torch.jit.trace(cls_net, x)
        net = _tiny_vit(pooling="none", img_size=64)
        scripted = torch.jit.script(net)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), cls_net(x))
        torch.testing.assert_close(scripted(x), net(x))
        # the scripted model keeps the size-dependent interpolation branch
        x2 = torch.randn(1, 1, 32, 48)
        torch.testing.assert_close(scripted(x2), net(x2))


def test_deepcopy_after_forward() -> None:
    """The momentum encoder is a deepcopy: no cached non-leaf tensors may live on the module."""
    net = _tiny_vit(img_size=64).train()
    net(torch.randn(2, 1, 32, 32)).sum().backward()
    twin = copy.deepcopy(net)
    with torch.no_grad():
        x = torch.randn(1, 1, 32, 32)
        torch.testing.assert_close(twin.eval()(x), net.eval()(x))


@pytest.mark.parametrize(
    "spatial_dims, img_size, size",
    [(2, 32, (32, 24)), (3, 32, (32, 32, 32)), (3, 32, (16, 32, 24))],
    ids=["2d", "3d-training-grid", "3d-interpolated-grid"],
)
@pytest.mark.parametrize("pos_embed", ["learnable", "sincos"])
def test_2d_and_3d_grids_shapes_and_gradients(spatial_dims: int, img_size: int, size: tuple[int, ...],
                                              pos_embed: str) -> None:
    torch.manual_seed(0)
    net = ConvStemViT(in_channels=1, img_size=img_size, patch_size=8, spatial_dims=spatial_dims, pooling="none",
                      pos_embed=pos_embed, **{**SMALL, "hidden_size": 36, "num_heads": 2})
    grid = tuple(s // 8 for s in size)
    assert net.base_grid == [img_size // 8] * spatial_dims
    assert net.pos_embed.shape == (1, (img_size // 8) ** spatial_dims, 36)
    assert net.grid_size(size) == grid
    x = torch.randn(2, 1, *size, requires_grad=True)
    tokens = net(x)
    assert tokens.shape == (2, math.prod(grid), 36)
    tokens.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert net.stem.proj.weight.grad is not None and net.stem.proj.weight.grad.abs().sum() > 0
    assert (net.pos_embed.grad is not None) == (pos_embed == "learnable")


@pytest.mark.parametrize(
    "spatial_dims, bad, match",
    [
        (2, (1, 1, 30, 32), r"\[30, 32\].*patch_size=8"),
        (3, (1, 1, 30, 32, 32), r"\[30, 32, 32\].*patch_size=8"),
        (3, (1, 1, 32, 32), r"B x C x D x H x W.*\[1, 1, 32, 32\]"),
        (2, (1, 1, 32, 32, 32), r"B x C x H x W.*\[1, 1, 32, 32, 32\]"),
    ],
    ids=["2d-indivisible", "3d-indivisible", "3d-given-an-image", "2d-given-a-volume"],
)
def test_errors_name_the_input_shape(spatial_dims: int, bad: tuple[int, ...], match: str) -> None:
    net = ConvStemViT(img_size=32, patch_size=8, spatial_dims=spatial_dims, **SMALL)
    with pytest.raises(ValueError, match=match):
        net(torch.randn(*bad))
    with pytest.raises(ValueError, match=r"spatial_dims must be 2 or 3, got 4"):
        ConvStemViT(spatial_dims=4, **SMALL)
