"""Multi-head self-attention over a token sequence with one layout change per pass, and the ViT block that uses it.

Standard ViT attention (Vaswani et al., "Attention Is All You Need", NeurIPS 2017; Dosovitskiy et al., "An Image is
Worth 16x16 Words", ICLR 2021): ``softmax(q k^T / sqrt(d)) v`` per head. MONAI's ``SABlock`` computes the explicit
(non-SDPA) path with ``torch.einsum``, which copies ``q``, ``k``, ``v`` and the attention weights into the layout it
wants on every forward and again in the backward. :class:`TokenSelfAttention` views the fused ``qkv`` projection as
``3 x B x heads x N x d`` and multiplies with batched ``@`` on those strided views instead, so the only copies are the
ones the batched matrix multiplies themselves need. The parameters, their names and the output are those of
``SABlock`` (the same state dict), so checkpoints load either way.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from monai.networks.blocks import SABlock, TransformerBlock

__all__ = ["TokenSelfAttention", "TokenTransformerBlock"]


class TokenSelfAttention(SABlock):
    """Multi-head self-attention on ``B x N x D`` tokens: MONAI's ``SABlock`` with a faster explicit path.

    The explicit path (``use_flash_attention=False``) is matmul -> scale -> softmax -> dropout -> matmul on strided
    views of the fused ``qkv`` projection, with the same output as ``SABlock``'s einsum path and fewer copies (the
    copies einsum made were a visible share of the bf16-autocast ConvStemViT step in ``scripts/bench_pretrain.py
    --profile``; the README's Performance section has the step rates). ``use_flash_attention=True`` calls
    ``torch.nn.functional.scaled_dot_product_attention`` as ``SABlock`` does, but applies attention dropout in
    training mode only. The flag is a plain attribute, so a caller may switch paths between forwards
    (``ConvStemViT(use_flash_attention="auto")`` does).

    Args:
        hidden_size: token width ``D``.
        num_heads: attention heads; must divide ``hidden_size``.
        dropout_rate: dropout on the attention weights and on the output.
        qkv_bias: bias in the fused query/key/value projection.
        save_attn: keep the last attention weights (``B x heads x N x N``, detached) in ``att_mat``; explicit path
            only.
        use_flash_attention: use PyTorch's ``scaled_dot_product_attention``.

    Raises:
        ValueError: if ``hidden_size`` is not divisible by ``num_heads``, ``dropout_rate`` is outside [0, 1], or both
            ``save_attn`` and ``use_flash_attention`` are set (from ``SABlock``).

    Example::

        >>> attn = TokenSelfAttention(hidden_size=192, num_heads=3, qkv_bias=True)
        >>> attn(torch.zeros(2, 65, 192)).shape
        torch.Size([2, 65, 192])
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        dropout_rate: float = 0.0,
        qkv_bias: bool = False,
        save_attn: bool = False,
        use_flash_attention: bool = False,
    ) -> None:
        super().__init__(
            hidden_size,
            num_heads,
            dropout_rate,
            qkv_bias=qkv_bias,
            save_attn=save_attn,
            use_flash_attention=use_flash_attention,
        )

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045
        """Attend every token to every (unmasked) token.

        Args:
            x: ``B x N x D`` tokens.
            attn_mask: optional ``B x N`` key mask, nonzero where a token may be attended to (as in ``SABlock``'s
                explicit path); masked keys get zero weight for every query.

        Returns:
            ``B x N x D``.

        Raises:
            ValueError: if ``x`` is not ``B x N x hidden_size`` or ``attn_mask`` is not ``B x N``.
        """
        if x.dim() != 3 or x.shape[2] != self.inner_dim:
            raise ValueError(
                f"TokenSelfAttention: expected B x N x {self.inner_dim} tokens, got shape {list(x.shape)}."
            )
        b, n = x.shape[0], x.shape[1]
        if attn_mask is not None and (attn_mask.dim() != 2 or attn_mask.shape[0] != b or attn_mask.shape[1] != n):
            raise ValueError(
                f"TokenSelfAttention: attn_mask must be B x N = {[b, n]} (a key mask), "
                f"got shape {list(attn_mask.shape)}."
            )
        # the fused projection's last dim is (qkv, head, d), as SABlock's "b h (qkv l d)" rearrange reads it
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.dim_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each B x heads x N x d, strided views (the backward stacks their gradients once)
        if self.use_flash_attention:
            mask = None if attn_mask is None else (attn_mask != 0)[:, None, None, :]
            dropout = self.dropout_rate if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=self.scale)
        else:
            att = (q @ k.transpose(-2, -1)) * self.scale
            if attn_mask is not None:
                att = att.masked_fill((attn_mask == 0)[:, None, None, :], float("-inf"))
            att = att.softmax(dim=-1)
            if self.save_attn:
                self.att_mat = att.detach()
            out = self.drop_weights(att) @ v
        out = out.transpose(1, 2).reshape(b, n, self.inner_dim)
        return self.drop_output(self.out_proj(out))


class TokenTransformerBlock(TransformerBlock):
    """MONAI's pre-norm ``TransformerBlock`` (attention + MLP, each residual) with :class:`TokenSelfAttention`.

    The state dict is that of ``TransformerBlock`` with the same arguments, so weights move between the two.

    Args:
        hidden_size: token width ``D``.
        mlp_dim: MLP hidden width.
        num_heads: attention heads; must divide ``hidden_size``.
        dropout_rate: dropout in attention and MLP.
        qkv_bias: bias in the fused query/key/value projection.
        save_attn: keep the last attention weights in ``attn.att_mat`` (explicit attention only).
        use_flash_attention: start with PyTorch's ``scaled_dot_product_attention`` (``attn.use_flash_attention``).

    Raises:
        ValueError: if ``dropout_rate`` is outside [0, 1] or ``hidden_size`` is not divisible by ``num_heads``.

    Example::

        >>> blk = TokenTransformerBlock(hidden_size=192, mlp_dim=768, num_heads=3, qkv_bias=True)
        >>> blk(torch.zeros(2, 65, 192)).shape
        torch.Size([2, 65, 192])
    """

    def __init__(
        self,
        hidden_size: int,
        mlp_dim: int,
        num_heads: int,
        dropout_rate: float = 0.0,
        qkv_bias: bool = False,
        save_attn: bool = False,
        use_flash_attention: bool = False,
    ) -> None:
        super().__init__(
            hidden_size,
            mlp_dim,
            num_heads,
            dropout_rate=dropout_rate,
            qkv_bias=qkv_bias,
            save_attn=save_attn,
            use_flash_attention=use_flash_attention,
        )
        self.attn = TokenSelfAttention(hidden_size, num_heads, dropout_rate, qkv_bias, save_attn, use_flash_attention)
