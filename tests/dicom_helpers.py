"""Crafting DICOM test files from real ones: tags changed or deleted, pixels replaced, values written unvalidated.

``tests/`` is on ``sys.path`` (``pythonpath`` in ``pyproject.toml``), so tests write ``from dicom_helpers import ...``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom


def copy_with(src: Path, dst: Path, drop: tuple[str, ...] = (), pixels: np.ndarray | None = None, **tags: Any) -> Path:
    """Copy a DICOM deleting the ``drop`` attributes and changing tags, written without value validation so a hostile
    value (a path-like UID, a NaN slope) can be crafted; ``pixels`` replaces the image by an uncompressed 16-bit array.

    Args:
        src: the DICOM to start from.
        dst: where to write the copy.
        drop: attribute keywords to delete.
        pixels: a 2D array for the new pixel data (``Rows``/``Columns`` follow it).
        tags: attribute keyword -> new value (``SOPInstanceUID`` is mirrored into the file meta).

    Returns:
        ``dst``.

    Example::

        copy_with(Path("chest.dcm"), tmp / "anon.dcm", drop=("PatientBirthDate",), SOPInstanceUID="../../x")
    """
    ds = pydicom.dcmread(src)
    if pixels is not None:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        ds.PixelData, (ds.Rows, ds.Columns) = np.ascontiguousarray(pixels, np.uint16).tobytes(), pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    for keyword in drop:
        delattr(ds, keyword)
    settings = pydicom.config.settings
    mode, settings.writing_validation_mode = settings.writing_validation_mode, pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for key, value in tags.items():
                setattr(ds, key, value)
            if "SOPInstanceUID" in tags:
                ds.file_meta.MediaStorageSOPInstanceUID = tags["SOPInstanceUID"]
            ds.save_as(dst, enforce_file_format=True)
    finally:
        settings.writing_validation_mode = mode
    return dst
