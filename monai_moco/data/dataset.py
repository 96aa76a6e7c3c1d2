"""Wrap a datalist and a transform in a MONAI dataset that decodes each radiograph once.

Contrastive pretraining (He et al., MoCo, CVPR 2020; Chen et al., SimCLR, ICML 2020) draws two fresh augmented views
of every image every epoch, but reading a DICOM/PNG and letterboxing it is the same every time. MONAI's
``CacheDataset`` (in memory) and ``PersistentDataset`` (on disk) run the deterministic prefix of a ``Compose`` (every
transform up to the first random one) once and cache its output; the random views are drawn from the cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.utils import look_up_option

__all__ = ["CACHE_MODES", "make_dataset"]

CACHE_MODES: tuple[str, ...] = ("memory", "disk", "none")


def make_dataset(
    datalist: Sequence[dict],
    transform: Callable | None,
    cache: str = "memory",
    cache_dir: str | os.PathLike | None = None,
    cache_rate: float = 1.0,
    num_workers: int | None = 0,
    progress: bool = True,
) -> Dataset:
    """A MONAI dataset over ``datalist`` with decode-once caching of the transform's deterministic prefix.

    Args:
        datalist: list of dicts (see :mod:`monai_moco.data.datalists`).
        transform: a ``monai.transforms.Compose`` (or any callable); with caching, put the loader and other
            deterministic transforms first so MONAI caches their output.
        cache: ``"memory"`` -> ``CacheDataset``; ``"disk"`` -> ``PersistentDataset`` (needs ``cache_dir``; survives
            restarts, keyed by a hash of each datalist item); ``"none"`` -> ``Dataset`` (decode every time).
        cache_dir: folder for the ``"disk"`` cache (created if missing).
        cache_rate: fraction of the items cached in memory (``"memory"`` only).
        num_workers: threads used to fill the memory cache (0 or None: one thread).
        progress: show a progress bar while filling the memory cache.

    Returns:
        A ``monai.data.Dataset`` (or subclass) yielding transformed items.

    Raises:
        ValueError: for an unknown ``cache`` mode, ``"disk"`` without ``cache_dir``, or ``cache_rate`` outside [0, 1].

    Example::

        ds = make_dataset(unlabeled_datalist("data/cxr"), Compose([LoadXRayd("image", spatial_size=256), views]),
                          cache="disk", cache_dir="runs/cache")
    """
    cache = look_up_option(cache, CACHE_MODES)
    data = list(datalist)
    if cache == "memory":
        if not 0.0 <= float(cache_rate) <= 1.0:
            raise ValueError(f"cache_rate must be in [0, 1], got {cache_rate}.")
        return CacheDataset(
            data=data,
            transform=transform,
            cache_rate=float(cache_rate),
            num_workers=num_workers if num_workers else 1,
            progress=progress,
        )
    if cache == "disk":
        if cache_dir is None:
            raise ValueError('cache="disk" needs cache_dir (a folder for the decoded images).')
        os.makedirs(cache_dir, exist_ok=True)
        return PersistentDataset(data=data, transform=transform, cache_dir=cache_dir)
    return Dataset(data=data, transform=transform)
