"""MONAI Deploy (Holoscan) operators of the chest X-ray classification app. Needs ``monai-deploy-app-sdk``.

Why our own loading operator instead of the SDK's ``DICOMDataLoaderOperator`` -> ``DICOMSeriesSelectorOperator``
-> ``DICOMSeriesToVolumeOperator`` chain: (1) the SDK loader drops the file path and only logs files it cannot parse,
so it cannot report *what was skipped and why*; a corrupt file raises inside it; (2) for single-frame series (every
CR/DX radiograph) ``DICOMSeriesToVolumeOperator`` returns early without an affine, which crashes
``MonaiBundleInferenceOperator``; (3) radiographs need their own loading (Modality LUT, VOI LUT/window,
MONOCHROME1 inversion: :class:`~monai_moco.transforms.LoadXRay`), which a volume operator does not do. The
operators below keep the SDK's Operator/Application structure (ports, ``compute``, a ``CountCondition`` source)
and pass plain Python objects between them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from monai.deploy.core import Fragment, Operator, OperatorSpec

from monai_moco.deploy.model import ExportedClassifier
from monai_moco.deploy.pipeline import DeployOptions, RunReport, process_instances
from monai_moco.deploy.selection import select_chest_radiographs

__all__ = ["ChestRadiographSelectorOperator", "XRayClassifierOperator"]

logger = logging.getLogger(__name__)


class ChestRadiographSelectorOperator(Operator):
    """Source operator: scan the input folder and select frontal chest CR/DX radiographs
    (:func:`~monai_moco.deploy.selection.select_chest_radiographs`).

    Output ``selection``: ``(selected instances, skipped files)``.

    Args:
        fragment: the application.
        input_folder: DICOM folder (or one file).
    """

    def __init__(self, fragment: Fragment, *args: Any, input_folder: Path, **kwargs: Any) -> None:
        self.input_folder = Path(input_folder)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        """Declare the output port."""
        spec.output("selection")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        """Select and emit."""
        selected, skipped = select_chest_radiographs(self.input_folder)
        logger.info("selected %d chest radiograph(s), skipped %d file(s) in %s", len(selected), len(skipped),
                    self.input_folder)
        op_output.emit((selected, skipped), "selection")


class XRayClassifierOperator(Operator):
    """Classify each selected radiograph with the exported model and write its JSON, SR and heat-map.

    Input ``selection`` from :class:`ChestRadiographSelectorOperator`. The run report is kept in ``self.report``
    (the application reads it for the exit status).

    Args:
        fragment: the application.
        classifier: the loaded model.
        output_folder: where outputs go.
        options: what to write.
    """

    def __init__(self, fragment: Fragment, *args: Any, classifier: ExportedClassifier, output_folder: Path,
                 options: DeployOptions, **kwargs: Any) -> None:
        self.classifier = classifier
        self.output_folder = Path(output_folder)
        self.options = options
        self.report: RunReport | None = None
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        """Declare the input port."""
        spec.input("selection")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        """Classify, write, record the report."""
        selected, skipped = op_input.receive("selection")
        report = RunReport(skipped=list(skipped))
        self.report = process_instances(selected, self.classifier, self.output_folder, self.options, report)
