"""Dictionary wrapper of :class:`~monai_moco.transforms.spatial.array.Letterbox` (aspect-preserving resize + pad).

Reference: the "letterbox" preprocessing of the Darknet/YOLO code (Redmon & Farhadi, "YOLOv3", 2018).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_moco.transforms.spatial.array import Letterbox

__all__ = ["Letterboxd", "LetterboxD", "LetterboxDict"]


class Letterboxd(MapTransform):
    """Dictionary-based :class:`Letterbox`: fit each ``C×H×W`` image in ``keys`` into ``spatial_size`` and pad it.

    Args:
        keys: keys of the images to letterbox.
        spatial_size: output (H, W), or one int for a square output.
        mode: interpolation, see :data:`~monai_moco.transforms.spatial.array.LETTERBOX_MODES`.
        pad_value: constant written into the padding.
        keep_aspect: ``False`` for a plain resize.
        allow_missing_keys: do not raise when a key is absent.

    Example::

        >>> out = Letterboxd("image", 224)({"image": torch.rand(1, 300, 200)})
        >>> out["image"].shape
        torch.Size([1, 224, 224])
    """

    backend = Letterbox.backend

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: int | Sequence[int],
        mode: str = "area",
        pad_value: float = 0.0,
        keep_aspect: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.letterbox = Letterbox(spatial_size, mode=mode, pad_value=pad_value, keep_aspect=keep_aspect)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """Letterbox every present key.

        Args:
            data: a dictionary holding channel-first images.

        Returns:
            A shallow copy of ``data`` with the images letterboxed.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.letterbox(d[key])
        return d


LetterboxD = LetterboxDict = Letterboxd
