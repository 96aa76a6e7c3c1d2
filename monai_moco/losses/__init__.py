"""Contrastive losses: InfoNCELoss (MoCo) and NTXentLoss (SimCLR), and MoCo's MemoryQueue of negatives.
"""

from __future__ import annotations

from .info_nce import InfoNCELoss as InfoNCELoss
from .memory_queue import MemoryQueue as MemoryQueue
from .nt_xent import NTXentLoss as NTXentLoss
from .utils import contrastive_accuracy as contrastive_accuracy
from .utils import logit_stats as logit_stats
