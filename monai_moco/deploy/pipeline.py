"""One radiograph from DICOM file to outputs, without the SDK: load (LoadXRay), classify, explain, package.

The MONAI Deploy operators (:mod:`monai_moco.deploy.operators`) call these functions; they are also what the tests
exercise directly.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from monai_moco.deploy.model import ExportedClassifier
from monai_moco.deploy.report import (
    RESEARCH_DISCLAIMER,
    ImageOutputs,
    build_classification_sr,
    sr_evidence,
    utc_now,
    write_outputs_atomically,
)
from monai_moco.deploy.selection import SelectedInstance, SkippedFile, safe_output_stem

__all__ = ["DeployOptions", "RunReport", "classify_instance", "load_instance", "process_instances"]


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
        processed: ``{"SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "source", "files"}`` per written
            image (``source`` is the file's path).
        skipped: files not processed: path, stage and why.
    """

    processed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def as_dict(self, input_folder: str | os.PathLike | None = None, full_paths: bool = False) -> dict[str, Any]:
        """JSON-ready form with counts.

        Folder names often carry patient IDs (PACS exports), so paths are written relative to ``input_folder``
        (in ``source``, ``path`` and inside every ``reason``) unless ``full_paths``.

        Args:
            input_folder: the run's input folder (or file); ``None`` keeps paths as they are.
            full_paths: keep absolute paths (``--include-patient-info``).

        Returns:
            ``{"num_processed", "num_skipped", "processed", "skipped"}``.
        """
        hide = _path_hider(None if full_paths else input_folder)
        processed = [{**p, "source": hide(str(p["source"]))} if "source" in p else dict(p) for p in self.processed]
        skipped = [{k: hide(v) if k in ("path", "reason") else v for k, v in s.as_dict().items()} for s in self.skipped]
        return {"num_processed": len(self.processed), "num_skipped": len(self.skipped),
                "processed": processed, "skipped": skipped}


def _path_hider(input_folder: str | os.PathLike | None) -> Callable[[str], str]:
    """A function that rewrites every path under ``input_folder`` in a text as relative to it."""
    if input_folder is None:
        return lambda text: text
    root = Path(input_folder)
    root = root.parent if root.is_file() else root
    prefixes = sorted({str(root) + os.sep, str(root.resolve()) + os.sep, str(root.absolute()) + os.sep}, key=len,
                      reverse=True)

    def hide(text: str) -> str:
        for prefix in prefixes:
            text = text.replace(prefix, "")
        return text

    return hide


def _sha256(path: str) -> str:
    if not path or not os.path.isfile(path):
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_instance(instance: SelectedInstance, classifier: ExportedClassifier) -> torch.Tensor:
    """Read one selected DICOM with :class:`~monai_moco.transforms.LoadXRay` (Modality LUT, VOI LUT/window,
    MONOCHROME1 inverted, letterboxed to the model size; degenerate images refused).

    Args:
        instance: from :func:`~monai_moco.deploy.selection.select_chest_radiographs`.
        classifier: the loaded model (its input size).

    Returns:
        the ``1 x H x W`` ``MetaTensor``.

    Raises:
        monai_moco.transforms.XRayReadError: when the pixels cannot be decoded or the image is degenerate.
    """
    from monai_moco.transforms import LoadXRay

    return LoadXRay(spatial_size=classifier.image_size)(str(instance.path))


def classify_instance(
    instance: SelectedInstance,
    classifier: ExportedClassifier,
    options: DeployOptions,
    model_sha256: str = "",
    image: torch.Tensor | None = None,
) -> ImageOutputs:
    """Classify one selected radiograph, explain it and build its outputs in memory.

    Args:
        instance: from :func:`~monai_moco.deploy.selection.select_chest_radiographs`.
        classifier: the loaded model.
        options: what to produce.
        model_sha256: digest of the model file, recorded in the JSON.
        image: the image from :func:`load_instance` (read here when ``None``).

    Returns:
        the outputs (nothing written yet).

    Raises:
        monai_moco.transforms.XRayReadError: when the pixel data cannot be decoded.
        ValueError: when the SOP Instance UID leaves no usable file name.
    """
    import pydicom

    from monai_moco.visualize import heatmap_overlay

    stem = safe_output_stem(instance.sop_instance_uid)
    image = load_instance(instance, classifier) if image is None else image
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
        evidence, replaced = sr_evidence(source)
        sr = build_classification_sr(evidence, probs, classifier.name, classifier.version, classifier.activation)
        result["sr"] = {"file": f"{stem}_sr.dcm", "SOPInstanceUID": str(sr.SOPInstanceUID),
                        "replaced_source_uids": replaced}
    return ImageOutputs(stem, result, sr, rgb)


def process_instances(
    instances: list[SelectedInstance],
    classifier: ExportedClassifier,
    output_dir: str | os.PathLike,
    options: DeployOptions | None = None,
    report: RunReport | None = None,
) -> RunReport:
    """Classify every selected instance and write its outputs, each image inside its own failure boundary: whatever
    goes wrong for one image (decoding, a degenerate image, inference, the SR, writing) is recorded in the report
    with its stage and the run goes on; a failing image leaves no file behind
    (:func:`~monai_moco.deploy.report.write_outputs_atomically`).

    A file claims its SOP Instance UID only once its pixels decoded, so among copies of one instance (a truncated
    export beside the complete one) the first copy that decodes is processed and the others are reported.

    Args:
        instances: selected files.
        classifier: the model.
        output_dir: where outputs go (created on the first success only).
        options: what to write.
        report: a report to extend (e.g. with the selection's skipped files).

    Returns:
        the report.
    """
    options = options or DeployOptions()
    report = report or RunReport()
    digest = _sha256(classifier.source)
    claimed: dict[str, Path] = {}
    stems: dict[str, str] = {}
    for inst in instances:
        if inst.sop_instance_uid in claimed:
            report.skipped.append(SkippedFile(Path(inst.path), f"duplicate SOP Instance UID {inst.sop_instance_uid!r} "
                                                               f"(already read from {str(claimed[inst.sop_instance_uid])!r})",
                                              "selection"))
            continue
        stage = "loading"
        try:
            stem = safe_output_stem(inst.sop_instance_uid)
            if stem in stems:
                raise ValueError(f"SOP Instance UID {inst.sop_instance_uid!r} maps to output name {stem!r} already "
                                 f"used by {stems[stem]!r}")
            image = load_instance(inst, classifier)
            claimed[inst.sop_instance_uid] = Path(inst.path)
            stage = "inference"
            outputs = classify_instance(inst, classifier, options, digest, image=image)
            stage = "output"
            files = write_outputs_atomically(outputs, output_dir)
        except Exception as err:  # one image's failure, of any kind, must not end the run: it is reported
            report.skipped.append(SkippedFile(Path(inst.path), f"{type(err).__name__}: {err}", stage))
            continue
        stems[stem] = inst.sop_instance_uid
        report.processed.append({"SOPInstanceUID": inst.sop_instance_uid, "StudyInstanceUID": inst.study_instance_uid,
                                 "SeriesInstanceUID": inst.series_instance_uid, "source": str(inst.path),
                                 "files": [p.name for p in files]})
    return report
