"""Test-set report of a chest X-ray classifier: binary, multi-class or multi-label, with bootstrap 95 % intervals.

Assembles the bootstrap metrics of :mod:`monai_moco.metrics.bootstrap` by task, the way transfer studies report them
(MoCo-CXR, Sowrirajan et al., MIDL 2021: AUC with 95 % bootstrap intervals; CheXpert, Irvin et al., AAAI 2019:
per-finding AUC): resampling patients rather than images when patient ids are known (cluster bootstrap).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.utils import look_up_option

from .bootstrap import binary_metrics_with_ci, bootstrap_ci, per_class_auc_with_ci

__all__ = ["CLASSIFICATION_TASKS", "classification_metrics_with_ci", "logits_to_probabilities"]

CLASSIFICATION_TASKS: tuple[str, ...] = ("binary", "multiclass", "multilabel")


def logits_to_probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Class probabilities from logits: softmax over classes, or a sigmoid per logit (multi-label, one-logit binary).

    Args:
        logits: ``(N, C)`` logits (``(N,)`` or ``(N, 1)`` for a one-logit binary model).
        task: one of :data:`CLASSIFICATION_TASKS`.

    Returns:
        ``(N, C)`` probabilities (``(N, 1)`` for one logit).

    Example::

        logits_to_probabilities(np.array([[0.0, 0.0]]), "binary")  # [[0.5, 0.5]]
    """
    task = look_up_option(task, CLASSIFICATION_TASKS)
    z = np.asarray(logits, dtype=np.float64)
    z = z.reshape(-1, 1) if z.ndim == 1 else z
    if task == "multilabel" or z.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-z))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(y == pred))


def classification_metrics_with_ci(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    task: str = "binary",
    class_names: Sequence[str] | None = None,
    groups: Sequence[Any] | np.ndarray | None = None,
    threshold: float = 0.5,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC (and accuracy, sensitivity, specificity for binary) with percentile bootstrap intervals, by task.

    * ``"binary"``: ``probabilities`` ``(N, 2)`` (softmax) or ``(N, 1)`` (sigmoid); the positive class is the last
      column. ``auc``, ``accuracy``, ``sensitivity``, ``specificity`` at ``threshold`` on the same resamples
      (:func:`~monai_moco.metrics.binary_metrics_with_ci`).
    * ``"multiclass"``: ``y_true`` ``(N,)`` class indices; one-vs-rest AUC per class and the macro mean
      (``auc``), and the accuracy of the arg-max.
    * ``"multilabel"``: ``y_true`` ``(N, C)`` with NaN for ignored labels; per-class AUC and the macro mean
      (``auc``) (:func:`~monai_moco.metrics.per_class_auc_with_ci`).

    Args:
        y_true: labels (see above).
        probabilities: ``(N, C)`` class probabilities.
        task: one of :data:`CLASSIFICATION_TASKS`.
        class_names: C names (default ``class_0``, ...).
        groups: optional ``(N,)`` patient ids: patients are resampled (cluster bootstrap).
        threshold: decision threshold on the positive-class probability (binary).
        n_bootstrap: number of resamples.
        ci: interval coverage.
        seed: resampling seed.

    Returns:
        ``{"task", "n", "n_groups", "threshold", "class_names", "auc": {"value", "ci_low", "ci_high", ...},
        ["accuracy", "sensitivity", "specificity"], ["per_class": {name: {...}}]}``.

    Raises:
        ValueError: for an unknown task or shapes that do not fit it.

    Example::

        report = classification_metrics_with_ci(labels, probs, "binary", ["normal", "pneumonia"], groups=pids)
        report["auc"]["value"], report["auc"]["ci_low"], report["auc"]["ci_high"]
    """
    task = look_up_option(task, CLASSIFICATION_TASKS)
    p = np.asarray(probabilities, dtype=np.float64)
    p = p.reshape(-1, 1) if p.ndim == 1 else p
    y = np.asarray(y_true, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probabilities must be (N, C) with N = len(y_true) = {y.shape[0]}, got {p.shape}.")
    n_classes = p.shape[1]
    names = list(class_names) if class_names is not None else [f"class_{j}" for j in range(max(n_classes, 2))]
    kw = {"n_bootstrap": n_bootstrap, "ci": ci, "groups": groups, "seed": seed}
    out: dict[str, Any] = {"task": task, "n": int(y.shape[0]), "threshold": float(threshold), "class_names": names}
    if task == "binary":
        if y.ndim != 1:
            raise ValueError(f"binary task: y_true must be (N,) 0/1 labels, got shape {y.shape}.")
        if n_classes > 2:
            raise ValueError(f"binary task: expected 1 or 2 probability columns, got {n_classes}; use 'multiclass'.")
        out.update(binary_metrics_with_ci(y.astype(np.int64), p[:, -1], threshold=threshold, **kw))
    elif task == "multiclass":
        if y.ndim != 1:
            raise ValueError(f"multiclass task: y_true must be (N,) class indices, got shape {y.shape}.")
        labels = y.astype(np.int64)
        if labels.min() < 0 or labels.max() >= n_classes:
            raise ValueError(f"multiclass task: labels must be in [0, {n_classes}), found {np.unique(labels)}.")
        onehot = np.eye(n_classes)[labels]
        per_class = per_class_auc_with_ci(onehot, p, names[:n_classes], **kw)
        out["auc"] = per_class.pop("macro")
        out["per_class"] = per_class
        out["accuracy"] = bootstrap_ci(labels, p.argmax(axis=1), _accuracy, require_both_classes=False, **kw)
    else:
        if y.shape != p.shape:
            raise ValueError(f"multilabel task: y_true {y.shape} must match probabilities {p.shape}.")
        mask = ~np.isnan(y)
        per_class = per_class_auc_with_ci(np.nan_to_num(y), p, names[:n_classes], mask=mask, **kw)
        out["auc"] = per_class.pop("macro")
        out["per_class"] = per_class
    out["n_groups"] = int(out["auc"]["n_groups"])
    return out
