"""Tests for scripts/make_splits.py and reading its output back with datalist_from_splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testing_helpers import load_module_from_path

from monai_moco.data import class_folder_datalist, csv_datalist, datalist_from_splits

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_splits.py"


@pytest.fixture(scope="module")
def make_splits():
    return load_module_from_path(SCRIPT)


def test_csv_splits_on_kermany(make_splits, kermany_dir: Path, tmp_path: Path, capsys):
    out = make_splits.main(
        ["--csv", str(kermany_dir / "labels.csv"), "--split", "train", "--group_column", "patient_id",
         "--fractions", "1.0", "0.1", "0.01", "0.001", "--draws", "3", "--seed", "0", "--val_fraction", "0.1",
         "--output_dir", str(tmp_path / "splits")]
    )  # fmt: skip
    assert out == tmp_path / "splits" / "splits.json"
    printed = capsys.readouterr().out
    assert "5216 images" in printed and "fraction 0.001" in printed and "wrote" in printed
    splits = json.loads(out.read_text())
    assert set(splits["train"]) == {"1", "0.1", "0.01", "0.001"}
    assert all(set(per_draw) == {"0", "1", "2"} for per_draw in splits["train"].values())
    assert splits["val"][0].startswith("train/") and not Path(splits["val"][0]).is_absolute()
    val = set(splits["val"])
    assert abs(len(val) - 522) <= 10
    assert len(splits["train"]["1"]["0"]) == 5216 - len(val)
    for draw in "012":
        nested = [set(splits["train"][f][draw]) for f in ("1", "0.1", "0.01", "0.001")]
        assert all(small <= big for big, small in zip(nested, nested[1:], strict=False))
        assert not nested[0] & val
    assert splits["train"]["0.01"]["0"] != splits["train"]["0.01"]["1"]

    # read back from a reordered datalist: the same files, no patient shared with validation
    datalist = csv_datalist(kermany_dir / "labels.csv", split="train", group_column="patient_id")[::-1]
    one_percent = datalist_from_splits(datalist, out, fraction=0.01, draw=2)
    assert len(one_percent) == len(splits["train"]["0.01"]["2"])
    assert {d["label"] for d in one_percent} == {0, 1}
    val_items = datalist_from_splits(datalist, out)
    assert not {d["group"] for d in one_percent} & {d["group"] for d in val_items}
    with pytest.raises(KeyError, match=r"no fraction 0.05 draw 0.*'0.01': \['0', '1', '2'\]"):
        datalist_from_splits(datalist, out, fraction=0.05)
    with pytest.raises(ValueError, match="not in the datalist"):
        datalist_from_splits(datalist[:100], out, fraction=1.0)


def test_folder_splits_and_reproducible(make_splits, kermany_dir: Path, tmp_path: Path):
    argv = ["--folder", str(kermany_dir / "test"), "--fractions", "0.5", "0.1", "--draws", "2", "--val_fraction", "0"]
    first = json.loads(make_splits.main(argv + ["--output_dir", str(tmp_path / "a")]).read_text())
    second = json.loads(make_splits.main(argv + ["--output_dir", str(tmp_path / "b")]).read_text())
    assert first == second and first["val"] == []
    assert len(first["train"]["0.5"]["0"]) == 312 and first["train"]["0.1"]["1"][0].split("/")[0] in (
        "NORMAL",
        "PNEUMONIA",
    )
    selected = datalist_from_splits(class_folder_datalist(kermany_dir / "test"), tmp_path / "a" / "splits.json", 0.1, 1)
    assert len(selected) == 62


def test_cli_rejects_group_column_with_folder(make_splits, kermany_dir: Path, tmp_path: Path):
    with pytest.raises(SystemExit):
        make_splits.main(["--folder", str(kermany_dir / "test"), "--group_column", "x", "--output_dir", str(tmp_path)])
