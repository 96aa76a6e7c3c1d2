"""Optimisers not in torch or MONAI: LARS (You et al. 2017) for SimCLR-style large-batch pretraining.

For warmup + cosine learning-rate decay use MONAI's ``monai.optimizers.WarmupCosineSchedule`` (not re-implemented).
"""

from __future__ import annotations

from .lars import LARS as LARS
