"""Tests for scripts/run_detection_study.py: its defaults are the documented study, and it refuses unknown sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from testing_helpers import load_module_from_path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_detection_study.py"


@pytest.fixture(scope="module")
def script():
    return load_module_from_path(SCRIPT)


def test_defaults_are_the_study_of_the_docs(script):
    args = script.parse_args([])
    assert args.strategies == ["scratch", "moco", "simclr"] and args.draws == ["1:1", "0.25:2", "0.1:3"]
    assert (args.image_size, args.lr, args.min_steps) == (128, 0.001, 150)
    assert not args.validation_only and args.overlay.endswith("bundles/cxr_detector/cpu.json")


def test_unknown_strategy_is_refused(script, tmp_path):
    with pytest.raises(SystemExit, match=r"unknown strategies \['imagenet'\]"):
        script.main(["--strategies", "imagenet", "--output_dir", str(tmp_path)])
