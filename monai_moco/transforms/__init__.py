"""MONAI-style transforms for chest radiographs: loading (io), letterbox/intensity, and self-supervised views (ssl).

Each area has ``array.py`` (array transforms) and ``dictionary.py`` (dictionary wrappers that hold an array transform).
"""

from __future__ import annotations

from monai_moco.transforms.io import (  # noqa: F401
    LoadXRay,
    LoadXRayD,
    LoadXRayd,
    LoadXRayDict,
    XRayImageReader,
    XRayReadError,
    check_xray_file,
)
from monai_moco.transforms.spatial import (  # noqa: F401
    Letterbox,
    LetterboxBox,
    LetterboxBoxd,
    LetterboxD,
    Letterboxd,
    LetterboxDict,
    unletterbox,
    unletterbox_boxes,
)
from monai_moco.transforms.ssl import (  # noqa: F401
    BatchedCXRAugment,
    BatchedTwoView,
    CXRAugmentConfig,
    RandResizedCropXRay,
    TwoView,
    TwoViewD,
    TwoViewd,
    TwoViewDict,
    cxr_ssl_augmentation,
)
