"""Evaluation of pretrained representations: the linear probe on frozen features, the transfer runs' schedule and the
test evaluation of box detectors."""

from .detection import evaluate_detector
from .linear_probe import DEFAULT_C_GRID, FeatureSet, LogisticProbe, embed_dataset, run_linear_probe
from .schedule import training_schedule

__all__ = [
    "DEFAULT_C_GRID",
    "FeatureSet",
    "LogisticProbe",
    "embed_dataset",
    "evaluate_detector",
    "run_linear_probe",
    "training_schedule",
]
