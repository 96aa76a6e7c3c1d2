"""Frozen-feature evaluation of a representation: embed a labelled dataset, fit a linear (logistic) probe on it.

The linear-evaluation protocol of self-supervised learning (Zhang, Isola, Efros, "Colorful Image Colorization", ECCV
2016; He et al., MoCo, CVPR 2020; Chen et al., SimCLR, ICML 2020): the pretrained network is frozen, its features
of a labelled training set are computed once, a linear classifier is fitted on them, and the classifier is scored on
held-out features. Here the classifier is scikit-learn's ``LogisticRegression`` (L-BFGS) on L2-normalised features,
cheap enough to run inside a training loop
(:class:`~monai_moco.handlers.RepresentationMonitor`) or once per run in a comparison script; the resulting
probabilities go to :func:`~monai_moco.metrics.auc_with_ci` or :func:`~monai_moco.metrics.knn_predict`'s companions.

Example::

    train_x, train_y = extract_features(encoder, labelled_train_loader)
    test_x, test_y = extract_features(encoder, test_loader)
    probs = logistic_probe(train_x, train_y, test_x)
    auc = auc_with_ci(test_y, probs[:, 1])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from monai.networks.utils import eval_mode
from torch import nn

from monai_moco.utils.dist import device_of

__all__ = ["extract_features", "image_label_batch", "labels_1d", "logistic_probe"]


def image_label_batch(batch: Any, image_key: str = "image", label_key: str = "label") -> tuple[Any, Any]:
    """Split a batch into ``(images, labels)``: a dict ``{"image": ..., "label": ...}`` or a pair.

    Args:
        batch: a collated batch.
        image_key: image key of dict batches.
        label_key: label key of dict batches.

    Returns:
        ``(images B x C x H x W, labels)``.

    Raises:
        KeyError: when a dict batch lacks a key, or the batch is neither a dict nor a pair.

    Example::

        images, labels = image_label_batch({"image": x, "label": y})
    """
    if isinstance(batch, dict):
        missing = [k for k in (image_key, label_key) if k not in batch]
        if missing:
            raise KeyError(f"image_label_batch: batch lacks keys {missing}; it has {sorted(batch)}.")
        return batch[image_key], batch[label_key]
    if isinstance(batch, Sequence) and len(batch) == 2:
        return batch[0], batch[1]
    raise KeyError(
        f"image_label_batch: expected a dict batch with {image_key!r} and {label_key!r} or an (image, label) "
        f"pair, got {type(batch).__name__}."
    )


def labels_1d(labels: Any) -> np.ndarray:
    """Class indices ``(B,)`` int64 from labels ``B``, ``B x 1`` or one-hot ``B x C`` (tensor, array or list).

    Args:
        labels: the labels of a batch.

    Returns:
        ``(B,)`` int64 class indices.

    Raises:
        ValueError: for any other shape.

    Example::

        labels_1d(torch.tensor([[0, 1], [1, 0]]))  # array([1, 0])
    """
    y = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2:  # one-hot
        y = y.argmax(axis=1)
    if y.ndim != 1:
        raise ValueError(f"labels must be B, B x 1 or one-hot B x C, got shape {y.shape}.")
    return y.astype(np.int64)


def extract_features(
    network: nn.Module,
    loader: Iterable,
    device: str | torch.device | None = None,
    feature_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    prepare_batch: Callable[[Any], tuple[Any, Any]] = image_label_batch,
    progress: bool = False,
) -> tuple[torch.Tensor, np.ndarray]:
    """Frozen features and labels of every batch of ``loader`` (eval mode, no gradient; the mode is restored).

    Features are ``feature_fn(network, images)`` if given, else ``network.embed(images)`` when the network has an
    ``embed`` method (e.g. :class:`~monai_moco.networks.nets.ContrastiveEncoder`: the representation before the
    projection head, as MoCo/SimCLR evaluate), else ``network(images)``; flattened to ``B x F`` float32 on the CPU.

    Args:
        network: the model to embed with.
        loader: labelled batches (dicts with ``"image"``/``"label"`` or ``(image, label)`` pairs by default).
        device: where to run; default :func:`~monai_moco.utils.device_of` (first parameter, else buffer, else CPU).
        feature_fn: optional ``feature_fn(network, images) -> B x F``.
        prepare_batch: ``prepare_batch(batch) -> (images, labels)``.
        progress: show a tqdm progress bar.

    Returns:
        ``(features N x F float32 CPU tensor, labels (N,) int64 array)``.

    Raises:
        ValueError: when the loader yields no batches or labels have an unusable shape.

    Example::

        feats, labels = extract_features(encoder, DataLoader(test_items, batch_size=128))
    """
    device = torch.device(device) if device is not None else device_of(network)
    batches: Iterable = loader
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(loader, desc="features", leave=False)
    feats, labels = [], []
    with eval_mode(network):  # no_grad + eval, previous train/eval flags restored on exit
        for batch in batches:
            images, y = prepare_batch(batch)
            images = torch.as_tensor(images).to(device)
            if feature_fn is not None:
                out = feature_fn(network, images)
            elif callable(getattr(network, "embed", None)):
                out = network.embed(images)
            else:
                out = network(images)
            feats.append(torch.as_tensor(out).flatten(1).float().cpu())
            labels.append(labels_1d(y))
    if not feats:
        raise ValueError("extract_features: the data loader yielded no batches.")
    return torch.cat(feats), np.concatenate(labels)


def logistic_probe(
    train_features: torch.Tensor | np.ndarray,
    train_labels: Sequence[int] | np.ndarray,
    query_features: torch.Tensor | np.ndarray,
    num_classes: int | None = None,
    normalize: bool = True,
    c: float = 1.0,
    max_iter: int = 1000,
) -> np.ndarray:
    """Class probabilities of ``query_features`` from a logistic regression fitted on labelled training features.

    The linear probe of self-supervised evaluation (He et al. 2020; Chen et al. 2020), fitted by scikit-learn's
    ``LogisticRegression`` (L-BFGS, L2 penalty of strength ``1 / c``) on L2-normalised features. A fixed ``c``
    suits a quick score during training (the monitor's ``probe="logistic"``); the transfer study's probe, whose
    strength is chosen on a validation split, is :class:`monai_moco.evaluation.LogisticProbe`.

    Args:
        train_features: ``N x F`` features of the labelled training set.
        train_labels: ``(N,)`` integer labels in ``[0, num_classes)``.
        query_features: ``M x F`` features to classify.
        num_classes: number of output columns; default ``max(2, max label + 1)``.
        normalize: L2-normalise every feature vector first (the scale of raw ViT/ResNet features varies a lot
            between checkpoints; normalising makes one ``c`` fit all).
        c: inverse regularisation strength (sklearn's ``C``).
        max_iter: L-BFGS iterations.

    Returns:
        ``M x num_classes`` probabilities; a class absent from the training labels gets probability 0, and a
        one-class training set predicts that class with probability 1.

    Raises:
        ValueError: for mismatched shapes or labels outside ``[0, num_classes)``.

    Example::

        probs = logistic_probe(train_x, train_y, test_x)
        auc = roc_auc_score(test_y, probs[:, 1])
    """
    from sklearn.linear_model import LogisticRegression

    fit_x = torch.as_tensor(np.asarray(train_features) if not torch.is_tensor(train_features) else train_features)
    eval_x = torch.as_tensor(np.asarray(query_features) if not torch.is_tensor(query_features) else query_features)
    y = labels_1d(train_labels)
    if fit_x.ndim != 2 or eval_x.ndim != 2 or fit_x.shape[1] != eval_x.shape[1]:
        raise ValueError(
            f"logistic_probe: expected train N x F and query M x F features, got {tuple(fit_x.shape)} and "
            f"{tuple(eval_x.shape)}."
        )
    if fit_x.shape[0] != y.shape[0] or y.size == 0:
        raise ValueError(f"logistic_probe: {fit_x.shape[0]} train features but {y.shape[0]} labels (need >= 1 each).")
    n_classes = int(num_classes) if num_classes is not None else max(2, int(y.max()) + 1)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"logistic_probe: labels must be in [0, {n_classes}), got [{int(y.min())}, {int(y.max())}].")
    fit_x, eval_x = fit_x.double(), eval_x.double()
    if normalize:
        fit_x, eval_x = nn.functional.normalize(fit_x, dim=1), nn.functional.normalize(eval_x, dim=1)
    probs = np.zeros((eval_x.shape[0], n_classes))
    classes = np.unique(y)
    if classes.size < 2:
        probs[:, classes[0]] = 1.0
        return probs
    model = LogisticRegression(C=float(c), max_iter=int(max_iter)).fit(fit_x.numpy(), y)
    probs[:, model.classes_] = model.predict_proba(eval_x.numpy())
    return probs
