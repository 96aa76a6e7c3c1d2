"""Contrastive losses: InfoNCELoss (MoCo), NTXentLoss (SimCLR), SupConLoss (supervised contrastive), and MoCo's
MemoryQueue of negatives.
"""

from __future__ import annotations

from .info_nce import InfoNCELoss as InfoNCELoss
from .memory_queue import MemoryQueue as MemoryQueue
from .nt_xent import NTXentLoss as NTXentLoss
from .supcon import SupConLoss as SupConLoss
from .utils import contrastive_accuracy as contrastive_accuracy
from .utils import logit_stats as logit_stats
from .utils import multi_view_logits as multi_view_logits
