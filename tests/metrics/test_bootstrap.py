"""Tests for monai_moco.metrics.bootstrap: percentile and patient-clustered bootstrap intervals."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from monai_moco.metrics import (
    auc_with_ci,
    binary_metrics_with_ci,
    bootstrap_ci,
    per_class_auc_with_ci,
    weighted_auc,
)


def _scores(n: int, seed: int = 0, shift: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """Binormal scores (a classifier with AUC about 0.8), rounded so that ties occur."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(1.0 / (1.0 + np.exp(-(y * shift + rng.normal(0.0, 1.0, n) - shift / 2))), 2)
    return y, s


def test_weighted_auc_equals_sklearn_on_expanded_resamples():
    y, s = _scores(300)
    rng = np.random.default_rng(3)
    w = np.stack([np.bincount(rng.integers(0, 300, 300), minlength=300) for _ in range(20)]).astype(float)
    items = np.arange(300)
    expected = [roc_auc_score(y[np.repeat(items, r.astype(int))], s[np.repeat(items, r.astype(int))]) for r in w]
    np.testing.assert_allclose(weighted_auc(y, s, w), expected, atol=1e-12)
    assert weighted_auc(y, s, np.ones(300)) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(weighted_auc(y, s, (y == 1)[None].astype(float))[0])  # positives only: undefined


@pytest.mark.parametrize("metric", ["auc", "accuracy", "sensitivity", "specificity"])
def test_ci_contains_point_estimate_and_is_deterministic(metric):
    y, s = _scores(624)
    res = bootstrap_ci(y, s, metric, n_bootstrap=500, seed=7)
    assert res["ci_low"] <= res["value"] <= res["ci_high"]
    assert res["ci_high"] - res["ci_low"] > 0
    assert res["n"] == 624 and res["n_bootstrap"] == 500
    assert bootstrap_ci(y, s, metric, n_bootstrap=500, seed=7) == res
    assert bootstrap_ci(y, s, metric, n_bootstrap=500, seed=8) != res


def test_ci_narrows_with_more_samples():
    small = auc_with_ci(*_scores(100, seed=1), n_bootstrap=500)
    large = auc_with_ci(*_scores(2000, seed=1), n_bootstrap=500)
    assert (large["ci_high"] - large["ci_low"]) < 0.5 * (small["ci_high"] - small["ci_low"])
    assert 0.7 < large["value"] < 0.9


def test_grouped_bootstrap_resamples_patients():
    """Ten identical images per patient: resampling images pretends there are 10x more independent cases."""
    y, s = _scores(80, seed=2)
    y_dup, s_dup, pid = np.repeat(y, 10), np.repeat(s, 10), np.repeat(np.arange(80), 10)
    images = auc_with_ci(y_dup, s_dup, n_bootstrap=500)
    patients = auc_with_ci(y_dup, s_dup, n_bootstrap=500, groups=pid)
    per_patient = auc_with_ci(y, s, n_bootstrap=500)
    assert patients["value"] == images["value"] == pytest.approx(per_patient["value"])
    width = {k: r["ci_high"] - r["ci_low"] for k, r in {"i": images, "p": patients, "u": per_patient}.items()}
    assert width["p"] > 2 * width["i"]
    assert width["p"] == pytest.approx(width["u"], rel=0.35)  # like bootstrapping the 80 patients themselves
    assert patients["n_groups"] == 80 and patients["n"] == 800


def test_generic_callable_matches_builtin_and_single_class_resamples_are_redrawn():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])  # one positive: most resamples lack it
    s = np.linspace(0.9, 0.0, 10)
    builtin = bootstrap_ci(y, s, "auc", n_bootstrap=200)
    generic = bootstrap_ci(y, s, lambda a, b: roc_auc_score(a, b), n_bootstrap=200)
    assert builtin["n_bootstrap"] == generic["n_bootstrap"] == 200
    assert builtin["value"] == generic["value"] == 1.0
    assert builtin["ci_low"] == pytest.approx(generic["ci_low"]) and builtin["ci_high"] == 1.0
    assert bootstrap_ci(y, s, roc_auc_score, n_bootstrap=200) == builtin  # sklearn's function takes the fast path


def test_speed_1000_resamples_of_624():
    y, s = _scores(624)
    start = time.perf_counter()
    binary_metrics_with_ci(y, s, groups=np.arange(624) // 2)
    assert time.perf_counter() - start < 2.0


def test_binary_metrics_values():
    y, s = _scores(624, seed=4)
    res = binary_metrics_with_ci(y, s, threshold=0.5, n_bootstrap=300)
    pred = s >= 0.5
    assert res["auc"]["value"] == pytest.approx(roc_auc_score(y, s))
    assert res["accuracy"]["value"] == pytest.approx(np.mean(pred == y))
    assert res["sensitivity"]["value"] == pytest.approx(np.mean(pred[y == 1]))
    assert res["specificity"]["value"] == pytest.approx(np.mean(~pred[y == 0]))
    for r in res.values():
        assert r["ci_low"] <= r["value"] <= r["ci_high"]


def test_per_class_auc_with_mask():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, (400, 3)).astype(float)
    s = y * np.array([2.0, 1.0, 0.0]) + rng.normal(size=(400, 3))
    mask = rng.random((400, 3)) > 0.3
    y_masked = np.where(mask, y, -1.0)  # CheXpert-style "ignore" entries
    res = per_class_auc_with_ci(y_masked, s, ["a", "b", "c"], mask=mask, n_bootstrap=300)
    for j, name in enumerate("abc"):
        assert res[name]["value"] == pytest.approx(roc_auc_score(y[mask[:, j], j], s[mask[:, j], j]))
        assert res[name]["n"] == mask[:, j].sum()
    assert res["a"]["value"] > res["b"]["value"] > 0.55 and abs(res["c"]["value"] - 0.5) < 0.1
    assert res["macro"]["value"] == pytest.approx(np.mean([res[k]["value"] for k in "abc"]))
    assert res["macro"]["ci_low"] < res["macro"]["value"] < res["macro"]["ci_high"]
    with pytest.raises(ValueError, match="'a'"):
        per_class_auc_with_ci(y_masked, s, ["a", "b", "c"])  # -1 entries without a mask


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"y_true": [0, 1, 2], "y_score": [0.1, 0.2, 0.3]}, "binary"),
        ({"y_true": [1, 1, 1], "y_score": [0.1, 0.2, 0.3]}, "class"),
        ({"y_true": [0, 1], "y_score": [0.1, 0.2, 0.3]}, "shape"),
        ({"y_true": [0, 1], "y_score": [0.1, 0.2], "ci": 95}, "ci"),
        ({"y_true": [0, 1], "y_score": [0.1, 0.2], "groups": [1]}, "groups"),
        ({"y_true": [0, 1], "y_score": [0.1, 0.2], "metric_fn": "f1"}, "auc"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(**kwargs)
