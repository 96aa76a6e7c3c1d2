"""Dictionary wrapper of :class:`~monai_moco.transforms.io.array.LoadXRay` (like MONAI's ``LoadImaged``).

Follows DICOM PS3.3 (C.7.6.3.1.2 Photometric Interpretation, C.11 Modality/VOI LUT) through ``LoadXRay``.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_moco.transforms.io.array import LoadXRay

__all__ = ["LoadXRayd", "LoadXRayD", "LoadXRayDict"]


class LoadXRayd(MapTransform):
    """Dictionary-based :class:`LoadXRay`: replace each path (or 2D array) in ``keys`` by a ``1×H×W`` ``MetaTensor``.

    As MONAI 1.6's ``LoadImaged`` with ``image_only=True``, the metadata travels inside the ``MetaTensor`` (no
    ``<key>_meta_dict`` entries). All other entries of the dictionary are passed through unchanged. Without
    ``spatial_size`` it equals ``LoadImaged(keys, reader=XRayImageReader(...))``.

    Args:
        keys: keys holding file paths or in-memory 2D arrays.
        allow_missing_keys: do not raise when a key is absent.
        kwargs: the arguments of :class:`LoadXRay` (``spatial_size``, ``letterbox``, ``voi``, ``intensity``,
            ``percentiles``, ``dtype``, ``mode``, ``pad_value``, ``allow_degenerate``, ``min_size``, ``max_pixels``).

    Example::

        >>> loader = LoadXRayd("image", spatial_size=224)
        >>> loader({"image": "chest.dcm", "label": 1})["image"].shape
        torch.Size([1, 224, 224])
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadXRay(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, torch.Tensor | Any]:
        """Load every present key.

        Args:
            data: a dictionary whose ``keys`` hold paths (``str``/``PathLike``) or 2D arrays.

        Returns:
            A shallow copy of ``data`` with those entries replaced by loaded images.

        Raises:
            XRayReadError: when a file cannot be read (the message names it).
        """
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            d[key] = self.loader(os.fspath(value) if isinstance(value, os.PathLike) else value)
        return d


LoadXRayD = LoadXRayDict = LoadXRayd
