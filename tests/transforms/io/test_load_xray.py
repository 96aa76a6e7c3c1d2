"""Tests for LoadXRay / LoadXRayd / check_xray_file on real radiographs (shared data + the pydicom-data package)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor, NibabelReader, list_data_collate, set_track_meta
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

from monai_moco.transforms import LoadXRay, LoadXRayd, XRayReadError, check_xray_file


def _testdata(name: str) -> Path:
    """A file of the pydicom-data package as a local path (fails loudly if it is not installed)."""
    path = get_testdata_file(name)
    if path is None:
        import data_store  # the pydicom-data package's module

        path = str(Path(data_store.__file__).parent / "data" / name)
    assert Path(path).is_file(), f"pydicom-data file {name} not found locally"
    return Path(path)


def _bands(img: torch.Tensor) -> tuple[float, float, float]:
    """Mean of the left lung, mediastinum/spine and right lung bands (rows 35-60 %; columns 15-35, 43-57, 65-85 %)."""
    x = img[0].numpy()
    h, w = x.shape
    band = x[int(0.35 * h) : int(0.60 * h)]
    cols = [(0.15, 0.35), (0.43, 0.57), (0.65, 0.85)]
    left, centre, right = (float(band[:, int(a * w) : int(b * w)].mean()) for a, b in cols)
    return left, centre, right


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.numpy().ravel(), b.numpy().ravel())[0, 1])


@pytest.fixture(scope="module")
def rg1_variants() -> dict[str, torch.Tensor]:
    """The NEMA WG04 chest CR in four transfer syntaxes, decoded once (J2K decoding takes seconds on 2 cores)."""
    loader = LoadXRay()
    return {n: loader(_testdata(f"RG1_{n}.dcm")) for n in ("UNCR", "UNCI", "J2KR", "J2KI")}


@pytest.mark.parametrize("fixture", ["dicom_mono1", "dicom_mono2_jpeg"])
def test_shared_dicoms_load_to_unit_range_with_meta(fixture: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(fixture)
    ds = pydicom.dcmread(path)
    img = LoadXRay()(path)
    assert isinstance(img, MetaTensor)
    assert img.dtype == torch.float32
    assert tuple(img.shape) == (1, *ds.pixel_array.shape)
    assert float(img.min()) == 0.0 and float(img.max()) == 1.0
    meta = img.meta
    assert meta["filename_or_obj"] == str(path)
    assert meta["original_spatial_shape"] == ds.pixel_array.shape
    assert meta["PhotometricInterpretation"] == ds.PhotometricInterpretation
    assert meta["Modality"] == "CR" and meta["ViewPosition"] == "PA"
    assert meta["BitsStored"] == ds.BitsStored
    assert meta["SOPInstanceUID"] == ds.SOPInstanceUID and meta["PatientID"] == ds.PatientID
    assert meta["PixelSpacing"] == tuple(float(v) for v in ds.PixelSpacing)
    assert all(isinstance(v, float) for v in meta["PixelSpacing"] + meta["ImagerPixelSpacing"])
    assert "PatientName" not in meta and "PatientBirthDate" not in meta


@pytest.mark.parametrize("fixture", ["dicom_mono1", "dicom_mono2_jpeg"])
@pytest.mark.parametrize("voi", ["auto", "none"])
def test_chest_comes_out_monochrome2(fixture: str, voi: str, request: pytest.FixtureRequest) -> None:
    # measured: MONOCHROME1 lungs 0.64/0.58 vs centre 0.87; SIIM MONOCHROME2 lungs 0.54/0.53 vs centre 0.78
    img = LoadXRay(spatial_size=256, voi=voi)(request.getfixturevalue(fixture))
    left, centre, right = _bands(img)
    assert max(left, right) + 0.15 < centre, (left, centre, right)


def test_lossless_transfer_syntaxes_decode_identically(rg1_variants: dict[str, torch.Tensor]) -> None:
    # J2KR is lossless; UNCI is the uncompressed copy of the lossy J2KI picture
    np.testing.assert_array_equal(rg1_variants["UNCR"].numpy(), rg1_variants["J2KR"].numpy())
    np.testing.assert_array_equal(rg1_variants["UNCI"].numpy(), rg1_variants["J2KI"].numpy())


def test_lossy_jpeg2000_is_the_same_picture(rg1_variants: dict[str, torch.Tensor], dicom_mono1: Path) -> None:
    # measured correlation UNCR vs J2KI: 0.99990
    assert _corr(rg1_variants["UNCR"], rg1_variants["J2KI"]) > 0.999
    shared = LoadXRay()(dicom_mono1)
    np.testing.assert_array_equal(shared.numpy(), rg1_variants["UNCR"].numpy())
    assert all(v.meta["PhotometricInterpretation"] == "MONOCHROME1" for v in rg1_variants.values())


@pytest.fixture(scope="module")
def rg1_dataset(shared_data: Path) -> pydicom.Dataset:
    return pydicom.dcmread(shared_data / "cxr_dicom" / "RG1_UNCR.dcm")


@pytest.mark.parametrize(
    "center,width,func,rescale",
    [
        (9000, 4000, "LINEAR", None),
        (9000, 4000, "LINEAR_EXACT", None),
        (12000, 6000, "SIGMOID", None),
        (3000, 5000, "LINEAR", (0.5, -1024.0)),
    ],
)
def test_window_matches_pydicom_and_inverts(
    rg1_dataset: pydicom.Dataset, tmp_path: Path, center: float, width: float, func: str, rescale: tuple | None
) -> None:
    ds = copy.deepcopy(rg1_dataset)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, func
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    path = tmp_path / "windowed.dcm"
    ds.save_as(path)
    got = LoadXRay(voi="window", intensity="none")(path)[0].numpy()
    ref = apply_windowing(apply_modality_lut(ds.pixel_array, ds), ds)
    lo, hi = (0.0, 2.0**ds.BitsStored - 1)
    if rescale is not None:
        lo, hi = lo * rescale[0] + rescale[1], hi * rescale[0] + rescale[1]
    np.testing.assert_allclose(got, (lo + hi) - ref, rtol=1e-5, atol=1e-2 * (hi - lo) / 2**15)
    # a narrow window clips: it differs from no VOI even after min-max scaling
    windowed = LoadXRay(voi="window", spatial_size=128)(path)
    plain = LoadXRay(voi="none", spatial_size=128)(path)
    assert windowed.meta["voi_applied"] == "window" and plain.meta["voi_applied"] == "none"
    assert float((windowed - plain).abs().max()) > 0.1


def test_voi_dtype_intensity_uses_window_range(dicom_mono1: Path) -> None:
    window = LoadXRay(voi="window", intensity="dtype", spatial_size=128)(dicom_mono1)
    none = LoadXRay(voi="none", intensity="dtype", spatial_size=128)(dicom_mono1)
    # the file's window (C 15000, W 30000) stretches the stored values onto the 15-bit range
    assert float((window - none).abs().mean()) > 0.01
    assert 0.0 <= float(none.min()) and float(none.max()) <= 1.0


def test_voi_lut_sequence_matches_pydicom() -> None:
    path = _testdata("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    img = LoadXRay(voi="auto", intensity="dtype")(path)
    bits = ds.VOILUTSequence[0].LUTDescriptor[2]
    np.testing.assert_allclose(img[0].numpy(), apply_voi(ds.pixel_array, ds) / (2.0**bits - 1), atol=1e-6)
    assert img.meta["voi_applied"] == "lut"
    assert LoadXRay(voi="none")(path).meta["voi_applied"] == "none"


@pytest.mark.parametrize("name,photometric", [("SC_rgb.dcm", "RGB"), ("OBXXXX1A.dcm", "PALETTE COLOR")])
def test_colour_dicom_becomes_one_channel(name: str, photometric: str) -> None:
    path = _testdata(name)
    ds = pydicom.dcmread(path)
    img = LoadXRay(intensity="dtype")(path)
    assert img.shape == (1, ds.Rows, ds.Columns)
    assert img.meta["PhotometricInterpretation"] == photometric
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0 and float(img.std()) > 0.01


def test_ybr_jpeg_dicom_matches_its_rgb_original() -> None:
    # the same picture stored as RGB (uncompressed) and as YBR_FULL_422 JPEG baseline; measured correlation 0.99988
    rgb = LoadXRay(intensity="dtype")(_testdata("SC_rgb.dcm"))
    ybr = LoadXRay(intensity="dtype")(_testdata("SC_rgb_dcmtk_+eb+cy+np.dcm"))
    assert ybr.meta["PhotometricInterpretation"] == "YBR_FULL_422"
    assert _corr(rgb, ybr) > 0.999


def test_kermany_jpeg_rgb_encoded_gray_loads_as_one_channel(kermany_dir: Path) -> None:
    path = next((kermany_dir / "test" / "NORMAL").glob("*.jpeg"))
    with Image.open(path) as im:
        assert im.mode == "RGB"
        gray = np.asarray(im.convert("L"), dtype=np.float32)
    img = LoadXRay(intensity="dtype")(path)
    assert img.shape == (1, *gray.shape)
    np.testing.assert_allclose(img[0].numpy(), gray / 255.0, atol=1e-6)
    assert img.meta["BitsStored"] == 8 and img.meta["filename_or_obj"] == str(path)


def test_png_16bit_keeps_precision(dicom_mono1: Path, tmp_path: Path) -> None:
    stored = pydicom.dcmread(dicom_mono1).pixel_array[::4, ::4].astype(np.uint16)  # 15-bit values, 489x461
    path = tmp_path / "chest16.png"
    Image.fromarray(stored).save(path)
    raw = LoadXRay(intensity="none")(path)
    np.testing.assert_array_equal(raw[0].numpy(), stored.astype(np.float32))
    scaled = LoadXRay(intensity="dtype")(path)
    np.testing.assert_allclose(scaled[0].numpy(), stored / 65535.0, rtol=1e-6)
    assert len(np.unique(raw.numpy())) > 256 and raw.meta["BitsStored"] == 16


def test_png_rgb_converts_to_gray(kermany_dir: Path, tmp_path: Path) -> None:
    src = next((kermany_dir / "train" / "PNEUMONIA").glob("*.jpeg"))
    with Image.open(src) as im:
        rgb = np.asarray(im.convert("RGB"))
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    img = LoadXRay(intensity="dtype", spatial_size=(128, 96))(path)
    assert img.shape == (1, 128, 96)
    native = LoadXRay(intensity="dtype")(path)
    np.testing.assert_allclose(native[0].numpy(), rgb[..., 0] / 255.0, atol=1e-6)  # channels are identical


def test_nifti_round_trip_and_monai_axis_order(dicom_mono1: Path, tmp_path: Path) -> None:
    image = pydicom.dcmread(dicom_mono1).pixel_array[::8, ::8].astype(np.int16)  # 245x231, not square
    path = tmp_path / "chest.nii.gz"
    # NIfTI axis 0 is x (columns), as MONAI writes 2D images: store the transposed H×W array
    nib.save(nib.Nifti1Image(image.T, np.diag([0.3, 0.2, 1.0, 1.0])), path)
    img = LoadXRay(intensity="none")(path)
    np.testing.assert_array_equal(img[0].numpy(), image.astype(np.float32))
    assert img.meta["original_spatial_shape"] == image.shape
    assert img.meta["PixelSpacing"] == pytest.approx((0.2, 0.3))  # (row, column) spacing
    reader = NibabelReader()
    monai_array, _ = reader.get_data(reader.read(str(path)))  # what MONAI's LoadImage returns: (W, H) order
    np.testing.assert_array_equal(img[0].numpy(), monai_array.T)
    check_xray_file(path)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_in_memory_medmnist_array(pneumoniamnist_npz: Path, as_tensor: bool) -> None:
    array = np.load(pneumoniamnist_npz)["test_images"][0]  # 28x28 uint8
    data = torch.from_numpy(array.copy()) if as_tensor else array
    img = LoadXRay(spatial_size=64, intensity="dtype")(data)
    assert img.shape == (1, 64, 64) and img.meta["original_spatial_shape"] == (28, 28)
    native = LoadXRay(intensity="dtype")(data)
    np.testing.assert_allclose(native[0].numpy(), array / 255.0, atol=1e-6)


def test_in_memory_array_is_not_modified(dicom_mono2_jpeg: Path) -> None:
    array = pydicom.dcmread(dicom_mono2_jpeg).pixel_array.astype(np.float32)
    before = array.copy()
    LoadXRay(percentiles=(0.5, 99.5))(array)
    np.testing.assert_array_equal(array, before)


def test_percentiles_clip_before_scaling(dicom_mono2_jpeg: Path) -> None:
    plain = LoadXRay()(dicom_mono2_jpeg)
    clipped = LoadXRay(percentiles=(2.0, 98.0))(dicom_mono2_jpeg)
    assert float(clipped.min()) == 0.0 and float(clipped.max()) == 1.0
    assert float((clipped == 1.0).float().mean()) >= 0.015  # the top 2 % saturate
    assert float(clipped.mean()) != pytest.approx(float(plain.mean()), abs=1e-3)


def test_letterbox_meta_maps_back(dicom_mono1: Path) -> None:
    img = LoadXRay(spatial_size=224)(dicom_mono1)
    assert img.shape == (1, 224, 224)
    assert img.meta["letterbox_input_shape"] == (1955, 1841)
    top, bottom, left, right = img.meta["letterbox_pad"]
    assert top == bottom == 0 and left + right == 224 - img.meta["letterbox_resized_shape"][1] > 0
    assert float(img[..., :left].abs().max()) == 0.0
    squashed = LoadXRay(spatial_size=224, letterbox=False)(dicom_mono1)
    assert squashed.meta["letterbox_pad"] == (0, 0, 0, 0) and squashed.shape == (1, 224, 224)


# ---------------------------------------------------------------------------------------------------- errors
def _missing(src: Path, tmp: Path) -> Path:
    return tmp / "nowhere" / "absent.dcm"


def _truncated(src: Path, tmp: Path) -> Path:
    path = tmp / "truncated.dcm"
    path.write_bytes(src.read_bytes()[:2048])
    return path


def _truncated_jpeg(src: Path, tmp: Path) -> Path:
    path = tmp / "truncated_jpeg.dcm"
    path.write_bytes(src.read_bytes()[: src.stat().st_size // 2])  # encapsulated PixelData without its end
    return path


def _text(src: Path, tmp: Path) -> Path:
    path = tmp / "notes.dcm"
    path.write_text("this is a radiology report, not an image\n" * 20)
    return path


def _no_pixels(src: Path, tmp: Path) -> Path:
    ds = pydicom.dcmread(src)
    del ds.PixelData
    path = tmp / "nopixels.dcm"
    ds.save_as(path)
    return path


def _hsv(src: Path, tmp: Path) -> Path:
    ds = pydicom.dcmread(src)
    ds.PhotometricInterpretation = "HSV"
    path = tmp / "hsv.dcm"
    ds.save_as(path)
    return path


def _multiframe(src: Path, tmp: Path) -> Path:
    ds = pydicom.dcmread(src)
    ds.NumberOfFrames = 2
    path = tmp / "twoframes.dcm"
    ds.save_as(path)
    return path


def _broken_png(src: Path, tmp: Path) -> Path:
    path = tmp / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    return path


def _volume_nifti(src: Path, tmp: Path) -> Path:
    path = tmp / "volume.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.eye(4)), path)
    return path


@pytest.mark.parametrize(
    "make,expected",
    [
        (_missing, "file not found"),
        (_truncated, "truncated"),
        (_truncated_jpeg, "truncated DICOM"),
        (_text, "expected a DICOM Part 10 file"),
        (_no_pixels, "PixelData absent"),
        (_hsv, "unsupported PhotometricInterpretation 'HSV'"),
        (_multiframe, "expected a single-frame 2D radiograph"),
        (_broken_png, "unreadable image"),
        (_volume_nifti, "expected a 2D image"),
    ],
)
def test_read_errors_name_file_and_expectation(make, expected: str, dicom_mono2_jpeg: Path, tmp_path: Path) -> None:
    path = make(dicom_mono2_jpeg if make is not _truncated else _testdata("RG1_UNCR.dcm"), tmp_path)
    with pytest.raises(XRayReadError, match=expected) as loaded:
        LoadXRay()(path)
    assert str(path) in str(loaded.value)
    with pytest.raises(XRayReadError, match=expected) as checked:
        check_xray_file(path)
    assert str(path) in str(checked.value)
    assert isinstance(checked.value, ValueError)


def test_array_with_wrong_dims_raises() -> None:
    with pytest.raises(XRayReadError, match=r"shape \(3, 8, 8\); expected a 2D image"):
        LoadXRay()(np.zeros((3, 8, 8), np.uint8))


@pytest.mark.parametrize("kind", ["mono1", "mono2_jpeg", "j2k", "jpeg", "extensionless"])
def test_check_passes_good_files(
    kind: str, dicom_mono1: Path, dicom_mono2_jpeg: Path, kermany_dir: Path, tmp_path: Path
) -> None:
    paths = {
        "mono1": dicom_mono1,
        "mono2_jpeg": dicom_mono2_jpeg,
        "j2k": _testdata("RG1_J2KI.dcm"),
        "jpeg": next((kermany_dir / "val" / "NORMAL").glob("*.jpeg")),
    }
    if kind == "extensionless":  # PACS exports often have no suffix: sniffed by the DICM preamble
        path = tmp_path / "IM0001"
        shutil.copy(dicom_mono2_jpeg, path)
        assert LoadXRay()(path).meta["Modality"] == "CR"
    else:
        path = paths[kind]
    assert check_xray_file(path) is None


# ------------------------------------------------------------------------------------------------ dictionary
def test_load_xrayd_holds_loader_and_keeps_meta_in_tensor(dicom_mono1: Path, kermany_dir: Path) -> None:
    loader = LoadXRayd(["image", "extra"], spatial_size=64, allow_missing_keys=True)
    assert isinstance(loader.loader, LoadXRay)
    jpeg = next((kermany_dir / "val" / "PNEUMONIA").glob("*.jpeg"))
    items = [loader({"image": dicom_mono1, "label": 0}), loader({"image": str(jpeg), "label": 1})]
    for item in items:
        assert isinstance(item["image"], MetaTensor) and item["image"].shape == (1, 64, 64)
        assert set(item) == {"image", "label"}  # no image_meta_dict, as LoadImaged(image_only=True)
    assert items[0]["image"].meta["filename_or_obj"] == str(dicom_mono1)
    batch = list_data_collate(items)  # DICOM and JPEG share one meta layout, so they collate
    assert batch["image"].shape == (2, 1, 64, 64)
    assert batch["label"].tolist() == [0, 1]
    with pytest.raises(KeyError):
        LoadXRayd("image")({"label": 0})


@pytest.mark.parametrize("dtype,expected", [(np.float16, torch.float16), (torch.float64, torch.float64)])
def test_output_dtype(dicom_mono2_jpeg: Path, dtype, expected: torch.dtype) -> None:
    assert LoadXRay(spatial_size=32, dtype=dtype)(dicom_mono2_jpeg).dtype == expected


def test_plain_tensor_when_meta_tracking_is_off(dicom_mono2_jpeg: Path) -> None:
    set_track_meta(False)
    try:
        img = LoadXRay(spatial_size=32)(dicom_mono2_jpeg)
    finally:
        set_track_meta(True)
    assert type(img) is torch.Tensor and img.shape == (1, 32, 32)
