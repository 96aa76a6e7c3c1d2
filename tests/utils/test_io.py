"""Tests for monai_moco.utils.io: atomic replacement, a failing writer leaves the old file and no temporary, parent
folders are created, the all-or-nothing group write and the JSON and CSV writers."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import pytest

from monai_moco.utils.io import FILE_MODE, atomic_write, atomic_write_all, csv_writer, json_writer, write_json_atomic


def _write_text(text: str):
    return lambda p: p.write_text(text)


def _fail(p: Path) -> None:
    p.write_text("half")
    raise OSError("disk full")


def _interrupt(p: Path) -> None:
    p.write_text("half")
    raise KeyboardInterrupt


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("old", [None, "old contents"])
@pytest.mark.parametrize("name", ["result.json", "backbone.pth.tar", "no_suffix"])
def test_success_replaces_the_target_and_leaves_no_temporary(tmp_path: Path, old: str | None, name: str):
    target = tmp_path / name
    if old is not None:
        target.write_text(old)
    seen: list[Path] = []

    def write(p: Path) -> None:
        seen.append(p)
        assert not target.exists() or target.read_text() == old  # the target is untouched while writing
        p.write_text("new contents")

    assert atomic_write(str(target), write) == target
    assert target.read_text() == "new contents"
    assert _names(tmp_path) == [name]
    assert stat.S_IMODE(target.stat().st_mode) == FILE_MODE
    tmp = seen[0]
    assert tmp.parent == tmp_path and tmp.name.startswith(f".{name}.") and tmp.name.endswith(f".tmp{target.suffix}")


@pytest.mark.parametrize("writer, error", [(_fail, OSError), (_interrupt, KeyboardInterrupt)])
@pytest.mark.parametrize("old", [None, "old contents"])
def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path, writer, error, old: str | None):
    target = tmp_path / "metrics.json"
    if old is not None:
        target.write_text(old)
    with pytest.raises(error):
        atomic_write(target, writer)
    if old is None:
        assert _names(tmp_path) == []
    else:
        assert _names(tmp_path) == ["metrics.json"] and target.read_text() == old


@pytest.mark.parametrize("relative", ["a/out.json", "a/b/c/out.json"])
def test_parent_folders_are_created(tmp_path: Path, relative: str):
    target = tmp_path / relative
    write_json_atomic({"auc": 0.5}, target)
    assert json.loads(target.read_text()) == {"auc": 0.5}
    assert _names(target.parent) == ["out.json"]


def test_relative_path_in_the_working_folder(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert atomic_write("plain.txt", _write_text("x")) == Path("plain.txt")
    assert (tmp_path / "plain.txt").read_text() == "x" and _names(tmp_path) == ["plain.txt"]


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_group_write_is_all_or_nothing(tmp_path: Path, failing: int):
    names = ["x_sr.dcm", "x_heatmap.png", "x.json"]
    (tmp_path / "x.json").write_text("old")
    plan = [(tmp_path / n, _fail if i == failing else _write_text(n)) for i, n in enumerate(names)]
    with pytest.raises(OSError, match="disk full"):
        atomic_write_all(plan)
    assert _names(tmp_path) == ["x.json"] and (tmp_path / "x.json").read_text() == "old"


def test_group_write_removes_renamed_targets_when_a_later_rename_fails(tmp_path: Path, monkeypatch):
    calls: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src, dst):
        calls.append((str(src), str(dst)))
        if len(calls) == 2:
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    plan = [(tmp_path / "first.png", _write_text("1")), (tmp_path / "second.json", _write_text("2"))]
    with pytest.raises(OSError, match="rename failed"):
        atomic_write_all(plan)
    assert len(calls) == 2 and _names(tmp_path) == []


def test_group_write_renames_in_order_and_returns_the_targets(tmp_path: Path, monkeypatch):
    order: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (order.append(Path(dst).name), real_replace(src, dst)))
    plan = [(tmp_path / n, _write_text(n)) for n in ("b.dcm", "a.png", "c.json")]
    assert atomic_write_all(plan) == [p for p, _ in plan]
    assert order == ["b.dcm", "a.png", "c.json"]
    assert all((tmp_path / n).read_text() == n for n in order) and _names(tmp_path) == ["a.png", "b.dcm", "c.json"]


@pytest.mark.parametrize("indent", [1, 2])
def test_write_json_atomic_text(tmp_path: Path, indent: int):
    obj = {"auc": {"value": 0.9, "ci": [0.8, 0.95]}, "n": 3}
    path = write_json_atomic(obj, tmp_path / "m.json", indent=indent)
    assert path.read_text() == json.dumps(obj, indent=indent) + "\n"


def test_write_json_atomic_unserialisable_keeps_the_old_file(tmp_path: Path):
    target = tmp_path / "m.json"
    target.write_text('{"old": true}\n')
    with pytest.raises(TypeError):
        write_json_atomic({"bad": object()}, target)
    assert _names(tmp_path) == ["m.json"] and json.loads(target.read_text()) == {"old": True}


def test_json_writer_in_a_group_matches_write_json_atomic(tmp_path: Path):
    obj = [{"auc": 0.9, "name": "ä"}]
    atomic_write_all([(tmp_path / "a.json", json_writer(obj, indent=1))])
    assert (tmp_path / "a.json").read_bytes() == write_json_atomic(obj, tmp_path / "b.json", indent=1).read_bytes()


ROWS = [{"file": "a,1.png", "auc": 0.5, "extra": 1}, {"file": 'say "x"', "auc": None}, {"auc": 1e-7, "file": "c\nd"}]


@pytest.mark.parametrize("as_mappings", [True, False])
def test_csv_writer_bytes_match_the_csv_module(tmp_path: Path, as_mappings: bool):
    header = ["file", "auc", "missing"]
    with open(tmp_path / "reference.csv", "w", newline="") as f:  # what the writers did before utils.io
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(ROWS)
    rows = ROWS if as_mappings else [[r.get(k, "") for k in header] for r in ROWS]
    atomic_write(tmp_path / "out.csv", csv_writer(header, iter(rows)))
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "reference.csv").read_bytes()
    assert b"\r\n" in (tmp_path / "out.csv").read_bytes() and _names(tmp_path) == ["out.csv", "reference.csv"]
