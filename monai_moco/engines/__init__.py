"""Ignite/MONAI engines for contrastive pretraining (subclasses of ``monai.engines`` trainers).
"""

from __future__ import annotations

from .contrastive import (
    ContrastiveTrainer,
    NonFiniteLossError,
    PrepareTwoViewBatch,
    TorchRNGState,
    checkpoint_dict,
    default_amp_dtype,
)
from .moco import SHUFFLE_BN_MODES, MoCoTrainer
from .simclr import SimCLRTrainer
