"""Reading radiographs: DICOM / PNG / JPEG / NIfTI / 2D arrays -> ``1×H×W`` MONOCHROME2-like float ``MetaTensor``."""

from __future__ import annotations

from monai_moco.transforms.io.array import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIZE,
    INTENSITY_MODES,
    SUPPORTED_PHOTOMETRIC,
    VOI_MODES,
    LoadXRay,
    XRayImageReader,
    XRayReadError,
    check_xray_file,
    read_dicom_dataset,
)
from monai_moco.transforms.io.dictionary import LoadXRayD, LoadXRayd, LoadXRayDict

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_SIZE",
    "INTENSITY_MODES",
    "SUPPORTED_PHOTOMETRIC",
    "VOI_MODES",
    "LoadXRay",
    "LoadXRayD",
    "LoadXRayDict",
    "LoadXRayd",
    "XRayImageReader",
    "XRayReadError",
    "check_xray_file",
    "read_dicom_dataset",
]
