"""The outputs of one processed radiograph: result JSON, DICOM Comprehensive SR (highdicom) and heat-map PNG, written
all-or-nothing under sanitised names.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monai_moco.utils.io import Writer, atomic_write_all, json_writer

__all__ = [
    "RESEARCH_DISCLAIMER",
    "ImageOutputs",
    "build_classification_sr",
    "is_valid_uid",
    "sr_evidence",
    "write_outputs_atomically",
]

RESEARCH_DISCLAIMER = "Research use only; not for clinical diagnosis."
_PRIVATE_SCHEME = "99MONAIMOCO"
# PS3.5 9.1: digits and dots, components without leading zeros, at most 64 characters
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
# the SOP Class cited when the stored one is not a standard image storage class: the class of the Modality
_MODALITY_SOP_CLASSES = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
}
# Patient and General Study attributes of type 2 (PS3.3 C.7.1.1, C.7.2.1): present, empty when unknown
_TYPE2_TEXT = ("PatientName", "PatientID", "ReferringPhysicianName", "StudyID", "AccessionNumber")
_TYPE2_FORMATS = {
    "PatientBirthDate": re.compile(r"^\d{8}$"),
    "StudyDate": re.compile(r"^\d{8}$"),
    "StudyTime": re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$"),
    "PatientSex": re.compile(r"^[MFO]$"),
}


def is_valid_uid(value: Any) -> bool:
    """Whether ``value`` is a conformant DICOM UID (PS3.5 9.1: ``[0-9.]``, no leading zeros, at most 64 characters).

    Args:
        value: the tag value.

    Returns:
        ``True`` for a UID that may be copied into a new object.

    Example::

        >>> is_valid_uid("1.2.840.10008.5.1.4.1.1.1"), is_valid_uid("../../x"), is_valid_uid("1." + "2" * 64)
        (True, False, False)
    """
    text = str(value if value is not None else "")
    return 0 < len(text) <= 64 and _UID.match(text) is not None


def sr_evidence(source: Any) -> tuple[Any, list[str]]:
    """The source image's header as an SR may cite it: only valid UIDs, every type-2 attribute present.

    A de-identified or non-conformant radiograph must still get its SR, and an SR must never copy an invalid value.
    The result holds the Patient and General Study attributes of type 2 (empty when absent or malformed), the
    Specific Character Set, and the Study, Series and SOP Instance UIDs, each replaced by a new UID when absent or
    invalid (too long, path characters, leading zeros). The SOP Class is kept when it is a standard image storage
    class and otherwise replaced by the class of the image's Modality (CR or DX Image Storage).

    Args:
        source: the source image's pydicom Dataset (header is enough).

    Returns:
        ``(evidence dataset, names of the replaced UID attributes)``.

    Example::

        evidence, replaced = sr_evidence(pydicom.dcmread("cxr.dcm", stop_before_pixels=True))
        # replaced == ["SOPInstanceUID"] for a file whose SOP Instance UID is "../../x"
    """
    from pydicom import Dataset
    from pydicom.uid import UID, generate_uid

    evidence = Dataset()
    if "SpecificCharacterSet" in source:
        evidence.SpecificCharacterSet = source.SpecificCharacterSet
    for keyword in _TYPE2_TEXT:
        setattr(evidence, keyword, str(source.get(keyword, "") or ""))
    for keyword, pattern in _TYPE2_FORMATS.items():
        value = str(source.get(keyword, "") or "").strip()
        setattr(evidence, keyword, value if pattern.match(value) else "")
    replaced = []
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = str(source.get(keyword, "") or "")
        if not is_valid_uid(value):
            value = generate_uid()
            replaced.append(keyword)
        setattr(evidence, keyword, value)
    sop_class = str(source.get("SOPClassUID", "") or "")
    known = UID(sop_class) if is_valid_uid(sop_class) else None
    if known is None or known.type != "SOP Class" or "Image Storage" not in known.name:
        modality = str(source.get("Modality", "") or "").strip().upper()
        sop_class = _MODALITY_SOP_CLASSES["DX" if modality == "DX" else "CR"]
        replaced.append("SOPClassUID")
    evidence.SOPClassUID = sop_class
    evidence.Modality = str(source.get("Modality", "") or "")
    return evidence, replaced


def build_classification_sr(
    source: Any,
    probabilities: Mapping[str, float],
    model_name: str,
    model_version: str,
    activation: str,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Any:
    """A DICOM Comprehensive SR with one numeric probability per class for the source radiograph.

    The SR belongs to the source's patient and study (the Patient and General Study attributes are copied, as any SR
    filed back to a PACS must): they come through :func:`sr_evidence`, so absent type-2 attributes are written empty
    and an invalid Study/Series/SOP Instance UID or SOP Class is replaced, never copied. The content tree is a ``Diagnostic imaging report`` container
    (LOINC 18748-4) holding the algorithm name/version (TEXT), the source image (IMAGE) and, per class, a NUM item
    ``Probability of <class>`` (private coding scheme ``99MONAIMOCO``, UCUM unit ``1``).

    Args:
        source: the source image's pydicom Dataset (header is enough).
        probabilities: class name -> probability.
        model_name: algorithm name.
        model_version: algorithm version.
        activation: ``softmax`` or ``sigmoid`` (written as a TEXT item, so a reader knows whether they sum to 1).
        series_instance_uid: UID of the new SR series (default: a new UID).
        sop_instance_uid: UID of the SR (default: a new UID).

    Returns:
        the ``highdicom.sr.ComprehensiveSR`` dataset.

    Example::

        sr = build_classification_sr(pydicom.dcmread("cxr.dcm"), {"normal": 0.3, "pneumonia": 0.7}, "cxr", "0.1")
        sr.save_as("cxr_sr.dcm")
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    source, _ = sr_evidence(source)
    root_name = hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging report")
    children: list[Any] = [
        hd.sr.TextContentItem(hd.sr.CodedConcept("111001", "DCM", "Algorithm Name"), model_name,
                              relationship_type="CONTAINS"),
        hd.sr.TextContentItem(hd.sr.CodedConcept("111003", "DCM", "Algorithm Version"), model_version or "unknown",
                              relationship_type="CONTAINS"),
        hd.sr.TextContentItem(hd.sr.CodedConcept("MM-ACT", _PRIVATE_SCHEME, "Probability activation"), activation,
                              relationship_type="CONTAINS"),
        hd.sr.ImageContentItem(hd.sr.CodedConcept("121112", "DCM", "Source of Measurement"), str(source.SOPClassUID),
                               str(source.SOPInstanceUID), relationship_type="CONTAINS"),
    ]
    for i, (name, p) in enumerate(probabilities.items()):
        children.append(
            hd.sr.NumContentItem(
                hd.sr.CodedConcept(f"MM-P{i}", _PRIVATE_SCHEME, f"Probability of {name}"[:64]), float(p),
                hd.sr.CodedConcept("1", "UCUM", "no units"), relationship_type="CONTAINS",
            )
        )
    children.append(hd.sr.TextContentItem(hd.sr.CodedConcept("121106", "DCM", "Comment"), RESEARCH_DISCLAIMER,
                                          relationship_type="CONTAINS"))
    container = hd.sr.ContainerContentItem(root_name, template_id=None)
    container.ContentSequence = hd.sr.ContentSequence(children)
    return hd.sr.ComprehensiveSR(
        evidence=[source],
        content=container,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=9001,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=1,
        manufacturer="monai_moco",
        series_description=f"AI classification ({model_name})"[:64],
    )


@dataclass
class ImageOutputs:
    """What one radiograph produced, in memory, before anything is written.

    Attributes:
        stem: sanitised file-name stem (from the SOP Instance UID).
        result: the JSON document.
        sr: the SR dataset, or ``None``.
        heatmap_rgb: ``H x W x 3`` uint8 overlay, or ``None``.
    """

    stem: str
    result: dict[str, Any]
    sr: Any = None
    heatmap_rgb: np.ndarray | None = None
    files: list[Path] = field(default_factory=list)


def _inside(folder: Path, name: str) -> Path:
    target = (folder / name).resolve()
    if target.parent != folder.resolve():
        raise ValueError(f"output name {name!r} would leave the output folder {str(folder)!r}.")
    return target


def write_outputs_atomically(outputs: ImageOutputs, folder: str | os.PathLike) -> list[Path]:
    """Write ``<stem>.json``, ``<stem>_sr.dcm`` and ``<stem>_heatmap.png`` all-or-nothing.

    Each file goes to a hidden temporary name first; only when all are complete are they renamed into place (JSON
    last, so a reader polling for JSONs never sees one without its SR/PNG). On any error the temporaries and any
    already-renamed file are removed. Every target is checked to resolve directly inside ``folder``.

    Args:
        outputs: the in-memory outputs.
        folder: output folder (created).

    Returns:
        the written paths.

    Raises:
        ValueError: when a name would leave ``folder``.
        OSError: when writing fails (nothing of this image is left behind).
    """
    from monai_moco.visualize import write_rgb_png

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plan: list[tuple[Path, Writer]] = []
    if outputs.sr is not None:
        plan.append((_inside(folder, f"{outputs.stem}_sr.dcm"), lambda p: outputs.sr.save_as(p, enforce_file_format=True)))
    if outputs.heatmap_rgb is not None:
        plan.append((_inside(folder, f"{outputs.stem}_heatmap.png"), lambda p: write_rgb_png(p, outputs.heatmap_rgb)))
    plan.append((_inside(folder, f"{outputs.stem}.json"), json_writer(outputs.result)))
    return atomic_write_all(plan)


def utc_now() -> str:
    """ISO-8601 UTC time stamp (seconds)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
