"""Contrastive losses: InfoNCELoss (MoCo) and NTXentLoss (SimCLR).
"""

from __future__ import annotations

from .info_nce import InfoNCELoss
from .memory_queue import MemoryQueue
from .nt_xent import NTXentLoss
from .utils import contrastive_accuracy, logit_stats
