"""XRayImageReader as a MONAI ImageReader, the refusal of degenerate images, and every failure naming its file.

The robustness sweep reads every file of pydicom's and pydicom-data's test folders directly (never
``get_testdata_files("*")``, which tries to download missing files and hangs without a network).
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from dicom_helpers import copy_with
from monai.data import MetaTensor
from monai.transforms import LoadImage, LoadImaged
from PIL import Image

from monai_moco.transforms import LoadXRay, LoadXRayd, XRayImageReader, XRayReadError, check_xray_file


def _test_folders() -> list[Path]:
    import data_store  # the pydicom-data package
    import pydicom.data

    return [Path(pydicom.data.__file__).parent / "test_files", Path(data_store.__file__).parent / "data"]


TEST_FILES = sorted(p for folder in _test_folders() for p in folder.rglob("*") if p.is_file())


def _assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    """Same values, dtype, affine and metadata (NaN spacings compare equal)."""
    assert isinstance(a, MetaTensor) and isinstance(b, MetaTensor)
    assert a.dtype == b.dtype and torch.equal(a.as_tensor(), b.as_tensor())
    assert torch.equal(a.affine, b.affine)
    assert set(a.meta) == set(b.meta)
    for key in a.meta:
        if key == "affine":
            continue
        np.testing.assert_equal(a.meta[key], b.meta[key], err_msg=key)


@pytest.mark.parametrize("kwargs", [{}, {"voi": "none", "intensity": "dtype"}, {"percentiles": (1.0, 99.0)}])
def test_loadimaged_with_our_reader_equals_loadxrayd(shared_data: Path, kwargs: dict) -> None:
    files = sorted((shared_data / "cxr_dicom").glob("*.dcm"))
    assert len(files) == 2
    monai_load = LoadImaged(keys="image", reader=XRayImageReader(**kwargs))
    ours = LoadXRayd(keys="image", **kwargs)
    for path in files:
        _assert_same(monai_load({"image": str(path)})["image"], ours({"image": str(path)})["image"])


def test_loadimage_array_form_and_png(kermany_dir: Path, pneumoniamnist_npz: Path) -> None:
    jpeg = next((kermany_dir / "test" / "NORMAL").glob("*.jpeg"))
    _assert_same(LoadImage(reader=XRayImageReader())(str(jpeg)), LoadXRay()(str(jpeg)))
    reader = XRayImageReader(intensity="dtype")
    array = np.load(pneumoniamnist_npz)["test_images"][0]
    x, meta = reader.get_data(reader.read(array))
    np.testing.assert_allclose(x[0], array / 255.0, atol=1e-6)
    assert x.shape == (1, 28, 28) and meta["original_channel_dim"] == 0 and meta["filename_or_obj"] == ""


@pytest.mark.parametrize(
    "name,expected", [("chest.dcm", True), ("IM0001", True), ("chest.nii.gz", True), ("chest.JPEG", True),
                      ("notes.txt", False), ("volume.mha", False)]
)
def test_verify_suffix(name: str, expected: bool) -> None:
    assert XRayImageReader().verify_suffix(name) is expected


def test_reader_refuses_several_files(dicom_mono1: Path, dicom_mono2_jpeg: Path) -> None:
    with pytest.raises(XRayReadError, match="2 files given; expected one radiograph"):
        XRayImageReader().read([str(dicom_mono1), str(dicom_mono2_jpeg)])


# ------------------------------------------------------------------------------------------- degenerate images
@pytest.fixture(scope="module")
def small_chest(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MONOCHROME1 CR chest subsampled to 245 x 231, uncompressed (quick to write and decode)."""
    src = shared_data / "cxr_dicom" / "RG1_UNCR.dcm"
    pixels = pydicom.dcmread(src).pixel_array[::8, ::8]
    return copy_with(src, tmp_path_factory.mktemp("chest") / "small.dcm", pixels=pixels, BitsStored=15, HighBit=14)


# (tags, reason refused by default, what allow_degenerate=True gives: "zeros" or an error that stays)
DEGENERATE = {
    "constant": ({"pixels": np.full((64, 64), 1234)}, r"constant image \(every pixel is 1234\)", "zeros"),
    "slope_zero": ({"RescaleSlope": 0, "RescaleIntercept": 5}, r"RescaleSlope 0 maps every pixel", "zeros"),
    "slope_nan": ({"RescaleSlope": "NaN", "RescaleIntercept": 0}, r"invalid rescale .*expected finite", "refused"),
    "window_saturates": ({"WindowCenter": 90000, "WindowWidth": 10},
                         r"stored window \(WindowCenter 90000(\.0)?, WindowWidth 10(\.0)?\) saturates every pixel", "zeros"),
    "one_pixel": ({"pixels": np.array([[7]])}, r"image is 1 x 1 pixels; expected at least 16 x 16", "refused"),
}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
@pytest.mark.parametrize("intensity", ["minmax", "none"])
def test_degenerate_dicom_is_refused_with_the_reason(small_chest, tmp_path: Path, case: str, intensity: str) -> None:
    tags, reason, allowed = DEGENERATE[case]
    path = copy_with(small_chest, tmp_path / f"{case}.dcm", **tags)
    with pytest.raises(XRayReadError, match=reason) as info:
        LoadXRay(intensity=intensity)(path)
    assert str(path) in str(info.value)
    if allowed == "refused":  # NaN never leaves the loader; the size limit is min_size, not allow_degenerate
        with pytest.raises(XRayReadError):
            LoadXRay(intensity=intensity, allow_degenerate=True)(path)
    else:
        img = LoadXRay(intensity=intensity, allow_degenerate=True)(path)
        assert bool(torch.isfinite(img).all()) and float(img.max()) == float(img.min())
        if intensity == "minmax":
            assert float(img.abs().max()) == 0.0


def test_nan_and_tiny_arrays_are_refused() -> None:
    x = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    x[3, 4] = np.nan
    with pytest.raises(XRayReadError, match="1 pixels are NaN or infinite"):
        LoadXRay(intensity="none", allow_degenerate=True)(x)
    with pytest.raises(XRayReadError, match="image is 1 x 1 pixels"):
        LoadXRay()(np.ones((1, 1), np.uint8))
    assert LoadXRay(min_size=1, allow_degenerate=True)(np.ones((1, 1), np.uint8)).shape == (1, 1, 1)


# ------------------------------------------------------------------------------------------ errors name the file
def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` (nothing that size is ever allocated)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(
    "case,expected",
    [
        ("bad_vr", r"malformed DICOM file \(ValueError: invalid literal for int\(\) with base 10: '1A'\)"),
        ("bomb_png", r"too many pixels"),
        ("over_limit_png", r"12000 x 9000 = 108000000 pixels is more than max_pixels=100000000"),
        ("directory", r"it is a directory; expected a DICOM, PNG/JPEG or NIfTI file"),
    ],
)
def test_every_failure_names_the_file(tmp_path: Path, case: str, expected: str) -> None:
    if case == "bad_vr":
        path = _test_folders()[0] / "badVR.dcm"
    elif case == "bomb_png":
        path = _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    elif case == "over_limit_png":
        path = _png_header_only(tmp_path / "large.png", 9000, 12000)
    else:
        path = tmp_path / "a_folder.dcm"
        path.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(XRayReadError, match=expected) as loaded:
            LoadXRay()(path)
        checks = [check_xray_file] if case != "bad_vr" else []  # check_xray_file defers large values: it may pass
        for check in checks:
            with pytest.raises(XRayReadError, match=expected):
                check(path)
    assert f"'{path}'" in str(loaded.value)


def test_max_pixels_is_configurable(dicom_mono2_jpeg: Path) -> None:
    with pytest.raises(XRayReadError, match=r"1024 x 1024 = 1048576 pixels is more than max_pixels=1000000"):
        LoadXRay(max_pixels=1_000_000)(dicom_mono2_jpeg)
    with pytest.raises(XRayReadError, match="max_pixels=1000000"):
        check_xray_file(dicom_mono2_jpeg, max_pixels=1_000_000)
    assert LoadXRay(max_pixels=None, spatial_size=32)(dicom_mono2_jpeg).shape == (1, 32, 32)


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_pydicom_test_file_loads_finite_or_is_refused_by_name(path: Path) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = LoadXRay()(path)
    except XRayReadError as err:
        assert f"'{path}'" in str(err)
        return
    assert img.ndim == 3 and img.shape[0] == 1 and min(img.shape[1:]) >= 16
    assert bool(torch.isfinite(img).all()) and 0.0 <= float(img.min()) and float(img.max()) <= 1.0
