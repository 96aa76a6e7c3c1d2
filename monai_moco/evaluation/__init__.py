"""Evaluation of pretrained representations: the linear probe on frozen features and the transfer runs' schedule."""

from .linear_probe import DEFAULT_C_GRID, FeatureSet, LogisticProbe, embed_dataset, run_linear_probe
from .schedule import training_schedule

__all__ = ["DEFAULT_C_GRID", "FeatureSet", "LogisticProbe", "embed_dataset", "run_linear_probe", "training_schedule"]
