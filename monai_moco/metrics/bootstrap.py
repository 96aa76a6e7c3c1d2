"""Percentile bootstrap confidence intervals for AUC and other classification metrics, optionally patient-clustered.

A transfer-evaluation table is only honest with an uncertainty on every number: on Kermany's 624-image test set a
0.01 AUC gap is within noise. This module gives the percentile bootstrap (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13) of any metric, and its **cluster** (patient-level) form (Field & Welsh, "Bootstrapping
clustered data", JRSS-B 2007): when several images come from one patient they are not independent, so whole patients
are resampled, not images. AUC is the ROC area of Hanley & McNeil (Radiology 1982), computed by sklearn's
``roc_auc_score`` for point estimates.

How resamples are drawn: every bootstrap resample is a vector of multiplicities (how many times each image, or each
patient's images, was drawn). Built-in metrics (``"auc"``, ``"accuracy"``, ``"sensitivity"``, ``"specificity"``) are
evaluated for all resamples at once from these weights (a weighted Mann-Whitney statistic with mid-rank ties for AUC,
exactly equal to ``roc_auc_score`` on the expanded resample), so 1000 resamples of 624 images take a few
milliseconds. Any other callable ``metric_fn(y_true, y_score)`` is called once per resample on the expanded arrays.

Single-class resamples: AUC, sensitivity and specificity are undefined when a resample holds only one class. Such
resamples are **redrawn** (up to ``max_redraw_rounds`` rounds), so the interval rests on ``n_bootstrap`` valid
resamples; if some remain invalid after that, they are skipped with a warning and ``n_bootstrap`` in the result says
how many were used. For a generic callable a resample is invalid when it has fewer than two distinct labels
(``require_both_classes=True``), when ``metric_fn`` raises ``ValueError`` or returns a non-finite value.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from monai.utils import look_up_option
from sklearn.metrics import roc_auc_score

__all__ = [
    "BUILTIN_METRICS",
    "bootstrap_ci",
    "auc_with_ci",
    "binary_metrics_with_ci",
    "per_class_auc_with_ci",
    "weighted_auc",
]

BUILTIN_METRICS: tuple[str, ...] = ("auc", "accuracy", "sensitivity", "specificity")

# at most this many float64 cells (resamples x items) are held at once; larger problems are processed in chunks
_CHUNK_CELLS = 4_000_000


def _as_1d(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {arr.shape}.")
    return arr


def _check_binary(name: str, y_true: np.ndarray) -> np.ndarray:
    values = set(np.unique(y_true).tolist())
    if not values <= {0, 1}:  # 0.0 == 0 == False and 1.0 == 1 == True in a set
        raise ValueError(f"{name} must hold binary labels 0/1, found values {sorted(values)[:10]}.")
    return y_true.astype(np.int64)


def _group_codes(groups: Sequence[Any] | np.ndarray | None, n: int) -> tuple[np.ndarray | None, int]:
    if groups is None:
        return None, n
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ValueError(f"groups must have one id per item, shape ({n},), got shape {g.shape}.")
    _, codes = np.unique(g, return_inverse=True)
    return codes.reshape(-1), int(codes.max()) + 1 if n else 0


def _draw_weights(rng: np.random.Generator, rows: int, n: int, codes: np.ndarray | None, n_units: int) -> np.ndarray:
    """``rows x n`` multiplicities: how many times each item is in each resample (patients drawn whole)."""
    drawn = rng.integers(0, n_units, size=(rows, n_units))  # each resample draws n_units units with replacement
    offsets = np.arange(rows, dtype=np.int64)[:, None] * n_units
    counts = np.bincount((drawn + offsets).ravel(), minlength=rows * n_units).reshape(rows, n_units)
    weights = counts if codes is None else counts[:, codes]
    return weights.astype(np.float64)


def weighted_auc(y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of many weighted resamples at once (Mann-Whitney statistic, ties count one half).

    With integer weights this equals ``roc_auc_score`` on the data with item ``i`` repeated ``weights[b, i]`` times.

    Args:
        y_true: ``(N,)`` binary labels.
        y_score: ``(N,)`` scores, higher = more likely class 1.
        weights: ``(B, N)`` non-negative weights (bootstrap multiplicities), or ``(N,)`` for one resample.

    Returns:
        ``(B,)`` AUCs (a scalar array for 1-D ``weights``); ``nan`` where a resample lacks a class.

    Example::

        aucs = weighted_auc(y, s, np.ones((1, len(y))))  # == roc_auc_score(y, s)
    """
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    y = np.asarray(y_true).astype(bool)
    uniq, inverse = np.unique(np.asarray(y_score, dtype=np.float64), return_inverse=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inverse.reshape(-1)[order]) != 0])
    w_sorted = w[:, order]
    pos_sorted = y[order]
    w_pos = np.add.reduceat(w_sorted * pos_sorted, starts, axis=1)  # B x U: positive weight at each distinct score
    w_neg = np.add.reduceat(w_sorted * ~pos_sorted, starts, axis=1)
    neg_below = np.cumsum(w_neg, axis=1) - w_neg
    numerator = np.sum(w_pos * (neg_below + 0.5 * w_neg), axis=1)
    denominator = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)
    return auc if np.ndim(weights) == 2 else auc[0]


def _weighted_rates(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted accuracy, sensitivity and specificity of ``B`` resamples (``nan`` when undefined)."""
    pos, correct = y.astype(bool), pred == y.astype(bool)
    total, n_pos = w.sum(axis=1), w @ pos.astype(np.float64)
    n_neg = total - n_pos
    tp, tn = w @ (correct & pos).astype(np.float64), w @ (correct & ~pos).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "accuracy": np.where(total > 0, (tp + tn) / total, np.nan),
            "sensitivity": np.where(n_pos > 0, tp / n_pos, np.nan),
            "specificity": np.where(n_neg > 0, tn / n_neg, np.nan),
        }


def _builtin_stat(name: str, y: np.ndarray, s: np.ndarray, threshold: float) -> Callable[[np.ndarray], np.ndarray]:
    if name == "auc":
        return lambda w: weighted_auc(y, s, w)
    pred = s >= threshold
    return lambda w: _weighted_rates(y, pred, w)[name]


def _generic_stat(
    metric_fn: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray, s: np.ndarray, require_both_classes: bool
) -> Callable[[np.ndarray], np.ndarray]:
    items = np.arange(len(y))

    def stat(w: np.ndarray) -> np.ndarray:
        out = np.full(w.shape[0], np.nan)
        for b, row in enumerate(w):
            idx = np.repeat(items, row.astype(np.int64))
            if require_both_classes and np.unique(y[idx]).size < 2:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out[b] = float(metric_fn(y[idx], s[idx]))
            except ValueError:
                continue
        return out

    return stat


def _resample_stats(
    stat_fn: Callable[[np.ndarray], np.ndarray],
    n: int,
    codes: np.ndarray | None,
    n_units: int,
    n_bootstrap: int,
    seed: int,
    max_redraw_rounds: int,
) -> np.ndarray:
    """Evaluate ``stat_fn`` on ``n_bootstrap`` valid resamples (rows with any non-finite value are redrawn)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    kept: list[np.ndarray] = []
    collected = 0
    for _ in range(max_redraw_rounds):
        need = n_bootstrap - collected
        if need <= 0:
            break
        for start in range(0, need, chunk):
            vals = np.asarray(stat_fn(_draw_weights(rng, min(chunk, need - start), n, codes, n_units)), float)
            vals2d = vals.reshape(vals.shape[0], -1)
            valid = np.all(np.isfinite(vals2d), axis=1)
            kept.append(vals[valid])
            collected += int(valid.sum())
    if collected < n_bootstrap:
        warnings.warn(
            f"bootstrap: only {collected} of {n_bootstrap} resamples gave a defined metric after "
            f"{max_redraw_rounds} redraw rounds (single-class resamples); the interval uses {collected}.",
            stacklevel=3,
        )
    if not kept:
        return np.empty((0,))
    return np.concatenate(kept, axis=0)[:n_bootstrap]


def _interval(stats: np.ndarray, ci: float) -> tuple[float, float]:
    if stats.shape[0] == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(stats, [100.0 * (1.0 - ci) / 2.0, 100.0 * (1.0 + ci) / 2.0], axis=0)
    return float(low), float(high)


def _result(value: float, stats: np.ndarray, ci: float, n: int, n_groups: int) -> dict[str, Any]:
    """The result dict of one metric: point estimate, percentile interval of its ``stats`` and the counts."""
    low, high = _interval(stats, ci)
    return {
        "value": float(value),
        "ci_low": low,
        "ci_high": high,
        "n": int(n),
        "n_groups": int(n_groups),
        "n_bootstrap": int(stats.shape[0]),
        "ci": float(ci),
    }


def _check_args(n_bootstrap: int, ci: float) -> None:
    if int(n_bootstrap) < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}.")
    if not 0.0 < float(ci) < 1.0:
        raise ValueError(f"ci must be in (0, 1), e.g. 0.95, got {ci}.")


def _point_estimate(name: str, y: np.ndarray, s: np.ndarray, threshold: float) -> float:
    if name == "auc":
        return float(roc_auc_score(y, s))
    return float(_weighted_rates(y, s >= threshold, np.ones((1, len(y))))[name][0])


def bootstrap_ci(
    y_true: Sequence[Any] | np.ndarray,
    y_score: Sequence[Any] | np.ndarray,
    metric_fn: Callable[[np.ndarray, np.ndarray], float] | str = "auc",
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    groups: Sequence[Any] | np.ndarray | None = None,
    seed: int = 0,
    threshold: float = 0.5,
    require_both_classes: bool = True,
    max_redraw_rounds: int = 100,
) -> dict[str, Any]:
    """Percentile bootstrap confidence interval of a metric; resamples patients when ``groups`` are given.

    Efron & Tibshirani (1993), ch. 13 (percentile interval); with ``groups``, the cluster bootstrap (Field & Welsh,
    JRSS-B 2007): patients are drawn with replacement and each drawn patient brings all their images.

    Args:
        y_true: ``(N,)`` labels (binary 0/1 for the built-in metrics).
        y_score: ``(N,)`` scores or predictions passed to ``metric_fn`` (probability of class 1 for the built-ins).
        metric_fn: ``"auc"``, ``"accuracy"``, ``"sensitivity"``, ``"specificity"`` (vectorised; sklearn's
            ``roc_auc_score`` is recognised as ``"auc"``), or any ``metric_fn(y_true, y_score) -> float``.
        n_bootstrap: number of (valid) resamples.
        ci: coverage of the interval, e.g. ``0.95`` for the 2.5th-97.5th percentiles.
        groups: optional ``(N,)`` patient ids; resample patients (cluster bootstrap) instead of images.
        seed: seed of the resampling; equal seeds give equal intervals.
        threshold: decision threshold on ``y_score`` for accuracy, sensitivity and specificity.
        require_both_classes: for a generic callable, treat resamples with fewer than two distinct labels as invalid
            (redrawn). Built-in metrics always require the classes they need.
        max_redraw_rounds: rounds of redrawing invalid (single-class) resamples before giving up with a warning.

    Returns:
        ``{"value": point estimate on all data, "ci_low", "ci_high", "n": number of items, "n_groups": patients
        (or items when ungrouped), "n_bootstrap": valid resamples used, "ci": coverage}``.

    Raises:
        ValueError: for mismatched shapes, non-binary labels with a built-in metric, a single class in the data for a
            metric that needs both, ``n_bootstrap < 1`` or ``ci`` outside (0, 1).

    Example::

        res = bootstrap_ci(y, p, "auc", groups=patient_ids)
        print(f"AUC {res['value']:.3f} [{res['ci_low']:.3f}, {res['ci_high']:.3f}]")
    """
    _check_args(n_bootstrap, ci)
    y = _as_1d("y_true", y_true)
    s = _as_1d("y_score", y_score)
    if y.shape != s.shape:
        raise ValueError(f"y_true {y.shape} and y_score {s.shape} must have the same shape (N,).")
    if y.size == 0:
        raise ValueError("bootstrap_ci: got no items (N = 0).")
    codes, n_units = _group_codes(groups, y.size)
    if metric_fn is roc_auc_score:
        metric_fn = "auc"
    if isinstance(metric_fn, str):
        name = look_up_option(metric_fn, BUILTIN_METRICS)
        y = _check_binary("y_true", y)
        s = s.astype(np.float64)
        needs = {"auc": (0, 1), "accuracy": (), "sensitivity": (1,), "specificity": (0,)}[name]
        missing = [c for c in needs if not np.any(y == c)]
        if missing:
            raise ValueError(f"bootstrap_ci: metric {name!r} needs class(es) {missing} in y_true, which has none.")
        value = _point_estimate(name, y, s, threshold)
        stat = _builtin_stat(name, y, s, threshold)
    else:
        if require_both_classes and np.unique(y).size < 2:
            raise ValueError("bootstrap_ci: y_true holds a single class; pass require_both_classes=False if intended.")
        value = float(metric_fn(y, s))
        stat = _generic_stat(metric_fn, y, s, require_both_classes)
    stats = _resample_stats(stat, y.size, codes, n_units, int(n_bootstrap), seed, max_redraw_rounds)
    return _result(value, stats, ci, y.size, n_units)


def auc_with_ci(
    y_true: Sequence[Any] | np.ndarray,
    y_score: Sequence[Any] | np.ndarray,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    groups: Sequence[Any] | np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """ROC AUC (Hanley & McNeil 1982) with a percentile bootstrap interval; see :func:`bootstrap_ci`.

    Args:
        y_true: ``(N,)`` binary labels.
        y_score: ``(N,)`` scores for class 1.
        n_bootstrap: number of valid resamples.
        ci: interval coverage.
        groups: optional ``(N,)`` patient ids (cluster bootstrap).
        seed: resampling seed.

    Returns:
        the :func:`bootstrap_ci` result dict.

    Raises:
        ValueError: see :func:`bootstrap_ci`.

    Example::

        auc_with_ci([0, 1, 1, 0], [0.1, 0.8, 0.6, 0.3])["value"]  # 1.0
    """
    return bootstrap_ci(y_true, y_score, "auc", n_bootstrap=n_bootstrap, ci=ci, groups=groups, seed=seed)


def binary_metrics_with_ci(
    y_true: Sequence[Any] | np.ndarray,
    y_score: Sequence[Any] | np.ndarray,
    threshold: float = 0.5,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    groups: Sequence[Any] | np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """AUC, accuracy, sensitivity and specificity of a binary classifier, each with a bootstrap interval.

    All four metrics are computed on the **same** resamples (each holding both classes), so their intervals are
    mutually consistent.

    Args:
        y_true: ``(N,)`` binary labels (1 = disease).
        y_score: ``(N,)`` probabilities of class 1.
        threshold: ``y_score >= threshold`` predicts class 1.
        n_bootstrap: number of valid resamples.
        ci: interval coverage.
        groups: optional ``(N,)`` patient ids (cluster bootstrap).
        seed: resampling seed.

    Returns:
        ``{"auc": {...}, "accuracy": {...}, "sensitivity": {...}, "specificity": {...}}``, each a
        :func:`bootstrap_ci`-style dict.

    Raises:
        ValueError: for non-binary labels, a single class in ``y_true`` or bad shapes.

    Example::

        m = binary_metrics_with_ci(y, p, threshold=0.5, groups=pid)
        m["sensitivity"]["ci_low"]
    """
    _check_args(n_bootstrap, ci)
    y = _check_binary("y_true", _as_1d("y_true", y_true))
    s = _as_1d("y_score", y_score).astype(np.float64)
    if y.shape != s.shape:
        raise ValueError(f"y_true {y.shape} and y_score {s.shape} must have the same shape (N,).")
    if np.unique(y).size < 2:
        raise ValueError("binary_metrics_with_ci: y_true must contain both classes 0 and 1.")
    codes, n_units = _group_codes(groups, y.size)
    pred = s >= threshold

    def stat(w: np.ndarray) -> np.ndarray:
        rates = _weighted_rates(y, pred, w)
        return np.stack([weighted_auc(y, s, w)] + [rates[k] for k in BUILTIN_METRICS[1:]], axis=1)

    stats = _resample_stats(stat, y.size, codes, n_units, int(n_bootstrap), seed, 100)
    return {
        name: _result(_point_estimate(name, y, s, threshold), stats[:, j] if stats.size else stats, ci, y.size, n_units)
        for j, name in enumerate(BUILTIN_METRICS)
    }


def per_class_auc_with_ci(
    y_true: np.ndarray,
    y_score: np.ndarray,
    class_names: Sequence[str] | None = None,
    mask: np.ndarray | None = None,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    groups: Sequence[Any] | np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per-class and macro-mean ROC AUC of a multi-label classifier (e.g. CheXpert), with bootstrap intervals.

    Every class is scored on the same resamples (images or patients), and the macro interval comes from the macro
    mean of each resample, so it accounts for the correlation between classes. With ``mask``, entries where
    ``mask[i, c]`` is false (CheXpert "ignore"/uncertain labels, Irvin et al., AAAI 2019) are left out of class ``c``
    only.

    Args:
        y_true: ``(N, C)`` binary labels (entries outside ``mask`` may hold anything, e.g. -1 or nan).
        y_score: ``(N, C)`` scores.
        class_names: ``C`` names (default ``"class_0"``...).
        mask: optional ``(N, C)`` boolean, true where the label counts.
        n_bootstrap: number of valid resamples (each must hold both classes for every class column).
        ci: interval coverage.
        groups: optional ``(N,)`` patient ids (cluster bootstrap).
        seed: resampling seed.

    Returns:
        ``{name: {"value", "ci_low", "ci_high", "n", ...} for each class, "macro": {...}}``; ``n`` is the number
        of unmasked items of that class.

    Raises:
        ValueError: for shape mismatches, non-binary unmasked labels, or a class whose unmasked labels hold one class.

    Example::

        res = per_class_auc_with_ci(Y, P, ["Atelectasis", "Edema"], mask=Y >= 0)
        res["macro"]["value"]
    """
    _check_args(n_bootstrap, ci)
    y_all = np.asarray(y_true, dtype=np.float64)
    s_all = np.asarray(y_score, dtype=np.float64)
    if y_all.ndim != 2 or y_all.shape != s_all.shape:
        raise ValueError(f"y_true {y_all.shape} and y_score {s_all.shape} must both be (N, C).")
    n, c = y_all.shape
    names = list(class_names) if class_names is not None else [f"class_{j}" for j in range(c)]
    if len(names) != c:
        raise ValueError(f"class_names has {len(names)} names but y_true has {c} columns.")
    m = np.ones((n, c), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != (n, c):
        raise ValueError(f"mask must have the shape of y_true {(n, c)}, got {m.shape}.")
    columns = []
    for j, name in enumerate(names):
        y_j = y_all[m[:, j], j]
        if not np.all((y_j == 0) | (y_j == 1)):
            raise ValueError(f"class {name!r}: unmasked labels must be 0/1, found {sorted(set(y_j.tolist()))[:10]}.")
        if np.unique(y_j).size < 2:
            raise ValueError(f"class {name!r}: unmasked labels hold a single class; its AUC is undefined.")
        columns.append((np.flatnonzero(m[:, j]), y_j.astype(np.int64), s_all[m[:, j], j]))
    codes, n_units = _group_codes(groups, n)

    def stat(w: np.ndarray) -> np.ndarray:
        per_class = np.stack([weighted_auc(y_j, s_j, w[:, idx]) for idx, y_j, s_j in columns], axis=1)
        return np.concatenate([per_class, per_class.mean(axis=1, keepdims=True)], axis=1)

    stats = _resample_stats(stat, n, codes, n_units, int(n_bootstrap), seed, 100)
    values = [float(roc_auc_score(y_j, s_j)) for _, y_j, s_j in columns]
    values.append(float(np.mean(values)))  # macro
    counts = [len(idx) for idx, _, _ in columns] + [n]  # unmasked items per class; all items for the macro mean
    return {
        name: _result(values[j], stats[:, j] if stats.size else stats, ci, counts[j], n_units)
        for j, name in enumerate([*names, "macro"])
    }
