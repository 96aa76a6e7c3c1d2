"""A failed ``python -m monai.bundle run`` ends with one ``ERROR:`` line that names the root cause (issue 19, case 9).

MONAI reports an error raised inside a config expression as ``RuntimeError: Failed to evaluate ConfigExpression``; the
``"$import monai_moco.utils.bundle_error_line"`` entry of each bundle's ``imports`` adds the real cause after it.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

ACTIVATION = "$import monai_moco.utils.bundle_error_line"


@pytest.mark.parametrize(
    "bundle,expected",
    [
        ("cxr_classifier", "ERROR: FileNotFoundError: '{missing}' has neither a labels.csv"),
        ("moco_resnet50", "ERROR: FileNotFoundError: image folder '{missing}' does not exist"),
    ],
    ids=["classifier", "pretraining"],
)
def test_a_missing_dataset_dir_is_the_last_line(bundles, tmp_path, bundle, expected):
    missing = tmp_path / "no_such_dataset"
    cmd = bundles.command([f"bundles/{bundle}/train.json", f"bundles/{bundle}/cpu.json"],
                          {"dataset_dir": missing, "output_dir": tmp_path / "out"})
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=bundles.root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(expected.format(missing=missing)), proc.stderr[-3000:]
    assert "Traceback (most recent call last):" in proc.stderr  # the traceback stays, above the line
    assert sum(line.startswith("ERROR:") for line in lines) == 1


def test_every_bundle_config_with_imports_activates_the_error_line(bundles):
    configs = sorted(p for p in bundles.dir.glob("*/*.json") if "imports" in json.loads(p.read_text()))
    assert configs, "no bundle config lists imports"
    for config in configs:
        imports = json.loads(config.read_text())["imports"]
        assert imports[0] == ACTIVATION, f"{config.relative_to(bundles.root)}: first import is {imports[0]!r}"
