"""ConvStemViT ``use_flash_attention="auto"``: SDPA except under CPU bf16 autocast (measured by bench_pretrain.py)."""

from __future__ import annotations

import pytest
import torch

from monai_moco.networks.nets import ConvStemViT


def _flags(net: ConvStemViT) -> set[bool]:
    return {blk.attn.use_flash_attention for blk in net.blocks}


def _net(**kwargs) -> ConvStemViT:
    torch.manual_seed(0)
    return ConvStemViT(img_size=32, patch_size=8, hidden_size=32, num_heads=2, num_layers=2, mlp_dim=64, **kwargs)


def test_auto_uses_explicit_attention_only_under_cpu_bf16_autocast():
    net = _net()
    x = torch.rand(2, 1, 32, 32)
    assert net.auto_attention
    net(x)
    assert _flags(net) == {True}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf16 = net(x)
    assert _flags(net) == {False} and torch.isfinite(out_bf16).all()
    net(x)  # back to fp32: SDPA again
    assert _flags(net) == {True}


@pytest.mark.parametrize("flash", [True, False])
def test_explicit_choice_is_kept(flash: bool):
    net = _net(use_flash_attention=flash)
    x = torch.rand(2, 1, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net(x)
    assert not net.auto_attention and _flags(net) == {flash}


def test_both_paths_give_the_same_output_and_gradients():
    torch.manual_seed(1)
    x = torch.rand(3, 1, 32, 32)
    # a weighted sum: the plain sum of the final LayerNorm's output has a zero gradient for most parameters, which both
    # paths then give as float noise (up to ~2e-5) and no tolerance can compare
    w = torch.randn(3, 32)
    auto, explicit = _net(), _net(use_flash_attention=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = auto(x), explicit(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # same weights, same (explicit) attention path
    fa, fb = auto(x), explicit(x)  # fp32: SDPA vs explicit attention agree numerically
    torch.testing.assert_close(fa, fb, rtol=1e-4, atol=1e-5)
    (fa * w).sum().backward()
    (fb * w).sum().backward()
    for pa, pb in zip(auto.parameters(), explicit.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-3, atol=1e-5)


def test_unknown_string_is_refused():
    with pytest.raises(ValueError, match="auto"):
        _net(use_flash_attention="fast")
