"""Which files of a DICOM folder are frontal chest radiographs the classifier may read, and why the others are not.

Rules, applied per file in sorted path order (the first that fails names the reason; nothing is guessed):

1. a DICOM Part 10 file (``DICM`` preamble; pydicom reads its header) -- otherwise "not a DICOM file" or "corrupt";
2. not a DICOMDIR / media directory;
3. an image: has Pixel Data -- otherwise "non-image DICOM" (structured reports, presentation states, KOS, ...);
4. Modality ``CR`` (computed radiography) or ``DX`` (digital X-ray), the chest radiograph modalities;
5. Body Part Examined ``CHEST`` (or ``THORAX``/``LUNG``; an empty or missing value is accepted, as many CR
   devices leave it blank);
6. View Position frontal (``PA``, ``AP`` or empty); lateral views (``LL``, ``RL``, ``LAT``, ...) are skipped because
   the classifiers are trained on frontal films;
7. a single frame (Number of Frames absent or 1) and a SOP Instance UID (type 1; names the output files);
8. a SOP Instance UID not already processed: checked by :func:`~monai_moco.deploy.pipeline.process_instances` after
   decoding, so a truncated copy cannot shadow the complete one (the first copy that decodes is used, later copies
   are reported as duplicates).

All selected instances are processed, whatever their study or series; the run report groups them by
StudyInstanceUID/SeriesInstanceUID. Pixel decoding happens later (:class:`~monai_moco.transforms.LoadXRay`), so a
file with a valid header and corrupt pixel data is skipped at that stage with the decoder's reason.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CHEST_BODY_PARTS",
    "FRONTAL_VIEWS",
    "RADIOGRAPH_MODALITIES",
    "SelectedInstance",
    "SkippedFile",
    "safe_output_stem",
    "select_chest_radiographs",
]

RADIOGRAPH_MODALITIES: tuple[str, ...] = ("CR", "DX")
CHEST_BODY_PARTS: tuple[str, ...] = ("", "CHEST", "THORAX", "LUNG")
FRONTAL_VIEWS: tuple[str, ...] = ("", "PA", "AP")
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_UNSAFE = re.compile(r"[^0-9A-Za-z._-]+")


@dataclass
class SelectedInstance:
    """A file that passed the header rules.

    Attributes:
        path: the file.
        sop_instance_uid: SOP Instance UID as stored (untrusted; see :func:`safe_output_stem` for file names).
        sop_class_uid: SOP Class UID.
        study_instance_uid: Study Instance UID.
        series_instance_uid: Series Instance UID.
        modality: ``CR`` or ``DX``.
        view_position: ``PA``, ``AP`` or "".
    """

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    view_position: str


@dataclass
class SkippedFile:
    """A file that was not processed, with the rule it failed.

    Attributes:
        path: the file.
        reason: why, in words.
        stage: ``"selection"`` (header rules) or ``"loading"``/``"inference"``/``"output"`` (later failures).
    """

    path: Path
    reason: str
    stage: str = "selection"
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form.

        Returns:
            ``{"path", "reason", "stage"}``.
        """
        out = asdict(self)
        out["path"] = str(self.path)
        out.pop("extra")
        return out


def safe_output_stem(uid: str, max_len: int = 128) -> str:
    """A file-name stem from an untrusted DICOM value (such as a SOP Instance UID) that cannot leave its folder.

    Keeps ``[0-9A-Za-z._-]``, replaces every other run (``/``, ``\\``, ``:``, spaces, NUL...) by ``_``, removes
    leading dots (no ``..``, no hidden files) and caps the length. A real UID (digits and dots) is unchanged.

    Args:
        uid: the tag value.
        max_len: longest stem.

    Returns:
        a non-empty stem.

    Raises:
        ValueError: when nothing usable remains (e.g. ``"../.."``).

    Example::

        >>> safe_output_stem("../../x")
        '_.._x'
        >>> safe_output_stem("1.2.840.113619.2.55")
        '1.2.840.113619.2.55'
    """
    stem = _UNSAFE.sub("_", str(uid).strip()).lstrip(".")[:max_len]
    if not stem.strip("._-"):
        raise ValueError(f"SOP Instance UID {uid!r} leaves no usable file name after sanitising.")
    return stem


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword, "")
    return str(value if value is not None else "").strip()


def _check_header(path: Path) -> SelectedInstance | SkippedFile:
    from pydicom.errors import InvalidDicomError

    from monai_moco.transforms.io import XRayReadError, read_dicom_dataset

    try:
        ds = read_dicom_dataset(path, defer_size=1024)  # also reports encapsulated pixel data cut short
    except XRayReadError as err:
        if isinstance(err.__cause__, InvalidDicomError):
            return SkippedFile(path, "not a DICOM file (no DICM preamble / file meta header)")
        return SkippedFile(path, f"corrupt DICOM: {err}")
    except Exception as err:  # malformed element: pydicom raises many types
        return SkippedFile(path, f"corrupt DICOM header ({type(err).__name__}: {err})")
    sop_class = _text(ds, "SOPClassUID") or _text(getattr(ds, "file_meta", {}), "MediaStorageSOPClassUID")
    if sop_class == _DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        return SkippedFile(path, "DICOMDIR (media directory), not an image")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        name = str(getattr(ds.get("SOPClassUID"), "name", "") or sop_class or "unknown")
        return SkippedFile(path, f"non-image DICOM (SOP Class {name}, no Pixel Data)")
    modality = _text(ds, "Modality").upper()
    if modality not in RADIOGRAPH_MODALITIES:
        return SkippedFile(path, f"Modality {modality or '(empty)'!r} is not a radiograph; expected one of "
                                 f"{list(RADIOGRAPH_MODALITIES)}")
    body = _text(ds, "BodyPartExamined").upper()
    if body not in CHEST_BODY_PARTS:
        return SkippedFile(path, f"Body Part Examined {body!r} is not chest; expected CHEST (or empty)")
    view = _text(ds, "ViewPosition").upper()
    if view not in FRONTAL_VIEWS:
        return SkippedFile(path, f"View Position {view!r} is not frontal; expected PA, AP or empty")
    frames = _text(ds, "NumberOfFrames") or "1"
    if frames not in ("1", "0"):
        return SkippedFile(path, f"multi-frame image ({frames} frames); expected a single radiograph")
    uid = _text(ds, "SOPInstanceUID")
    if not uid:
        return SkippedFile(path, "no SOP Instance UID (type 1 attribute missing)")
    return SelectedInstance(path, uid, sop_class, _text(ds, "StudyInstanceUID"), _text(ds, "SeriesInstanceUID"),
                            modality, view)


def select_chest_radiographs(folder: str | os.PathLike) -> tuple[list[SelectedInstance], list[SkippedFile]]:
    """Apply the module's header rules 1-7 to every file under ``folder`` (recursively, sorted, hidden files included);
    copies of one SOP Instance UID are all selected (rule 8 is applied after decoding).

    Args:
        folder: the DICOM input folder (or a single file).

    Returns:
        ``(selected, skipped)``.

    Raises:
        FileNotFoundError: when ``folder`` does not exist.

    Example::

        selected, skipped = select_chest_radiographs("input")
        for s in skipped:
            print(s.path, s.reason)
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"input folder {str(root)!r} does not exist.")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    selected: list[SelectedInstance] = []
    skipped: list[SkippedFile] = []
    for path in files:
        result = _check_header(path)
        (selected if isinstance(result, SelectedInstance) else skipped).append(result)
    return selected, skipped
