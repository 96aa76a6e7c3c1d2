"""One radiograph from DICOM file to outputs, without the SDK: load (LoadXRay), classify, explain, package.

The MONAI Deploy operators (:mod:`monai_moco.deploy.operators`) call these functions; they are also what the tests
exercise directly.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from monai_moco.deploy.model import ExportedClassifier
from monai_moco.deploy.report import (
    RESEARCH_DISCLAIMER,
    ImageOutputs,
    build_classification_sr,
    utc_now,
    write_outputs_atomically,
)
from monai_moco.deploy.selection import SelectedInstance, SkippedFile, safe_output_stem

__all__ = ["DeployOptions", "RunReport", "classify_instance", "process_instances"]


@dataclass
class DeployOptions:
    """What to write.

    Attributes:
        write_sr: a DICOM Comprehensive SR per image.
        write_heatmap: a heat-map PNG per image.
        include_patient_info: copy PatientName, PatientID and PatientBirthDate into the JSON (off by default).
    """

    write_sr: bool = True
    write_heatmap: bool = True
    include_patient_info: bool = False


@dataclass
class RunReport:
    """The outcome of a run.

    Attributes:
        processed: ``{"SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "files"}`` per written image.
        skipped: files not processed and why.
    """

    processed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form with counts.

        Returns:
            ``{"processed", "skipped", "num_processed", "num_skipped"}``.
        """
        return {"num_processed": len(self.processed), "num_skipped": len(self.skipped),
                "processed": self.processed, "skipped": [s.as_dict() for s in self.skipped]}


def _sha256(path: str) -> str:
    if not path or not os.path.isfile(path):
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def classify_instance(
    instance: SelectedInstance, classifier: ExportedClassifier, options: DeployOptions, model_sha256: str = ""
) -> ImageOutputs:
    """Read one selected DICOM with :class:`~monai_moco.transforms.LoadXRay` (Modality LUT, VOI LUT/window,
    MONOCHROME1 inverted, letterboxed to the model size), classify it and build its outputs in memory.

    Args:
        instance: from :func:`~monai_moco.deploy.selection.select_chest_radiographs`.
        classifier: the loaded model.
        options: what to produce.
        model_sha256: digest of the model file, recorded in the JSON.

    Returns:
        the outputs (nothing written yet).

    Raises:
        monai_moco.transforms.XRayReadError: when the pixel data cannot be decoded.
        ValueError: when the SOP Instance UID leaves no usable file name.
    """
    import pydicom

    from monai_moco.transforms import LoadXRay
    from monai_moco.visualize import heatmap_overlay

    stem = safe_output_stem(instance.sop_instance_uid)
    image = LoadXRay(spatial_size=classifier.image_size)(str(instance.path))
    meta = image.meta
    x = image.as_tensor().float()
    probs = classifier.probabilities(x)
    predicted = max(probs, key=probs.get)
    result: dict[str, Any] = {
        "SOPInstanceUID": instance.sop_instance_uid,
        "StudyInstanceUID": instance.study_instance_uid,
        "SeriesInstanceUID": instance.series_instance_uid,
        "probabilities": probs,
        "activation": classifier.activation,
        "predicted_class": predicted,
        "model": {"name": classifier.name, "version": classifier.version,
                  "file": os.path.basename(classifier.source), "sha256": model_sha256,
                  "bundle": classifier.metadata.get("name", ""), "class_names": classifier.class_names},
        "image": {
            "Modality": instance.modality,
            "ViewPosition": instance.view_position,
            "PhotometricInterpretation": meta.get("PhotometricInterpretation", ""),
            "voi_applied": meta.get("voi_applied", ""),
            "original_spatial_shape": list(meta.get("original_spatial_shape", ())),
            "model_input_size": list(classifier.image_size),
        },
        "created": utc_now(),
        "disclaimer": RESEARCH_DISCLAIMER,
    }
    source = None
    if options.include_patient_info or options.write_sr:
        source = pydicom.dcmread(instance.path, stop_before_pixels=True)
    if options.include_patient_info and source is not None:
        result["patient"] = {k: str(source.get(k, "") or "") for k in ("PatientName", "PatientID", "PatientBirthDate")}
    rgb = None
    if options.write_heatmap:
        try:
            heat = classifier.heatmap(x, classifier.class_names.index(predicted))
        except RuntimeError as err:  # e.g. a frozen (linear-probe) non-ResNet model computes no input gradient
            result["heatmap"] = {"file": None, "method": "none", "reason": f"{type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:200]}"}
        else:
            rgb = heatmap_overlay(x[0], heat.scores.flatten(), tuple(heat.scores.shape), heat.topk_indices)
            result["heatmap"] = {"file": f"{stem}_heatmap.png", "method": heat.method, "class": predicted,
                                 "grid": list(heat.scores.shape), "over": "model input (letterboxed)"}
    sr = None
    if options.write_sr and source is not None:
        sr = build_classification_sr(source, probs, classifier.name, classifier.version, classifier.activation)
        result["sr"] = {"file": f"{stem}_sr.dcm", "SOPInstanceUID": str(sr.SOPInstanceUID)}
    return ImageOutputs(stem, result, sr, rgb)


def process_instances(
    instances: list[SelectedInstance],
    classifier: ExportedClassifier,
    output_dir: str | os.PathLike,
    options: DeployOptions | None = None,
    report: RunReport | None = None,
) -> RunReport:
    """Classify every selected instance and write its outputs; a failing image is skipped with its reason and
    leaves no file behind (:func:`~monai_moco.deploy.report.write_outputs_atomically`).

    Args:
        instances: selected files.
        classifier: the model.
        output_dir: where outputs go (created on the first success only).
        options: what to write.
        report: a report to extend (e.g. with the selection's skipped files).

    Returns:
        the report.
    """
    from monai_moco.transforms import XRayReadError

    options = options or DeployOptions()
    report = report or RunReport()
    digest = _sha256(classifier.source)
    taken: set[str] = set()
    for inst in instances:
        stage = "loading"
        try:
            stem = safe_output_stem(inst.sop_instance_uid)
            if stem in taken:
                raise ValueError(f"SOP Instance UID {inst.sop_instance_uid!r} maps to output name {stem!r} already "
                                 "used by another image")
            outputs = classify_instance(inst, classifier, options, digest)
            stage = "output"
            files = write_outputs_atomically(outputs, output_dir)
        except (XRayReadError, ValueError, OSError, RuntimeError, torch.cuda.OutOfMemoryError) as err:
            report.skipped.append(SkippedFile(Path(inst.path), f"{type(err).__name__}: {err}", stage))
            continue
        taken.add(stem)
        report.processed.append({"SOPInstanceUID": inst.sop_instance_uid, "StudyInstanceUID": inst.study_instance_uid,
                                 "SeriesInstanceUID": inst.series_instance_uid, "source": str(inst.path),
                                 "files": [p.name for p in files]})
    return report
