"""Tests for transfer_datalists and train_test_datalists on the real Kermany manifest and class folders."""

from __future__ import annotations

import shutil

import pytest

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
