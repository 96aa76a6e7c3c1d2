"""The linear probe of self-supervised evaluation: frozen features once, an L2-regularised logistic regression.

Linear evaluation (Zhang, Isola, Efros, ECCV 2016; He et al., MoCo, CVPR 2020; Chen et al., SimCLR, ICML 2020;
Kornblith, Shlens, Le, "Do Better ImageNet Models Transfer Better?", CVPR 2019) judges a representation by the best
linear classifier on its frozen features. Training that classifier with SGD inside an augmentation loop needs a
schedule per label fraction and under-trains easily at 1 % labels (a few optimizer steps); computing the features of
every labelled image once and fitting a logistic regression to convergence, with its regularisation strength chosen
on the validation split, cannot under-train and takes seconds on a CPU.

:class:`LogisticProbe` is the classifier (scikit-learn, standardised features, ``C`` picked by validation AUC); it
folds into the ``nn.Linear`` head of :class:`~monai_moco.networks.nets.XRayClassifier`, so the probed model is an
ordinary checkpoint that ``evaluate.json``, ``ckpt_export`` and the deploy app use unchanged.
:func:`run_linear_probe` is what ``bundles/cxr_classifier`` runs with ``--frozen True``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from monai_moco.metrics.classification import logits_to_probabilities
from monai_moco.metrics.probe import extract_features, image_label_batch

__all__ = ["DEFAULT_C_GRID", "FeatureSet", "LogisticProbe", "embed_dataset", "run_linear_probe"]

#: Inverse regularisation strengths tried (sklearn's ``C``), from strong to weak; standardised features.
DEFAULT_C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 1, 11))

logger = logging.getLogger(__name__)


@dataclass
class FeatureSet:
    """Frozen features of one labelled split with what a report needs per image.

    Args:
        features: ``N x F`` float32.
        labels: ``(N,)`` class indices, or ``N x C`` multi-label targets.
        groups: patient ids (empty when the datalist has none).
        files: source file names (empty strings when unknown).
    """

    features: np.ndarray
    labels: np.ndarray
    groups: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.features.shape[0])


def embed_dataset(network: nn.Module, loader: Iterable, multilabel: bool = False, progress: bool = False) -> FeatureSet:
    """Features (``network.embed``), labels, patient ids and file names of every batch of ``loader``.

    Args:
        network: the model; its ``embed`` (e.g. :class:`~monai_moco.networks.nets.XRayClassifier`'s pooled backbone
            features) is used when present, else its output.
        loader: batches of dicts with ``"image"``, ``"label"`` and optionally ``"group"`` (patient id).
        multilabel: keep ``N x C`` label vectors instead of class indices.
        progress: show a progress bar.

    Returns:
        the :class:`FeatureSet`.

    Example::

        test = embed_dataset(model, DataLoader(test_ds, batch_size=64))
        test.features.shape  # (624, 512)
    """
    groups: list[str] = []
    files: list[str] = []
    labels: list[np.ndarray] = []

    def prepare(batch: Any) -> tuple[Any, Any]:
        images, y = image_label_batch(batch)
        n = len(images)
        if isinstance(batch, dict) and batch.get("group") is not None:
            groups.extend(str(g) for g in batch["group"])
        names = (getattr(images, "meta", None) or {}).get("filename_or_obj")
        files.extend([str(f) for f in names] if isinstance(names, (list, tuple)) and len(names) == n else [""] * n)
        y_np = np.asarray(y.detach().cpu() if torch.is_tensor(y) else y, dtype=np.float64)
        labels.append(y_np.reshape(n, -1))
        return images, torch.zeros(n, dtype=torch.long)  # labels are kept above, in their own shape

    feats, _ = extract_features(network, loader, prepare_batch=prepare, progress=progress)
    y_all = np.concatenate(labels)
    y_out = y_all if multilabel else (y_all.argmax(1) if y_all.shape[1] > 1 else y_all[:, 0]).astype(np.int64)
    return FeatureSet(feats.numpy(), y_out, groups if len(groups) == len(y_all) else [], files)


def _auc(labels: np.ndarray, probs: np.ndarray, task: str) -> float:
    """Validation AUC used to choose ``C``: binary AUC, macro one-vs-rest AUC, or mean per-finding AUC."""
    from sklearn.metrics import roc_auc_score

    if task == "binary":
        return float(roc_auc_score(labels, probs[:, -1])) if np.unique(labels).size == 2 else math.nan
    if task == "multilabel":
        aucs = [roc_auc_score(labels[:, j], probs[:, j]) for j in range(labels.shape[1]) if np.unique(labels[:, j]).size == 2]
        return float(np.mean(aucs)) if aucs else math.nan
    present = np.unique(labels)
    if present.size < 2:
        return math.nan
    p = probs[:, present]
    p = p / np.clip(p.sum(1, keepdims=True), 1e-12, None)
    if present.size == 2:
        return float(roc_auc_score(labels == present[1], p[:, 1]))
    return float(roc_auc_score(labels, p, multi_class="ovr", labels=present))


class LogisticProbe:
    """An L2-regularised logistic regression on standardised frozen features, ``C`` chosen by validation AUC.

    ``task="binary"`` or ``"multiclass"`` fits one (multinomial) logistic regression; ``"multilabel"`` fits one binary
    regression per finding with a shared ``C``. Features are standardised with the training split's mean and standard
    deviation (so one grid of ``C`` suits ResNet and ViT features alike). Each ``C`` of ``c_grid`` is fitted on the
    training features and scored on the validation features; the best (ties: the stronger regularisation) is kept.
    Without validation features, or when the validation labels hold a single class, ``default_c`` is used.

    Args:
        c_grid: inverse regularisation strengths to try.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_classes: number of outputs (binary: 2 logits, as :class:`~monai_moco.networks.nets.XRayClassifier` with
            ``num_classes=2``; 1 gives a single logit); default: 2 for binary, ``max label + 1`` for multiclass, the
            label width for multilabel.
        default_c: ``C`` used when it cannot be chosen on validation data.
        max_iter: L-BFGS iterations per fit.

    Raises:
        ValueError: for an unknown task or an empty grid.

    Example::

        probe = LogisticProbe().fit(train.features, train.labels, val.features, val.labels)
        probs = probe.predict_proba(test.features)
        probe.load_into(model.head)  # model(x) now gives the probe's logits
    """

    def __init__(
        self,
        c_grid: Sequence[float] = DEFAULT_C_GRID,
        task: str = "binary",
        num_classes: int | None = None,
        default_c: float = 0.1,
        max_iter: int = 2000,
    ) -> None:
        if task not in ("binary", "multiclass", "multilabel"):
            raise ValueError(f"LogisticProbe: task must be 'binary', 'multiclass' or 'multilabel', got {task!r}.")
        if len(c_grid) == 0:
            raise ValueError("LogisticProbe: c_grid is empty.")
        self.c_grid = [float(c) for c in c_grid]
        self.task = task
        self.num_classes = num_classes
        self.default_c = float(default_c)
        self.max_iter = int(max_iter)
        self.c: float | None = None
        self.val_auc: float = math.nan
        self.grid_auc: dict[float, float] = {}
        self.weight: np.ndarray | None = None  # outputs x F, on raw (unstandardised) features
        self.bias: np.ndarray | None = None

    def _outputs(self, y: np.ndarray) -> int:
        if self.num_classes is not None:
            return int(self.num_classes)
        if self.task == "multilabel":
            return int(y.shape[1])
        return 2 if self.task == "binary" else int(y.max()) + 1

    def _fit_one(self, x: np.ndarray, y: np.ndarray, c: float, outputs: int) -> tuple[np.ndarray, np.ndarray]:
        """Weights ``outputs x F`` and bias on standardised ``x`` for one ``C``."""
        from sklearn.linear_model import LogisticRegression

        f = x.shape[1]
        w, b = np.zeros((outputs, f)), np.zeros(outputs)
        columns = [y[:, j] for j in range(y.shape[1])] if self.task == "multilabel" else [y]
        for j, target in enumerate(columns):
            classes = np.unique(target)
            if classes.size < 2:  # a constant target: a bias that predicts it, no weights
                if self.task == "multilabel":
                    b[j] = 20.0 if classes[0] > 0.5 else -20.0
                elif outputs == 1:
                    b[0] = 20.0 if classes[0] == 1 else -20.0
                else:
                    b[:] = -20.0
                    b[int(classes[0])] = 0.0
                continue
            model = LogisticRegression(C=c, max_iter=self.max_iter).fit(x, target)
            if self.task == "multilabel":
                w[j], b[j] = model.coef_[0], model.intercept_[0]
            elif model.coef_.shape[0] == 1:  # two classes: log-odds of classes_[1] against classes_[0]
                lo, hi = (int(k) for k in model.classes_)
                if outputs == 1:
                    w[0], b[0] = model.coef_[0], model.intercept_[0]
                else:
                    w[:] = b[:] = 0.0
                    b[[k for k in range(outputs) if k not in (lo, hi)]] = -20.0
                    w[hi], b[hi] = model.coef_[0], model.intercept_[0]
            else:  # multinomial: one row per present class, absent classes never predicted
                w[:] = 0.0
                b[:] = -20.0
                w[model.classes_], b[model.classes_] = model.coef_, model.intercept_
        return w, b

    def fit(
        self,
        train_x: np.ndarray,
        train_y: np.ndarray,
        val_x: np.ndarray | None = None,
        val_y: np.ndarray | None = None,
    ) -> LogisticProbe:
        """Standardise, choose ``C`` on the validation split, keep the fit with the chosen ``C``.

        Args:
            train_x: ``N x F`` training features.
            train_y: ``(N,)`` class indices (``N x C`` 0/1 targets for multilabel).
            val_x: ``M x F`` validation features, or None.
            val_y: validation labels, or None.

        Returns:
            self.

        Raises:
            ValueError: for mismatched shapes or an empty training split.
        """
        x = np.asarray(train_x, dtype=np.float64)
        y = np.asarray(train_y)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"LogisticProbe.fit: expected N x F features with N >= 1 and N labels, got features {x.shape} and "
                f"labels {y.shape}."
            )
        if val_x is not None and np.asarray(val_x).shape[1:] != x.shape[1:]:
            raise ValueError(
                f"LogisticProbe.fit: validation features {np.asarray(val_x).shape} do not match the training "
                f"features {x.shape} (expected M x {x.shape[1]})."
            )
        self.mean = x.mean(0)
        self.scale = x.std(0)
        self.scale[self.scale < 1e-8] = 1.0
        z = (x - self.mean) / self.scale
        outputs = self._outputs(y)
        fits: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        self.grid_auc = {}
        if val_x is not None and val_y is not None and len(val_y):
            vz = (np.asarray(val_x, dtype=np.float64) - self.mean) / self.scale
            vy = np.asarray(val_y)
            for c in self.c_grid:
                fits[c] = self._fit_one(z, y, c, outputs)
                self.grid_auc[c] = _auc(vy, self._proba(vz, *fits[c]), self.task)
        finite = {c: a for c, a in self.grid_auc.items() if not math.isnan(a)}
        if finite:
            best = max(finite.values())
            self.c = min(c for c, a in finite.items() if a >= best - 1e-12)  # ties: stronger regularisation
            self.val_auc = best
            w, b = fits[self.c]
        else:
            self.c, self.val_auc = self.default_c, math.nan
            w, b = self._fit_one(z, y, self.c, outputs)
        self.weight = w / self.scale  # fold the standardisation into the linear map of raw features
        self.bias = b - (w * (self.mean / self.scale)).sum(1)
        return self

    def _proba(self, z: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        return logits_to_probabilities(z @ w.T + b, self.task)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits ``M x outputs`` of raw features, exactly what the folded ``nn.Linear`` head computes.

        Args:
            x: ``M x F`` features.

        Returns:
            the logits.

        Raises:
            RuntimeError: before :meth:`fit`.
        """
        if self.weight is None or self.bias is None:
            raise RuntimeError("LogisticProbe: call fit() first.")
        return np.asarray(x, dtype=np.float64) @ self.weight.T + self.bias

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``M x outputs`` (softmax over classes; sigmoid per finding or for a single logit).

        Args:
            x: ``M x F`` features.

        Returns:
            the probabilities.
        """
        return self._proba(np.asarray(x, dtype=np.float64), self.weight, self.bias)  # type: ignore[arg-type]

    def load_into(self, head: nn.Linear) -> nn.Linear:
        """Copy the fitted map into a linear head (``out_features`` = outputs, ``in_features`` = F).

        Args:
            head: the classifier's linear layer.

        Returns:
            the head.

        Raises:
            ValueError: when the head's shape differs from the probe's.
        """
        if self.weight is None or self.bias is None:
            raise RuntimeError("LogisticProbe: call fit() first.")
        if tuple(head.weight.shape) != self.weight.shape:
            raise ValueError(
                f"LogisticProbe.load_into: the head is {tuple(head.weight.shape)} (outputs x features) but the probe "
                f"was fitted as {self.weight.shape}."
            )
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(self.weight, dtype=head.weight.dtype))
            head.bias.copy_(torch.as_tensor(self.bias, dtype=head.bias.dtype))
        return head

    def summary(self) -> dict[str, Any]:
        """``{"c", "val_auc", "grid": {C: val AUC}}`` for logs and reports (NaN written as None)."""

        def clean(v: float) -> float | None:
            return None if math.isnan(v) else round(float(v), 6)

        return {
            "c": self.c,
            "val_auc": clean(self.val_auc),
            "grid": {f"{c:g}": clean(a) for c, a in self.grid_auc.items()},
        }


def run_linear_probe(
    network: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    test_loader: Iterable | None = None,
    task: str = "binary",
    class_names: Sequence[str] | None = None,
    ckpt_path: str | os.PathLike | None = None,
    metrics_file: str | os.PathLike | None = None,
    predictions_file: str | os.PathLike | None = None,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    threshold: float = 0.5,
    n_bootstrap: int = 1000,
    seed: int = 0,
    extra: dict | None = None,
    summary_writer: Any | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit a :class:`LogisticProbe` on a frozen classifier's features and fold it into the classifier's head.

    The backbone of ``network`` (an :class:`~monai_moco.networks.nets.XRayClassifier`) embeds every image of the
    three splits once, without augmentation; the probe's ``C`` is chosen by validation AUC; the head gets the probe's
    weights, and the model is saved to ``ckpt_path`` (loadable by MONAI's ``CheckpointLoader`` with
    ``{"model": network}``). With a test loader and ``metrics_file``, the test metrics with patient-bootstrap
    intervals are written as :class:`~monai_moco.handlers.ClassificationReport` writes them.

    Args:
        network: the classifier; its head must be an ``nn.Linear`` attribute ``head``.
        train_loader: labelled training batches (no augmentation, any order).
        val_loader: validation batches (choice of ``C``).
        test_loader: optional test batches.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        class_names: names of the classes / findings.
        ckpt_path: where to save ``{"model": state_dict}`` (atomically); None saves nothing.
        metrics_file: test metrics JSON (needs ``test_loader``).
        predictions_file: optional per-image test probabilities CSV.
        c_grid: inverse regularisation strengths to try.
        threshold: decision threshold of the binary test metrics.
        n_bootstrap: bootstrap resamples of the test intervals.
        seed: bootstrap seed.
        extra: more entries for the metrics JSON.
        summary_writer: optional TensorBoard writer (validation AUC per ``C``, chosen ``C``).
        progress: progress bars while embedding.

    Returns:
        ``{"probe": {c, val_auc, grid}, "n_train", "n_val", ["test": report]}``.

    Raises:
        ValueError: when the network has no linear ``head`` or a split is empty.

    Example::

        result = run_linear_probe(model, train_dl, val_dl, test_dl, ckpt_path="runs/probe/models/model.pt",
                                  metrics_file="runs/probe/test_metrics.json")
        result["test"]["auc"]["value"]
    """
    from monai_moco.handlers.classification_report import write_classification_report
    from monai_moco.utils.io import atomic_write

    head = getattr(network, "head", None)
    if not isinstance(head, nn.Linear):
        raise ValueError(
            f"run_linear_probe: the network ({type(network).__name__}) needs an nn.Linear attribute 'head' to fold "
            f"the probe into, got {type(head).__name__}."
        )
    multilabel = task == "multilabel"
    train = embed_dataset(network, train_loader, multilabel, progress)
    val = embed_dataset(network, val_loader, multilabel, progress)
    probe = LogisticProbe(c_grid=c_grid, task=task, num_classes=head.out_features)
    probe.fit(train.features, train.labels, val.features, val.labels)
    probe.load_into(head)
    info = probe.summary()
    logger.info(
        f"linear probe: {len(train)} training and {len(val)} validation images, {train.features.shape[1]} features; "
        f"C = {info['c']:g} (validation AUC {info['val_auc']}) from {len(probe.c_grid)} values"
    )
    if summary_writer is not None:
        for i, (c, auc) in enumerate(probe.grid_auc.items()):
            if not math.isnan(auc):
                summary_writer.add_scalar("probe/val_auc_by_log10_c", auc, global_step=i)
                summary_writer.add_scalar("probe/log10_c", math.log10(c), global_step=i)
        if not math.isnan(probe.val_auc):
            summary_writer.add_scalar("probe/val_auc", probe.val_auc, global_step=0)
    if ckpt_path is not None:
        state = {"model": network.state_dict()}
        atomic_write(ckpt_path, lambda p: torch.save(state, p))
    result: dict[str, Any] = {"probe": info, "n_train": len(train), "n_val": len(val)}
    if test_loader is not None and metrics_file is not None:
        test = embed_dataset(network, test_loader, multilabel, progress)
        logits = probe.logits(test.features)
        report = write_classification_report(
            logits, test.labels, metrics_file, task=task, class_names=class_names, groups=test.groups or None,
            files=test.files, threshold=threshold, n_bootstrap=n_bootstrap, seed=seed,
            extra={**(extra or {}), "probe": info, "n_train": len(train), "n_val": len(val)},
            predictions_file=predictions_file,
        )
        result["test"] = report
    return result
