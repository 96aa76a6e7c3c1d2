"""Optimisers not in torch or MONAI: LARS (You et al. 2017) for SimCLR-style large-batch pretraining, and
``FlatViewSGD``, torch's SGD stepping channels-last weights without copying them.

For warmup + cosine learning-rate decay use MONAI's ``monai.optimizers.WarmupCosineSchedule`` (not re-implemented).
"""

from __future__ import annotations

from .flat_view_sgd import FlatViewSGD as FlatViewSGD
from .flat_view_sgd import flat_view as flat_view
from .lars import LARS as LARS
