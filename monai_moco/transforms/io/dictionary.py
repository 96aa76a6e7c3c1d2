"""Dictionary wrapper of :class:`~monai_moco.transforms.io.array.LoadXRay` (like MONAI's ``LoadImaged``).

Follows DICOM PS3.3 (C.7.6.3.1.2 Photometric Interpretation, C.11 Modality/VOI LUT) through ``LoadXRay``.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection
from monai.transforms import MapTransform

from monai_moco.transforms.io.array import LoadXRay

__all__ = ["LoadXRayd", "LoadXRayD", "LoadXRayDict"]


class LoadXRayd(MapTransform):
    """Dictionary-based :class:`LoadXRay`: replace each path (or 2D array) in ``keys`` by a ``1×H×W`` ``MetaTensor``.

    As MONAI 1.6's ``LoadImaged`` with ``image_only=True``, the metadata travels inside the ``MetaTensor`` (no
    ``<key>_meta_dict`` entries). All other entries of the dictionary are passed through unchanged.

    Args:
        keys: keys holding file paths or in-memory 2D arrays.
        spatial_size: output (H, W) or an int; ``None`` keeps the native size.
        letterbox: keep the aspect ratio and pad (``True``) or resize exactly (``False``).
        voi: ``"auto"``, ``"lut"``, ``"window"`` or ``"none"`` (see :class:`LoadXRay`).
        intensity: ``"minmax"``, ``"dtype"`` or ``"none"`` (see :class:`LoadXRay`).
        percentiles: optional ``(low, high)`` clipping percentiles for ``"minmax"``.
        dtype: output dtype.
        mode: resize interpolation (see ``LETTERBOX_MODES``).
        pad_value: letterbox padding value.
        allow_missing_keys: do not raise when a key is absent.

    Example::

        >>> loader = LoadXRayd("image", spatial_size=224)
        >>> loader({"image": "chest.dcm", "label": 1})["image"].shape
        torch.Size([1, 224, 224])
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: int | Sequence[int] | None = None,
        letterbox: bool = True,
        voi: str = "auto",
        intensity: str = "minmax",
        percentiles: tuple[float, float] | None = None,
        dtype: DtypeLike = np.float32,
        mode: str = "area",
        pad_value: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self._loader = LoadXRay(
            spatial_size=spatial_size,
            letterbox=letterbox,
            voi=voi,
            intensity=intensity,
            percentiles=percentiles,
            dtype=dtype,
            mode=mode,
            pad_value=pad_value,
        )

    @property
    def loader(self) -> LoadXRay:
        """The held array transform."""
        return self._loader

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
            d[key] = self._loader(os.fspath(value) if isinstance(value, os.PathLike) else value)
        return d


LoadXRayD = LoadXRayDict = LoadXRayd
