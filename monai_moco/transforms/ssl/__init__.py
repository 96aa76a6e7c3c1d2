"""Two-view augmentation for contrastive pretraining on chest X-rays (SimCLR, MoCo v2, MoCo-CXR).

Per-sample MONAI path (``array``/``dictionary``) and batched tensor path (``batched``) sharing one
``CXRAugmentConfig``.
"""

from __future__ import annotations

from monai_moco.transforms.ssl.array import (
    CXRAugmentConfig,
    RandResizedCropXRay,
    TwoView,
    cxr_ssl_augmentation,
    resized_crop_boxes,
)
from monai_moco.transforms.ssl.batched import BatchedCXRAugment, BatchedTwoView
from monai_moco.transforms.ssl.dictionary import TwoViewD, TwoViewd, TwoViewDict

__all__ = [
    "BatchedCXRAugment",
    "BatchedTwoView",
    "CXRAugmentConfig",
    "RandResizedCropXRay",
    "TwoView",
    "TwoViewD",
    "TwoViewDict",
    "TwoViewd",
    "cxr_ssl_augmentation",
    "resized_crop_boxes",
]
