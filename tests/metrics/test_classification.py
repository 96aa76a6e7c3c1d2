"""Tests for classification_metrics_with_ci: binary / multi-class / multi-label reports with bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from monai_moco.metrics import classification_metrics_with_ci, logits_to_probabilities


def _binary(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.25, n), 0, 1)
    return y, np.stack([1 - p1, p1], axis=1), np.repeat(np.arange(n // 2), 2)[:n]


def test_logits_to_probabilities():
    z = np.array([[0.0, 0.0], [0.0, np.log(3.0)]])
    np.testing.assert_allclose(logits_to_probabilities(z, "binary"), [[0.5, 0.5], [0.25, 0.75]])
    np.testing.assert_allclose(logits_to_probabilities(np.array([0.0]), "binary"), [[0.5]])
    np.testing.assert_allclose(logits_to_probabilities(z, "multilabel"), 1 / (1 + np.exp(-z)))


def test_binary_report_matches_sklearn_and_contains_point():
    y, p, groups = _binary(400)
    rep = classification_metrics_with_ci(y, p, "binary", ["normal", "pneumonia"], groups=groups, n_bootstrap=300)
    assert rep["auc"]["value"] == pytest.approx(roc_auc_score(y, p[:, 1]))
    assert rep["accuracy"]["value"] == pytest.approx(np.mean((p[:, 1] >= 0.5) == y))
    assert rep["sensitivity"]["value"] == pytest.approx(np.mean(p[y == 1, 1] >= 0.5))
    assert rep["specificity"]["value"] == pytest.approx(np.mean(p[y == 0, 1] < 0.5))
    for name in ("auc", "accuracy", "sensitivity", "specificity"):
        assert rep[name]["ci_low"] <= rep[name]["value"] <= rep[name]["ci_high"]
    assert rep["n"] == 400 and rep["n_groups"] == 200


def test_binary_interval_narrows_with_more_samples():
    small = classification_metrics_with_ci(*_binary(100)[:2], n_bootstrap=300)["auc"]
    large = classification_metrics_with_ci(*_binary(1600)[:2], n_bootstrap=300)["auc"]
    assert large["ci_high"] - large["ci_low"] < 0.6 * (small["ci_high"] - small["ci_low"])


def test_multiclass_report():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(0, 1, (300, 3)) + 2.0 * np.eye(3)[y]
    p = logits_to_probabilities(logits, "multiclass")
    rep = classification_metrics_with_ci(y, p, "multiclass", ["a", "b", "c"], n_bootstrap=200)
    per = [roc_auc_score(y == k, p[:, k]) for k in range(3)]
    assert [rep["per_class"][c]["value"] for c in "abc"] == pytest.approx(per)
    assert rep["auc"]["value"] == pytest.approx(np.mean(per))
    assert rep["accuracy"]["value"] == pytest.approx(np.mean(p.argmax(1) == y))
    assert rep["accuracy"]["ci_low"] <= rep["accuracy"]["value"] <= rep["accuracy"]["ci_high"]


def test_multilabel_report_ignores_nan_labels():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, (200, 2)).astype(float)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, y.shape), 0, 1)
    y[:20, 1] = np.nan
    rep = classification_metrics_with_ci(y, p, "multilabel", ["x", "y"], n_bootstrap=200)
    assert rep["per_class"]["y"]["n"] == 180 and rep["per_class"]["x"]["n"] == 200
    assert rep["per_class"]["y"]["value"] == pytest.approx(roc_auc_score(y[20:, 1], p[20:, 1]))


@pytest.mark.parametrize(
    "task, y, p",
    [
        ("binary", np.zeros((4, 2)), np.zeros((4, 2))),  # binary labels must be 1D
        ("binary", np.array([0, 1, 0]), np.zeros((3, 3))),  # 3 columns is not binary
        ("multiclass", np.array([0, 3]), np.zeros((2, 3))),  # label out of range
        ("multilabel", np.zeros((3, 2)), np.zeros((3, 3))),  # shape mismatch
        ("regression", np.zeros(3), np.zeros((3, 2))),  # unknown task
    ],
)
def test_bad_inputs_raise(task, y, p):
    with pytest.raises(ValueError):
        classification_metrics_with_ci(y, p, task, n_bootstrap=10)
