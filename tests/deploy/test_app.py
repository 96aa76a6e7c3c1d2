"""The MONAI Deploy application end to end (Holoscan operators on CPU): ``python -m monai_moco.deploy``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

pytest.importorskip("monai.deploy.core", reason="needs monai-deploy-app-sdk (pip install -e '.[deploy]')")
pytest.importorskip("highdicom", reason="needs highdicom (pip install -e '.[deploy]')")
from deploy_helpers import (  # noqa: E402
    CLASS_NAMES,
    copy_into,
    copy_with,
    save_scripted,
    structured_report,
    tiny_classifier,
    truncated,
)

from monai_moco.deploy.__main__ import EXIT_ERROR, EXIT_NOTHING_PROCESSED, EXIT_OK, main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {kind: save_scripted(tiny_classifier(kind), folder / f"{kind}.ts") for kind in ("resnet", "topk")}


def _uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@pytest.mark.parametrize("kind,method", [("resnet", "gradcam"), ("topk", "topk_patch_scores")])
def test_app_on_real_dicoms(tmp_path, model_files, dicom_mono1, dicom_mono2_jpeg, capsys, kind, method):
    folder = copy_into(tmp_path / "in", dicom_mono1, dicom_mono2_jpeg)
    (folder / "readme.txt").write_text("not a dicom")
    out = tmp_path / "out"
    assert main(["-i", str(folder), "-o", str(out), "-m", str(model_files[kind])]) == EXIT_OK
    report = json.loads((out / "report.json").read_text())
    assert report["num_processed"] == 2 and report["num_skipped"] == 1
    assert report["skipped"][0]["path"].endswith("readme.txt") and "not a DICOM" in report["skipped"][0]["reason"]
    assert '"num_processed": 2' in capsys.readouterr().err
    for src in (dicom_mono1, dicom_mono2_jpeg):
        uid = _uid(src)
        result = json.loads((out / f"{uid}.json").read_text())
        assert list(result["probabilities"]) == CLASS_NAMES
        assert abs(sum(result["probabilities"].values()) - 1) < 1e-6 and result["activation"] == "softmax"
        assert result["model"]["name"] == "tiny_cxr" and result["model"]["version"] == "0.0.1"
        assert result["heatmap"]["method"] == method and (out / f"{uid}_heatmap.png").is_file()
        assert pydicom.dcmread(out / f"{uid}_sr.dcm").Modality == "SR"
        assert "patient" not in result
    assert len(list(out.iterdir())) == 2 * 3 + 1


def _bad_folder(tmp_path: Path, case: str, mono2: Path) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    if case == "no_chest_radiograph":
        copy_with(mono2, folder / "ct.dcm", Modality="CT")
        copy_with(mono2, folder / "lateral.dcm", ViewPosition="LL", SOPInstanceUID="1.2.3.4")
    elif case == "non_image_dicom":
        structured_report(mono2, folder / "sr.dcm")
    elif case == "corrupt_file":
        truncated(mono2, folder / "cut.dcm")
        (folder / "garbage.dcm").write_bytes(b"\x00" * 200 + b"DICM" + os.urandom(300))
    return folder


@pytest.mark.parametrize("case", ["no_chest_radiograph", "non_image_dicom", "corrupt_file", "empty"])
def test_bad_input_writes_only_the_report_and_exits_2(tmp_path, model_files, dicom_mono2_jpeg, capsys, case):
    folder = _bad_folder(tmp_path, case, dicom_mono2_jpeg)
    out = tmp_path / "out"
    assert main(["-i", str(folder), "-o", str(out), "-m", str(model_files["resnet"])]) == EXIT_NOTHING_PROCESSED
    err = capsys.readouterr().err
    assert "no chest radiograph could be processed" in err
    assert [p.name for p in out.iterdir()] == ["report.json"]
    report = json.loads((out / "report.json").read_text())
    expected = {"no_chest_radiograph": ["Modality 'CT' is not a radiograph", "View Position 'LL' is not frontal"],
                "non_image_dicom": ["non-image DICOM (SOP Class Comprehensive SR"],
                "corrupt_file": ["truncated", "not a DICOM file"], "empty": []}[case]
    assert report["num_processed"] == 0 and report["num_skipped"] == len(expected)
    reasons = " ".join(s["reason"] for s in report["skipped"])
    for reason in expected:
        assert reason in err and reason in reasons


def test_mixed_folder_processes_the_good_and_reports_the_rest(tmp_path, model_files, dicom_mono1, dicom_mono2_jpeg):
    folder = copy_into(tmp_path / "in", dicom_mono1)
    copy_with(dicom_mono2_jpeg, folder / "evil.dcm", SOPInstanceUID="../../x")
    structured_report(dicom_mono2_jpeg, folder / "sr.dcm")
    out = tmp_path / "work" / "out"
    assert main(["-i", str(folder), "-o", str(out), "-m", str(model_files["resnet"]), "--no-sr"]) == EXIT_OK
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{_uid(dicom_mono1)}.json", f"{_uid(dicom_mono1)}_heatmap.png", "_.._x.json",
                            "_.._x_heatmap.png", "report.json"])
    assert not (tmp_path / "x.json").exists() and not list((tmp_path / "work").glob("*.json"))
    report = json.loads((out / "report.json").read_text())
    assert [s["path"].rsplit("/", 1)[-1] for s in report["skipped"]] == ["sr.dcm"]


def test_cli_subprocess_exit_codes(tmp_path, model_files, dicom_mono2_jpeg):
    """The documented command, in a fresh process: 0 on success, 2 when nothing could be processed."""
    good = copy_into(tmp_path / "good", dicom_mono2_jpeg)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.txt").write_text("x")
    model = str(model_files["resnet"])

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "monai_moco.deploy", *args], capture_output=True, text=True,
                              cwd=REPO, timeout=600)

    ok = run("-i", str(good), "-o", str(tmp_path / "o1"), "-m", model)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert (tmp_path / "o1" / f"{_uid(dicom_mono2_jpeg)}.json").is_file()
    nothing = run("-i", str(bad), "-o", str(tmp_path / "o2"), "-m", model)
    assert nothing.returncode == 2 and "x.txt" in nothing.stderr
    assert [p.name for p in (tmp_path / "o2").iterdir()] == ["report.json"]


def test_bad_model_or_input_path_exits_1(tmp_path, dicom_mono2_jpeg, capsys):
    good = copy_into(tmp_path / "good", dicom_mono2_jpeg)
    (tmp_path / "x.txt").write_text("x")
    assert main(["-i", str(good), "-o", str(tmp_path / "o"), "-m", str(tmp_path / "x.txt")]) == EXIT_ERROR
    assert "is not a TorchScript model" in capsys.readouterr().err
    assert main(["-i", str(tmp_path / "nope"), "-o", str(tmp_path / "o"), "-m", str(tmp_path / "x.txt")]) == EXIT_ERROR
    assert not (tmp_path / "o").exists()
