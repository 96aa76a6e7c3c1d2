"""Tests for transfer_datalists and train_test_datalists on the real Kermany manifest and class folders."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image

from monai_moco.data import train_test_datalists, transfer_datalists


@pytest.fixture(scope="module")
def lists(kermany_dir):
    return {(f, d): transfer_datalists(kermany_dir, f, d) for f in (1.0, 0.1, 0.01) for d in (0, 1)}


def test_kermany_split_sizes_and_patients(lists):
    full = lists[(1.0, 0)]
    assert len(full["test"]) == 624 and "split column" in full["source"]
    assert len(full["train"]) + len(full["val"]) == 5216  # the official 16-image val split is not used
    assert 0.09 < len(full["val"]) / 5216 < 0.11
    train_p = {d["group"] for d in full["train"]}
    val_p = {d["group"] for d in full["val"]}
    assert not train_p & val_p, "a patient is on both sides of the train/val split"
    assert {d["label"] for d in full["val"]} == {0, 1}


def test_fractions_nested_val_fixed_draws_differ(lists):
    for d in (0, 1):
        sets = [{x["image"] for x in lists[(f, d)]["train"]} for f in (0.01, 0.1, 1.0)]
        assert sets[0] < sets[1] < sets[2]
        assert {x["image"] for x in lists[(0.01, d)]["val"]} == {x["image"] for x in lists[(1.0, 0)]["val"]}
        assert {x["label"] for x in lists[(0.01, d)]["train"]} == {0, 1}
    assert 40 <= len(lists[(0.01, 0)]["train"]) <= 55
    a, b = ({x["image"] for x in lists[(0.1, d)]["train"]} for d in (0, 1))
    assert a != b


def test_max_images_and_class_folders(kermany_dir, tmp_path):
    small = transfer_datalists(kermany_dir, 1.0, max_images=40)
    assert len(small["test"]) == 40 and len(small["train"]) + len(small["val"]) == 40
    # class-folder layout without labels.csv: labels from sorted folder names, no patient ids
    root = tmp_path / "folders"
    for split in ("train", "test"):
        for cls, n in (("NORMAL", 12), ("PNEUMONIA", 12)):
            (root / split / cls).mkdir(parents=True)
            for src in sorted((kermany_dir / split / cls).glob("*.jpeg"))[:n]:
                shutil.copy(src, root / split / cls / src.name)
    lists = transfer_datalists(root, 0.5)
    assert len(lists["test"]) == 24 and "group" not in lists["test"][0]
    assert {x["label"] for x in lists["train"]} == {0, 1}


@pytest.mark.parametrize("fn", [transfer_datalists, train_test_datalists])
def test_missing_layout_raises(tmp_path, fn):
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        fn(tmp_path)


def test_train_test_datalists_from_the_manifest(kermany_dir):
    train, test, source = train_test_datalists(str(kermany_dir))
    assert (len(train), len(test)) == (5216, 624) and "split column" in source
    assert all("group" in d for d in train + test) and {d["label"] for d in test} == {0, 1}
    no_groups, _, _ = train_test_datalists(kermany_dir, group_column=None)
    assert [d["image"] for d in no_groups] == [d["image"] for d in train] and "group" not in no_groups[0]


def _class_folders(kermany_dir, root, test_classes):
    for split, classes in (("train", ("NORMAL", "PNEUMONIA")), ("test", test_classes)):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for src in sorted((kermany_dir / split / cls).glob("*.jpeg"))[:3]:
                shutil.copy(src, root / split / cls / src.name)
    return root


def test_train_test_datalists_class_folders(kermany_dir, tmp_path):
    root = _class_folders(kermany_dir, tmp_path / "folders", ("NORMAL", "PNEUMONIA"))
    train, test, source = train_test_datalists(root)
    assert len(train) == len(test) == 6 and "class folders" in source and "group" not in test[0]
    for items in (train, test):  # labels are the indices of the sorted train class names
        assert {(d["label_name"], d["label"]) for d in items} == {("NORMAL", 0), ("PNEUMONIA", 1)}


def test_train_test_datalists_test_folder_lacking_a_train_class_raises(kermany_dir, tmp_path):
    # the test images must not be relabelled by their own (shorter) class list: PNEUMONIA would become 0
    with pytest.raises(FileNotFoundError, match="NORMAL"):
        train_test_datalists(_class_folders(kermany_dir, tmp_path / "folders", ("PNEUMONIA",)))


# --- a user's own folder: train/ valid/ test/ with any class names, symlinks, patient ids or none ---------------------

KERMANY_CLASSES = ("NORMAL", "PNEUMONIA")


def _user_folder(
    kermany_dir: Path,
    root: Path,
    splits: dict[str, str],
    classes: tuple[str, str] = KERMANY_CLASSES,
    n: int = 6,
    png: bool = False,
) -> Path:
    """``root/<split>/<class>/`` holding the first ``n`` real Kermany images of each source split/class.

    ``splits`` maps the folder name to create (``"valid"``) to the Kermany split to copy from (``"val"``); ``classes``
    renames NORMAL/PNEUMONIA; ``png`` re-saves the JPEGs as PNG.
    """
    for folder, source in splits.items():
        for name, source_class in zip(classes, KERMANY_CLASSES, strict=True):
            (root / folder / name).mkdir(parents=True)
            for src in sorted((kermany_dir / source / source_class).glob("*.jpeg"))[:n]:
                if png:
                    Image.open(src).save(root / folder / name / f"{src.stem}.png")
                else:
                    shutil.copy(src, root / folder / name / src.name)
    return root


@pytest.mark.parametrize(
    "val_name, classes, png",
    [
        ("valid", KERMANY_CLASSES, False),
        ("val", KERMANY_CLASSES, False),
        ("valid", ("0_normal", "1_abnormal"), True),
        ("Validation", ("NORMAL", "PNEUMONIA"), True),
    ],
)
def test_a_validation_folder_is_the_validation_split(kermany_dir, tmp_path, caplog, val_name, classes, png):
    root = _user_folder(kermany_dir, tmp_path / "mine", {"train": "train", val_name: "val", "test": "test"}, classes,
                        png=png)
    with caplog.at_level(logging.INFO, logger="monai_moco.data.transfer"):
        lists = transfer_datalists(root, 1.0, val_fraction=0.5)
    val_folder = {str(p) for p in (root / val_name).rglob("*.*")}
    assert {d["image"] for d in lists["val"]} == val_folder and len(val_folder) == 12
    assert len(lists["train"]) == 12 and len(lists["test"]) == 12  # nothing carved out of train
    assert lists["class_names"] == list(classes)
    assert {(d["label"], d["label_name"]) for d in lists["train"] + lists["val"] + lists["test"]} == set(
        enumerate(classes)
    )
    assert lists["val_source"] == f"folder {val_name!r}" and lists["patient_ids"] == "none"
    assert f"train/ {val_name}/ test/ class folders" in lists["source"]
    # the log says what was found: layout, images per split and class
    found = next(r.getMessage() for r in caplog.records if "found" in r.getMessage())
    assert f"{val_name}/ test/ class folders" in found
    assert f"train 12 ({classes[0]} 6, {classes[1]} 6)" in found and f"val 12 ({classes[0]} 6, {classes[1]} 6)" in found


def test_max_images_caps_the_validation_folder_too(kermany_dir, tmp_path):
    root = _user_folder(kermany_dir, tmp_path / "mine", {"train": "train", "val": "val", "test": "test"}, n=8)
    lists = transfer_datalists(root, 1.0, max_images=6)
    assert len(lists["train"]) == len(lists["val"]) == len(lists["test"]) == 6
    assert {d["label"] for d in lists["val"]} == {0, 1}


def test_without_a_validation_folder_val_is_carved_and_no_patient_ids_is_said_once(kermany_dir, tmp_path, caplog):
    root = _user_folder(kermany_dir, tmp_path / "mine", {"train": "train", "test": "test"}, ("0_normal", "1_abnormal"))
    with caplog.at_level(logging.INFO, logger="monai_moco.data.transfer"):
        lists = transfer_datalists(root, 1.0, val_fraction=0.25)
        again = transfer_datalists(root, 0.5, draw=1, val_fraction=0.25)
    assert len(lists["train"]) + len(lists["val"]) == 12 and len(lists["val"]) == 3
    assert {d["image"] for d in again["val"]} == {d["image"] for d in lists["val"]}
    assert lists["patient_ids"] == "none" and "group" not in lists["train"][0]
    assert lists["val_source"] == "carved from train: 0.25 of the images, per image"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no patient ids" in warnings[0] and "group_pattern" in warnings[0]


@pytest.mark.parametrize("linked", ["split folders", "class folders", "files", "nested folder"])
def test_symlinks_are_followed(kermany_dir, tmp_path, linked):
    store = _user_folder(kermany_dir, tmp_path / "store", {"train": "train", "valid": "val", "test": "test"}, n=4)
    root = tmp_path / "mine"
    root.mkdir()
    for split in ("train", "valid", "test"):
        if linked == "split folders":
            (root / split).symlink_to(store / split, target_is_directory=True)
            continue
        for cls in KERMANY_CLASSES:
            if linked == "class folders":
                (root / split).mkdir(exist_ok=True)
                (root / split / cls).symlink_to(store / split / cls, target_is_directory=True)
            elif linked == "files":
                (root / split / cls).mkdir(parents=True)
                for src in (store / split / cls).iterdir():
                    (root / split / cls / src.name).symlink_to(src)
            else:  # a class folder whose images sit in a linked sub-folder, with a link back up that must not loop
                (root / split / cls).mkdir(parents=True)
                (root / split / cls / "batch1").symlink_to(store / split / cls, target_is_directory=True)
                (root / split / cls / "loop").symlink_to(root / split / cls, target_is_directory=True)
    lists = transfer_datalists(root, 1.0)
    assert [len(lists[s]) for s in ("train", "val", "test")] == [8, 8, 8]
    assert lists["val_source"] == "folder 'valid'" and lists["class_names"] == list(KERMANY_CLASSES)
    assert all(d["image"].startswith(str(root)) for d in lists["train"])  # listed under the link's path
    assert {d["label"] for d in lists["val"]} == {0, 1}


@pytest.mark.parametrize(
    "pattern, unmatched_warning",
    [(r"(person\d+)_", True), (r"(person\d+|IM-\d+)", False), (r"person\d+", True)],
)
def test_a_filename_pattern_gives_patient_groups(kermany_dir, tmp_path, caplog, pattern, unmatched_warning):
    # the first 20 pneumonia file names hold several patients with two images (person1000_bacteria_*, _virus_*)
    root = _user_folder(kermany_dir, tmp_path / "mine", {"train": "train", "test": "test"}, n=20)
    with caplog.at_level(logging.WARNING, logger="monai_moco.data.transfer"):
        lists = transfer_datalists(root, 1.0, val_fraction=0.3, group_pattern=pattern)
    assert lists["patient_ids"] == "filename pattern" and "per image" not in lists["val_source"]
    pneumonia = [d for d in lists["train"] + lists["val"] if d["label"] == 1]
    assert {d["group"] for d in pneumonia} >= {"person1000", "person1003"}
    assert not {d["group"] for d in lists["train"]} & {d["group"] for d in lists["val"]}
    assert ("matched 40 of 80" in caplog.text) == unmatched_warning  # NORMAL's IM-* names are their own groups
    assert "no patient ids" not in caplog.text


@pytest.mark.parametrize(
    "pattern, match", [(r"(patient\d+)", "matched none of the 24 image paths"), (r"(person", "not a valid regular")]
)
def test_a_bad_filename_pattern_is_refused(kermany_dir, tmp_path, pattern, match):
    root = _user_folder(kermany_dir, tmp_path / "mine", {"train": "train", "test": "test"})
    with pytest.raises(ValueError, match=match):
        transfer_datalists(root, group_pattern=pattern)


def test_manifest_class_names_patient_ids_and_unused_val_rows(kermany_dir, lists, tmp_path):
    full = lists[(1.0, 0)]
    assert full["class_names"] == ["normal", "pneumonia"] and full["patient_ids"] == "patient_id column"
    assert "rows not used: {'val': 16}" in full["source"]  # the official 16-image val split, deliberately
    assert full["val_source"] == "carved from train: 0.1 of the images, by patient (patient_id column)"
    # a manifest without label_name or patient_id: class names are the labels, and no groups
    root = _user_folder(kermany_dir, tmp_path / "csv", {"train": "train", "test": "test"}, n=4)
    rows = [f"{p.relative_to(root).as_posix()},{p.parts[-3]},{int(p.parent.name == 'PNEUMONIA')}"
            for p in sorted(root.rglob("*.jpeg"))]
    (root / "labels.csv").write_text("path,split,label\n" + "\n".join(rows) + "\n")
    plain = transfer_datalists(root, 1.0, val_fraction=0.25)
    assert plain["class_names"] == ["0", "1"] and plain["patient_ids"] == "none"
    assert "split column" in plain["source"] and "rows not used" not in plain["source"]
    (root / "labels.csv").write_text(
        "path,split,label,label_name\n" + "\n".join(f"{r},{'normal' if i < 3 else 'other'}" for i, r in enumerate(rows))
    )
    with pytest.raises(ValueError, match=r"labels.csv, line 5: label 0 is named 'other' here but 'normal' above"):
        transfer_datalists(root)


@pytest.mark.parametrize(
    "layout, error, match",
    [
        ({"train": "train", "val": "val", "valid": "val", "test": "test"}, ValueError, r"several folders \['val', 'valid'\]"),
        ({"train": "train", "test": "test", "extra": None}, ValueError, r"'COVID'\] that .*train.* lacks"),
        ({"train": "train", "valid": "val"}, FileNotFoundError, r"split folders \[.*test'\]"),
    ],
)
def test_folder_layout_errors_name_the_folders(kermany_dir, tmp_path, layout, error, match):
    root = _user_folder(kermany_dir, tmp_path / "mine", {k: v for k, v in layout.items() if v}, n=2)
    if "extra" in layout:  # a test class the train folder lacks: its images would silently be dropped
        shutil.copytree(root / "test" / "NORMAL", root / "test" / "COVID")
    with pytest.raises(error, match=match):
        transfer_datalists(root)
