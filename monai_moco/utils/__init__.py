"""Shared utilities written once: distributed gather/shuffle helpers, momentum update, a module's device.
"""

from __future__ import annotations

from .dist import batch_shuffle as batch_shuffle
from .dist import batch_unshuffle as batch_unshuffle
from .dist import concat_all_gather as concat_all_gather
from .dist import concat_all_gather_with_grad as concat_all_gather_with_grad
from .dist import cosine_schedule as cosine_schedule
from .dist import device_of as device_of
from .dist import forward_shuffled as forward_shuffled
from .dist import get_rank as get_rank
from .dist import get_world_size as get_world_size
from .dist import is_dist_initialized as is_dist_initialized
from .dist import update_momentum as update_momentum
