"""Shared utilities written once: distributed gather/shuffle helpers, momentum update.
"""

from __future__ import annotations

from .dist import (
    batch_shuffle,
    batch_unshuffle,
    concat_all_gather,
    concat_all_gather_with_grad,
    cosine_schedule,
    forward_shuffled,
    get_rank,
    get_world_size,
    is_dist_initialized,
    update_momentum,
)
