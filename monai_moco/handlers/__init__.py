"""Ignite handlers: representation monitor, heat-map writer, non-finite-loss guard.
"""

from __future__ import annotations

from .checkpoint_saver import AtomicCheckpointSaver
from .stats import CONTRASTIVE_STAT_KEYS, contrastive_output_transform, contrastive_stats_handlers
