"""LogisticProbe: C chosen on validation AUC, the fit folded into an nn.Linear head exactly, edge cases named."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_moco.evaluation import DEFAULT_C_GRID, LogisticProbe
from monai_moco.metrics.classification import logits_to_probabilities


def _data(task: str, n: int, f: int = 16, seed: int = 0, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features whose first dimensions carry the label(s); a shifted, scaled space (standardisation matters)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)) * rng.uniform(0.1, 10.0, size=f) + rng.uniform(-5, 5, size=f)
    if task == "multilabel":
        y = (rng.random((n, classes)) < 0.5).astype(np.float64)
        x[:, :classes] += 6.0 * (y - 0.5) * np.abs(x[:, :classes]).mean(0)
        return x, y
    k = 2 if task == "binary" else classes
    y = rng.integers(0, k, size=n)
    x[np.arange(n), y] += 3.0 * np.abs(x[:, :k]).mean()
    return x, y


@pytest.mark.parametrize(
    "task,outputs",
    [("binary", 2), ("binary", 1), ("multiclass", 3), ("multilabel", 3)],
)
def test_fit_folds_into_linear_head(task, outputs):
    """The head computes the probe's logits (standardisation folded in); the probe separates held-out data."""
    x, y = _data(task, 300)
    vx, vy = _data(task, 200, seed=1)
    probe = LogisticProbe(task=task, num_classes=outputs).fit(x, y, vx, vy)
    assert probe.c in DEFAULT_C_GRID and probe.val_auc > 0.9, probe.summary()
    assert set(probe.grid_auc) == set(DEFAULT_C_GRID)
    head = probe.load_into(torch.nn.Linear(x.shape[1], outputs).double())
    with torch.no_grad():
        torch_logits = head(torch.as_tensor(vx)).numpy()
    np.testing.assert_allclose(torch_logits, probe.logits(vx), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(probe.predict_proba(vx), logits_to_probabilities(torch_logits, task), atol=1e-12)


def test_ties_choose_the_strongest_regularisation():
    """Perfectly separable validation data scores AUC 1 at every C: the smallest C (most regularised) is kept."""
    x = np.array([[0.0, 1.0], [0.1, 1.2], [5.0, 1.1], [5.2, 0.9]])
    y = np.array([0, 0, 1, 1])
    probe = LogisticProbe(c_grid=[0.01, 0.1, 1.0]).fit(x, y, x, y)
    assert probe.grid_auc == {0.01: 1.0, 0.1: 1.0, 1.0: 1.0} and probe.c == 0.01


@pytest.mark.parametrize("val", ["none", "one_class"])
def test_default_c_without_usable_validation(val):
    """No validation data, or a single validation class (no AUC): the default C, and the summary says NaN as None."""
    x, y = _data("binary", 50)
    vx, vy = (None, None) if val == "none" else (x[:5], np.zeros(5, dtype=int))
    probe = LogisticProbe(default_c=0.3).fit(x, y, vx, vy)
    assert probe.c == 0.3 and math.isnan(probe.val_auc) and probe.summary()["val_auc"] is None


def test_one_class_training_predicts_that_class():
    """A 1 % draw can hold one class only in a tiny dataset: the probe predicts it, with no weights."""
    x, _ = _data("binary", 6)
    probe = LogisticProbe().fit(x, np.ones(6, dtype=int))
    probs = probe.predict_proba(x)
    assert probs.shape == (6, 2) and np.all(probs[:, 1] > 0.99)
    assert np.count_nonzero(probe.weight) == 0


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: LogisticProbe(task="regression"), "task must be"),
        (lambda: LogisticProbe(c_grid=[]), "c_grid is empty"),
        (lambda: LogisticProbe().fit(np.zeros((3, 4)), np.zeros(2)), r"features \(3, 4\) and labels \(2,\)"),
        (lambda: LogisticProbe().fit(np.zeros((3, 4)), np.zeros(3), np.zeros((2, 5)), np.zeros(2)), r"M x 4"),
        (lambda: LogisticProbe().load_into(torch.nn.Linear(4, 2)), "call fit"),
    ],
)
def test_errors_say_what_was_expected(call, match):
    with pytest.raises((ValueError, RuntimeError), match=match):
        call()


def test_load_into_refuses_a_head_of_another_shape():
    x, y = _data("binary", 40)
    probe = LogisticProbe().fit(x, y)
    with pytest.raises(ValueError, match=r"head is \(3, 16\).*fitted as \(2, 16\)"):
        probe.load_into(torch.nn.Linear(16, 3))
