"""Tests for label-fraction subsets and grouped validation carving (monai_moco.data.splits)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from monai_moco.data import group_train_val_split, label_fraction_split, stratum_keys

FRACTIONS = [1.0, 0.1, 0.01, 0.001]


@pytest.fixture(scope="module")
def kermany_train(kermany_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(kermany_dir / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    return np.array([int(r["label"]) for r in rows]), np.array([r["patient_id"] for r in rows])


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_size_and_every_class_on_kermany(kermany_train, fraction):
    labels, _ = kermany_train
    idx = label_fraction_split(labels, fraction)
    assert len(idx) == round(fraction * len(labels))
    assert np.all(np.diff(idx) > 0) and idx.dtype == np.int64
    counts = np.bincount(labels[idx], minlength=2)
    assert counts.min() >= 1
    # stratified: the class ratio is kept within one example per class
    expected = fraction * np.bincount(labels)
    assert np.all(np.abs(counts - expected) <= 1.0 + 1e-9)


@pytest.mark.parametrize("grouped", [False, True])
def test_nested_reproducible_and_draws_differ(kermany_train, grouped):
    labels, groups = kermany_train
    g = groups if grouped else None
    for draw in range(3):
        subsets = [set(label_fraction_split(labels, f, draw=draw, groups=g, seed=5).tolist()) for f in FRACTIONS]
        for larger, smaller in zip(subsets, subsets[1:], strict=False):
            assert smaller <= larger
    a = label_fraction_split(labels, 0.01, draw=1, groups=g, seed=5)
    np.testing.assert_array_equal(a, label_fraction_split(labels, 0.01, draw=1, groups=g, seed=5))
    assert set(a.tolist()) != set(label_fraction_split(labels, 0.01, draw=2, groups=g, seed=5).tolist())
    assert set(a.tolist()) != set(label_fraction_split(labels, 0.01, draw=1, groups=g, seed=6).tolist())


@pytest.mark.parametrize("fraction", [0.1, 0.01, 0.001])
def test_grouped_takes_whole_patients(kermany_train, fraction):
    labels, groups = kermany_train
    idx = label_fraction_split(labels, fraction, groups=groups)
    chosen = set(groups[idx].tolist())
    rest = set(np.delete(groups, idx).tolist())
    assert not chosen & rest
    assert np.bincount(labels[idx], minlength=2).min() >= 1
    # the largest patient has a handful of images, so the size is close to the target
    assert abs(len(idx) - fraction * len(labels)) <= 10


@pytest.mark.parametrize("seed", range(6))
def test_randomized_properties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    n_classes = int(rng.integers(2, 6))
    labels = rng.integers(0, n_classes, size=n)
    labels[:n_classes] = np.arange(n_classes)  # every class present
    groups = rng.integers(0, max(2, n // 3), size=n)
    fractions = sorted(rng.uniform(0.001, 1.0, size=4), reverse=True)
    for g in (None, groups):
        previous = None
        for f in fractions:
            idx = label_fraction_split(labels, f, draw=int(seed), groups=g, seed=1)
            assert len(np.unique(labels[idx])) == n_classes
            if g is None:
                assert len(idx) == max(n_classes, int(np.floor(f * n + 0.5)))
            else:
                assert not set(g[idx].tolist()) & set(np.delete(g, idx).tolist())
            if previous is not None:
                assert set(idx.tolist()) <= previous
            previous = set(idx.tolist())


def test_multilabel_stratifies_on_label_combination():
    rows = np.array([[0, 0]] * 50 + [[1, 0]] * 30 + [[0, 1]] * 15 + [[1, 1]] * 5, dtype=float)
    keys = stratum_keys(rows)
    assert len(set(keys.tolist())) == 4
    idx = label_fraction_split(rows, 0.02)
    assert len({tuple(r) for r in rows[idx]}) == 4  # floor of one per combination beats round(0.02 * 100) = 2
    big = label_fraction_split(rows, 0.2)
    assert len(big) == 20 and set(idx.tolist()) <= set(big.tolist())
    nan_rows = rows.copy()
    nan_rows[0, 0] = np.nan
    assert "nan" in stratum_keys(nan_rows)[0]


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, 10, 50.0])
def test_fraction_out_of_range(bad):
    with pytest.raises(ValueError, match=r"fraction must be a fraction in \(0, 1\]"):
        label_fraction_split([0, 1, 0, 1], bad)


def test_mismatched_groups_and_bad_labels():
    with pytest.raises(ValueError, match="groups has 3 entries but labels has 4"):
        label_fraction_split([0, 1, 0, 1], 0.5, groups=["a", "b", "c"])
    with pytest.raises(ValueError, match="non-empty"):
        label_fraction_split([], 0.5)


@pytest.mark.parametrize("val_fraction", [0.05, 0.1, 0.2])
def test_group_train_val_split_on_kermany(kermany_train, val_fraction):
    labels, groups = kermany_train
    train_idx, val_idx = group_train_val_split(labels, groups, val_fraction=val_fraction, seed=0)
    assert len(train_idx) + len(val_idx) == len(labels)
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    assert not set(groups[train_idx].tolist()) & set(groups[val_idx].tolist())
    assert abs(len(val_idx) - val_fraction * len(labels)) <= 10
    assert abs(labels[val_idx].mean() - labels.mean()) < 0.03
    again = group_train_val_split(labels, groups, val_fraction=val_fraction, seed=0)
    np.testing.assert_array_equal(val_idx, again[1])
    # the validation set is not simply the label-fraction subset of draw 0
    assert set(val_idx.tolist()) != set(label_fraction_split(labels, val_fraction, groups=groups).tolist())


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.2])
def test_val_fraction_out_of_range(bad):
    with pytest.raises(ValueError, match=r"val_fraction must be a fraction in \(0, 1\)"):
        group_train_val_split([0, 1] * 10, val_fraction=bad)


def test_val_split_leaving_no_training_data():
    with pytest.raises(ValueError, match="leaves no training data"):
        group_train_val_split([0, 1], val_fraction=0.5)
