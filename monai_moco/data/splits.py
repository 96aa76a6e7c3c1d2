"""Label-fraction subsets and patient-grouped validation splits for transfer-learning studies.

Self-supervised pretraining is judged by how well the pretrained encoder transfers when only a small fraction of the
labels is available (He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020;
Sowrirajan et al., "MoCo-CXR: MoCo Pretraining Improves Representation and Transferability of Chest X-ray Models",
MIDL 2021, who fine-tune on 0.1 %, 1 %, 10 % and 100 % of the CheXpert labels). The subsets here are

* stratified, with at least one example of every class even at 0.1 %;
* grouped by patient when ``groups`` is given (a patient's images are taken or left together);
* reproducible for a ``(seed, draw)`` pair, and different draws differ;
* nested: for one ``(seed, draw)`` the 0.1 % subset lies inside the 1 % one, which lies inside the 10 % one.

Nesting comes from building ONE order of the patients per ``(seed, draw)`` and taking prefixes of it. The order
interleaves the strata by Webster's (Sainte-Laguë) sequential apportionment, which is house-monotone, so every
prefix is as close to stratified as a prefix can be: the first patient of every stratum comes first (the "at least
one per class" floor), then the ``j``-th patient (``j >= 1``) of a stratum with ``n`` patients gets the sort key
``(j + 0.5) / n``; within a stratum the patients come in a seeded random order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

__all__ = ["label_fraction_split", "group_train_val_split", "stratum_keys", "fraction_splits", "datalist_from_splits"]

# a separate random stream for validation carving, so the validation set is not the 10 % subset of draw 0
_VAL_STREAM = 7919


def stratum_keys(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    """One hashable stratum key (a string) per example.

    1D labels (ints, strings, floats) are their own stratum. 2D (multi-label) labels are stratified on the whole
    label combination: each distinct row (``"0,1,nan,..."``) is a stratum. For CheXpert-like data with many distinct
    combinations, the "at least one per stratum" floor then dominates the smallest fractions; pass any 1D key you
    prefer instead (e.g. ``labels[:, k]`` for one finding) to stratify on something else.

    Args:
        labels: N labels (1D) or an N x K array of multi-label rows.

    Returns:
        An array of N strings.

    Raises:
        ValueError: when labels are empty or have more than two dimensions.

    Example::

        stratum_keys([[0, 1], [0, 1], [1, 0]])  # array(['0.0,1.0', '0.0,1.0', '1.0,0.0'])
    """
    arr = np.asarray(labels)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"labels must be a non-empty 1D or 2D array, got shape {arr.shape}.")
    if arr.ndim == 1:
        return np.asarray([str(v) for v in arr.tolist()])
    if arr.ndim == 2:
        return np.asarray([",".join(str(v) for v in row) for row in arr.astype(float).tolist()])
    raise ValueError(f"labels must be 1D (one label per example) or 2D (multi-label rows), got shape {arr.shape}.")


def _group_units(labels: Sequence[Any] | np.ndarray, groups: Sequence[Any] | np.ndarray | None):
    """Collapse examples into units (patients): unit index per example, stratum per unit, and unit sizes.

    A group's stratum is its most frequent example stratum (ties: the smallest key).
    """
    keys = stratum_keys(labels)
    n = len(keys)
    if groups is None:
        unit_of = np.arange(n)
    else:
        groups = np.asarray([str(g) for g in groups])
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} entries but labels has {n}; give one group per example.")
        _, unit_of = np.unique(groups, return_inverse=True)
    _, strat_of = np.unique(keys, return_inverse=True)
    n_units = int(unit_of.max()) + 1
    # most frequent stratum per unit: sort (unit, -count, stratum) pairs and keep each unit's first
    pairs, counts = np.unique(np.stack([unit_of, strat_of], axis=1), axis=0, return_counts=True)
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
    pairs = pairs[order]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = pairs[1:, 0] != pairs[:-1, 0]
    unit_stratum = np.empty(n_units, dtype=np.int64)
    unit_stratum[pairs[first, 0]] = pairs[first, 1]
    unit_size = np.bincount(unit_of, minlength=n_units)
    return unit_of, unit_stratum, unit_size


def _interleaved_order(unit_stratum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A seeded order of units whose every prefix is stratified (Webster sequential apportionment, floor of 1)."""
    n_units = len(unit_stratum)
    perm = rng.permutation(n_units)
    strata = unit_stratum[perm]
    n_per = np.bincount(strata)
    # rank of each unit inside its stratum, in permutation order
    by_stratum = np.argsort(strata, kind="stable")
    starts = np.concatenate([[0], np.cumsum(n_per)[:-1]])
    rank_sorted = np.arange(n_units) - np.repeat(starts, n_per)
    rank = np.empty(n_units, dtype=np.int64)
    rank[by_stratum] = rank_sorted
    key = np.where(rank == 0, -1.0, (rank + 0.5) / n_per[strata])
    return perm[np.lexsort((np.arange(n_units), key))]


def _prefix_length(order: np.ndarray, unit_size: np.ndarray, target: float, minimum: int) -> int:
    """Number of leading units whose example count is nearest ``target`` (monotone in target), at least ``minimum``."""
    cum = np.cumsum(unit_size[order])
    k = int(np.searchsorted(cum, target))  # first prefix reaching the target
    if k > 0 and (k >= len(cum) or target - cum[k - 1] <= cum[k] - target):
        k -= 1  # the shorter prefix is at least as close
    return min(max(k + 1, minimum), len(order))


def _check_fraction(name: str, value: float, include_one: bool) -> float:
    upper_ok = value <= 1.0 if include_one else value < 1.0
    if not (isinstance(value, (int, float, np.floating, np.integer)) and 0.0 < float(value) and upper_ok):
        interval = "(0, 1]" if include_one else "(0, 1)"
        raise ValueError(
            f"{name} must be a fraction in {interval} (e.g. 0.01 for 1 %), got {value!r}; percentages are not accepted."
        )
    return float(value)


def _rng(seed: int, draw: int) -> np.random.Generator:
    if int(seed) < 0 or int(draw) < 0:
        raise ValueError(f"seed and draw must be non-negative integers, got seed={seed}, draw={draw}.")
    return np.random.default_rng([int(seed), int(draw)])


def label_fraction_split(
    labels: Sequence[Any] | np.ndarray,
    fraction: float,
    draw: int = 0,
    groups: Sequence[Any] | np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Indices of a stratified, patient-grouped, nested subset holding about ``fraction`` of the examples.

    The subset size is the number of examples nearest ``fraction * N`` that whole groups allow (exactly
    ``round(fraction * N)`` without groups), but never fewer than one group per stratum. Subsets for the same
    ``(seed, draw)`` are nested across fractions; see the module docstring for how (MoCo-CXR label-fraction protocol,
    Sowrirajan et al., MIDL 2021).

    Args:
        labels: N labels (1D, any type) or N x K multi-label rows (stratified on the label combination, see
            :func:`stratum_keys`; pass a 1D key to stratify differently).
        fraction: fraction of the examples to keep, in (0, 1].
        draw: which random draw (0, 1, 2, ...) for repeated experiments at the same fraction.
        groups: optional N group ids (e.g. patient ids); whole groups are taken, stratified on each group's most
            frequent label.
        seed: base seed; the subset is a pure function of ``(labels, groups, fraction, seed, draw)``.

    Returns:
        Sorted int64 indices into ``labels``.

    Raises:
        ValueError: for a fraction outside (0, 1], a negative seed/draw, empty labels, or mismatched groups.

    Example::

        idx = label_fraction_split(labels, 0.01, draw=2, groups=patient_ids, seed=0)
        subset = [datalist[i] for i in idx]
    """
    fraction = _check_fraction("fraction", fraction, include_one=True)
    unit_of, unit_stratum, unit_size = _group_units(labels, groups)
    order = _interleaved_order(unit_stratum, _rng(seed, draw))
    k = _prefix_length(order, unit_size, fraction * len(unit_of), minimum=int(unit_stratum.max()) + 1)
    chosen = np.zeros(len(unit_size), dtype=bool)
    chosen[order[:k]] = True
    return np.flatnonzero(chosen[unit_of]).astype(np.int64)


def group_train_val_split(
    labels: Sequence[Any] | np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a stratified, patient-grouped validation set out of a training set.

    Kermany's official validation split has only 16 images, so a usable validation set must come out of train; no
    patient may appear on both sides. Uses the same interleaved order as :func:`label_fraction_split` (on its own
    random stream), so the validation set holds at least one group of every stratum.

    Args:
        labels: N labels (1D) or N x K multi-label rows.
        groups: optional N group ids (e.g. patient ids); None treats every example as its own group.
        val_fraction: fraction of the examples for validation, in (0, 1).
        seed: random seed.

    Returns:
        ``(train_idx, val_idx)``: disjoint sorted int64 index arrays covering all N examples.

    Raises:
        ValueError: for val_fraction outside (0, 1), or when nothing would be left for training.

    Example::

        train_idx, val_idx = group_train_val_split(labels, groups=patient_ids, val_fraction=0.1)
    """
    val_fraction = _check_fraction("val_fraction", val_fraction, include_one=False)
    unit_of, unit_stratum, unit_size = _group_units(labels, groups)
    order = _interleaved_order(unit_stratum, _rng(seed, _VAL_STREAM))
    k = _prefix_length(order, unit_size, val_fraction * len(unit_of), minimum=int(unit_stratum.max()) + 1)
    if k >= len(order):
        raise ValueError(
            f"val_fraction={val_fraction} with one group per stratum leaves no training data "
            f"({len(order)} groups, {int(unit_stratum.max()) + 1} strata); use more data or fewer strata."
        )
    in_val = np.zeros(len(unit_size), dtype=bool)
    in_val[order[:k]] = True
    mask = in_val[unit_of]
    return np.flatnonzero(~mask).astype(np.int64), np.flatnonzero(mask).astype(np.int64)


def _fraction_key(fraction: float) -> str:
    return format(float(fraction), "g")


def fraction_splits(
    labels: Sequence[Any] | np.ndarray,
    fractions: Sequence[float] = (1.0, 0.1, 0.01, 0.001),
    draws: int = 3,
    groups: Sequence[Any] | np.ndarray | None = None,
    seed: int = 0,
    val_fraction: float = 0.0,
) -> dict[str, Any]:
    """All the index sets of a label-fraction study: a grouped validation set and nested training subsets.

    The validation set is carved first (:func:`group_train_val_split`, when ``val_fraction > 0``); the label-fraction
    subsets (:func:`label_fraction_split`) are then drawn from the rest, so no patient is in both.

    Args:
        labels: N labels (1D) or N x K multi-label rows.
        fractions: label fractions in (0, 1].
        draws: number of random draws per fraction.
        groups: optional N group ids (e.g. patient ids).
        seed: base seed.
        val_fraction: fraction of the examples for validation; 0 keeps everything for training.

    Returns:
        ``{"val": idx, "pool": idx, "train": {"0.01": {"0": idx, ...}, ...}}`` with sorted int64 indices into
        ``labels``; fraction keys are ``format(fraction, "g")`` and draw keys are strings, as in JSON.

    Raises:
        ValueError: for an invalid fraction, ``draws < 1`` or a bad ``val_fraction``.

    Example::

        study = fraction_splits(labels, (1.0, 0.01), draws=3, groups=patient_ids, val_fraction=0.1)
        one_percent_draw_2 = study["train"]["0.01"]["2"]
    """
    if int(draws) < 1:
        raise ValueError(f"draws must be at least 1, got {draws}.")
    labels = np.asarray(labels)
    n = len(labels)
    if val_fraction:
        pool, val = group_train_val_split(labels, groups, val_fraction=val_fraction, seed=seed)
    else:
        pool, val = np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pool_groups = None if groups is None else np.asarray(groups)[pool]
    train = {
        _fraction_key(f): {
            str(d): pool[label_fraction_split(labels[pool], f, draw=d, groups=pool_groups, seed=seed)]
            for d in range(int(draws))
        }
        for f in fractions
    }
    return {"val": val, "pool": pool, "train": train}


def datalist_from_splits(
    datalist: Sequence[dict],
    splits_file: str | os.PathLike,
    fraction: float | None = None,
    draw: int = 0,
    key: str = "image",
) -> list[dict]:
    """The items of ``datalist`` named by a ``splits.json`` written by ``scripts/make_splits.py``.

    Files are matched by their path relative to the data root recorded in the JSON (a suffix match), so the data
    folder may move and the datalist may be reordered.

    Args:
        datalist: the full datalist the splits were made from (same files, any order or root).
        splits_file: the JSON file.
        fraction: a label fraction present in the file (e.g. 0.01); None selects the validation set.
        draw: which draw of that fraction.
        key: datalist key holding the file path.

    Returns:
        The selected items, in datalist order.

    Raises:
        FileNotFoundError: when ``splits_file`` does not exist.
        KeyError: when the fraction or draw is not in the file (the ones present are listed).
        ValueError: when files named in the split are missing from ``datalist``.

    Example::

        train = datalist_from_splits(csv_datalist("labels.csv", split="train"), "splits/splits.json", 0.01, draw=1)
    """
    splits_file = Path(splits_file)
    if not splits_file.is_file():
        raise FileNotFoundError(
            f"splits file {str(splits_file)!r} does not exist (write it with scripts/make_splits.py)."
        )
    with open(splits_file) as f:
        splits = json.load(f)
    if fraction is None:
        wanted = splits["val"]
    else:
        fkey = _fraction_key(fraction)
        if fkey not in splits["train"] or str(draw) not in splits["train"][fkey]:
            present = {k: sorted(v, key=int) for k, v in splits["train"].items()}
            raise KeyError(
                f"{str(splits_file)!r} has no fraction {fkey} draw {draw}; fractions and draws present: {present}."
            )
        wanted = splits["train"][fkey][str(draw)]
    wanted_set = {PurePosixPath(p).parts for p in wanted}
    depths = sorted({len(p) for p in wanted_set})
    selected, found = [], set()
    for item in datalist:
        parts = Path(item[key]).parts
        for depth in depths:
            if tuple(parts[-depth:]) in wanted_set:
                selected.append(item)
                found.add(tuple(parts[-depth:]))
                break
    if len(found) != len(wanted_set):
        missing = sorted("/".join(p) for p in wanted_set - found)
        raise ValueError(
            f"{len(missing)} file(s) of {str(splits_file)!r} are not in the datalist (first: {missing[:3]}); "
            "was the split made from another dataset?"
        )
    return selected
