"""An evaluator handler that writes a classifier's test metrics, with bootstrap 95 % intervals, to a JSON file.

MONAI's ``ROCAUC``/``ConfusionMatrix`` handlers give point estimates; a transfer study also needs the uncertainty
(MoCo-CXR, Sowrirajan et al., MIDL 2021, report 95 % bootstrap intervals) and, where patients have several images,
a bootstrap over patients. This handler gathers the logits, labels and patient ids of one evaluator pass and calls
:func:`~monai_moco.metrics.classification_metrics_with_ci` when the pass completes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.utils import CommonKeys

from monai_moco.metrics.classification import classification_metrics_with_ci, logits_to_probabilities
from monai_moco.utils.io import Writer, atomic_write_all, csv_writer, json_writer

__all__ = ["ClassificationReport", "write_classification_report"]


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


class ClassificationReport:
    """Collect ``pred`` logits, labels and patient ids over an evaluator run; write metrics with bootstrap CIs.

    Attach to a ``monai.engines.SupervisedEvaluator`` built with ``decollate=False`` and no ``postprocessing`` (the
    handler reads the batched logits ``engine.state.output["pred"]`` and ``engine.state.batch``).

    Args:
        output_file: the metrics JSON to write when the run completes (atomically, together with ``predictions_file``).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        class_names: names of the classes / findings.
        threshold: decision threshold on the positive-class probability (binary).
        n_bootstrap: bootstrap resamples.
        ci: interval coverage.
        seed: bootstrap seed.
        group_key: batch key of the patient ids (resampled by the bootstrap); missing -> images are resampled.
        image_key: batch key of the images (file names go to the predictions CSV when they carry metadata).
        label_key: batch key of the labels.
        predictions_file: optional CSV of per-image probabilities.
        extra: more entries for the JSON (e.g. the checkpoint path and the run's settings).
        pred_transform: optional callable applied to the output's logits before the probabilities.

    Example::

        ClassificationReport("runs/cls/test_metrics.json", "binary", ["normal", "pneumonia"]).attach(evaluator)
        evaluator.run()
    """

    def __init__(
        self,
        output_file: str,
        task: str = "binary",
        class_names: Sequence[str] | None = None,
        threshold: float = 0.5,
        n_bootstrap: int = 1000,
        ci: float = 0.95,
        seed: int = 0,
        group_key: str = "group",
        image_key: str = CommonKeys.IMAGE,
        label_key: str = CommonKeys.LABEL,
        predictions_file: str | None = None,
        extra: dict | None = None,
        pred_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.output_file = output_file
        self.task = task
        self.class_names = None if class_names is None else list(class_names)
        self.threshold = threshold
        self.n_bootstrap = n_bootstrap
        self.ci = ci
        self.seed = seed
        self.group_key = group_key
        self.image_key = image_key
        self.label_key = label_key
        self.predictions_file = predictions_file
        self.extra = dict(extra or {})
        self.pred_transform = pred_transform
        self.logger = logging.getLogger(__name__)
        self.report: dict[str, Any] | None = None
        self._reset()

    def _reset(self, engine: Engine | None = None) -> None:
        self._logits: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._groups: list[str] = []
        self._files: list[str] = []

    def attach(self, engine: Engine) -> None:
        """Register on ``STARTED`` (reset), ``ITERATION_COMPLETED`` (collect) and ``COMPLETED`` (report).

        Args:
            engine: the evaluator.
        """
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self)

    def _collect(self, engine: Engine) -> None:
        output, batch = engine.state.output, engine.state.batch
        if not isinstance(output, dict) or CommonKeys.PRED not in output:
            raise ValueError(
                "ClassificationReport needs engine.state.output to be a dict with batched 'pred' logits; build the "
                "evaluator with decollate=False and no postprocessing."
            )
        pred = output[CommonKeys.PRED]
        if self.pred_transform is not None:
            pred = self.pred_transform(pred)
        label = output.get(CommonKeys.LABEL, batch.get(self.label_key) if isinstance(batch, dict) else None)
        if label is None:
            raise ValueError(f"ClassificationReport: no labels in the output or under batch[{self.label_key!r}].")
        logits = _to_numpy(pred)
        self._logits.append(logits.reshape(logits.shape[0], -1))
        labels = _to_numpy(label)
        self._labels.append(labels.reshape(labels.shape[0], -1) if self.task == "multilabel" else labels.reshape(-1))
        n = logits.shape[0]
        groups = batch.get(self.group_key) if isinstance(batch, dict) else None
        self._groups.extend([str(g) for g in groups] if groups is not None else [])
        image = batch.get(self.image_key) if isinstance(batch, dict) else None
        meta = getattr(image, "meta", None) or {}
        names = meta.get("filename_or_obj")
        self._files.extend(list(names) if isinstance(names, (list, tuple)) and len(names) == n else [""] * n)

    def __call__(self, engine: Engine) -> None:
        """Compute the metrics and write the JSON (and CSV) files, all or nothing (``utils.io.atomic_write_all``).

        Args:
            engine: the evaluator that completed.

        Raises:
            ValueError: when nothing was collected.
        """
        if not self._logits:
            raise ValueError("ClassificationReport: the evaluator produced no batches.")
        labels = np.concatenate(self._labels)
        self.report = write_classification_report(
            np.concatenate(self._logits), labels, self.output_file, task=self.task, class_names=self.class_names,
            groups=self._groups if len(self._groups) == len(labels) else None, files=self._files,
            threshold=self.threshold, n_bootstrap=self.n_bootstrap, ci=self.ci, seed=self.seed, extra=self.extra,
            predictions_file=self.predictions_file, logger=self.logger,
        )


def write_classification_report(
    logits: np.ndarray,
    labels: np.ndarray,
    output_file: str | os.PathLike,
    task: str = "binary",
    class_names: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    files: Sequence[str] | None = None,
    threshold: float = 0.5,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    extra: dict | None = None,
    predictions_file: str | os.PathLike | None = None,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """Metrics with bootstrap intervals of one test pass, written as JSON (and a per-image CSV), all or nothing.

    Args:
        logits: ``N x C`` logits (``N x 1`` for one-logit binary).
        labels: ``(N,)`` class indices or ``N x C`` multi-label targets.
        output_file: the metrics JSON.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        class_names: names of the classes / findings.
        groups: patient ids (the bootstrap resamples patients), or None (images are resampled).
        files: source file per image for the CSV (default empty).
        threshold: decision threshold on the positive-class probability (binary).
        n_bootstrap: bootstrap resamples.
        ci: interval coverage.
        seed: bootstrap seed.
        extra: more entries for the JSON.
        predictions_file: optional CSV of per-image probabilities.
        logger: where the one-line summary goes (default this module's logger).

    Returns:
        the report written to ``output_file``.

    Example::

        write_classification_report(logits, labels, "runs/cls/test_metrics.json", class_names=["normal", "pneumonia"])
    """
    logits = np.asarray(logits)
    logits = logits.reshape(logits.shape[0], -1)
    labels = np.asarray(labels)
    probs = logits_to_probabilities(logits, task)
    groups = list(groups) if groups is not None and len(groups) == len(labels) else None
    files = list(files) if files is not None and len(files) == len(labels) else [""] * len(labels)
    report = classification_metrics_with_ci(
        labels, probs, task, None if class_names is None else list(class_names), groups=groups, threshold=threshold,
        n_bootstrap=n_bootstrap, ci=ci, seed=seed,
    )
    report["resampled"] = "patients" if groups is not None else "images"
    report.update(extra or {})
    plan: list[tuple[str | os.PathLike, Writer]] = []
    if predictions_file:
        names = report["class_names"][-probs.shape[1]:] if probs.shape[1] > 1 else report["class_names"][-1:]
        header = ["file", "group", "label", *[f"p_{c}" for c in names]]
        rows = (
            [files[i], groups[i] if groups else "", label.tolist(), *probs[i].round(6).tolist()]
            for i, label in enumerate(labels)
        )
        plan.append((predictions_file, csv_writer(header, rows)))
    plan.append((output_file, json_writer(report)))  # last: the metrics JSON is what readers look for
    atomic_write_all(plan)
    auc = report["auc"]
    (logger or logging.getLogger(__name__)).info(
        f"test AUC {auc['value']:.4f} [{auc['ci_low']:.4f}, {auc['ci_high']:.4f}] on {report['n']} images "
        f"({report['n_groups']} {report['resampled']}) -> {output_file}"
    )
    return report
