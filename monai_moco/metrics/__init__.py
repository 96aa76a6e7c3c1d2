"""Metrics: AUC and friends with bootstrap confidence intervals; COCO mAP of detected boxes.
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
from .classification import CLASSIFICATION_TASKS, classification_metrics_with_ci, logits_to_probabilities
from .detection import DETECTION_METRICS, coco_map, coco_map_with_ci, match_detections
from .heatmap_faithfulness import box_coverage_grid, cell_centres_in_boxes, heatmap_box_scores
from .knn import knn_predict
from .probe import extract_features, image_label_batch, labels_1d, logistic_probe
from .representation import alignment, effective_rank, embedding_geometry, mean_pairwise_cosine, uniformity

__all__ = [
    "BUILTIN_METRICS",
    "CLASSIFICATION_TASKS",
    "DETECTION_METRICS",
    "alignment",
    "auc_with_ci",
    "binary_metrics_with_ci",
    "bootstrap_ci",
    "box_coverage_grid",
    "cell_centres_in_boxes",
    "classification_metrics_with_ci",
    "coco_map",
    "coco_map_with_ci",
    "effective_rank",
    "embedding_geometry",
    "extract_features",
    "heatmap_box_scores",
    "image_label_batch",
    "knn_predict",
    "labels_1d",
    "logistic_probe",
    "logits_to_probabilities",
    "match_detections",
    "mean_pairwise_cosine",
    "per_class_auc_with_ci",
    "uniformity",
    "weighted_auc",
]
