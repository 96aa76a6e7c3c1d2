"""The linear-probe half of a label-fraction study: embed every labelled image once, probe every fraction and draw.

A label-fraction study (MoCo-CXR, Sowrirajan et al., MIDL 2021) probes each backbone on 100 / 10 / 1 % of the
training labels over several random draws. The frozen features of an image do not depend on the fraction or the
draw, so :func:`embed_transfer_splits` computes them once per backbone (training pool, validation split, test split)
and :func:`linear_probe_records` fits one :class:`~monai_moco.evaluation.LogisticProbe` per (fraction, draw) on the
rows of that draw's subset (:func:`draw_features`), exactly the subset ``bundles/cxr_classifier`` trains on for the
same ``(label_fraction, draw, seed)``; :func:`knn_records` scores a weighted kNN vote (InstDisc, Wu et al., CVPR
2018) on the same rows.

``eval_split="val"`` never touches the test split: the validation split is divided by patient into a half that
chooses the probe's ``C`` and a half that is scored; it is the split on which recipes are compared.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from monai_moco.evaluation.linear_probe import DEFAULT_C_GRID, FeatureSet, LogisticProbe, embed_dataset

__all__ = ["TransferFeatures", "draw_features", "embed_transfer_splits", "knn_records", "linear_probe_records"]

logger = logging.getLogger(__name__)


@dataclass
class TransferFeatures:
    """Frozen features of the three splits of :func:`~monai_moco.data.transfer_datalists` at 100 % labels.

    Args:
        pool: every labelled training image that is not in the validation split.
        val: the validation split.
        test: the official test split.
        pool_rows: image path -> row of ``pool``.
    """

    pool: FeatureSet
    val: FeatureSet
    test: FeatureSet
    pool_rows: dict[str, int]


def embed_transfer_splits(
    backbone: str,
    weights: str | os.PathLike | None,
    dataset_dir: str | os.PathLike,
    image_size: int,
    seed: int = 0,
    val_fraction: float = 0.1,
    max_images: int = 0,
    cache: str = "disk",
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 128,
    progress: bool = False,
    backbone_kwargs: dict | None = None,
) -> TransferFeatures:
    """Features of the training pool, validation and test images from one backbone, each image embedded once.

    Args:
        backbone: a :func:`~monai_moco.networks.nets.build_backbone` name.
        weights: local checkpoint of the backbone (ours, MoCo-CXR, torchvision/timm), or None for random init.
        dataset_dir: dataset root (see :func:`~monai_moco.data.transfer_datalists`).
        image_size: side of the loaded (letterboxed) image.
        seed: seed of the validation split (as the classifier bundle's ``seed``) and of the backbone's random
            initialisation, drawn from a forked generator: a random-init baseline is the same network whatever ran
            before it in the process, and the caller's random state is left as it was.
        val_fraction: share of the training images held out for validation.
        max_images: 0 = all; else seeded caps as in ``transfer_datalists``.
        cache: decode-once cache (``"disk"``, ``"memory"``, ``"none"``).
        cache_dir: folder of the disk cache.
        device: where to embed.
        batch_size: images per forward pass.
        progress: progress bars.
        backbone_kwargs: more arguments of ``build_backbone`` (e.g. ``img_size`` for ViTs).

    Returns:
        the :class:`TransferFeatures`.

    Example::

        feats = embed_transfer_splits("resnet18", "runs/moco/checkpoints/last.pt", "data/kermany", 64)
        feats.pool.features.shape  # (4694, 512)
    """
    from monai.data import DataLoader
    from monai.transforms import Compose

    from monai_moco.data import make_dataset, transfer_datalists
    from monai_moco.networks.nets import XRayClassifier, build_backbone
    from monai_moco.transforms import LoadXRayd

    lists = transfer_datalists(dataset_dir, 1.0, 0, val_fraction=val_fraction, seed=seed, max_images=max_images)
    transform = Compose([LoadXRayd(keys="image", spatial_size=image_size)])
    out: dict[str, FeatureSet] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_backbone(backbone, in_channels=1, weights=weights or None, **(backbone_kwargs or {}))
        model = XRayClassifier(net, num_classes=2, frozen=True).to(device)
        for split in ("train", "val", "test"):
            ds = make_dataset(lists[split], transform, cache=cache, cache_dir=cache_dir, progress=progress)
            out[split] = embed_dataset(model, DataLoader(ds, batch_size=batch_size, shuffle=False), progress=progress)
    rows = {str(item["image"]): i for i, item in enumerate(lists["train"])}
    return TransferFeatures(out["train"], out["val"], out["test"], rows)


def _subset(fs: FeatureSet, idx: np.ndarray) -> FeatureSet:
    return FeatureSet(
        fs.features[idx], fs.labels[idx], [fs.groups[i] for i in idx] if fs.groups else [],
        [fs.files[i] for i in idx] if fs.files else [],
    )


def draw_features(
    features: TransferFeatures,
    dataset_dir: str | os.PathLike,
    fraction: float,
    draw: int,
    seed: int = 0,
    val_fraction: float = 0.1,
    max_images: int = 0,
) -> FeatureSet:
    """The rows of ``features.pool`` that form one label-fraction draw of :func:`~monai_moco.data.transfer_datalists`.

    Args:
        features: from :func:`embed_transfer_splits` (same ``dataset_dir``, ``seed``, ``val_fraction``,
            ``max_images``).
        dataset_dir: dataset root, to draw the subset as the classifier bundle does.
        fraction: label fraction in (0, 1].
        draw: index of the random draw.
        seed: seed of the subsets.
        val_fraction: as in :func:`embed_transfer_splits`.
        max_images: as in :func:`embed_transfer_splits`.

    Returns:
        the draw's features, labels, groups and files.

    Raises:
        ValueError: when an image of the draw is not in the embedded pool (embedded with other settings).

    Example::

        train = draw_features(feats, "data/kermany", 0.01, draw=2)
    """
    from monai_moco.data import transfer_datalists

    items = transfer_datalists(dataset_dir, fraction, draw, val_fraction=val_fraction, seed=seed,
                               max_images=max_images)["train"]
    missing = [it["image"] for it in items if str(it["image"]) not in features.pool_rows]
    if missing:
        raise ValueError(
            f"{len(missing)} images of fraction {fraction} draw {draw} are not in the embedded training pool (e.g. "
            f"{missing[0]}); embed with the same dataset_dir/seed/val_fraction/max_images."
        )
    return _subset(features.pool, np.asarray([features.pool_rows[str(it["image"])] for it in items]))


def _scores(report: dict[str, Any]) -> dict[str, Any]:
    """AUC with its interval and the other binary metrics' values from ``classification_metrics_with_ci``."""
    rec = {"auc": report["auc"]["value"], "ci_low": report["auc"]["ci_low"], "ci_high": report["auc"]["ci_high"]}
    rec.update({name: report[name]["value"] for name in ("accuracy", "sensitivity", "specificity") if name in report})
    return rec


def knn_records(
    features: TransferFeatures,
    dataset_dir: str | os.PathLike,
    fractions: Sequence[float],
    draws: int | Sequence[int],
    seed: int = 0,
    val_fraction: float = 0.1,
    max_images: int = 0,
    k: int = 20,
    n_bootstrap: int = 1000,
) -> list[dict[str, Any]]:
    """A weighted kNN vote (``k`` neighbours, :func:`~monai_moco.metrics.knn_predict`) per (fraction, draw), on test.

    Nothing is fitted, so the validation split is not used.

    Args:
        features: from :func:`embed_transfer_splits`.
        dataset_dir: dataset root (see :func:`draw_features`).
        fractions: label fractions in (0, 1].
        draws: number of draws per fraction, or the draw indices.
        seed: seed of the subsets and of the bootstrap.
        val_fraction: as in :func:`embed_transfer_splits`.
        max_images: as in :func:`embed_transfer_splits`.
        k: neighbours.
        n_bootstrap: bootstrap resamples of the intervals.

    Returns:
        records ``{"fraction", "fraction_pct", "draw", "mode": "knn", "auc", "ci_low", "ci_high", "accuracy",
        "sensitivity", "specificity", "n_train", "n_test"}``.

    Example::

        records = knn_records(feats, "data/kermany", [1.0], draws=1)
    """
    from monai_moco.metrics import classification_metrics_with_ci, knn_predict

    draw_ids = list(range(draws)) if isinstance(draws, int) else list(draws)
    records = []
    for fraction in fractions:
        for draw in draw_ids:
            train = draw_features(features, dataset_dir, fraction, draw, seed, val_fraction, max_images)
            probs = knn_predict(train.features, train.labels, features.test.features, k=k).numpy()
            report = classification_metrics_with_ci(features.test.labels, probs, "binary",
                                                    groups=features.test.groups or None, n_bootstrap=n_bootstrap,
                                                    seed=seed)
            records.append({"fraction": float(fraction), "fraction_pct": 100.0 * float(fraction), "draw": int(draw),
                            "mode": "knn", **_scores(report), "n_train": len(train), "n_test": len(features.test)})
    return records


def linear_probe_records(
    features: TransferFeatures,
    dataset_dir: str | os.PathLike,
    fractions: Sequence[float],
    draws: int | Sequence[int],
    seed: int = 0,
    val_fraction: float = 0.1,
    max_images: int = 0,
    eval_split: str = "test",
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    n_bootstrap: int = 1000,
    class_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One logistic probe per (fraction, draw) on precomputed features; one record each, scored on ``eval_split``.

    Args:
        features: from :func:`embed_transfer_splits` (same ``dataset_dir``, ``seed``, ``val_fraction``,
            ``max_images``).
        dataset_dir: dataset root, to draw each subset as the classifier bundle does.
        fractions: label fractions in (0, 1].
        draws: number of draws per fraction, or the draw indices.
        seed: seed of the subsets.
        val_fraction: as in :func:`embed_transfer_splits`.
        max_images: as in :func:`embed_transfer_splits`.
        eval_split: ``"test"`` (``C`` on the validation split, scored on test) or ``"val"`` (``C`` on one
            patient-grouped half of the validation split, scored on the other; the test split is not read).
        c_grid: inverse regularisation strengths.
        n_bootstrap: bootstrap resamples of the intervals.
        class_names: class names for the report.

    Returns:
        records ``{"fraction", "draw", "mode": "linear", "eval_split", "auc", "ci_low", "ci_high", "accuracy",
        "sensitivity", "specificity", "n_train", "n_val", "n_test", "probe_c", "probe_val_auc"}``.

    Raises:
        ValueError: for an unknown ``eval_split`` or a subset image missing from the features.
    """
    from monai_moco.data import group_train_val_split
    from monai_moco.metrics.classification import classification_metrics_with_ci

    if eval_split not in ("test", "val"):
        raise ValueError(f"linear_probe_records: eval_split must be 'test' or 'val', got {eval_split!r}.")
    if eval_split == "test":
        select, score = features.val, features.test
    else:
        v = features.val
        a, b = group_train_val_split(v.labels, np.asarray(v.groups) if v.groups else None, val_fraction=0.5, seed=seed)
        select, score = _subset(v, a), _subset(v, b)
    draw_ids = list(range(draws)) if isinstance(draws, int) else list(draws)
    records = []
    for fraction in fractions:
        for draw in draw_ids:
            train = draw_features(features, dataset_dir, fraction, draw, seed, val_fraction, max_images)
            probe = LogisticProbe(c_grid=c_grid).fit(train.features, train.labels, select.features, select.labels)
            report = classification_metrics_with_ci(
                score.labels, probe.predict_proba(score.features), "binary",
                None if class_names is None else list(class_names), groups=score.groups or None,
                n_bootstrap=n_bootstrap, seed=seed,
            )
            rec: dict[str, Any] = {
                "fraction": float(fraction), "fraction_pct": 100.0 * float(fraction), "draw": int(draw),
                "mode": "linear", "eval_split": eval_split, **_scores(report),
            }
            rec.update({"n_train": len(train), "n_val": len(select), "n_test": len(score), "probe_c": probe.c,
                        "probe_val_auc": probe.summary()["val_auc"]})
            records.append(rec)
            logger.info(
                f"linear probe {100 * fraction:g} % draw {draw}: {len(train)} images, C = {probe.c:g}, "
                f"{eval_split} AUC {rec['auc']:.4f} [{rec['ci_low']:.4f}, {rec['ci_high']:.4f}]"
            )
    return records
