"""Shared test fixtures: where the real chest X-ray data lives.

Tests read real radiographs from ``../shared/data`` beside the repository (see its DATA.md); the folder can be moved
with ``MONAI_MOCO_TEST_DATA``. Without it, tests that need it are skipped with the reason, unless
``MONAI_MOCO_REQUIRE_DATA=1`` (set by CI), when they fail instead: CI must never pass by skipping real-data tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MONAI_MOCO_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"real test data not found at {path} (set MONAI_MOCO_TEST_DATA to the folder holding DATA.md)"
        if os.environ.get("MONAI_MOCO_REQUIRE_DATA", "0") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder with DATA.md, kermany_pneumonia_224/, pneumoniamnist_28/ and cxr_dicom/."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def kermany_dir(shared_data: Path) -> Path:
    """Kermany pediatric pneumonia set, 224 px, official train/val/test class folders plus labels.csv."""
    return _require(shared_data / "kermany_pneumonia_224")


@pytest.fixture(scope="session")
def pneumoniamnist_npz(shared_data: Path) -> Path:
    """PneumoniaMNIST 28 px ``.npz`` with the official keys."""
    return _require(shared_data / "pneumoniamnist_28" / "pneumoniamnist.npz")


@pytest.fixture(scope="session")
def dicom_mono1(shared_data: Path) -> Path:
    """CR chest PA, 1955x1841, 15-bit MONOCHROME1, uncompressed."""
    return _require(shared_data / "cxr_dicom" / "RG1_UNCR.dcm")


@pytest.fixture(scope="session")
def dicom_mono2_jpeg(shared_data: Path) -> Path:
    """CR chest PA, 1024x1024, 8-bit MONOCHROME2, JPEG baseline compressed."""
    folder = _require(shared_data / "cxr_dicom")
    return next(folder.glob("siim_*.dcm"))


@pytest.fixture(scope="session")
def lung_boxes_dir(shared_data: Path) -> Path:
    """Adult chest radiographs with Right/Left Lung boxes: ``boxes_coco.json``, ``boxes.csv`` and ``images/``."""
    return _require(shared_data / "cxr_lung_boxes" / "boxes_coco.json").parent


@pytest.fixture(scope="session")
def stent_volume(shared_data: Path) -> Path:
    """One real CT volume (stented abdominal aorta), ``arr_0`` int16 256 x 128 x 128 (z, y, x), values 0-2000."""
    return _require(shared_data / "volumes" / "stent.npz")
