"""Tests for the COCO box datalist and its patient-grouped splits (monai_moco.data.boxes) on the real lung boxes."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from monai_moco.data import box_datalist_splits, box_split_datalists, coco_box_datalist


@pytest.fixture(scope="module")
def lung_items(lung_boxes_dir: Path) -> list[dict]:
    return coco_box_datalist(lung_boxes_dir / "boxes_coco.json")


def test_counts_and_types_on_lung_boxes(lung_items):
    assert len(lung_items) == 155
    assert sum(len(d["boxes"]) for d in lung_items) == 310
    assert len({d["patient_id"] for d in lung_items}) == 104
    for d in lung_items:
        assert Path(d["image"]).is_absolute() and Path(d["image"]).is_file()
        assert d["boxes"].dtype == np.float32 and d["boxes"].shape == (2, 4)
        assert d["labels"].dtype == np.int64 and sorted(d["labels"].tolist()) == [0, 1]
        assert d["label_names"] == ["Right Lung", "Left Lung"]
        assert (d["boxes"][:, 2] > d["boxes"][:, 0]).all() and (d["boxes"][:, 3] > d["boxes"][:, 1]).all()
        assert d["boxes"][:, 2].max() <= d["width"] + 1 and d["boxes"][:, 3].max() <= d["height"] + 1
        assert isinstance(d["patient_id"], str) and d["view"] in {"PA", "AP", "AP Supine"} and d["finding"]


def test_boxes_match_csv_corners(lung_boxes_dir: Path, lung_items):
    """The COCO [x, y, w, h] -> corner conversion agrees with the corner boxes in boxes.csv."""
    with open(lung_boxes_dir / "boxes.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 310
    by_path = {Path(d["image"]).name: d for d in lung_items}
    for row in rows:
        item = by_path[Path(row["path"]).name]
        k = item["label_names"].index(row["label"])
        row_box = [float(row[c]) for c in ("x_min", "y_min", "x_max", "y_max")]
        np.testing.assert_allclose(item["boxes"][item["labels"] == k][0], row_box, atol=0.11)
        assert item["patient_id"] == row["patient_id"] and item["width"] == int(row["width"])


def test_image_root_and_category_order(tmp_path: Path, lung_boxes_dir: Path):
    coco = json.loads((lung_boxes_dir / "boxes_coco.json").read_text())
    coco["categories"] = [{"id": 7, "name": "Left Lung"}, {"id": 3, "name": "Right Lung"}]
    for ann in coco["annotations"]:
        ann["category_id"] = {1: 3, 2: 7}[ann["category_id"]]
    coco["images"], coco["annotations"] = coco["images"][:2], coco["annotations"][:4]
    moved = tmp_path / "elsewhere.json"
    moved.write_text(json.dumps(coco))
    items = coco_box_datalist(moved, image_root=lung_boxes_dir)
    assert [d["label_names"] for d in items] == [["Right Lung", "Left Lung"]] * 2  # category-id order
    assert items[0]["labels"].tolist() == [0, 1]
    with pytest.raises(FileNotFoundError, match=r"elsewhere\.json.*not found.*image_root"):
        coco_box_datalist(moved)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["annotations"][0].update(bbox=[10, 10, -5, 20]), r"bad\.json.*annotation.*positive size"),
        (lambda c: c["annotations"][0].update(image_id=999), r"bad\.json.*annotation.*'image_id' listed"),
        (lambda c: c["annotations"][0].update(category_id=9), r"bad\.json.*'category_id' in \[1, 2\]"),
        (lambda c: c["images"][0].pop("patient_id"), r"bad\.json.*image entry.*\['patient_id'\]"),
        (lambda c: c.pop("categories"), r"bad\.json.*not a COCO detection file.*\['categories'\]"),
        (lambda c: c["images"].append(dict(c["images"][0])), r"bad\.json.*id 1 repeats"),
    ],
)
def test_errors_name_file_and_entry(tmp_path: Path, lung_boxes_dir: Path, edit, match):
    coco = json.loads((lung_boxes_dir / "boxes_coco.json").read_text())
    edit(coco)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=match):
        coco_box_datalist(bad, image_root=lung_boxes_dir)


def test_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        coco_box_datalist(tmp_path / "nope.json")


@pytest.mark.parametrize("seed", [0, 3])
def test_splits_grouped_nested_and_deterministic(lung_items, seed):
    split = box_datalist_splits(lung_items, fractions=(1.0, 0.25, 0.1), draws=3, seed=seed)
    patients = np.asarray([d["patient_id"] for d in lung_items])
    test, val, pool = (set(patients[split[k]]) for k in ("test", "val", "pool"))
    assert not (test & val) and not (test & pool) and not (val & pool)
    assert len(split["test"]) + len(split["val"]) + len(split["pool"]) == 155
    assert abs(len(split["test"]) - 31) <= 4 and abs(len(split["val"]) - 23) <= 4
    for draw in ("0", "1", "2"):
        full, quarter, tenth = (set(split["train"][f][draw].tolist()) for f in ("1", "0.25", "0.1"))
        assert full == set(split["pool"].tolist()) and tenth < quarter < full
        assert abs(len(quarter) - 0.25 * len(full)) <= 4 and abs(len(tenth) - 0.1 * len(full)) <= 3
        for f in ("0.25", "0.1"):  # whole patients only
            chosen = set(patients[split["train"][f][draw]])
            assert Counter(patients[split["pool"]][np.isin(patients[split["pool"]], list(chosen))]) == Counter(
                patients[split["train"][f][draw]]
            )
    assert set(split["train"]["0.1"]["0"].tolist()) != set(split["train"]["0.1"]["1"].tolist())
    again = box_datalist_splits(lung_items, fractions=(1.0, 0.25, 0.1), draws=3, seed=seed)
    np.testing.assert_array_equal(again["test"], split["test"])
    np.testing.assert_array_equal(again["train"]["0.1"]["2"], split["train"]["0.1"]["2"])


def test_split_errors(lung_items):
    with pytest.raises(KeyError, match=r"item 0 .*'patient_id'"):
        box_datalist_splits([{"image": "a.png"}] + lung_items[1:])
    with pytest.raises(ValueError, match="draws must be at least 1"):
        box_datalist_splits(lung_items, draws=0)
    with pytest.raises(ValueError, match="fraction"):
        box_datalist_splits(lung_items, fractions=(25,))


def test_split_datalists_of_one_run(lung_boxes_dir: Path):
    lists = box_split_datalists(lung_boxes_dir / "boxes_coco.json", label_fraction=0.25, draw=1, seed=0)
    split = box_datalist_splits(coco_box_datalist(lung_boxes_dir / "boxes_coco.json"), seed=0)
    assert len(lists["train"]) == len(split["train"]["0.25"]["1"]) and len(lists["test"]) == len(split["test"])
    assert lists["class_names"] == ["Right Lung", "Left Lung"] and lists["n_pool"] == len(split["pool"])
    assert not set(lists["patient_ids"]["train"]) & set(lists["patient_ids"]["test"])
    with pytest.raises(ValueError, match=r"label_fraction 0.5 is not one of the study's fractions \[1.0, 0.25, 0.1\]"):
        box_split_datalists(lung_boxes_dir / "boxes_coco.json", label_fraction=0.5)
    with pytest.raises(ValueError, match=r"draw must be in 0..2"):
        box_split_datalists(lung_boxes_dir / "boxes_coco.json", draw=3)
    with pytest.raises(TypeError, match=r"unknown split option\(s\) \['val_fration'\]"):
        box_split_datalists(lung_boxes_dir / "boxes_coco.json", val_fration=0.2)
