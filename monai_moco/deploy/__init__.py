"""MONAI Deploy application for chest radiograph classification (optional extra ``deploy``).

Nothing in the core library imports this package. The SDK-free parts (selection rules, model loading, outputs)
import without ``monai-deploy-app-sdk``; :class:`ChestXRayClassifierApp` and the operators need it and are imported
lazily. Run: ``python -m monai_moco.deploy -i <dicom_dir> -o <out_dir> -m <model.ts>``.
"""

from __future__ import annotations

from typing import Any

from .model import ExportedClassifier as ExportedClassifier
from .pipeline import DeployOptions as DeployOptions
from .pipeline import RunReport as RunReport
from .pipeline import process_instances as process_instances
from .selection import safe_output_stem as safe_output_stem
from .selection import select_chest_radiographs as select_chest_radiographs

_LAZY = {
    "ChestXRayClassifierApp": "monai_moco.deploy.app",
    "ChestRadiographSelectorOperator": "monai_moco.deploy.operators",
    "XRayClassifierOperator": "monai_moco.deploy.operators",
}


def __getattr__(name: str) -> Any:
    """Import the SDK-dependent classes on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'monai_moco.deploy' has no attribute {name!r}")
