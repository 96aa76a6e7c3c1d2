"""Building blocks: convolutional stem, projection head, top-K patch-scoring head.
"""

from __future__ import annotations

from .projection_head import MoCoV2ProjectionHead, ProjectionHead, SimCLRProjectionHead
