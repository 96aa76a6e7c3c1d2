"""Tests for monai_moco.benchmark.augment: every case makes two views, the timing reports what it ran."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from monai_moco.benchmark.augment import CASES, augment_throughput, lightly_available, load_images


def test_load_images_reads_training_radiographs_in_unit_range(kermany_dir: Path):
    images = load_images(kermany_dir, 3)
    assert images.shape[:2] == (3, 1) and images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0


def test_load_images_names_the_missing_manifest(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        load_images(tmp_path, 1)


@pytest.mark.parametrize("name", [c for c in CASES if lightly_available() or not c.startswith("lightly")])
def test_every_case_makes_two_views_per_image_and_is_timed(name: str):
    images = torch.rand(4, 1, 40, 40)
    run = CASES[name](32, 0)
    out = run(images)
    assert len(out) == (2 if name == "batched_two_view" else 4)
    result = augment_throughput(run, images, batch_size=2, min_seconds=0.0)
    assert result["images"] == 4 and result["images_per_s"] > 0
