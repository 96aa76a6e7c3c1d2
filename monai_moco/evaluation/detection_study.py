"""Label-fraction study of box detection: which backbone initialisation localises best with few labelled images?

The protocol of MoCo-CXR (Sowrirajan et al., MIDL 2021) moved to localisation: ``bundles/cxr_detector`` (MONAI's
RetinaNet, Lin et al., ICCV 2017) is fine-tuned from each backbone source (random init ``scratch``, our MoCo-v2 or
SimCLR checkpoints, any other file) on nested, patient-grouped fractions of the training labels with several draws,
keeping the checkpoint with the best validation mAP, and scored once on the fixed test split (COCO mAP@0.5 and
mAP@0.5:0.95 with patient-bootstrap 95 % intervals).

Each run leaves ``<output_dir>/runs/<name>/record.json`` (resumable: finished runs are skipped). With
``evaluate_test=False`` nothing touches the test split and the records hold the best validation mAP only, for choosing
settings. :func:`write_detection_tables` writes the per-run JSON, the mean ± sd table and the figure.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_moco.utils.io import atomic_write_all, json_writer, write_json_atomic
from monai_moco.visualize.label_fraction import plot_label_fraction_curves, summarize_transfer_results

__all__ = ["DETECTION_MODE", "detection_run_name", "run_detection_study", "write_detection_tables"]

logger = logging.getLogger(__name__)

#: the ``mode`` of detection records in the label-fraction summaries and plots
DETECTION_MODE = "detection"


def detection_run_name(strategy: str, fraction: float, draw: int) -> str:
    """Folder name of one run, e.g. ``moco_f10_d2`` for 10 % of the labels, draw 2.

    Args:
        strategy: backbone source name.
        fraction: label fraction in (0, 1].
        draw: draw index.

    Returns:
        the name.

    Example::

        detection_run_name("scratch", 0.25, 0)  # "scratch_f25_d0"
    """
    return f"{strategy}_f{100 * float(fraction):g}_d{int(draw)}"


def _record(strategy: str, fraction: float, draw: int, run_dir: Path, seconds: float, evaluate_test: bool) -> dict:
    val = json.loads((run_dir / "val_metrics.json").read_text())
    rec: dict[str, Any] = {
        "strategy": strategy,
        "mode": DETECTION_MODE,
        "fraction": float(fraction),
        "draw": int(draw),
        "best_val_map": val["best_val_map"],
        "best_epoch": val["best_epoch"],
        "n_train": val["n_train"],
        "steps": val["steps"],
        "image_size": val["image_size"],
        "lr": val["lr"],
        "pretrained": val["pretrained"],
        "seconds": round(seconds, 1),
    }
    if evaluate_test:
        test = json.loads((run_dir / "test_metrics.json").read_text())
        for key in ("map_50", "map_50_95"):
            rec[key] = test[key]["value"]
            rec[f"{key}_ci_low"] = test[key]["ci_low"]
            rec[f"{key}_ci_high"] = test[key]["ci_high"]
        rec["n_test"] = test["n_images"]
        rec["n_test_patients"] = test["n_patients"]
    return rec


def run_detection_study(
    run_bundle: Callable[..., None],
    config_files: Sequence[str | Path],
    sources: Mapping[str, str],
    draws: Mapping[float, int],
    output_dir: str | Path,
    overrides: Mapping[str, Any] | None = None,
    evaluate_test: bool = True,
    force: bool = False,
) -> list[dict[str, Any]]:
    """Run ``bundles/cxr_detector`` for every (source, fraction, draw) not finished yet; return every record.

    Args:
        run_bundle: ``run_bundle(config_files, **overrides)`` runs one bundle (e.g. in-process with MONAI's
            ``ConfigWorkflow``, as ``scripts/run_transfer_study.py`` does).
        config_files: the bundle's config files (``train.json`` and overlays).
        sources: strategy name -> ``pretrained`` value (``""`` for random init).
        draws: label fraction -> number of draws (the bundle's ``fractions``/``draws`` are set to cover them, so
            the subsets are nested across fractions).
        output_dir: study folder; runs go to ``<output_dir>/runs/<name>``.
        overrides: more bundle overrides for every run (e.g. ``image_size``, ``lr``).
        evaluate_test: score the test split after training; False only validates (for choosing settings).
        force: re-run finished runs.

    Returns:
        one record per run: strategy, fraction, draw, best validation mAP and (with ``evaluate_test``) ``map_50``,
        ``map_50_95`` and their ``*_ci_low``/``*_ci_high``.

    Raises:
        ValueError: for no sources or no fractions.

    Example::

        records = run_detection_study(run_bundle, ["bundles/cxr_detector/train.json", "bundles/cxr_detector/cpu.json"],
                                      {"scratch": "", "moco": "moco.pt"}, {1.0: 1, 0.1: 3}, "runs/detection_study")
    """
    if not sources or not draws:
        raise ValueError(f"run_detection_study: need sources and fractions, got {dict(sources)} and {dict(draws)}.")
    output_dir = Path(output_dir)
    fractions = sorted((float(f) for f in draws), reverse=True)
    common = {"fractions": fractions, "draws": max(int(n) for n in draws.values()), "evaluate_test": evaluate_test,
              "progress": False, **dict(overrides or {})}
    records = []
    plan = [(s, f, d) for s in sources for f in fractions for d in range(int(draws[f]))]
    for i, (strategy, fraction, draw) in enumerate(plan):
        run_dir = output_dir / "runs" / detection_run_name(strategy, fraction, draw)
        record_file = run_dir / "record.json"
        if record_file.is_file() and not force:
            records.append(json.loads(record_file.read_text()))
            continue
        start = time.perf_counter()
        run_bundle(list(config_files), output_dir=str(run_dir), pretrained=sources[strategy], label_fraction=fraction,
                   draw=draw, **common)
        rec = _record(strategy, fraction, draw, run_dir, time.perf_counter() - start, evaluate_test)
        write_json_atomic(rec, record_file)
        records.append(rec)
        shown = f"test mAP@0.5:0.95 {rec['map_50_95']:.3f}" if evaluate_test else f"val mAP {rec['best_val_map']:.3f}"
        logger.info(f"[{i + 1}/{len(plan)}] {run_dir.name}: {shown} ({rec['n_train']} images, {rec['seconds']:.0f} s)")
    return records


def _metric_records(records: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Records with ``ci_low``/``ci_high`` of ``metric``, the form the label-fraction summaries read."""
    return [{**r, "ci_low": r[f"{metric}_ci_low"], "ci_high": r[f"{metric}_ci_high"]} for r in records]


def write_detection_tables(
    records: Sequence[dict[str, Any]], output_dir: str | Path, figure: str | Path | None = None, title: str = ""
) -> str:
    """Write ``results.json`` and ``summary.md`` (test mAP mean ± sd over draws, mean CI) and the figure.

    Args:
        records: test records of :func:`run_detection_study`.
        output_dir: folder for ``results.json`` and ``summary.md``.
        figure: image file of mAP@0.5:0.95 against the label fraction (None: no figure).
        title: figure title.

    Returns:
        the markdown table.

    Raises:
        ValueError: when there are no records or a record has no test metrics.

    Example::

        print(write_detection_tables(records, "runs/detection_study", "docs/figures/localisation_map.png"))
    """
    if not records:
        raise ValueError("write_detection_tables: no records.")
    missing = [detection_run_name(r["strategy"], r["fraction"], r["draw"]) for r in records if "map_50" not in r]
    if missing:
        raise ValueError(f"write_detection_tables: runs {missing} have no test metrics (run with evaluate_test).")
    rows = {m: summarize_transfer_results(_metric_records(records, m), m) for m in ("map_50", "map_50_95")}
    lines = [
        "| backbone | labels (images) | draws | mAP@0.5 mean ± sd | mean 95 % CI | mAP@0.5:0.95 mean ± sd | mean 95 % CI |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, b in zip(rows["map_50"], rows["map_50_95"], strict=True):
        n_train = sorted({r["n_train"] for r in records if r["strategy"] == a["strategy"]
                          and r["fraction"] == a["fraction"]})
        lines.append(
            f"| {a['strategy']} | {100 * a['fraction']:g} % ({'/'.join(map(str, n_train))}) | {a['n_draws']} | "
            f"{a['mean']:.3f} ± {a['std']:.3f} | [{a['ci_low']:.3f}, {a['ci_high']:.3f}] | "
            f"{b['mean']:.3f} ± {b['std']:.3f} | [{b['ci_low']:.3f}, {b['ci_high']:.3f}] |"
        )
    markdown = "\n".join(lines) + "\n"
    output_dir = Path(output_dir)
    atomic_write_all([
        (output_dir / "results.json", json_writer(list(records))),
        (output_dir / "summary.md", lambda p: p.write_text(markdown)),
    ])
    if figure is not None:
        plot_label_fraction_curves(_metric_records(records, "map_50_95"), figure, metric="map_50_95",
                                   title=title, metric_label="mAP@0.5:0.95")
    return markdown
