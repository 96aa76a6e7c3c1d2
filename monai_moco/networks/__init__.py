"""Networks: ``nets`` (whole models) and ``blocks`` (parts they are assembled from).
"""

from __future__ import annotations

from .weights import CHECKPOINT_FORMATS as CHECKPOINT_FORMATS
from .weights import UnsafeCheckpointError as UnsafeCheckpointError
from .weights import load_backbone_weights as load_backbone_weights
from .weights import to_moco_state_dict as to_moco_state_dict
