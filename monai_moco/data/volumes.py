"""Datalists of unlabelled volumes (CT, MR) for 3D self-supervised pretraining.

A volume is one file MONAI's ``LoadImage`` reads as a 3D array -- NIfTI (``NibabelReader``), NumPy ``.npy``/``.npz``
(``NumpyReader``) -- or one folder of DICOM slices, read as a series by ``PydicomReader`` (``LoadImage`` picks the
reader from the path; nothing here opens a file). :func:`volume_datalist` lists them for a MONAI dataset, as
:func:`~monai_moco.data.unlabeled_datalist` does for radiographs.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["VOLUME_EXTENSIONS", "volume_datalist"]

#: file endings read as one volume each; a folder holding ``.dcm`` files is one DICOM series.
VOLUME_EXTENSIONS: tuple[str, ...] = (".nii", ".nii.gz", ".npz", ".npy")


def _is_volume_file(name: str) -> bool:
    lower = name.lower()
    return not name.startswith(".") and any(lower.endswith(ext) for ext in VOLUME_EXTENSIONS)


def volume_datalist(dataset_dir: str | os.PathLike, max_volumes: int = 0) -> list[dict[str, str]]:
    """``[{"image": path}, ...]`` for every volume under ``dataset_dir`` (or for ``dataset_dir`` itself if a file).

    Volume files (:data:`VOLUME_EXTENSIONS`) are found at any depth; a folder that directly holds ``.dcm`` files is
    one DICOM series (its subfolders are not searched further). Hidden files and folders are ignored. The order is
    sorted by path, so it is the same on every machine.

    Args:
        dataset_dir: a volume file, a DICOM series folder, or a folder of volumes / series folders.
        max_volumes: keep the first this many (0: all).

    Returns:
        the datalist, paths as strings.

    Raises:
        FileNotFoundError: when ``dataset_dir`` does not exist or holds no volume.
        ValueError: when ``dataset_dir`` is a file of another type, or ``max_volumes`` is negative.

    Example::

        volume_datalist("../shared/data/volumes")  # [{"image": "../shared/data/volumes/stent.npz"}]
    """
    if int(max_volumes) < 0:
        raise ValueError(f"volume_datalist: max_volumes must be >= 0 (0 keeps all), got {max_volumes}.")
    root = Path(dataset_dir)
    if not root.exists():
        raise FileNotFoundError(f"volume folder or file '{root}' does not exist.")
    if root.is_file():
        if not _is_volume_file(root.name):
            raise ValueError(
                f"volume_datalist: '{root}' is not a volume file; expected one of {', '.join(VOLUME_EXTENSIONS)} or a "
                "folder of DICOM slices."
            )
        found = [str(root)]
    else:
        found = []
        for top, dirs, names in os.walk(root, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if any(n.lower().endswith(".dcm") and not n.startswith(".") for n in names):
                found.append(top)  # one DICOM series
                dirs[:] = []
                continue
            found.extend(os.path.join(top, n) for n in names if _is_volume_file(n))
    if not found:
        raise FileNotFoundError(
            f"no volume under '{root}': expected files ending in {', '.join(VOLUME_EXTENSIONS)} or folders of .dcm "
            "slices (one DICOM series each)."
        )
    found = sorted(found)
    if max_volumes:
        found = found[: int(max_volumes)]
    return [{"image": path} for path in found]
