"""Transfer-study summaries: test AUC against the fraction of training labels, one curve and band per strategy.

The figure of MoCo-CXR (Sowrirajan et al., "MoCo-CXR: MoCo Pretraining Improves Representation and Transferability of
Chest X-ray Models", MIDL 2021, Fig. 2-3): for each pretraining strategy (random init, ImageNet, SimCLR, MoCo) the
test AUC of the linear probe and of fine-tuning at 100 %, 10 %, 1 % ... of the labels, on a log axis, with a shaded
confidence band. Here each point is the mean over random draws of the labelled subset; the band spans the mean of the
draws' bootstrap 95 % interval bounds, and the individual draws are drawn as dots.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_moco.utils.io import atomic_write

__all__ = ["STRATEGY_COLOURS", "plot_label_fraction_curves", "summarize_transfer_results"]

STRATEGY_COLOURS: dict[str, str] = {
    "scratch": "tab:gray",
    "imagenet": "tab:blue",
    "simclr": "tab:green",
    "supcon": "tab:olive",
    "moco": "tab:red",
    "moco_v1": "tab:orange",
    "scratch_vit": "tab:brown",
    "moco_vit": "tab:purple",
}
_KEYS = ("strategy", "mode", "fraction")


def summarize_transfer_results(records: Sequence[dict[str, Any]], metric: str = "auc") -> list[dict[str, Any]]:
    """Mean and spread over draws of ``metric`` per (strategy, mode, fraction).

    Args:
        records: one dict per run with at least ``strategy``, ``mode``, ``fraction``, ``draw``, ``metric``,
            ``ci_low`` and ``ci_high`` (the bootstrap interval of ``metric``).
        metric: the record key to summarise.

    Returns:
        rows ``{"strategy", "mode", "fraction", "n_draws", "mean", "std", "min", "max", "ci_low", "ci_high"}``
        sorted by mode, strategy, then decreasing fraction; ``std`` is the sample standard deviation over draws
        (0 for one draw), ``ci_low``/``ci_high`` the means of the draws' interval bounds.

    Raises:
        ValueError: when a record lacks one of the needed keys.

    Example::

        rows = summarize_transfer_results(json.load(open("runs/transfer_study/results.json")))
        rows[0]["mean"], rows[0]["std"]
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for i, rec in enumerate(records):
        missing = [k for k in (*_KEYS, metric, "ci_low", "ci_high") if k not in rec]
        if missing:
            raise ValueError(f"summarize_transfer_results: record {i} lacks {missing}; it has {sorted(rec)}.")
        groups.setdefault(tuple(rec[k] for k in _KEYS), []).append(rec)
    rows = []
    for (strategy, mode, fraction), recs in groups.items():
        values = np.asarray([float(r[metric]) for r in recs])
        rows.append(
            {
                "strategy": strategy,
                "mode": mode,
                "fraction": float(fraction),
                "n_draws": len(recs),
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "min": float(values.min()),
                "max": float(values.max()),
                "ci_low": float(np.mean([float(r["ci_low"]) for r in recs])),
                "ci_high": float(np.mean([float(r["ci_high"]) for r in recs])),
            }
        )
    order = {s: i for i, s in enumerate(STRATEGY_COLOURS)}
    rows.sort(key=lambda r: (str(r["mode"]), order.get(r["strategy"], len(order)), str(r["strategy"]), -r["fraction"]))
    return rows


def _percent(fraction: float) -> str:
    pct = 100.0 * fraction
    return f"{pct:g} %"


def plot_label_fraction_curves(
    records: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    metric: str = "auc",
    title: str | None = None,
    modes: Sequence[str] | None = None,
    dpi: int = 110,
    metric_label: str | None = None,
) -> Path:
    """Plot ``metric`` against the label fraction (log axis), one panel per mode, one curve + band per strategy.

    Args:
        records: per-run dicts (see :func:`summarize_transfer_results`).
        path: output image file (``.png``; any matplotlib format by extension), written atomically; parent folders
            are created.
        metric: record key on the y axis.
        title: figure title.
        modes: panel order (default: the modes present, ``linear`` before ``finetune``).
        dpi: resolution of the written image.
        metric_label: the metric's name on the y axis (default ``metric`` in capitals, e.g. ``AUC``).

    Returns:
        the written path.

    Raises:
        ValueError: when there are no records.

    Example::

        plot_label_fraction_curves(records, "runs/transfer_study/auc_vs_label_fraction.png",
                                   title="Kermany pneumonia, ResNet-18 64 px")
    """
    if not records:
        raise ValueError("plot_label_fraction_curves: no records to plot.")
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    rows = summarize_transfer_results(records, metric)
    present = sorted({r["mode"] for r in rows}, key=lambda m: (m != "linear", m != "finetune", m))
    modes = list(modes) if modes is not None else present
    labels = {"linear": "linear probe (frozen backbone)", "finetune": "fine-tuning"}
    fig = Figure(figsize=(5.2 * len(modes), 4.2), dpi=dpi)
    axes = fig.subplots(1, len(modes), squeeze=False, sharey=True)[0]
    fractions = sorted({r["fraction"] for r in rows})
    low = min(min(r["ci_low"], r["min"]) for r in rows)
    for ax, mode in zip(axes, modes, strict=True):
        strategies = [s for s in dict.fromkeys(r["strategy"] for r in rows if r["mode"] == mode)]
        for k, strategy in enumerate(strategies):
            colour = STRATEGY_COLOURS.get(strategy, f"C{(k + 4) % 7}")  # C7 is tab:gray, scratch's colour
            curve = sorted((r for r in rows if r["mode"] == mode and r["strategy"] == strategy),
                           key=lambda r: r["fraction"])
            x = np.asarray([r["fraction"] for r in curve])
            ax.fill_between(x, [r["ci_low"] for r in curve], [r["ci_high"] for r in curve], color=colour, alpha=0.15,
                            linewidth=0)
            style = "--o" if strategy.endswith("_vit") else "-o"  # a second backbone family: dashed
            ax.plot(x, [r["mean"] for r in curve], style, color=colour, label=strategy, markersize=4)
            draws = [rec for rec in records if rec["mode"] == mode and rec["strategy"] == strategy]
            ax.plot([float(d["fraction"]) for d in draws], [float(d[metric]) for d in draws], ".", color=colour,
                    alpha=0.5, markersize=3)
        ax.set_xscale("log")
        ax.set_xticks(fractions)
        ax.set_xticklabels([_percent(f) for f in fractions])
        ax.minorticks_off()
        ax.set_xlabel("fraction of training labels")
        ax.set_title(labels.get(mode, mode))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel(f"test {metric_label or metric.upper()} (mean over draws, band: mean 95 % CI)")
    axes[0].set_ylim(max(0.0, math.floor(low * 20) / 20), 1.0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp))
