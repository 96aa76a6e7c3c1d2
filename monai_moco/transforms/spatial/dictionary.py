"""Dictionary wrappers of :class:`~monai_moco.transforms.spatial.array.Letterbox` (aspect-preserving resize + pad)
and of :class:`~monai_moco.transforms.spatial.array.LetterboxBox` (boxes that follow it).

Reference: the "letterbox" preprocessing of the Darknet/YOLO code (Redmon & Farhadi, "YOLOv3", 2018).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import ensure_tuple

from monai_moco.transforms.spatial.array import Letterbox, LetterboxBox

__all__ = ["Letterboxd", "LetterboxD", "LetterboxDict", "LetterboxBoxd"]


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


class LetterboxBoxd(MapTransform):
    """Dictionary-based :class:`LetterboxBox`: move the pixel boxes in ``box_keys`` onto the letterboxed frame of
    their reference image, so a detection datalist (:func:`monai_moco.data.coco_box_datalist`) can be loaded with
    ``LoadXRayd(spatial_size=...)`` and then augmented with ``monai.apps.detection.transforms.dictionary``.

    Run it after the image is letterboxed (it reads ``letterbox_scale`` and ``letterbox_pad`` from the image's
    ``MetaTensor.meta``). Output corners are in the image's axis order, ``(row_min, col_min, row_max, col_max)``.

    Args:
        box_keys: keys of ``N×4`` pixel boxes ``(x_min, y_min, x_max, y_max)`` on the original images.
        box_ref_image_keys: key of the letterboxed image each box key belongs to (one, or one per box key).
        allow_missing_keys: do not raise when a box key is absent.

    Raises:
        ValueError: when the numbers of box keys and reference image keys differ.

    Example::

        >>> load = LoadXRayd("image", spatial_size=128)
        >>> item = LetterboxBoxd("boxes", "image")(load(coco_box_datalist("boxes_coco.json")[0]))
    """

    backend = LetterboxBox.backend

    def __init__(
        self, box_keys: KeysCollection, box_ref_image_keys: KeysCollection, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(box_keys, allow_missing_keys)
        refs = ensure_tuple(box_ref_image_keys)
        if len(refs) == 1:
            refs = refs * len(self.keys)
        if len(refs) != len(self.keys):
            raise ValueError(
                f"LetterboxBoxd: {len(self.keys)} box key(s) {self.keys} but {len(refs)} reference image key(s) {refs}."
            )
        self.ref_of = dict(zip(self.keys, refs, strict=True))
        self.mapper = LetterboxBox()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """Map every present box key.

        Args:
            data: a dictionary holding the boxes and their letterboxed reference images.

        Returns:
            A shallow copy of ``data`` with the boxes on the letterboxed frames.

        Raises:
            KeyError: when a reference image is missing or carries no letterbox metadata.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            ref = self.ref_of[key]
            if ref not in d:
                raise KeyError(f"LetterboxBoxd: reference image key {ref!r} of box key {key!r} is not in the data.")
            d[key] = self.mapper(d[key], getattr(d[ref], "meta", {}))
        return d
