"""Building blocks: convolutional stem, projection head, top-K patch-scoring head.
"""

from __future__ import annotations

from .projection_head import MoCoV2ProjectionHead as MoCoV2ProjectionHead
from .projection_head import ProjectionHead as ProjectionHead
from .projection_head import SimCLRProjectionHead as SimCLRProjectionHead
