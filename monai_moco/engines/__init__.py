"""Ignite/MONAI engines for contrastive pretraining (subclasses of ``monai.engines`` trainers).
"""

from __future__ import annotations

from .contrastive import AMP_MODES as AMP_MODES
from .contrastive import ContrastiveTrainer as ContrastiveTrainer
from .contrastive import NonFiniteLossError as NonFiniteLossError
from .contrastive import PrepareTwoViewBatch as PrepareTwoViewBatch
from .contrastive import StepOptions as StepOptions
from .contrastive import TorchRNGState as TorchRNGState
from .contrastive import amp_pays as amp_pays
from .contrastive import checkpoint_dict as checkpoint_dict
from .contrastive import default_amp_dtype as default_amp_dtype
from .moco import SHUFFLE_BN_MODES as SHUFFLE_BN_MODES
from .moco import MoCoTrainer as MoCoTrainer
from .simclr import SimCLRTrainer as SimCLRTrainer
