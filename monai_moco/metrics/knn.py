"""Weighted cosine k-nearest-neighbour classifier on embeddings: the representation monitor of contrastive learning.

Wu, Xiong, Yu, Lin, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018 (InstDisc),
section 3.4: each of the ``k`` nearest training embeddings (cosine similarity ``s_i``) votes for its class with weight
``exp(s_i / T)``; the class scores are normalised to probabilities. MoCo (He et al., CVPR 2020) and lightly's
``knn_predict`` monitor pretraining with the same rule (``k = 200``, ``T = 0.1`` on ImageNet; ``k = 20``,
``T = 0.07`` in InstDisc).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["knn_predict"]


def _as_tensor(name: str, value: Any, ndim: int) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    if tensor.ndim != ndim:
        raise ValueError(f"knn_predict: {name} must be {ndim}-D, got shape {tuple(tensor.shape)}.")
    return tensor


def knn_predict(
    train_features: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    query_features: torch.Tensor | np.ndarray,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int = 2,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Class probabilities of each query from its ``k`` most cosine-similar training embeddings (InstDisc voting).

    Args:
        train_features: ``N x F`` embeddings of the labelled reference set.
        train_labels: ``N`` integer labels in ``[0, num_classes)``.
        query_features: ``M x F`` embeddings to classify.
        k: neighbours per query (capped at ``N``).
        temperature: ``T`` in the vote weight ``exp(similarity / T)``; smaller = nearer neighbours dominate.
        num_classes: number of classes.
        chunk_size: queries processed at once (bounds the ``chunk x N`` similarity matrix).

    Returns:
        ``M x num_classes`` probabilities (float32, on the features' device), rows summing to 1.

    Raises:
        ValueError: for mismatched shapes, labels outside ``[0, num_classes)``, ``k < 1`` or ``temperature <= 0``.

    Example::

        probs = knn_predict(train_emb, train_y, val_emb, k=20, temperature=0.07, num_classes=2)
        auc = roc_auc_score(val_y, probs[:, 1])
    """
    train = _as_tensor("train_features", train_features, 2).float()
    query = _as_tensor("query_features", query_features, 2).to(train.device).float()
    labels = _as_tensor("train_labels", train_labels, 1).to(train.device).long()
    if labels.shape[0] != train.shape[0]:
        raise ValueError(
            f"knn_predict: {train.shape[0]} train_features but {labels.shape[0]} train_labels; expected one label each."
        )
    if query.shape[1] != train.shape[1]:
        raise ValueError(
            f"knn_predict: query_features have {query.shape[1]} dims but train_features {train.shape[1]}."
        )
    if train.shape[0] == 0:
        raise ValueError("knn_predict: train_features is empty.")
    if int(k) < 1 or float(temperature) <= 0:
        raise ValueError(f"knn_predict: need k >= 1 and temperature > 0, got k={k}, temperature={temperature}.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"knn_predict: train_labels must be in [0, {num_classes}), got range [{int(labels.min())}, "
            f"{int(labels.max())}]; set num_classes."
        )
    k = min(int(k), train.shape[0])
    train = F.normalize(train, dim=1)
    one_hot = F.one_hot(labels, num_classes).float()
    out = []
    for chunk in torch.split(F.normalize(query, dim=1), max(1, int(chunk_size))):
        sim, idx = (chunk @ train.T).topk(k, dim=1)
        # exp((s - max) / T): the same normalised weights as exp(s / T), without overflow for small T
        weights = ((sim - sim[:, :1]) / temperature).exp()
        scores = torch.einsum("qk,qkc->qc", weights, one_hot[idx])
        out.append(scores / scores.sum(dim=1, keepdim=True))
    return torch.cat(out) if out else torch.empty(0, num_classes, device=train.device)
