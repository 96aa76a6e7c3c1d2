"""volume_datalist on the real CT volume (stent.npz) and on NIfTI / DICOM-series copies of it, each then read by
MONAI's LoadImaged (NumpyReader, NibabelReader, PydicomReader picked from the path)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicom_helpers import copy_with
from monai.transforms import LoadImaged
from pydicom.uid import generate_uid

from monai_moco.data import volume_datalist


@pytest.fixture(scope="module")
def stent(stent_volume: Path) -> np.ndarray:
    with np.load(stent_volume) as f:
        return f["arr_0"]


def _load(path: str) -> np.ndarray:
    return np.asarray(LoadImaged("image", ensure_channel_first=True)({"image": path})["image"])


def test_the_shared_volume_folder_and_file(stent_volume: Path, stent: np.ndarray) -> None:
    assert volume_datalist(stent_volume.parent) == [{"image": str(stent_volume)}]
    assert volume_datalist(stent_volume) == [{"image": str(stent_volume)}]
    volume = _load(str(stent_volume))
    assert volume.shape == (1, 256, 128, 128)
    np.testing.assert_array_equal(volume[0], stent)


def test_nifti_npy_and_dicom_series_in_one_folder(tmp_path: Path, stent: np.ndarray, dicom_mono1: Path) -> None:
    """A folder mixing formats lists each volume once, sorted; a DICOM folder is one series; hidden files are skipped."""
    sub = stent[100:108]
    (tmp_path / "b_nifti").mkdir()
    nib.save(nib.Nifti1Image(sub.astype(np.int16), np.eye(4)), tmp_path / "b_nifti" / "ct.nii.gz")
    np.save(tmp_path / "a.npy", sub)
    (tmp_path / ".hidden.npy").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a volume")
    series = tmp_path / "c_series"
    series.mkdir()
    uid = generate_uid()
    for z in range(sub.shape[0]):  # real pixels of the CT in the header of a real DICOM
        copy_with(dicom_mono1, series / f"slice{z:03d}.dcm", pixels=sub[z].astype(np.uint16), SeriesInstanceUID=uid,
                  SOPInstanceUID=generate_uid(), InstanceNumber=z + 1, ImagePositionPatient=[0.0, 0.0, float(z)],
                  ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[1.0, 1.0], SliceThickness=1.0,
                  PhotometricInterpretation="MONOCHROME2")
    (series / "deeper").mkdir()
    np.save(series / "deeper" / "ignored.npy", sub)  # inside a series folder: not searched

    items = [d["image"] for d in volume_datalist(tmp_path)]
    assert items == [str(tmp_path / "a.npy"), str(tmp_path / "b_nifti" / "ct.nii.gz"), str(series)]
    assert volume_datalist(tmp_path, max_volumes=2) == [{"image": p} for p in items[:2]]

    np.testing.assert_array_equal(_load(items[0])[0], sub)
    np.testing.assert_array_equal(_load(items[1])[0], sub)
    dicom = _load(items[2])[0]  # PydicomReader: x, y, slice
    assert dicom.shape == (128, 128, 8)
    np.testing.assert_array_equal(np.moveaxis(dicom, -1, 0).transpose(0, 2, 1), sub)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda d: d / "missing", FileNotFoundError, r"'.*missing' does not exist"),
        (lambda d: d, FileNotFoundError, r"no volume under '.*'.*\.nii.*\.npz.*\.dcm"),
        (lambda d: (d / "x.png").write_bytes(b"") or d / "x.png", ValueError, r"'.*x\.png' is not a volume file"),
    ],
    ids=["missing", "empty", "other-file"],
)
def test_errors_name_the_path(tmp_path: Path, make, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        volume_datalist(make(tmp_path))
    with pytest.raises(ValueError, match="max_volumes must be >= 0"):
        volume_datalist(tmp_path, max_volumes=-1)
