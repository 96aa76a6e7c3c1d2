"""The outputs of one processed radiograph: result JSON, DICOM Comprehensive SR (highdicom) and heat-map PNG, written
all-or-nothing under sanitised names.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monai_moco.utils.io import Writer, atomic_write_all, json_writer

__all__ = ["RESEARCH_DISCLAIMER", "ImageOutputs", "build_classification_sr", "write_outputs_atomically"]

RESEARCH_DISCLAIMER = "Research use only; not for clinical diagnosis."
_PRIVATE_SCHEME = "99MONAIMOCO"


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

    The SR belongs to the source's patient and study (highdicom copies the Patient and Study modules from the
    evidence, as any SR filed back to a PACS must); the content tree is a ``Diagnostic imaging report`` container
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
