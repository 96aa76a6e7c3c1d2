"""Read a chest radiograph (DICOM, PNG/JPEG, NIfTI or an in-memory 2D array) into a ``1×H×W`` float ``MetaTensor``.

Pipeline for DICOM (DICOM PS3.3 C.7.6.3.1.2 Photometric Interpretation, C.11.1 Modality LUT, C.11.2 VOI LUT)::

    stored values -> Modality LUT / Rescale Slope+Intercept -> VOI (LUT sequence or window) -> MONOCHROME1 inverted
    -> intensity scaling ([0, 1] by default) -> optional letterbox to ``spatial_size``

Every output looks like MONOCHROME2: dense tissue (bone, mediastinum) bright, air dark.

:class:`XRayImageReader` is the reading half as a ``monai.data.ImageReader``, so ``LoadImage(reader=XRayImageReader())``
and ``LoadImaged(keys="image", reader=XRayImageReader())`` give what :class:`LoadXRay` gives without ``spatial_size``;
:class:`LoadXRay` is that reader plus the optional letterbox. Every failure is an :class:`XRayReadError` naming the file
and the cause. Degenerate images (constant, a zero Rescale Slope, a VOI that saturates every pixel) are refused unless
``allow_degenerate=True``; images smaller than ``min_size`` or larger than ``max_pixels`` and non-finite values are
always refused.

**Axis convention.** Arrays are row-major ``H×W`` as the image is displayed (row 0 at the top), like pydicom's
``pixel_array`` and PIL, **not** the transposed ``W×H`` order of MONAI's ``ITKReader``/``PILReader``. NIfTI files store
the first axis as x (columns), as MONAI writes them, so a 2D NIfTI slice of shape ``(W, H)`` is transposed to ``H×W``
(no reorientation by its affine).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from monai.config import DtypeLike, NdarrayOrTensor, PathLike
from monai.data import ImageReader, MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import Transform
from monai.utils import ensure_tuple, get_equivalent_dtype, look_up_option

from monai_moco.transforms.spatial.array import LETTERBOX_MODES, Letterbox

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_SIZE",
    "INTENSITY_MODES",
    "VOI_MODES",
    "LoadXRay",
    "XRayImageReader",
    "XRayReadError",
    "check_xray_file",
    "read_dicom_dataset",
]

#: VOI choices: ``auto`` = VOI LUT Sequence if present, else Window Center/Width, else none.
VOI_MODES = ("auto", "lut", "window", "none")
#: intensity choices: ``minmax`` -> [0, 1] per image, ``dtype`` -> divide by the nominal range, ``none`` -> keep.
INTENSITY_MODES = ("minmax", "dtype", "none")

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
# PALETTE COLOR and the YBR/JPEG 2000 colour spaces are turned into RGB by pydicom, then into luma
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")
SUPPORTED_PHOTOMETRIC = _MONOCHROME + _COLOUR
# DICOM string tags copied to meta (never PatientName / PatientBirthDate); missing ones are "" so batches collate
_META_TAGS = (
    "PhotometricInterpretation",
    "Modality",
    "ViewPosition",
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
)
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: largest ``H * W`` read by default (a 10,000 x 10,000 image); larger files are refused before decoding.
DEFAULT_MAX_PIXELS = 100_000_000
#: smallest height and width accepted by default (MedMNIST's 28 px images pass; a 1 x 1 "image" does not).
DEFAULT_MIN_SIZE = 16


class XRayReadError(ValueError):
    """A radiograph could not be read; the message names the file and what was expected."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _kind(path: Path) -> str:
    """``"dicom"``, ``"image"`` or ``"nifti"`` from the suffix, sniffing the DICOM preamble when it is unknown."""
    suffix = _suffix(path)
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    with open(path, "rb") as f:
        head = f.read(132)
    return "dicom" if head[128:132] == b"DICM" else "image"


def _existing(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        raise XRayReadError(f"cannot read X-ray '{p}': it is a directory; expected a DICOM, PNG/JPEG or NIfTI file.")
    if not p.is_file():
        raise XRayReadError(
            f"cannot read X-ray '{p}': file not found (expected an existing DICOM, PNG/JPEG or NIfTI file)."
        )
    return p


def _check_pixels(path: Path, shape: Sequence[int], limits: tuple[int, int | None]) -> None:
    """Refuse an image whose header announces fewer than ``min_size`` rows or columns, or more than ``max_pixels``
    pixels, before anything is decoded (``limits`` = ``(min_size, max_pixels)``)."""
    min_size, max_pixels = limits
    dims = [int(s) for s in shape]
    count = int(np.prod(dims, dtype=np.int64))
    if max_pixels is not None and count > max_pixels:
        raise XRayReadError(
            f"cannot read X-ray '{path}': {' x '.join(map(str, dims))} = {count} pixels is more than "
            f"max_pixels={max_pixels}; expected a radiograph (raise max_pixels to read it)."
        )
    if min(_drop_trailing_ones(dims)) < min_size:
        raise XRayReadError(
            f"cannot read X-ray '{path}': image is {' x '.join(map(str, dims))} pixels; expected at least {min_size} x "
            f"{min_size} (min_size)."
        )


@contextmanager
def _open_pil(path: Path, limits: tuple[int, int | None]) -> Iterator[Any]:
    """``PIL.Image.open`` with the size limits checked from the header and every failure an XRayReadError."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            _check_pixels(path, im.size[::-1], limits)
            yield im
    except XRayReadError:
        raise
    except Image.DecompressionBombError as e:  # above Pillow's own limit (Image.MAX_IMAGE_PIXELS)
        raise XRayReadError(
            f"cannot read X-ray '{path}': too many pixels ({e}); expected a radiograph of at most {limits[1]} pixels."
        ) from e
    except Exception as e:  # UnidentifiedImageError, OSError, SyntaxError, ValueError, ...
        raise XRayReadError(
            f"cannot read X-ray '{path}': unreadable image ({type(e).__name__}: {e}); expected a PNG/JPEG/TIFF/BMP "
            "grayscale or RGB image."
        ) from e


def _gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an ``H×W×3`` array (the weights PIL's ``convert("L")`` uses), float32."""
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------- DICOM
def read_dicom_dataset(path: str | os.PathLike, **kwargs: Any) -> Any:
    """``pydicom.dcmread`` whose failures are :class:`XRayReadError` naming the file, including encapsulated pixel
    data cut short (pydicom only warns and drops the element then).

    Args:
        path: the DICOM file.
        kwargs: passed to ``pydicom.dcmread`` (e.g. ``defer_size=1024`` or ``stop_before_pixels=True``).

    Returns:
        the pydicom ``FileDataset``.

    Raises:
        XRayReadError: for a file that is not DICOM Part 10, unreadable or truncated inside its pixel data; the cause
            is chained (``InvalidDicomError`` for a non-DICOM file).

    Example::

        >>> ds = read_dicom_dataset("chest.dcm", stop_before_pixels=True)
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, **kwargs)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as e:
        raise XRayReadError(
            f"cannot read X-ray '{path}': not a valid DICOM file ({type(e).__name__}: {e}); expected a DICOM Part 10 file."
        ) from e
    for w in caught:
        # pydicom only warns (and drops the element) when an encapsulated PixelData runs past the end of the file
        if "End of file reached" in str(w.message):
            raise XRayReadError(
                f"cannot read X-ray '{path}': truncated DICOM ({w.message}); expected the complete file."
            )
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ds


def _check_dicom_header(ds: Any, path: Path) -> str:
    """Validate pixel-data presence, photometric interpretation, frames and samples; return the photometric."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise XRayReadError(
            f"cannot read X-ray '{path}': DICOM has no pixel data (PixelData absent; e.g. a structured report or a "
            "header-only file); expected an image DICOM."
        )
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise XRayReadError(
            f"cannot read X-ray '{path}': unsupported PhotometricInterpretation {photometric!r}; expected one of "
            f"{', '.join(SUPPORTED_PHOTOMETRIC)}."
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise XRayReadError(
            f"cannot read X-ray '{path}': multi-frame DICOM with {frames} frames; expected a single-frame 2D radiograph."
        )
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    expected_samples = 1 if photometric in _MONOCHROME + ("PALETTE COLOR",) else 3
    if samples != expected_samples:
        raise XRayReadError(
            f"cannot read X-ray '{path}': SamplesPerPixel is {samples} for {photometric}; expected {expected_samples}."
        )
    if "Rows" not in ds or "Columns" not in ds:
        raise XRayReadError(f"cannot read X-ray '{path}': DICOM lacks Rows/Columns; expected a 2D image.")
    return photometric


def _spacing(ds: Any, keyword: str) -> tuple[float, float]:
    value = ds.get(keyword)
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError):
        return (float("nan"), float("nan"))
    return (row, col)


def _dicom_range(ds: Any, voi_applied: str) -> tuple[float, float]:
    """Nominal (min, max) of the values after the Modality LUT and the applied VOI step (DICOM PS3.3 C.11)."""
    if voi_applied == "lut":
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    bits = int(ds.BitsStored)
    if "ModalityLUTSequence" in ds:
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    return lo, hi


def _modality_f32(arr: np.ndarray, ds: Any) -> np.ndarray:
    """Modality LUT / Rescale (PS3.3 C.11.1) as float32; pydicom's ``apply_modality_lut`` for LUT sequences."""
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    x = arr.astype(np.float32)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        x *= np.float32(ds.RescaleSlope)
        x += np.float32(ds.RescaleIntercept)
    return x


def _check_rescale(ds: Any, path: Path, allow_degenerate: bool) -> None:
    """Refuse a non-finite Rescale Slope/Intercept always, and a zero slope (every pixel the same) unless allowed."""
    if "RescaleSlope" not in ds or "RescaleIntercept" not in ds:
        return
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        raise XRayReadError(
            f"cannot read X-ray '{path}': invalid rescale (RescaleSlope {slope}, RescaleIntercept {intercept}); "
            "expected finite values."
        )
    if slope == 0.0 and not allow_degenerate:
        raise XRayReadError(
            f"cannot read X-ray '{path}': invalid rescale (RescaleSlope 0 maps every pixel to {intercept}); expected a "
            "non-zero slope (allow_degenerate=True reads it anyway)."
        )


def _window_f32(x: np.ndarray, ds: Any, path: Path) -> np.ndarray:
    """Window Center/Width (PS3.3 C.11.2.1.2-3: LINEAR, LINEAR_EXACT, SIGMOID) in place on float32 ``x``.

    Same result as ``pydicom.pixels.apply_windowing`` (output range = the Modality output range), without its float64
    copy and masks, so a full-size radiograph is windowed several times faster and without a second full copy.
    """
    center = float(ds["WindowCenter"].value[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter)
    width = float(ds["WindowWidth"].value[0] if ds["WindowWidth"].VM > 1 else ds.WindowWidth)
    func = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    y_min, y_max = _dicom_range(ds, "none")
    if func not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise XRayReadError(
            f"cannot read X-ray '{path}': unsupported VOILUTFunction {func!r}; expected LINEAR, LINEAR_EXACT or SIGMOID."
        )
    if width < (1.0 if func == "LINEAR" else np.nextafter(0.0, 1.0)):
        expected = ">= 1" if func == "LINEAR" else "> 0"
        raise XRayReadError(
            f"cannot read X-ray '{path}': WindowWidth {width} is invalid for {func}; expected {expected}."
        )
    if func == "LINEAR":
        center, width = center - 0.5, width - 1.0
    if width == 0.0:  # LINEAR with width 1: a threshold at the centre
        x = (x > center).astype(np.float32)
    elif func == "SIGMOID":
        x -= center
        x *= -4.0 / width
        np.exp(x, out=x)
        x += 1.0
        np.reciprocal(x, out=x)
    else:
        x -= center - width / 2.0
        x *= 1.0 / width
        np.clip(x, 0.0, 1.0, out=x)
    x *= y_max - y_min
    x += y_min
    return x


def _read_dicom(
    path: Path, voi: str, allow_degenerate: bool, limits: tuple[int, int | None]
) -> tuple[np.ndarray, dict[str, Any], tuple[float, float] | None]:
    from pydicom.pixels import apply_voi

    ds = read_dicom_dataset(path)
    photometric = _check_dicom_header(ds, path)
    _check_pixels(path, (ds.Rows, ds.Columns), limits)
    try:
        arr = ds.pixel_array
    except Exception as e:  # decoder missing, truncated or corrupt pixel data: pydicom raises many types
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = getattr(ts, "name", ts)
        raise XRayReadError(
            f"cannot read X-ray '{path}': pixel data is truncated, corrupt or undecodable (transfer syntax {ts_name}; "
            f"{type(e).__name__}: {e}); expected complete pixel data in a syntax pydicom/pylibjpeg can decode."
        ) from e
    voi_applied = "none"
    if photometric in _MONOCHROME:
        if arr.ndim != 2:
            raise XRayReadError(f"cannot read X-ray '{path}': pixel array has shape {arr.shape}; expected 2D (H, W).")
        stored = arr
        _check_rescale(ds, path, allow_degenerate)
        arr = _modality_f32(stored, ds)
        varied = arr.size > 0 and arr.min() != arr.max()
        if not varied and not allow_degenerate:
            raise XRayReadError(
                f"cannot read X-ray '{path}': constant image (every pixel is {stored.flat[0]}); expected a radiograph "
                "with contrast (allow_degenerate=True reads it anyway)."
            )
        has_lut = "VOILUTSequence" in ds
        has_window = "WindowCenter" in ds and "WindowWidth" in ds
        if voi in ("auto", "lut") and has_lut:
            # the VOI LUT indexes stored/modality values: pydicom's lookup, on integers when there is no rescale
            src = stored if "RescaleSlope" not in ds and "ModalityLUTSequence" not in ds else arr
            arr, voi_applied = apply_voi(src, ds), "lut"
        elif (voi == "window" or (voi == "auto" and not has_lut)) and has_window:
            arr, voi_applied = _window_f32(arr, ds, path), "window"
        if voi_applied != "none" and varied and not allow_degenerate and np.min(arr) == np.max(arr):
            how = (
                f"the stored window (WindowCenter {ds.WindowCenter}, WindowWidth {ds.WindowWidth})"
                if voi_applied == "window"
                else "the stored VOI LUT"
            )
            raise XRayReadError(
                f"cannot read X-ray '{path}': {how} saturates every pixel to {float(np.min(arr))}; expected a VOI "
                "inside the image's value range (voi='none' skips it)."
            )
        lo, hi = _dicom_range(ds, voi_applied)
        arr = np.asarray(arr, dtype=np.float32)
        if photometric == "MONOCHROME1":
            arr = np.subtract(lo + hi, arr, dtype=np.float32)  # (lo + hi) - x keeps the nominal range
    else:
        bits = int(ds.get("BitsStored", 8))
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])  # LUT entries are 8 or 16 bits
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise XRayReadError(
                f"cannot read X-ray '{path}': colour pixel array has shape {arr.shape}; expected (H, W, 3)."
            )
        arr = _gray(arr)
        lo, hi = 0.0, float(2**bits - 1)
    meta: dict[str, Any] = {k: str(ds.get(k, "") or "") for k in _META_TAGS}
    meta["PhotometricInterpretation"] = photometric
    meta.update(
        {
            "PixelSpacing": _spacing(ds, "PixelSpacing"),
            "ImagerPixelSpacing": _spacing(ds, "ImagerPixelSpacing"),
            "BitsStored": int(ds.get("BitsStored", 0) or 0),
            "voi_applied": voi_applied,
        }
    )
    return arr, meta, (lo, hi)


# ----------------------------------------------------------------------------------------------------- PNG / JPEG
def _read_pil(path: Path, limits: tuple[int, int | None]) -> tuple[np.ndarray, dict[str, Any], tuple[float, float] | None]:
    with _open_pil(path, limits) as im:
        mode = im.mode
        if mode.startswith("I;16"):
            arr, rng, bits = np.asarray(im).astype(np.uint16, copy=False), (0.0, 65535.0), 16
        elif mode == "I":  # 16-bit files some Pillow versions open as 32-bit
            arr, rng, bits = np.asarray(im), (0.0, 65535.0), 16
        elif mode == "F":
            arr, rng, bits = np.asarray(im), None, 32
        else:  # "1", "L", "P", "LA", "RGB", "RGBA", "CMYK", "YCbCr": PIL's luma conversion
            arr, rng, bits = np.asarray(im if mode == "L" else im.convert("L")), (0.0, 255.0), 8
    if arr.ndim != 2:
        raise XRayReadError(f"cannot read X-ray '{path}': image array has shape {arr.shape}; expected 2D (H, W).")
    meta = {"PhotometricInterpretation": "MONOCHROME2", "BitsStored": bits, "image_mode": mode}
    return arr, meta, rng


# ---------------------------------------------------------------------------------------------------------- NIfTI
def _drop_trailing_ones(shape: Sequence[int]) -> list[int]:
    """Shape without singleton axes after the first two, e.g. a NIfTI slice ``(W, H, 1)`` -> ``[W, H]``."""
    return [int(s) for i, s in enumerate(shape) if i < 2 or s != 1]


def _squeeze_2d(arr: np.ndarray, source: str) -> np.ndarray:
    if arr.ndim > 2:
        arr = arr.reshape(_drop_trailing_ones(arr.shape))
    if arr.ndim != 2:
        raise XRayReadError(f"cannot read X-ray '{source}': array has shape {arr.shape}; expected a 2D image (H, W).")
    return arr


def _open_nifti(path: Path, limits: tuple[int, int | None]) -> Any:
    """``nibabel.load`` (header only) with the 2D shape and size limits checked; every failure an XRayReadError."""
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as e:  # nibabel raises ImageFileError, EOFError, zlib/gzip errors, ...
        raise XRayReadError(
            f"cannot read X-ray '{path}': unreadable NIfTI ({type(e).__name__}: {e}); expected a .nii/.nii.gz image."
        ) from e
    if len(_drop_trailing_ones(img.shape)) != 2:
        raise XRayReadError(f"cannot read X-ray '{path}': NIfTI has shape {img.shape}; expected a 2D image.")
    _check_pixels(path, img.shape, limits)
    return img


def _read_nifti(path: Path, limits: tuple[int, int | None]) -> tuple[np.ndarray, dict[str, Any], tuple[float, float] | None]:
    img = _open_nifti(path, limits)
    try:
        arr = np.asanyarray(img.dataobj)
    except Exception as e:  # truncated or corrupt data block
        raise XRayReadError(
            f"cannot read X-ray '{path}': unreadable NIfTI ({type(e).__name__}: {e}); expected a .nii/.nii.gz image."
        ) from e
    zooms = img.header.get_zooms()
    arr = _squeeze_2d(arr, str(path)).T  # NIfTI axis 0 is x (columns): transpose to row-major H×W
    meta = {
        "PhotometricInterpretation": "MONOCHROME2",
        "BitsStored": int(arr.dtype.itemsize * 8),
        "PixelSpacing": (float(zooms[1]), float(zooms[0])) if len(zooms) >= 2 else (float("nan"),) * 2,
    }
    return arr, meta, _dtype_range(arr.dtype)


def _dtype_range(dtype: np.dtype) -> tuple[float, float] | None:
    if dtype == np.bool_:
        return 0.0, 1.0
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return None


# ------------------------------------------------------------------------------------------------------ the reader
@contextmanager
def _failures_named(path: Path, what: str) -> Iterator[None]:
    """Turn any failure of a third-party reader (a malformed tag value, a decoder error) into an XRayReadError."""
    try:
        yield
    except XRayReadError:
        raise
    except Exception as e:  # pydicom, Pillow and nibabel raise many types for malformed files
        raise XRayReadError(
            f"cannot read X-ray '{path}': malformed {what} ({type(e).__name__}: {e}); expected a valid {what}."
        ) from e


_WHAT = {"dicom": "DICOM file", "image": "PNG/JPEG/TIFF/BMP image", "nifti": "NIfTI image"}


class _Decoded(NamedTuple):
    """What :meth:`XRayImageReader.read` returns: the 2D array as decoded, its metadata and nominal value range."""

    array: np.ndarray
    meta: dict[str, Any]
    value_range: tuple[float, float] | None


class XRayImageReader(ImageReader):
    """A ``monai.data.ImageReader`` for radiographs: DICOM, PNG/JPEG/TIFF/BMP, 2D NIfTI or an in-memory 2D array in,
    a channel-first ``1×H×W`` float32 array that looks like MONOCHROME2 out (see the module docstring for the steps).

    With MONAI's loaders it gives exactly what :class:`LoadXRay` gives without ``spatial_size`` (same array, same
    ``meta``): ``LoadImage(reader=XRayImageReader())`` and ``LoadImaged(keys="image", reader=XRayImageReader())``.
    Unlike MONAI's ``ITKReader``/``PILReader`` it keeps the row-major ``H×W`` display order, inverts MONOCHROME1,
    applies the Modality and VOI LUTs and decodes compressed DICOM through pydicom/pylibjpeg.

    Args:
        voi: ``"auto"``, ``"lut"``, ``"window"`` or ``"none"`` (see :class:`LoadXRay`).
        intensity: ``"minmax"``, ``"dtype"`` or ``"none"`` (see :class:`LoadXRay`).
        percentiles: ``(low, high)`` percentiles (0-100) clipped before ``"minmax"`` scaling.
        allow_degenerate: read a constant image, a zero Rescale Slope or a VOI that saturates every pixel instead
            of refusing it (non-finite values are refused regardless).
        min_size: smallest accepted height and width.
        max_pixels: largest accepted ``H * W``, checked from the header before decoding; ``None`` for no limit.

    Raises:
        ValueError: for an unknown ``voi``/``intensity``, bad ``percentiles`` or ``min_size < 1``.

    Example::

        >>> from monai.transforms import LoadImaged
        >>> load = LoadImaged(keys="image", reader=XRayImageReader())
        >>> load({"image": "chest.dcm"})["image"].shape
        torch.Size([1, 1955, 1841])
    """

    def __init__(
        self,
        voi: str = "auto",
        intensity: str = "minmax",
        percentiles: tuple[float, float] | None = None,
        allow_degenerate: bool = False,
        min_size: int = DEFAULT_MIN_SIZE,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.voi = look_up_option(voi, VOI_MODES)
        self.intensity = look_up_option(intensity, INTENSITY_MODES)
        if percentiles is not None:
            low, high = (float(v) for v in percentiles)
            if not 0.0 <= low < high <= 100.0:
                raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}.")
            percentiles = (low, high)
        if int(min_size) < 1:
            raise ValueError(f"min_size must be at least 1, got {min_size}.")
        self.percentiles = percentiles
        self.allow_degenerate = bool(allow_degenerate)
        self.min_size = int(min_size)
        self.max_pixels = None if max_pixels is None else int(max_pixels)

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """Whether every file name has a radiograph suffix (DICOM, PNG/JPEG/TIFF/BMP, NIfTI) or none (PACS exports).

        Args:
            filename: one or more file names.

        Returns:
            ``True`` when this reader should read them.
        """
        suffixes = DICOM_SUFFIXES + IMAGE_SUFFIXES + NIFTI_SUFFIXES + ("",)
        return all(_suffix(Path(f)) in suffixes for f in ensure_tuple(filename))

    def read(self, data: Sequence[PathLike] | PathLike | NdarrayOrTensor, **kwargs: Any) -> _Decoded:
        """Decode one radiograph (no scaling yet) and refuse what cannot be a usable image.

        Args:
            data: a file path (or a sequence holding exactly one, as ``LoadImage`` passes it), or an in-memory
                ``H×W`` / ``1×H×W`` array or tensor.
            kwargs: unused (``ImageReader`` signature).

        Returns:
            the decoded array (row-major, MONOCHROME2-like), its metadata and nominal value range.

        Raises:
            XRayReadError: naming the file and the cause, for every failure.
        """
        if isinstance(data, (list, tuple)):
            if len(data) != 1:
                raise XRayReadError(f"cannot read X-ray {data!r}: {len(data)} files given; expected one radiograph.")
            data = data[0]
        if isinstance(data, (str, os.PathLike)):
            path = _existing(data)
            kind = _kind(path)
            name = str(path)
            with _failures_named(path, _WHAT[kind]):
                limits = (self.min_size, self.max_pixels)
                if kind == "dicom":
                    arr, meta, rng = _read_dicom(path, self.voi, self.allow_degenerate, limits)
                elif kind == "nifti":
                    arr, meta, rng = _read_nifti(path, limits)
                else:
                    arr, meta, rng = _read_pil(path, limits)
        elif isinstance(data, (np.ndarray, torch.Tensor)):
            arr = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
            name = f"<array of shape {tuple(arr.shape)}>"
            arr = _squeeze_2d(arr, name)
            meta = {"PhotometricInterpretation": "MONOCHROME2", "BitsStored": int(arr.dtype.itemsize * 8)}
            rng = _dtype_range(arr.dtype)
        else:
            raise XRayReadError(f"cannot read X-ray {data!r}: expected a file path or a 2D numpy array / torch tensor.")
        meta["filename_or_obj"] = name if isinstance(data, (str, os.PathLike)) else ""  # "" for in-memory arrays
        self._refuse_degenerate(arr, name)
        return _Decoded(arr, meta, rng)

    def _refuse_degenerate(self, arr: np.ndarray, name: str) -> None:
        _check_pixels(Path(name), arr.shape, (self.min_size, None))
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise XRayReadError(f"cannot read X-ray '{name}': {bad} pixels are NaN or infinite; expected finite values.")
        if not self.allow_degenerate and arr.min() == arr.max():
            raise XRayReadError(
                f"cannot read X-ray '{name}': constant image (every pixel is {arr.flat[0]}); expected a radiograph "
                "with contrast (allow_degenerate=True reads it anyway)."
            )

    def _scale(self, arr: np.ndarray, rng: tuple[float, float] | None) -> np.ndarray:
        x = arr.astype(np.float32)  # always a fresh copy: scaled in place below, never touching the caller's array
        if self.intensity == "minmax":
            if self.percentiles is not None:
                lo, hi = (float(v) for v in np.percentile(x, self.percentiles))
                np.clip(x, lo, hi, out=x)
            else:
                lo, hi = float(x.min()), float(x.max())
        elif self.intensity == "dtype" and rng is not None:
            lo, hi = rng
        else:
            return x
        if hi > lo:
            x -= lo
            x *= 1.0 / (hi - lo)
            if self.intensity == "minmax":  # no rounding above 1
                np.clip(x, 0.0, 1.0, out=x)
        else:  # a constant image read with allow_degenerate=True: all zeros rather than NaN
            x[...] = 0.0
        return x

    def get_data(self, img: _Decoded) -> tuple[np.ndarray, dict[str, Any]]:
        """Scale the decoded image and complete its metadata.

        Args:
            img: what :meth:`read` returned.

        Returns:
            a ``1×H×W`` float32 array and its metadata (with ``affine`` from the pixel spacing, ``original_channel_dim``
            0, ``original_spatial_shape`` and every DICOM key, "" or NaN when unknown, so batches collate).
        """
        arr, meta, rng = img
        meta = dict(meta)
        meta["original_spatial_shape"] = (int(arr.shape[0]), int(arr.shape[1]))
        meta["original_channel_dim"] = 0
        meta.setdefault("PixelSpacing", (float("nan"), float("nan")))
        meta.setdefault("ImagerPixelSpacing", (float("nan"), float("nan")))
        for key in _META_TAGS:
            meta.setdefault(key, "")
        meta.setdefault("voi_applied", "none")
        spacing = next((s for s in (meta["PixelSpacing"], meta["ImagerPixelSpacing"]) if min(s) > 0), (1.0, 1.0))
        meta["affine"] = np.diag([spacing[0], spacing[1], 1.0, 1.0]).astype(np.float64)
        return np.ascontiguousarray(self._scale(arr, rng))[None], meta


# ------------------------------------------------------------------------------------------------------ the check
def check_xray_file(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Cheaply validate that ``path`` is a readable radiograph, without decoding the pixels.

    DICOM: header parsed with large values deferred, then the presence of PixelData, a supported photometric
    interpretation, a single frame, the pixel count, and (for uncompressed data) that the file holds all the pixel
    bytes. PNG/JPEG: ``PIL.Image.verify`` and the pixel count. NIfTI: header, a 2D shape and the pixel count.

    Args:
        path: file to check.
        max_pixels: largest accepted ``H * W`` (``None``: no limit), as in :class:`XRayImageReader`.

    Returns:
        None when the file looks readable.

    Raises:
        XRayReadError: naming the file and what was expected (missing file or a directory, non-DICOM or truncated
            file, malformed header, no pixel data, unsupported photometric interpretation, too many pixels,
            unreadable image, wrong dimensions).

    Example::

        >>> check_xray_file("chest.dcm")  # raises XRayReadError for a broken file
    """
    p = _existing(path)
    kind = _kind(p)
    limits = (1, max_pixels)
    with _failures_named(p, _WHAT[kind]):
        if kind == "dicom":
            _check_dicom_file(p, limits)
        elif kind == "image":
            with _open_pil(p, limits) as im:
                im.verify()
        else:
            _open_nifti(p, limits)


def _check_dicom_file(p: Path, limits: tuple[int, int | None]) -> None:
    ds = read_dicom_dataset(p, defer_size=1024)
    _check_dicom_header(ds, p)
    _check_pixels(p, (ds.Rows, ds.Columns), limits)
    for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if tag in ds:
            elem = ds.get_item(tag, keep_deferred=True)
            tell, length = getattr(elem, "value_tell", None), getattr(elem, "length", None)
            if tell is not None and length not in (None, _UNDEFINED_LENGTH) and tell + length > p.stat().st_size:
                raise XRayReadError(
                    f"cannot read X-ray '{p}': truncated DICOM ({tag} needs {length} bytes at offset {tell}, file "
                    f"has {p.stat().st_size}); expected the complete file."
                )
            break


# ---------------------------------------------------------------------------------------------------- the loader
class LoadXRay(Transform):
    """Load one chest radiograph into a channel-first ``1×H×W`` float ``MetaTensor`` that looks like MONOCHROME2.

    :class:`XRayImageReader` reads and scales (it is what ``LoadImage(reader=XRayImageReader())`` uses too); this
    transform adds the optional letterbox to ``spatial_size`` and the output dtype. Accepts a DICOM file (pydicom;
    compressed syntaxes through pylibjpeg), a PNG/JPEG/TIFF/BMP (Pillow; 8/16-bit grayscale, colour converted to
    BT.601 luma), a 2D NIfTI (nibabel) or an in-memory 2D array/tensor (e.g. a MedMNIST image; ``H×W`` or ``1×H×W``).
    DICOM follows PS3.3: Modality LUT / Rescale, then VOI (``voi``), then MONOCHROME1 is inverted as ``lo + hi - x``
    over the nominal value range so dense tissue is bright. Arrays are row-major ``H×W`` as displayed (pydicom/PIL
    order, not the ``W×H`` order of MONAI's ITKReader); 2D NIfTI is transposed from its (x, y) storage.

    ``meta`` holds ``filename_or_obj``, ``PixelSpacing`` and ``ImagerPixelSpacing`` (row, column floats; NaN when
    unknown), ``PhotometricInterpretation`` (as stored), ``Modality``, ``ViewPosition``, ``PatientID``,
    ``StudyInstanceUID``, ``SeriesInstanceUID``, ``SOPInstanceUID`` ("" when absent), ``BitsStored``,
    ``voi_applied``, ``original_spatial_shape`` (H, W before resizing), ``original_channel_dim`` (0) and, with
    ``spatial_size``, the :class:`~monai_moco.transforms.spatial.array.Letterbox` keys (scale, padding) used by
    :func:`~monai_moco.transforms.spatial.array.unletterbox` to map heat-maps back. Patient name and birth date are
    never copied.

    Every failure raises :class:`XRayReadError` naming the file and the cause: a missing file or a directory, a
    malformed or truncated file, more than ``max_pixels`` pixels, an image smaller than ``min_size``, non-finite
    values, and, unless ``allow_degenerate``, a constant image, a zero Rescale Slope or a VOI window/LUT that
    saturates every pixel.

    Args:
        spatial_size: output (H, W) or an int for square; ``None`` keeps the native size.
        letterbox: ``True`` resizes keeping the aspect ratio and pads centred with ``pad_value``; ``False`` resizes
            to ``spatial_size`` exactly (distorting).
        voi: ``"auto"`` (VOI LUT Sequence if present, else Window Center/Width, else none), ``"lut"`` (the LUT
            sequence only), ``"window"`` (the window only) or ``"none"``. A requested step the file lacks is skipped;
            ``meta["voi_applied"]`` says what was done.
        intensity: ``"minmax"`` (default) scales each image to [0, 1] (after clipping to ``percentiles`` when
            given); ``"dtype"`` maps the nominal range to [0, 1] (divides by ``2**BitsStored - 1`` for a plain
            unsigned DICOM, 255 or 65535 for 8/16-bit PNG/JPEG, the integer dtype range for NIfTI/arrays; float
            NIfTI/arrays are kept); ``"none"`` keeps the values.
        percentiles: ``(low, high)`` percentiles (0-100) for ``"minmax"``, e.g. ``(0.5, 99.5)``.
        dtype: output dtype (default float32).
        mode: interpolation for the resize, see :data:`~monai_moco.transforms.spatial.array.LETTERBOX_MODES`.
        pad_value: value of the letterbox padding (in output intensity units).
        allow_degenerate: read constant images, zero slopes and saturating windows instead of refusing them.
        min_size: smallest accepted height and width (default :data:`DEFAULT_MIN_SIZE`).
        max_pixels: largest accepted ``H * W`` (default :data:`DEFAULT_MAX_PIXELS`; ``None`` for no limit).

    Raises:
        ValueError: for an unknown ``voi``/``intensity``/``mode`` or bad ``percentiles``/``min_size``.

    Example::

        >>> img = LoadXRay(spatial_size=224)("chest.dcm")
        >>> img.shape, img.meta["original_spatial_shape"]
        (torch.Size([1, 224, 224]), (1955, 1841))
    """

    def __init__(
        self,
        spatial_size: int | Sequence[int] | None = None,
        letterbox: bool = True,
        voi: str = "auto",
        intensity: str = "minmax",
        percentiles: tuple[float, float] | None = None,
        dtype: DtypeLike = np.float32,
        mode: str = "area",
        pad_value: float = 0.0,
        allow_degenerate: bool = False,
        min_size: int = DEFAULT_MIN_SIZE,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.reader = XRayImageReader(voi, intensity, percentiles, allow_degenerate, min_size, max_pixels)
        self.dtype = dtype
        self.spatial_size = spatial_size
        self.resizer: Letterbox | None = None
        if spatial_size is not None:
            look_up_option(mode, LETTERBOX_MODES)
            self.resizer = Letterbox(spatial_size, mode=mode, pad_value=pad_value, keep_aspect=letterbox)

    def __call__(self, data: str | os.PathLike | NdarrayOrTensor) -> torch.Tensor:
        """Load ``data`` (path or 2D array) into a ``1×H×W`` tensor.

        Args:
            data: a DICOM/PNG/JPEG/NIfTI path or an in-memory ``H×W`` (or ``1×H×W``) array/tensor.

        Returns:
            ``1×H×W`` tensor of ``dtype`` (a ``MetaTensor`` with ``meta`` unless meta tracking is off).

        Raises:
            XRayReadError: when the input cannot be read as a usable 2D radiograph (the message names it and why).
        """
        x, meta = self.reader.get_data(self.reader.read(data))
        img: torch.Tensor = MetaTensor.ensure_torch_and_prune_meta(x, meta)  # as LoadImage builds it
        if self.resizer is not None:
            img = self.resizer(img)
        img = img.to(get_equivalent_dtype(self.dtype, torch.Tensor))
        if not get_track_meta() and isinstance(img, MetaTensor):
            return img.as_tensor()
        return img
