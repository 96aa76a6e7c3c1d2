"""Dictionary wrapper of the two-view transform (SimCLR, Chen et al., ICML 2020; MoCo v2, Chen et al., 2020).

``TwoViewd`` holds a :class:`~monai_moco.transforms.ssl.array.TwoView` and writes the two views of ``data[key]`` to
two new keys, so a MONAI ``Dataset``/``CacheDataset`` pipeline ends with ``{"view1": ..., "view2": ...}``. It is
``Randomizable``, so ``CacheDataset`` caches everything before it (the decoded, letterboxed image) and reruns it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from monai_moco.transforms.ssl.array import TwoView, VolumeAugmentConfig, VolumeTwoView

__all__ = ["TwoViewd", "TwoViewD", "TwoViewDict", "VolumeTwoViewd", "VolumeTwoViewD", "VolumeTwoViewDict"]


class TwoViewd(Randomizable, MapTransform):
    """Dictionary-based :class:`TwoView`: ``data[key]`` -> ``data[view_keys[0]]``, ``data[view_keys[1]]``.

    Args:
        keys: the one key holding the image.
        transform: the (random) transform producing one view, e.g. ``cxr_ssl_augmentation()``.
        transform2: the transform for the second view; default ``transform``.
        view_keys: the two keys to write.
        delete_original: drop ``data[key]`` after making the views (saves collating and moving the original).
        track_meta: see :class:`TwoView` (``False``: faster, plain tensors, not for ``ThreadDataLoader``).
        allow_missing_keys: do not raise when the key is missing.

    Raises:
        ValueError: when ``keys`` is not exactly one key or ``view_keys`` is not two distinct keys.

    Example::

        pipeline = Compose([LoadXRayd(keys="image"), TwoViewd(keys="image", transform=cxr_ssl_augmentation())])
        sample = pipeline({"image": "chest.dcm"})  # sample["view1"], sample["view2"]: 1 x 224 x 224
    """

    def __init__(
        self,
        keys: KeysCollection,
        transform: Callable[..., Any],
        transform2: Callable[..., Any] | None = None,
        view_keys: Sequence[Hashable] = ("view1", "view2"),
        delete_original: bool = False,
        track_meta: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"TwoViewd takes exactly one image key, got keys={self.keys}.")
        view_keys = tuple(view_keys)
        if len(view_keys) != 2 or view_keys[0] == view_keys[1]:
            raise ValueError(f"TwoViewd view_keys must be two distinct keys, got {view_keys}.")
        self.view_keys = view_keys
        self.delete_original = delete_original
        self.two_view = TwoView(transform, transform2, track_meta=track_meta)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> TwoViewd:
        """Seed the held :class:`TwoView` (and through it the view transforms).

        Args:
            seed: the seed.
            state: a ``RandomState`` to use instead.

        Returns:
            self.
        """
        super().set_random_state(seed=seed, state=state)
        self.two_view.set_random_state(seed=seed, state=state)
        return self

    def randomize(self, data: Any = None) -> None:
        """Nothing to draw here: the held transforms draw their own parameters."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Add the two views of ``data[key]``.

        Args:
            data: a dictionary holding the image.

        Returns:
            A new dictionary with ``view_keys`` added (and the image removed when ``delete_original``).
        """
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.view_keys[0]], d[self.view_keys[1]] = self.two_view(d[key])
            if self.delete_original:
                del d[key]
        return d


TwoViewD = TwoViewDict = TwoViewd


class VolumeTwoViewd(TwoViewd):
    """Dictionary-based :class:`~monai_moco.transforms.ssl.array.VolumeTwoView`: two 3D views of ``data[key]``.

    Random sub-volume crops, flips and intensity changes (:func:`~monai_moco.transforms.ssl.volume_ssl_augmentation`)
    for 3D SimCLR; ``CacheDataset`` caches everything before it (the loaded, windowed volume) and reruns it.

    Args:
        keys: the one key holding the ``C x D x H x W`` volume.
        config: base parameters (default ``VolumeAugmentConfig()``).
        view_keys: the two keys to write.
        delete_original: drop ``data[key]`` after making the views.
        track_meta: see :class:`~monai_moco.transforms.ssl.array.TwoView`.
        allow_missing_keys: do not raise when the key is missing.
        overrides: ``VolumeAugmentConfig`` fields, e.g. ``spatial_size=32``.

    Raises:
        ValueError: when ``keys`` is not exactly one key, ``view_keys`` is not two distinct keys, or a field is invalid.
        TypeError: when an override names no ``VolumeAugmentConfig`` field.

    Example::

        pipeline = Compose([LoadImaged("image", ensure_channel_first=True),
                            ScaleIntensityRanged("image", a_min=-1000, a_max=1000, b_min=0, b_max=1, clip=True),
                            VolumeTwoViewd(keys="image", spatial_size=32, delete_original=True)])
        sample = pipeline({"image": "ct.nii.gz"})  # sample["view1"], sample["view2"]: 1 x 32 x 32 x 32
    """

    def __init__(
        self,
        keys: KeysCollection,
        config: VolumeAugmentConfig | None = None,
        view_keys: Sequence[Hashable] = ("view1", "view2"),
        delete_original: bool = False,
        track_meta: bool = True,
        allow_missing_keys: bool = False,
        **overrides: Any,
    ) -> None:
        two_view = VolumeTwoView(config, track_meta=track_meta, **overrides)
        super().__init__(keys, two_view.transform, view_keys=view_keys, delete_original=delete_original,
                         track_meta=track_meta, allow_missing_keys=allow_missing_keys)
        self.two_view = two_view
        self.config = two_view.config


VolumeTwoViewD = VolumeTwoViewDict = VolumeTwoViewd
