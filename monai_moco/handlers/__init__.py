"""Ignite handlers: atomic checkpoint saver, representation (kNN) monitor, patch heat-map writer, classification report,
detection mAP metric, run-duration estimate, per-epoch seeding of data transforms, contrastive stats (the non-finite-loss
guard is in the engines: ``monai_moco.engines.NonFiniteLossError``).
"""

from __future__ import annotations

from monai_moco.utils.io import write_json_atomic as write_json_atomic  # defined in utils.io; kept for old imports

from .checkpoint_saver import AtomicCheckpointSaver as AtomicCheckpointSaver
from .classification_report import ClassificationReport as ClassificationReport
from .detection_map import DetectionMAP as DetectionMAP
from .epoch_seeds import EpochSeededTransforms as EpochSeededTransforms
from .heatmap_writer import PatchHeatmapWriter as PatchHeatmapWriter
from .mlflow_tracking import BundleMLFlowHandler as BundleMLFlowHandler
from .mlflow_tracking import tracking_output_transform as tracking_output_transform
from .representation_monitor import PROBES as PROBES
from .representation_monitor import RepresentationMonitor as RepresentationMonitor
from .representation_monitor import image_label_batch as image_label_batch
from .run_estimate import RunEstimate as RunEstimate
from .stats import CONTRASTIVE_STAT_KEYS as CONTRASTIVE_STAT_KEYS
from .stats import contrastive_output_transform as contrastive_output_transform
from .stats import contrastive_stats_handlers as contrastive_stats_handlers
