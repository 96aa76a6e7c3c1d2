"""Tests for the datalist builders (monai_moco.data.datalists) on the real Kermany and PneumoniaMNIST data."""

from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from monai_moco.data import (
    class_folder_datalist,
    csv_datalist,
    find_images,
    medmnist_datalist,
    unlabeled_datalist,
)

KERMANY_COUNTS = {"train": (1341, 3875), "val": (8, 8), "test": (234, 390)}
MEDMNIST_COUNTS = {"train": (1214, 3494), "val": (135, 389), "test": (234, 390)}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_class_folder_on_kermany(kermany_dir: Path, split):
    items = class_folder_datalist(kermany_dir / split)
    counts = Counter((d["label"], d["label_name"]) for d in items)
    normal, pneumonia = KERMANY_COUNTS[split]
    assert counts == {(0, "NORMAL"): normal, (1, "PNEUMONIA"): pneumonia}
    assert all(Path(d["image"]).parent.name == d["label_name"] for d in items)
    assert items == class_folder_datalist(kermany_dir / split)  # deterministic
    assert [d["image"] for d in items if d["label"] == 0] == sorted(d["image"] for d in items if d["label"] == 0)


def test_class_folder_given_order(kermany_dir: Path):
    items = class_folder_datalist(kermany_dir / "val", classes=["PNEUMONIA", "NORMAL"])
    assert {(d["label"], d["label_name"]) for d in items} == {(0, "PNEUMONIA"), (1, "NORMAL")}
    with pytest.raises(FileNotFoundError, match=r"\['COVID'\].*sub-folders present: \['NORMAL', 'PNEUMONIA'\]"):
        class_folder_datalist(kermany_dir / "val", classes=["NORMAL", "COVID"])


@pytest.mark.parametrize("split", ["train", "test"])
def test_csv_on_kermany_labels(kermany_dir: Path, split):
    items = csv_datalist(kermany_dir / "labels.csv", split=split, group_column="patient_id")
    normal, pneumonia = KERMANY_COUNTS[split]
    assert Counter(d["label"] for d in items) == {0: normal, 1: pneumonia}
    assert all(isinstance(d["label"], int) and "label_mask" not in d for d in items)
    assert all(d["group"] for d in items)
    folder_items = class_folder_datalist(kermany_dir / split)
    assert sorted(d["image"] for d in items) == [d["image"] for d in folder_items]
    assert all(os.path.isfile(d["image"]) for d in items[:5])


CHEXPERT_CSV = """Path,Sex,Atelectasis,Edema,patient
a/p1/view1.jpg,F,1,-1,p1
a/p1/view2.jpg,F,-1,,p1
a/p2/view1.jpg,M,0,1.0,p2
/abs/p3.jpg,M,,0,p3
"""


@pytest.mark.parametrize(
    "uncertain, expected",
    [
        ("ones", [[1, 1], [1, 0], [0, 1], [0, 0]]),
        ("zeros", [[1, 0], [0, 0], [0, 1], [0, 0]]),
        ("ignore", [[1, math.nan], [math.nan, 0], [0, 1], [0, 0]]),
    ],
)
def test_csv_chexpert_uncertain_policies(tmp_path: Path, uncertain, expected):
    csv_path = tmp_path / "train.csv"
    csv_path.write_text(CHEXPERT_CSV)
    items = csv_datalist(
        csv_path, "Path", ["Atelectasis", "Edema"], root="/data/chexpert", uncertain=uncertain, group_column="patient"
    )
    labels = np.stack([d["label"] for d in items])
    assert labels.dtype == np.float32
    np.testing.assert_array_equal(labels, np.asarray(expected, dtype=np.float32))
    assert [d["image"] for d in items] == [
        str(Path("/data/chexpert/a/p1/view1.jpg")),
        str(Path("/data/chexpert/a/p1/view2.jpg")),
        str(Path("/data/chexpert/a/p2/view1.jpg")),
        "/abs/p3.jpg",
    ]
    assert [d["group"] for d in items] == ["p1", "p1", "p2", "p3"]
    if uncertain == "ignore":
        masks = np.stack([d["label_mask"] for d in items])
        np.testing.assert_array_equal(masks, ~np.isnan(np.asarray(expected)))
    else:
        assert all("label_mask" not in d for d in items)


@pytest.mark.parametrize("uncertain, label, mask", [("ones", 1, None), ("zeros", 0, None), ("ignore", math.nan, 0.0)])
def test_csv_single_column_uncertain(tmp_path: Path, uncertain, label, mask):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("Path,Edema\nx.png,-1\ny.png,1\n")
    items = csv_datalist(csv_path, "Path", "Edema", uncertain=uncertain)
    assert items[0]["image"] == str(tmp_path / "x.png")  # relative to the CSV's folder by default
    if mask is None:
        assert items[0]["label"] == label and isinstance(items[0]["label"], int) and "label_mask" not in items[0]
    else:
        assert math.isnan(items[0]["label"]) and items[0]["label_mask"] == mask and items[1]["label_mask"] == 1.0


def test_csv_errors(tmp_path: Path, kermany_dir: Path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        csv_datalist(missing)
    labels_csv = kermany_dir / "labels.csv"
    with pytest.raises(ValueError, match=r"column 'Finding'.*labels\.csv.*columns present: \['path', 'split'"):
        csv_datalist(labels_csv, label_columns="Finding")
    with pytest.raises(ValueError, match=r"column 'image'.*labels\.csv"):
        csv_datalist(labels_csv, image_column="image")
    with pytest.raises(ValueError, match=r"column 'patient'.*labels\.csv"):
        csv_datalist(labels_csv, group_column="patient")
    with pytest.raises(ValueError, match=r"no rows with split='training'.*values present: \['test', 'train', 'val'\]"):
        csv_datalist(labels_csv, split="training")
    with pytest.raises(ValueError, match="Unsupported option 'half'"):
        csv_datalist(labels_csv, uncertain="half")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\na.png,1\nb.png,maybe\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 3, column 'label': label cell 'maybe'"):
        csv_datalist(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv.*empty"):
        csv_datalist(empty)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_medmnist_counts(pneumoniamnist_npz: Path, split):
    items = medmnist_datalist(pneumoniamnist_npz, split)
    normal, pneumonia = MEDMNIST_COUNTS[split]
    assert Counter(d["label"] for d in items) == {0: normal, 1: pneumonia}
    assert items[0]["image"].shape == (28, 28) and items[0]["image"].dtype == np.uint8
    assert isinstance(items[0]["label"], int)


def test_medmnist_multilabel_and_errors(tmp_path: Path, pneumoniamnist_npz: Path):
    npz = tmp_path / "chest.npz"
    np.savez(npz, train_images=np.zeros((3, 8, 8), np.uint8), train_labels=np.eye(3, 4, dtype=np.uint8))
    items = medmnist_datalist(npz)
    assert items[1]["label"].dtype == np.float32
    np.testing.assert_array_equal(items[1]["label"], [0, 1, 0, 0])
    with pytest.raises(KeyError, match=r"chest\.npz.*'val_images'.*keys present: \['train_images', 'train_labels'\]"):
        medmnist_datalist(npz, "val")
    with pytest.raises(KeyError, match=r"pneumoniamnist\.npz.*'valid_images'.*'test_images'"):
        medmnist_datalist(pneumoniamnist_npz, "valid")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        medmnist_datalist(tmp_path / "missing.npz")
    short = tmp_path / "short.npz"
    np.savez(short, train_images=np.zeros((3, 8, 8), np.uint8), train_labels=np.zeros((2, 1), np.uint8))
    with pytest.raises(ValueError, match=r"short\.npz.*3 entries.*2"):
        medmnist_datalist(short)


def test_unlabeled_on_kermany(kermany_dir: Path):
    everything = unlabeled_datalist(kermany_dir)
    assert len(everything) == 5856 and set(everything[0]) == {"image"}
    subset = unlabeled_datalist(kermany_dir, max_images=100, seed=3)
    assert len(subset) == 100
    assert [d["image"] for d in subset] == sorted(d["image"] for d in subset)
    assert {d["image"] for d in subset} <= {d["image"] for d in everything}
    assert subset == unlabeled_datalist(kermany_dir, max_images=100, seed=3)
    assert subset != unlabeled_datalist(kermany_dir, max_images=100, seed=4)
    assert len(unlabeled_datalist(kermany_dir / "val", max_images=10_000)) == 16
    with pytest.raises(ValueError, match=r"no images found in .*val.*non-recursively for any extension"):
        unlabeled_datalist(kermany_dir / "val", recursive=False, extensions=None)


def test_finding_images_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        unlabeled_datalist(tmp_path / "does_not_exist")
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        class_folder_datalist(tmp_path / "does_not_exist")
    (tmp_path / "NORMAL").mkdir()
    (tmp_path / "NORMAL" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"no images found in .*NORMAL.*'\.png', '\.jpg'"):
        class_folder_datalist(tmp_path)
    with pytest.raises(ValueError, match=r"no images found in .*non-recursively.*\('\.dcm',\)"):
        unlabeled_datalist(tmp_path, recursive=False, extensions=(".dcm",))
    with pytest.raises(ValueError, match="max_images must be 0"):
        unlabeled_datalist(tmp_path, max_images=-1)
    (tmp_path / "NORMAL" / "IM1.DCM").write_bytes(b"")
    (tmp_path / "NORMAL" / "deep").mkdir()
    (tmp_path / "NORMAL" / "deep" / "x.nii.gz").write_bytes(b"")
    (tmp_path / "NORMAL" / ".hidden.png").write_bytes(b"")
    names = [Path(p).name for p in find_images(tmp_path)]
    assert names == ["IM1.DCM", "x.nii.gz"]
    assert [Path(p).name for p in find_images(tmp_path, extensions=None)] == ["IM1.DCM", "x.nii.gz", "notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="has no class sub-folders"):
        class_folder_datalist(empty)


@pytest.fixture
def mixed_folder(tmp_path: Path, kermany_dir: Path, dicom_mono1: Path) -> tuple[Path, set[str]]:
    """Real JPEGs beside a text file, an empty file and a truncated DICOM, in two class folders."""
    real = sorted((kermany_dir / "val" / "NORMAL").glob("*.jpeg"))[:2]
    for cls in ("NORMAL", "PNEUMONIA"):
        (tmp_path / cls).mkdir()
        for src in real:
            (tmp_path / cls / src.name).write_bytes(src.read_bytes())
    (tmp_path / "NORMAL" / "notes.png").write_text("this is not an image")
    (tmp_path / "NORMAL" / "empty.jpg").write_bytes(b"")
    (tmp_path / "PNEUMONIA" / "cut.dcm").write_bytes(dicom_mono1.read_bytes()[:100_000])
    bad = {
        str(tmp_path / "NORMAL" / "notes.png"),
        str(tmp_path / "NORMAL" / "empty.jpg"),
        str(tmp_path / "PNEUMONIA" / "cut.dcm"),
    }
    return tmp_path, bad


def test_skip_bad_folder_datalists(mixed_folder, caplog):
    root, bad = mixed_folder
    assert len(class_folder_datalist(root)) == 7  # without skip_bad nothing is opened
    report: list = []
    with caplog.at_level("WARNING", logger="monai_moco.data.datalists"):
        items = class_folder_datalist(root, skip_bad=True, report=report)
    assert len(items) == 4 and not {d["image"] for d in items} & bad
    assert {p for p, _ in report} == bad
    assert all(Path(p).name in reason for p, reason in report)  # the loader's reason names the file
    assert "skipped 3 unreadable image file(s) of 7" in caplog.text and "cut.dcm" in caplog.text
    assert len(unlabeled_datalist(root, skip_bad=True)) == 4
    # a seeded subset keeps drawing until it has enough good files
    subset_report: list = []
    subset = unlabeled_datalist(root, max_images=4, seed=0, skip_bad=True, report=subset_report)
    assert len(subset) == 4 and not {d["image"] for d in subset} & bad
    assert {p for p, _ in subset_report} <= bad


def test_skip_bad_csv_datalist(mixed_folder):
    root, bad = mixed_folder
    rows = ["path,label"] + [f"{Path(p).relative_to(root).as_posix()},0" for p in find_images(root)]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    report: list = []
    items = csv_datalist(root / "manifest.csv", skip_bad=True, report=report)
    assert len(items) == 4 and {p for p, _ in report} == bad
    assert len(csv_datalist(root / "manifest.csv")) == 7


@pytest.mark.parametrize("recursive", [True, False])
def test_find_images_follows_symlinks_once_and_skips_hidden_folders(kermany_dir: Path, tmp_path: Path, recursive):
    real = sorted((kermany_dir / "val" / "NORMAL").glob("*.jpeg"))[:3]
    store = tmp_path / "store"
    store.mkdir()
    for src in real[:2]:
        shutil.copy(src, store / src.name)
    root = tmp_path / "root"
    (root / ".cache").mkdir(parents=True)
    shutil.copy(real[2], root / ".cache" / real[2].name)  # a hidden folder: left out
    (root / "linked").symlink_to(store, target_is_directory=True)
    (root / "one.jpeg").symlink_to(store / real[0].name)  # a linked file, listed under its link's path
    (root / "linked_again").symlink_to(root, target_is_directory=True)  # a loop back to the root: visited once
    (root / "broken.jpeg").symlink_to(tmp_path / "missing.jpeg")
    found = find_images(root, recursive=recursive)
    names = sorted(os.path.relpath(p, root) for p in found)
    assert names == (["linked/" + p.name for p in real[:2]] + ["one.jpeg"] if recursive else ["one.jpeg"])
    if recursive:
        assert [d["image"] for d in class_folder_datalist(tmp_path, classes=["root"])] == found


def test_class_folder_datalist_refuses_split_folders(kermany_dir: Path):
    with pytest.raises(ValueError, match=r"split folders \['test', 'train', 'val'\].*one sub-folder per class.*train'"):
        class_folder_datalist(kermany_dir)
