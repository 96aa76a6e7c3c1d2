"""TokenSelfAttention / TokenTransformerBlock: the same function and state dict as SABlock / TransformerBlock."""

from __future__ import annotations

import pytest
import torch
from monai.networks.blocks import SABlock, TransformerBlock

from monai_moco.networks.blocks import TokenSelfAttention, TokenTransformerBlock

CASES = [  # hidden_size, num_heads, tokens, qkv_bias
    (32, 2, 17, True),
    (48, 3, 5, False),
    (64, 1, 65, True),
]


def _pair(hidden: int, heads: int, bias: bool, flash: bool = False) -> tuple[SABlock, TokenSelfAttention]:
    torch.manual_seed(0)
    ref = SABlock(hidden, heads, qkv_bias=bias, use_flash_attention=flash)
    ours = TokenSelfAttention(hidden, heads, qkv_bias=bias, use_flash_attention=flash)
    ours.load_state_dict(ref.state_dict())  # strict: the same keys and shapes
    return ref, ours


@pytest.mark.parametrize("hidden,heads,tokens,bias", CASES)
@pytest.mark.parametrize("flash", [False, True])
def test_matches_sablock_output_and_gradients(hidden: int, heads: int, tokens: int, bias: bool, flash: bool):
    ref, ours = _pair(hidden, heads, bias, flash)
    torch.manual_seed(1)
    x = torch.randn(3, tokens, hidden)
    w = torch.randn(3, tokens, hidden)
    xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yo = ref(xr), ours(xo)
    torch.testing.assert_close(yo, yr, rtol=1e-5, atol=1e-6)
    (yr * w).sum().backward()
    (yo * w).sum().backward()
    torch.testing.assert_close(xo.grad, xr.grad, rtol=1e-4, atol=1e-6)
    for (name, pr), po in zip(ref.named_parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(po.grad, pr.grad, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_explicit_path_is_bitwise_sablock_under_bf16_autocast():
    ref, ours = _pair(48, 3, True)
    x = torch.randn(2, 33, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yr, yo = ref(x), ours(x)
    assert yo.dtype == torch.bfloat16
    torch.testing.assert_close(yo, yr, rtol=0, atol=0)


@pytest.mark.parametrize("flash", [False, True])
def test_key_mask_gives_masked_tokens_zero_weight(flash: bool):
    _, ours = _pair(32, 2, True, flash)
    torch.manual_seed(2)
    x = torch.randn(2, 6, 32)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[:, 4:] = 0
    y = ours(x, attn_mask=mask)
    # the masked keys are ignored, so changing them changes only their own rows (queries), not the others
    x2 = x.clone()
    x2[:, 4:] = torch.randn(2, 2, 32)
    y2 = ours(x2, attn_mask=mask)
    torch.testing.assert_close(y2[:, :4], y[:, :4], rtol=1e-5, atol=1e-6)
    # and the first four tokens attend exactly as a 4-token sequence would
    torch.testing.assert_close(y[:, :4], ours(x[:, :4]), rtol=1e-5, atol=1e-6)


def test_save_attn_keeps_row_stochastic_weights():
    attn = TokenSelfAttention(32, 2, save_attn=True)
    attn(torch.randn(2, 7, 32))
    assert attn.att_mat.shape == (2, 2, 7, 7) and not attn.att_mat.requires_grad
    torch.testing.assert_close(attn.att_mat.sum(-1), torch.ones(2, 2, 7))


def test_attention_dropout_only_in_training():
    torch.manual_seed(0)
    attn = TokenSelfAttention(32, 2, dropout_rate=0.5, use_flash_attention=True).eval()
    x = torch.randn(2, 9, 32)
    torch.testing.assert_close(attn(x), attn(x), rtol=0, atol=0)  # eval: deterministic (no SDPA dropout)
    attn.train()
    assert not torch.equal(attn(x), attn(x))


@pytest.mark.parametrize(
    "shape,mask_shape,match",
    [
        ((2, 5, 31), None, r"B x N x 32 tokens, got shape \[2, 5, 31\]"),
        ((2, 5, 32), (2, 4), r"attn_mask must be B x N"),
    ],
)
def test_shape_errors_name_the_shape(shape, mask_shape, match):
    attn = TokenSelfAttention(32, 2)
    mask = None if mask_shape is None else torch.ones(mask_shape)
    with pytest.raises(ValueError, match=match):
        attn(torch.randn(shape), attn_mask=mask)


def test_bad_heads_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        TokenSelfAttention(30, 4)


@pytest.mark.parametrize("flash", [False, True])
def test_block_matches_monai_transformer_block(flash: bool):
    torch.manual_seed(0)
    ref = TransformerBlock(48, 96, 3, qkv_bias=True, use_flash_attention=flash)
    ours = TokenTransformerBlock(48, 96, 3, qkv_bias=True, use_flash_attention=flash)
    assert isinstance(ours.attn, TokenSelfAttention)
    ours.load_state_dict(ref.state_dict())  # strict
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 10, 48)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("flash", [False, True])
def test_torchscript(flash: bool):
    blk = TokenTransformerBlock(32, 64, 2, qkv_bias=True, use_flash_attention=flash).eval()
    scripted = torch.jit.script(blk)
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(scripted(x), blk(x), rtol=1e-5, atol=1e-6)
