"""Tests for the transfer-study summary table and the AUC-vs-label-fraction plot."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_moco.visualize import plot_label_fraction_curves, summarize_transfer_results


def _records():
    rng = np.random.default_rng(0)
    out = []
    for strategy, base in (("scratch", 0.70), ("moco", 0.80)):
        for mode in ("linear", "finetune"):
            for fraction in (1.0, 0.1, 0.01):
                for draw in range(3):
                    auc = base + 0.05 * np.log10(fraction) + 0.01 * rng.normal()
                    out.append({"strategy": strategy, "mode": mode, "fraction": fraction, "draw": draw, "auc": auc,
                                "ci_low": auc - 0.03, "ci_high": auc + 0.03})
    return out


def test_summary_mean_sd_over_draws():
    recs = _records()
    rows = summarize_transfer_results(recs)
    assert len(rows) == 12 and all(r["n_draws"] == 3 for r in rows)
    # order: mode, then strategy (scratch before moco), then decreasing fraction
    assert [(r["mode"], r["strategy"], r["fraction"]) for r in rows[:4]] == [
        ("finetune", "scratch", 1.0), ("finetune", "scratch", 0.1), ("finetune", "scratch", 0.01),
        ("finetune", "moco", 1.0)]  # fmt: skip
    row = next(r for r in rows if (r["strategy"], r["mode"], r["fraction"]) == ("moco", "linear", 0.1))
    values = [r["auc"] for r in recs if (r["strategy"], r["mode"], r["fraction"]) == ("moco", "linear", 0.1)]
    assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(np.std(values, ddof=1))
    assert row["ci_low"] == pytest.approx(np.mean(values) - 0.03)
    assert summarize_transfer_results(recs[:1])[0]["std"] == 0.0


def test_summary_names_missing_keys():
    with pytest.raises(ValueError, match="ci_low"):
        summarize_transfer_results([{"strategy": "moco", "mode": "linear", "fraction": 1.0, "draw": 0, "auc": 0.9}])


def test_plot_writes_one_panel_per_mode(tmp_path):
    recs = _records()
    two = plot_label_fraction_curves(recs, tmp_path / "a" / "both.png", title="test")
    one = plot_label_fraction_curves([r for r in recs if r["mode"] == "linear"], tmp_path / "linear.png")
    with Image.open(two) as a, Image.open(one) as b:
        assert a.width > 1.6 * b.width and a.height == b.height
        pixels = np.asarray(a.convert("RGB"))
        # the moco curve colour (tab:red, #d62728) is drawn
        assert np.any(np.all(np.abs(pixels.astype(int) - [214, 39, 40]) < 12, axis=-1))
    with pytest.raises(ValueError):
        plot_label_fraction_curves([], tmp_path / "empty.png")
