"""An Ignite metric that scores a detection evaluator's output with MONAI's COCO mAP.

Attach it as the ``key_val_metric`` of a ``monai.engines.SupervisedEvaluator`` that runs
:func:`monai_moco.engines.detection.detection_eval_iteration`, so MONAI's checkpoint and stats handlers can keep the
detector with the best validation mAP (Lin et al., "Microsoft COCO", ECCV 2014; :mod:`monai_moco.metrics.detection`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ignite.metrics import Metric

from monai_moco.metrics.detection import DETECTION_METRICS, coco_map

__all__ = ["DetectionMAP"]


class DetectionMAP(Metric):
    """COCO mAP (``"map_50"`` or ``"map_50_95"``) over every image an evaluator saw in one run.

    Args:
        class_names: one name per label index.
        metric: ``"map_50"`` (AP at IoU 0.5) or ``"map_50_95"`` (AP averaged over IoU 0.50:0.05:0.95).
        max_detections: detections per image evaluated.
        output_transform: maps ``engine.state.output`` to ``(preds, targets)``; the default reads the ``"pred"`` and
            ``"label"`` lists that ``detection_eval_iteration`` returns.

    Raises:
        ValueError: for an unknown ``metric``.

    Example::

        key_val_metric = {"val_map": DetectionMAP(["Right Lung", "Left Lung"], metric="map_50_95")}
    """

    def __init__(
        self,
        class_names: Sequence[str],
        metric: str = "map_50_95",
        max_detections: int = 100,
        output_transform: Callable[[Any], Any] = lambda out: (out["pred"], out["label"]),
    ) -> None:
        if metric not in DETECTION_METRICS:
            raise ValueError(f"DetectionMAP: metric must be one of {sorted(DETECTION_METRICS)}, got {metric!r}.")
        self.class_names = list(class_names)
        self.metric = metric
        self.max_detections = int(max_detections)
        self._preds: list[dict] = []
        self._targets: list[dict] = []
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        """Forget the images of the previous run."""
        self._preds, self._targets = [], []

    def update(self, output: tuple[Sequence[dict], Sequence[dict]]) -> None:
        """Add one batch.

        Args:
            output: ``(preds, targets)`` lists of per-image dicts.
        """
        preds, targets = output
        self._preds.extend(preds)
        self._targets.extend(targets)

    def compute(self) -> float:
        """The mAP over every image added since :meth:`reset`.

        Returns:
            the metric value in [0, 1].

        Raises:
            RuntimeError: when no image was added.
        """
        if not self._preds:
            raise RuntimeError("DetectionMAP: no images were evaluated (empty validation loader?).")
        return coco_map(self._preds, self._targets, self.class_names, self.max_detections)[self.metric]
