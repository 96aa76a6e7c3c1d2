"""The MONAI Deploy application: DICOM folder in -> chest radiograph selection -> LoadXRay -> exported classifier
-> per image ``<SOPInstanceUID>.json``, DICOM SR and heat-map PNG. Needs ``monai-deploy-app-sdk`` (extra ``deploy``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from monai.deploy.conditions import CountCondition
from monai.deploy.core import Application

from monai_moco.deploy.model import ExportedClassifier
from monai_moco.deploy.operators import ChestRadiographSelectorOperator, XRayClassifierOperator
from monai_moco.deploy.pipeline import DeployOptions, RunReport

__all__ = ["ChestXRayClassifierApp"]


class ChestXRayClassifierApp(Application):
    """Two operators, ``selector -> classifier`` (see :mod:`monai_moco.deploy.operators` for why not the SDK's DICOM
    loader chain). Runs on CPU (Holoscan falls back to host memory).

    Args:
        input_folder: DICOM folder.
        output_folder: output folder.
        classifier: the loaded model.
        options: what to write.

    Example::

        app = ChestXRayClassifierApp("input", "output", ExportedClassifier.load("model.ts"), DeployOptions())
        app.run()
        print(app.report.as_dict())
    """

    def __init__(self, input_folder: str | os.PathLike, output_folder: str | os.PathLike,
                 classifier: ExportedClassifier, options: DeployOptions | None = None, **kwargs: Any) -> None:
        super().__init__([sys.executable], **kwargs)
        self.input_folder = Path(input_folder)
        self.output_folder = Path(output_folder)
        self.classifier = classifier
        self.deploy_options = options or DeployOptions()
        self._classifier_op: XRayClassifierOperator | None = None

    def compose(self) -> None:
        """Build the operator graph."""
        selector = ChestRadiographSelectorOperator(self, CountCondition(self, 1), input_folder=self.input_folder,
                                                   name="chest_radiograph_selector")
        self._classifier_op = XRayClassifierOperator(self, classifier=self.classifier,
                                                     output_folder=self.output_folder, options=self.deploy_options,
                                                     name="xray_classifier")
        self.add_flow(selector, self._classifier_op, {("selection", "selection")})

    @property
    def report(self) -> RunReport | None:
        """The run report after :meth:`run` (``None`` if the classifier operator did not run)."""
        return None if self._classifier_op is None else self._classifier_op.report
