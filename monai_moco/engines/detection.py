"""Iteration functions that run MONAI's ``RetinaNetDetector`` inside MONAI's ``SupervisedTrainer``/``SupervisedEvaluator``.

A detector computes its own losses from ``(images, targets)`` and returns boxes rather than a tensor, so the default
``network(inputs) -> loss_function(pred, label)`` step of ``monai.engines`` does not fit. MONAI's extension point for
that is ``iteration_update``: the engines keep their handlers, events, device and checkpointing, and only the step is
replaced, as MONAI's detection tutorials do with their own loops (Lin et al., "Focal Loss for Dense Object
Detection", ICCV 2017, is the loss). Batches are lists of dictionaries (``monai.data.utils.no_collation``), because
images may hold different numbers of boxes.

Example::

    trainer = SupervisedTrainer(device, max_epochs, loader, detector, optimizer, loss_function=None,
                                prepare_batch=detection_prepare_batch, iteration_update=detection_train_iteration,
                                decollate=False)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from ignite.engine import Engine

__all__ = ["DETECTION_META_KEYS", "detection_eval_iteration", "detection_prepare_batch", "detection_train_iteration"]

#: per-image fields passed through the evaluation step (for reports and the patient bootstrap)
DETECTION_META_KEYS: tuple[str, ...] = ("image_id", "patient_id")


def detection_prepare_batch(
    batchdata: Sequence[dict], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Images and ``{"boxes", "labels"}`` targets of a list-of-dicts batch, on ``device``.

    Args:
        batchdata: a list of items with ``"image"`` (``C×H×W``), ``"boxes"`` (``N×4``) and ``"labels"`` (``N``).
        device: target device.
        non_blocking: passed to ``Tensor.to``.
        kwargs: ignored (the signature of ``monai.engines.default_prepare_batch``).

    Returns:
        ``(images, targets)``: a list of float image tensors and a list of ``{"boxes": float32, "labels": int64}``.

    Raises:
        TypeError: when the batch is not a list of dicts (use ``collate_fn=monai.data.utils.no_collation``).
        KeyError: when an item lacks a key (the item index and its keys are named).

    Example::

        images, targets = detection_prepare_batch(next(iter(loader)), "cpu")
    """
    if not isinstance(batchdata, (list, tuple)) or not all(isinstance(d, dict) for d in batchdata):
        raise TypeError(
            f"detection batches must be lists of dicts (DataLoader(collate_fn=monai.data.utils.no_collation)), got "
            f"{type(batchdata).__name__}."
        )
    images, targets = [], []
    for i, item in enumerate(batchdata):
        missing = [k for k in ("image", "boxes", "labels") if k not in item]
        if missing:
            raise KeyError(f"detection batch item {i} lacks {missing}; its keys are {sorted(map(str, item))}.")
        images.append(torch.as_tensor(item["image"]).float().to(device, non_blocking=non_blocking))
        targets.append(
            {
                "boxes": torch.as_tensor(item["boxes"]).float().reshape(-1, 4).to(device, non_blocking=non_blocking),
                "labels": torch.as_tensor(item["labels"]).long().reshape(-1).to(device, non_blocking=non_blocking),
            }
        )
    return images, targets


def detection_train_iteration(engine: Engine, batchdata: Sequence[dict]) -> dict[str, Any]:
    """One optimizer step of a ``RetinaNetDetector`` (classification + box-regression loss).

    Args:
        engine: a ``monai.engines.SupervisedTrainer`` whose ``network`` is the detector and whose ``prepare_batch`` is
            :func:`detection_prepare_batch`.
        batchdata: a list-of-dicts batch.

    Returns:
        ``{"loss", "cls_loss", "box_loss"}`` (detached scalar tensors), the engine's ``state.output``.

    Example::

        SupervisedTrainer(..., iteration_update=detection_train_iteration, decollate=False)
    """
    images, targets = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)
    detector = engine.network
    detector.train()
    losses = detector(images, targets)
    cls_loss, box_loss = losses[detector.cls_key], losses[detector.box_reg_key]
    loss = cls_loss + box_loss  # MONAI's RetinaNet raises on non-finite logits itself
    engine.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    engine.optimizer.step()
    return {"loss": loss.detach(), "cls_loss": cls_loss.detach(), "box_loss": box_loss.detach()}


def detection_eval_iteration(engine: Engine, batchdata: Sequence[dict]) -> dict[str, Any]:
    """Detections of one batch in eval mode, with the targets and per-image ids for the metrics.

    Args:
        engine: a ``monai.engines.SupervisedEvaluator`` whose ``network`` is the detector and whose ``prepare_batch``
            is :func:`detection_prepare_batch`.
        batchdata: a list-of-dicts batch.

    Returns:
        ``{"pred": [{"boxes", "labels", "labels_scores"}, ...], "label": [{"boxes", "labels"}, ...],
        "image_id": [...], "patient_id": [...]}`` (tensors on the CPU; ids ``None`` when absent).

    Example::

        SupervisedEvaluator(..., iteration_update=detection_eval_iteration, decollate=False)
    """
    images, targets = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)
    detector = engine.network
    detector.eval()
    with torch.no_grad():
        preds = detector(images)
    out: dict[str, Any] = {
        "pred": [{k: v.detach().cpu() for k, v in p.items()} for p in preds],
        "label": [{k: v.cpu() for k, v in t.items()} for t in targets],
    }
    for key in DETECTION_META_KEYS:
        out[key] = [item.get(key) for item in batchdata]
    return out
