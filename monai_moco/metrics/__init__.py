"""Metrics: AUC and friends with bootstrap confidence intervals.
"""

from __future__ import annotations

from .bootstrap import (
    BUILTIN_METRICS,
    auc_with_ci,
    binary_metrics_with_ci,
    bootstrap_ci,
    per_class_auc_with_ci,
    weighted_auc,
)
from .knn import knn_predict

__all__ = [
    "BUILTIN_METRICS",
    "auc_with_ci",
    "binary_metrics_with_ci",
    "bootstrap_ci",
    "knn_predict",
    "per_class_auc_with_ci",
    "weighted_auc",
]
