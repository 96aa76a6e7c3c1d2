"""Tests of the kNN-monitor datalists and the fixed heat-map batch on the real Kermany class folders."""

from __future__ import annotations

import shutil

import pytest
import torch

from monai_moco.data import fixed_image_batch, probe_datalists


@pytest.mark.parametrize("num_images", [16, 64])
def test_probe_datalists_stratified_disjoint_seeded(kermany_dir, num_images):
    ref, val = probe_datalists(kermany_dir / "train", num_images=num_images, seed=0)
    assert len(ref) + len(val) == num_images
    assert {d["image"] for d in ref}.isdisjoint(d["image"] for d in val)
    for part in (ref, val):
        assert {d["label"] for d in part} == {0, 1}  # both classes on both sides
        assert all(d["label_name"] in ("NORMAL", "PNEUMONIA") for d in part)
    again = probe_datalists(kermany_dir / "train", num_images=num_images, seed=0)
    assert again == (ref, val)
    other = probe_datalists(kermany_dir / "train", num_images=num_images, seed=1)
    assert other != (ref, val)


def test_probe_datalists_rejects_negative(kermany_dir):
    with pytest.raises(ValueError, match="num_images"):
        probe_datalists(kermany_dir / "train", num_images=-1)


def test_fixed_image_batch_stacks_plain_tensors():
    from monai.data import MetaTensor

    data = [{"image": MetaTensor(torch.full((1, 8, 8), float(i)))} for i in range(5)]
    batch = fixed_image_batch(data, 3)
    assert type(batch) is torch.Tensor and batch.shape == (3, 1, 8, 8)
    assert batch[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]
    assert fixed_image_batch(data, 10).shape[0] == 5
    with pytest.raises(ValueError, match="num_images"):
        fixed_image_batch([], 2)


@pytest.mark.parametrize(
    "subfolders", [("train", "test"), ("train", "val", "test"), ("Train", "valid"), ("test", "validation")]
)
def test_probe_datalists_refuses_split_folders(kermany_dir, tmp_path, subfolders):
    # a dataset root given where one split (a folder of class folders) is expected: the split names are not classes
    root = tmp_path / "dataset"
    for split in subfolders:
        for cls in ("NORMAL", "PNEUMONIA"):
            (root / split / cls).mkdir(parents=True)
            for src in sorted((kermany_dir / "val" / cls).glob("*.jpeg"))[:2]:
                shutil.copy(src, root / split / cls / src.name)
    expected = next((s for s in subfolders if s.lower() == "train"), subfolders[0])
    with pytest.raises(ValueError, match="kNN monitor") as err:
        probe_datalists(root, num_images=0)
    for text in (str(root), f"sub-folders found: {sorted(subfolders)}", "one sub-folder per class", str(root / expected)):
        assert text in str(err.value)
    ref, val = probe_datalists(root / expected, num_images=0)  # the split itself is accepted
    assert len(ref) + len(val) == 4


def test_probe_datalists_follows_symlinked_class_folders(kermany_dir, tmp_path):
    root = tmp_path / "linked"
    root.mkdir()
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).symlink_to(kermany_dir / "val" / cls, target_is_directory=True)
    ref, val = probe_datalists(root, num_images=0)
    assert len(ref) + len(val) == 16 and {d["label_name"] for d in ref} == {"NORMAL", "PNEUMONIA"}


KERMANY_PATIENT = r"((?:NORMAL2-)?IM-\d+|person\d+)"


@pytest.mark.parametrize("num_images", [256, 1024])
def test_probe_datalists_group_pattern_keeps_patients_on_one_side(kermany_dir, num_images):
    import re

    ref, val = probe_datalists(kermany_dir / "train", num_images=num_images, group_pattern=KERMANY_PATIENT)
    patient = {d["image"]: re.search(KERMANY_PATIENT, d["image"]).group(1) for d in ref + val}
    assert {patient[d["image"]] for d in ref}.isdisjoint(patient[d["image"]] for d in val)
    assert abs(len(ref) + len(val) - num_images) <= 0.1 * num_images  # whole patients: close to, not exactly, N
    for part in (ref, val):
        assert {d["label"] for d in part} == {0, 1}
    # per image, the same folder puts patients on both sides: what the pattern is for
    ref_i, val_i = probe_datalists(kermany_dir / "train", num_images=1024)
    shared = {re.search(KERMANY_PATIENT, d["image"]).group(1) for d in ref_i} & {
        re.search(KERMANY_PATIENT, d["image"]).group(1) for d in val_i
    }
    assert shared


def test_probe_datalists_group_pattern_that_matches_nothing(kermany_dir):
    with pytest.raises(ValueError, match="matched none of the"):
        probe_datalists(kermany_dir / "train", num_images=64, group_pattern=r"(patient_\d+)")
