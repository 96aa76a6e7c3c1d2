"""Two-view augmentation for contrastive pretraining on chest X-rays (SimCLR, MoCo v2, MoCo-CXR).

Per-sample MONAI path (``array``/``dictionary``) and batched tensor path (``batched``) sharing one
``CXRAugmentConfig``; 3D views of volumes (``VolumeAugmentConfig``, ``VolumeTwoView``, ``VolumeTwoViewd``).
"""

from __future__ import annotations

from monai_moco.transforms.ssl.array import (
    CXRAugmentConfig,
    RandResizedCropXRay,
    TwoView,
    VolumeAugmentConfig,
    VolumeTwoView,
    cxr_ssl_augmentation,
    resized_crop_boxes,
    volume_ssl_augmentation,
)
from monai_moco.transforms.ssl.batched import BatchedCXRAugment, BatchedTwoView
from monai_moco.transforms.ssl.dictionary import (
    TwoViewD,
    TwoViewd,
    TwoViewDict,
    VolumeTwoViewD,
    VolumeTwoViewd,
    VolumeTwoViewDict,
)

__all__ = [
    "BatchedCXRAugment",
    "BatchedTwoView",
    "CXRAugmentConfig",
    "RandResizedCropXRay",
    "TwoView",
    "TwoViewD",
    "TwoViewDict",
    "TwoViewd",
    "VolumeAugmentConfig",
    "VolumeTwoView",
    "VolumeTwoViewD",
    "VolumeTwoViewDict",
    "VolumeTwoViewd",
    "cxr_ssl_augmentation",
    "resized_crop_boxes",
    "volume_ssl_augmentation",
]
