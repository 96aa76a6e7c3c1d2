"""Watch the representation improve during self-supervised pretraining: kNN (or logistic) probe AUC every N epochs.

The contrastive loss alone says little about how useful the features are; MoCo (He et al., CVPR 2020) and InstDisc
(Wu et al., CVPR 2018) monitor a weighted kNN classifier on the embeddings instead. Every ``interval`` epochs this
handler embeds a small labelled training subset and a validation subset with the current network (eval mode, no
gradient), classifies the validation embeddings by :func:`~monai_moco.metrics.knn_predict` (or an sklearn logistic
regression, a cheap linear probe), and records the validation ROC AUC in ``engine.state.metrics[key]``, the log and
TensorBoard.

Beside the AUC it records the geometry of what the contrastive loss compares, the projections of the validation images
(:func:`~monai_moco.metrics.embedding_geometry`: uniformity, mean pairwise cosine, effective rank; Wang & Isola, ICML
2020), and warns when they collapse. (Pooled ReLU backbone features are not used for this: they share a large positive
mean, so their cosines are near 1 even for a healthy or random network.)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.utils import look_up_option
from sklearn.metrics import roc_auc_score
from torch import nn

from monai_moco.metrics.knn import knn_predict
from monai_moco.metrics.probe import extract_features, image_label_batch, logistic_probe
from monai_moco.metrics.representation import embedding_geometry
from monai_moco.utils.dist import device_of

__all__ = ["PROBES", "RepresentationMonitor", "image_label_batch"]

PROBES: tuple[str, ...] = ("knn", "logistic")


class RepresentationMonitor:
    """Ignite handler: validation AUC of a kNN / logistic probe on the current embeddings, every ``interval`` epochs.

    Features are ``feature_fn(network, images)`` if given, else ``network.embed(images)`` when the network has an
    ``embed`` method (e.g. :class:`~monai_moco.networks.nets.ContrastiveEncoder`: the representation before the
    projection head), else ``network(images)``; computed under ``torch.no_grad()`` in eval mode, after which the
    network's previous train/eval mode is restored. AUC: binary -> AUC of class 1; multi-class -> macro one-vs-rest.

    Args:
        train_loader: labelled reference batches (a small subset is enough, e.g. a few hundred images).
        val_loader: labelled validation batches.
        interval: evaluate every ``interval`` epochs.
        k: neighbours of the kNN probe.
        temperature: kNN vote temperature (``exp(similarity / T)``).
        feature_fn: optional ``feature_fn(network, images) -> B x F``.
        summary_writer: optional TensorBoard ``SummaryWriter``; gets ``add_scalar(key, value, epoch)``.
        key: name of the metric in ``engine.state.metrics``, the log and TensorBoard.
        prepare_batch: ``prepare_batch(batch) -> (images, labels)``; default reads ``"image"``/``"label"``.
        probe: ``"knn"`` (Wu et al. 2018) or ``"logistic"`` (sklearn ``LogisticRegression`` on L2-normalised
            features).
        num_classes: number of classes (default: inferred from the labels, at least 2).
        network: the model to probe (default ``engine.network``).
        at_start: also evaluate once when the run starts (the random-initialisation baseline).
        collapse_cosine: warn when the validation embeddings' mean pairwise cosine exceeds this.
        collapse_rank: warn when their effective rank falls below this.

    Example::

        monitor = RepresentationMonitor(probe_train_loader, probe_val_loader, interval=5,
                                        summary_writer=writer, key="knn_auc")
        monitor.attach(trainer)  # trainer.state.metrics["knn_auc"] after epochs 5, 10, ...
    """

    def __init__(
        self,
        train_loader: Iterable,
        val_loader: Iterable,
        interval: int = 1,
        k: int = 20,
        temperature: float = 0.07,
        feature_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
        summary_writer: Any | None = None,
        key: str = "knn_auc",
        prepare_batch: Callable[[Any], tuple[Any, Any]] = image_label_batch,
        probe: str = "knn",
        num_classes: int | None = None,
        network: nn.Module | None = None,
        at_start: bool = False,
        collapse_cosine: float = 0.9,
        collapse_rank: float = 2.0,
    ) -> None:
        if int(interval) < 1:
            raise ValueError(f"RepresentationMonitor: interval must be >= 1 epoch, got {interval}.")
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.interval = int(interval)
        self.k = int(k)
        self.temperature = float(temperature)
        self.feature_fn = feature_fn
        self.summary_writer = summary_writer
        self.key = key
        self.prepare_batch = prepare_batch
        self.probe = look_up_option(probe, PROBES)
        self.num_classes = num_classes
        self.network = network
        self.at_start = at_start
        self.logger = logging.getLogger(__name__)
        self.collapse_cosine = float(collapse_cosine)
        self.collapse_rank = float(collapse_rank)
        self.history: list[tuple[int, float]] = []
        self.geometry: dict[str, float] = {}

    def attach(self, engine: Engine) -> None:
        """Evaluate at ``EPOCH_COMPLETED`` every ``interval`` epochs (and at ``STARTED`` with ``at_start``).

        Args:
            engine: the training engine (with a ``network`` attribute unless ``network`` was given).
        """
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        if self.at_start:
            engine.add_event_handler(Events.STARTED, self)

    def compute(self, network: nn.Module) -> float:
        """Probe AUC of ``network``'s current embeddings (the network's train/eval mode is restored afterwards).

        Args:
            network: the model to embed with.

        Returns:
            validation ROC AUC in ``[0, 1]`` (``nan`` when the validation labels hold a single class); the geometry
            of the validation projections (``network(images)`` in training mode, as the loss sees them; the probe's
            features when ``network`` has no ``embed`` or a ``feature_fn`` was given) is left in ``self.geometry``.
        """
        try:
            train_x, train_y = extract_features(network, self.train_loader, None, self.feature_fn, self.prepare_batch)
            val_x, val_y = extract_features(network, self.val_loader, None, self.feature_fn, self.prepare_batch)
        except ValueError as err:
            raise ValueError(f"RepresentationMonitor: {err}") from err
        projections = val_x
        if self.feature_fn is None and callable(getattr(network, "embed", None)):  # the projection head's output
            projections = self._training_projections(network)
        self.geometry = embedding_geometry(projections) if projections.shape[0] >= 2 else {}
        num_classes = self.num_classes or max(2, int(max(train_y.max(), val_y.max())) + 1)
        if self.probe == "knn":
            probs = knn_predict(train_x, train_y, val_x, self.k, self.temperature, num_classes).numpy()
        else:
            probs = logistic_probe(train_x, train_y, val_x, num_classes)
        if np.unique(val_y).size < 2:
            warnings.warn("RepresentationMonitor: validation labels hold one class; AUC undefined (nan).", stacklevel=2)
            return float("nan")
        if num_classes == 2:
            return float(roc_auc_score(val_y, probs[:, 1]))
        present = np.unique(val_y)
        probs = probs[:, present] / np.clip(probs[:, present].sum(axis=1, keepdims=True), 1e-12, None)
        return float(roc_auc_score(val_y, probs, multi_class="ovr", average="macro", labels=present))

    def _training_projections(self, network: nn.Module) -> torch.Tensor:
        """``network(images)`` of the validation batches as the loss sees them: training mode (BatchNorm with batch
        statistics; early in a run the running statistics are not yet meaningful), no gradient, and the network's
        buffers and mode restored afterwards. Batches of one image are skipped (no batch statistics)."""
        buffers = {name: b.clone() for name, b in network.named_buffers()}
        was_training = network.training
        device = device_of(network)
        out = []
        network.train()
        try:
            with torch.no_grad():
                for batch in self.val_loader:
                    images, _ = self.prepare_batch(batch)
                    if len(images) > 1:
                        out.append(network(torch.as_tensor(images).to(device)).flatten(1).float().cpu())
        finally:
            for name, b in network.named_buffers():
                b.copy_(buffers[name])
            network.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, 1)

    def __call__(self, engine: Engine) -> None:
        """Compute the probe AUC and store it in ``engine.state.metrics[key]``; log and write it to TensorBoard.

        Args:
            engine: the training engine.

        Raises:
            AttributeError: when neither ``network`` was given nor ``engine.network`` exists.
        """
        network = self.network if self.network is not None else getattr(engine, "network", None)
        if network is None:
            raise AttributeError(
                "RepresentationMonitor: the engine has no `network` attribute; pass network= to the monitor."
            )
        value = self.compute(network)
        epoch = int(engine.state.epoch)
        engine.state.metrics[self.key] = value
        self.history.append((epoch, value))
        geo = self.geometry
        for name, v in geo.items():
            engine.state.metrics[f"embedding/{name}"] = v
        self.logger.info(
            f"epoch {epoch}: {self.key} ({self.probe} probe) = {value:.4f}"
            + "".join(f", {name} {v:.3f}" for name, v in geo.items())
        )
        if geo and (geo["mean_cosine"] > self.collapse_cosine or geo["effective_rank"] < self.collapse_rank):
            self.logger.warning(
                f"epoch {epoch}: the embedding is collapsing (mean pairwise cosine {geo['mean_cosine']:.3f}, limit "
                f"{self.collapse_cosine}; effective rank {geo['effective_rank']:.1f}, limit {self.collapse_rank}): "
                "every image maps close to one point. Lower the learning rate, raise the temperature or check the "
                "augmentations."
            )
        if self.summary_writer is not None:
            self.summary_writer.add_scalar(self.key, value, epoch)
            for name, v in geo.items():
                self.summary_writer.add_scalar(f"embedding/{name}", v, epoch)
