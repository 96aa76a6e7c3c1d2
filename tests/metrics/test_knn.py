"""Tests for monai_moco.metrics.knn: InstDisc weighted cosine kNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from monai_moco.metrics.knn import knn_predict


def _clusters(n: int, dim: int = 16, classes: int = 2, seed: int = 0):
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123)) * 3  # shared by all splits
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    return centres[labels] + 0.3 * torch.randn(n, dim, generator=g), labels


def test_separable_clusters_give_auc_one():
    train_x, train_y = _clusters(100)
    val_x, val_y = _clusters(60, seed=1)
    probs = knn_predict(train_x, train_y, val_x, k=20, temperature=0.07, num_classes=2)
    assert probs.shape == (60, 2)
    torch.testing.assert_close(probs.sum(1), torch.ones(60))
    assert roc_auc_score(val_y.numpy(), probs[:, 1].numpy()) > 0.999


def test_matches_brute_force_voting_and_numpy_inputs():
    rng = np.random.default_rng(0)
    train_x, val_x = rng.normal(size=(30, 5)), rng.normal(size=(7, 5))
    train_y = rng.integers(0, 3, 30)
    k, t = 5, 0.1
    probs = knn_predict(train_x, train_y, val_x, k=k, temperature=t, num_classes=3, chunk_size=3).numpy()
    tn = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    for q, row in zip(val_x, probs, strict=True):
        sim = tn @ (q / np.linalg.norm(q))
        top = np.argsort(-sim)[:k]
        votes = np.zeros(3)
        for i in top:
            votes[train_y[i]] += np.exp(sim[i] / t)
        np.testing.assert_allclose(row, votes / votes.sum(), rtol=1e-4, atol=1e-6)


def test_multiclass_k_larger_than_train_and_tiny_temperature():
    train_x, train_y = _clusters(9, classes=3)
    val_x, val_y = _clusters(30, classes=3, seed=2)
    probs = knn_predict(train_x, train_y, val_x, k=100, temperature=1e-4, num_classes=3)
    assert torch.isfinite(probs).all()
    assert (probs.argmax(1) == val_y).float().mean() == 1.0


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.zeros(4, 3), torch.tensor([0, 1, 0]), torch.zeros(2, 3)), "one label each"),
        ((torch.zeros(4, 3), torch.tensor([0, 1, 0, 2]), torch.zeros(2, 3)), "num_classes"),
        ((torch.zeros(4, 3), torch.tensor([0, 1, 0, 1]), torch.zeros(2, 5)), "dims"),
        ((torch.zeros(4), torch.tensor([0, 1, 0, 1]), torch.zeros(2, 3)), "2-D"),
    ],
)
def test_errors(args, match):
    with pytest.raises(ValueError, match=match):
        knn_predict(*args)
