"""Building blocks: convolutional stem, projection head, top-K patch-scoring head, split-batch BatchNorm, token
self-attention.
"""

from __future__ import annotations

from .conv_stem import ConvStem as ConvStem
from .conv_stem import PatchifyStem as PatchifyStem
from .projection_head import LinearProjectionHead as LinearProjectionHead
from .projection_head import MoCoV2ProjectionHead as MoCoV2ProjectionHead
from .projection_head import ProjectionHead as ProjectionHead
from .projection_head import SimCLRProjectionHead as SimCLRProjectionHead
from .split_batch_norm import SplitBatchNorm as SplitBatchNorm
from .token_attention import TokenSelfAttention as TokenSelfAttention
from .token_attention import TokenTransformerBlock as TokenTransformerBlock
from .topk_patch_head import TopKPatchHead as TopKPatchHead
