"""Ignite handlers: representation monitor, heat-map writer, non-finite-loss guard.
"""

from __future__ import annotations

from .checkpoint_saver import AtomicCheckpointSaver
from .representation_monitor import PROBES as PROBES
from .representation_monitor import RepresentationMonitor as RepresentationMonitor
from .representation_monitor import image_label_batch as image_label_batch
from .stats import CONTRASTIVE_STAT_KEYS, contrastive_output_transform, contrastive_stats_handlers
