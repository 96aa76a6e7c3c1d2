"""Ignite/MONAI engines for contrastive pretraining (subclasses of ``monai.engines`` trainers) and the iteration
functions that run a detector in MONAI's supervised engines.
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
from .detection import DETECTION_META_KEYS as DETECTION_META_KEYS
from .detection import detection_eval_iteration as detection_eval_iteration
from .detection import detection_prepare_batch as detection_prepare_batch
from .detection import detection_train_iteration as detection_train_iteration
from .moco import SHUFFLE_BN_MODES as SHUFFLE_BN_MODES
from .moco import MoCoTrainer as MoCoTrainer
from .simclr import SimCLRTrainer as SimCLRTrainer
