"""The deploy app as a hospital integrator meets it: de-identified, non-conformant, truncated and degenerate files in
one folder never abort the batch, every failure is reported with its stage, and nothing leaks a patient path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("highdicom", reason="the deploy outputs need highdicom (pip install -e '.[deploy]')")
from deploy_helpers import copy_into, copy_with, save_scripted, structured_report, tiny_classifier, truncated  # noqa: E402

from monai_moco.deploy import (  # noqa: E402
    DeployOptions,
    ExportedClassifier,
    RunReport,
    process_instances,
    select_chest_radiographs,
)
from monai_moco.deploy.report import is_valid_uid  # noqa: E402

TYPE2 = ["PatientBirthDate", "PatientSex", "PatientName", "PatientID", "AccessionNumber", "StudyID", "StudyDate",
         "StudyTime", "ReferringPhysicianName"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> ExportedClassifier:
    return ExportedClassifier.load(save_scripted(tiny_classifier("resnet"), tmp_path_factory.mktemp("m") / "m.ts"))


@pytest.fixture(scope="module")
def chest_pixels(dicom_mono2_jpeg: Path) -> np.ndarray:
    """The SIIM chest's pixels subsampled to 256 x 256 (an uncompressed copy is quick to write and to cut short)."""
    return pydicom.dcmread(dicom_mono2_jpeg).pixel_array[::4, ::4].astype(np.uint16)


def _run(folder: Path, classifier: ExportedClassifier, out: Path, **options) -> RunReport:
    selected, skipped = select_chest_radiographs(folder)
    return process_instances(selected, classifier, out, DeployOptions(**options), RunReport(skipped=skipped))


def _sr(out: Path) -> pydicom.Dataset:
    return pydicom.dcmread(next(out.glob("*_sr.dcm")))


# ---------------------------------------------------------------------------------- 1. de-identified radiographs
@pytest.mark.parametrize(
    "drop", [[k] for k in TYPE2] + [["StudyInstanceUID"], ["SeriesInstanceUID"], TYPE2 + ["StudyInstanceUID"]],
    ids=lambda d: "+".join(d) if len(d) < 3 else "all",
)
def test_deidentified_radiograph_gets_its_sr(tmp_path, classifier, dicom_mono2_jpeg, drop):
    folder = tmp_path / "in"
    folder.mkdir()
    copy_with(dicom_mono2_jpeg, folder / "anon.dcm", drop=tuple(drop))
    report = _run(folder, classifier, tmp_path / "out")
    assert not report.skipped and len(report.processed) == 1
    sr = _sr(tmp_path / "out")
    for keyword in drop:
        assert keyword in sr, keyword  # type 2 (or a new UID for the type-1 Study/Series UIDs)
        if keyword in TYPE2:
            assert str(sr.get(keyword, "") or "") == ""
    result = json.loads(next((tmp_path / "out").glob("*[0-9].json")).read_text())
    assert set(result["sr"]["replaced_source_uids"]) == {"StudyInstanceUID", "SeriesInstanceUID"} & set(drop)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert is_valid_uid(sr.StudyInstanceUID) and is_valid_uid(evidence.ReferencedSeriesSequence[0].SeriesInstanceUID)
    if "StudyInstanceUID" not in drop:  # the SR joins the source's study
        assert sr.StudyInstanceUID == result["StudyInstanceUID"]


@pytest.mark.parametrize("sop_class", ["1.2.abc", "1.2.3.4", ""])
def test_invalid_sop_class_is_replaced_by_the_modality_class(tmp_path, classifier, dicom_mono2_jpeg, sop_class):
    folder = tmp_path / "in"
    folder.mkdir()
    copy_with(dicom_mono2_jpeg, folder / "x.dcm", SOPClassUID=sop_class)
    report = _run(folder, classifier, tmp_path / "out")
    assert not report.skipped and len(report.processed) == 1
    ref = _sr(tmp_path / "out").CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert ref.ReferencedSOPSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.1"  # CR Image Storage
    result = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert result["sr"]["replaced_source_uids"] == ["SOPClassUID"]


# ------------------------------------------------------------------------------------ 5. non-conformant UIDs
@pytest.mark.parametrize("uid", ["../../x", "1." + "2" * 70, "1.02.3", "1.2.3.4/.."])
def test_sr_never_copies_an_invalid_uid(tmp_path, classifier, dicom_mono2_jpeg, uid):
    folder = tmp_path / "in"
    folder.mkdir()
    copy_with(dicom_mono2_jpeg, folder / "x.dcm", SOPInstanceUID=uid)
    report = _run(folder, classifier, tmp_path / "out")
    assert not report.skipped and report.processed[0]["SOPInstanceUID"] == uid
    sr = _sr(tmp_path / "out")
    referenced = [item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for item in sr.ContentSequence
                  if item.ValueType == "IMAGE"]
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert referenced == [evidence[0].ReferencedSOPInstanceUID] and uid not in referenced
    assert all(is_valid_uid(u) for u in referenced + [sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.SOPInstanceUID])
    result = json.loads(next(p for p in (tmp_path / "out").glob("*.json")).read_text())
    assert result["sr"]["replaced_source_uids"] == ["SOPInstanceUID"] and result["SOPInstanceUID"] == uid


# ------------------------------------------------------------------------- 2. a truncated copy shadows nothing
def test_truncated_copy_does_not_shadow_the_complete_one(tmp_path, classifier, dicom_mono2_jpeg, chest_pixels):
    full = copy_with(dicom_mono2_jpeg, tmp_path / "full.dcm", pixels=chest_pixels)
    folder = tmp_path / "in"
    folder.mkdir()
    truncated(full, folder / "a_cut.dcm", keep=0.5)  # sorted first: selected first, fails to decode
    (folder / "b_full.dcm").write_bytes(full.read_bytes())
    (folder / "c_again.dcm").write_bytes(full.read_bytes())  # a true duplicate of the decoded copy
    report = _run(folder, classifier, tmp_path / "out")
    assert [Path(p["source"]).name for p in report.processed] == ["b_full.dcm"]
    stages = {s.path.name: (s.stage, s.reason) for s in report.skipped}
    assert stages["a_cut.dcm"][0] == "loading" and "truncated" in stages["a_cut.dcm"][1]
    assert stages["c_again.dcm"][0] == "selection" and "b_full.dcm" in stages["c_again.dcm"][1]
    assert "duplicate SOP Instance UID" in stages["c_again.dcm"][1]


# ------------------------------------------------------------------------ 3. degenerate images are not classified
@pytest.mark.parametrize(
    "case,tags,reason",
    [
        ("constant", {"pixels": np.full((64, 64), 700)}, "constant image (every pixel is 700)"),
        ("slope_zero", {"RescaleSlope": 0, "RescaleIntercept": 3}, "RescaleSlope 0 maps every pixel"),
        ("slope_nan", {"RescaleSlope": "NaN", "RescaleIntercept": 0}, "invalid rescale"),
        ("window", {"WindowCenter": 90000, "WindowWidth": 10}, "saturates every pixel"),
        ("one_pixel", {"pixels": np.array([[9]])}, "image is 1 x 1 pixels"),
    ],
)
def test_degenerate_image_is_skipped_with_the_reason(tmp_path, classifier, dicom_mono2_jpeg, chest_pixels, case,
                                                     tags, reason):
    folder = tmp_path / "in"
    folder.mkdir()
    tags = {"pixels": chest_pixels, **tags}
    copy_with(dicom_mono2_jpeg, folder / f"{case}.dcm", **tags)
    report = _run(folder, classifier, tmp_path / "out")
    assert not report.processed and len(report.skipped) == 1
    assert report.skipped[0].stage == "loading" and reason in report.skipped[0].reason
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_an_unexpected_failure_of_one_image_does_not_end_the_run(tmp_path, classifier, dicom_mono1, dicom_mono2_jpeg,
                                                                  monkeypatch):
    """Any exception in one image's SR step (not only the expected types) is reported and the next image runs."""
    import monai_moco.deploy.pipeline as pipeline

    real = pipeline.build_classification_sr
    calls = []

    def flaky(source, *args, **kwargs):
        calls.append(source.SOPInstanceUID)
        if len(calls) == 1:
            raise KeyError("a highdicom surprise")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(pipeline, "build_classification_sr", flaky)
    report = _run(copy_into(tmp_path / "in", dicom_mono1, dicom_mono2_jpeg), classifier, tmp_path / "out")
    assert len(report.processed) == 1 and len(report.skipped) == 1
    assert report.skipped[0].stage == "inference" and "KeyError" in report.skipped[0].reason


# ------------------------------------------------------------------ 8. report paths carry no patient folder names
def test_report_paths_are_relative_to_the_input(tmp_path, classifier, dicom_mono2_jpeg):
    folder = tmp_path / "PACS" / "PAT_0012345"
    copy_into(folder / "study1", dicom_mono2_jpeg)
    (folder / "study1" / "notes.txt").write_text("x")
    report = _run(folder, classifier, tmp_path / "out")
    hidden = report.as_dict(folder)
    text = json.dumps(hidden)
    assert "PAT_0012345" not in text and str(tmp_path) not in text
    assert hidden["processed"][0]["source"] == f"study1/{dicom_mono2_jpeg.name}"
    assert hidden["skipped"][0]["path"] == "study1/notes.txt"
    full = report.as_dict(folder, full_paths=True)
    assert full["skipped"][0]["path"] == str(folder / "study1" / "notes.txt")


def test_failure_reasons_name_files_relative_to_the_input(tmp_path, classifier, dicom_mono2_jpeg, chest_pixels):
    folder = tmp_path / "PAT_0012345"
    folder.mkdir()
    copy_with(dicom_mono2_jpeg, folder / "flat.dcm", pixels=np.full((64, 64), 5))
    report = _run(folder, classifier, tmp_path / "out")
    reason = report.as_dict(folder)["skipped"][0]["reason"]
    assert "cannot read X-ray 'flat.dcm'" in reason and "PAT_0012345" not in reason


# ------------------------------------------------------- the command line: mixed folder, output checked first
@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return save_scripted(tiny_classifier("resnet"), tmp_path_factory.mktemp("cli") / "model.ts")


def test_mixed_folder_exits_0_with_a_complete_report(tmp_path, model_file, dicom_mono1, dicom_mono2_jpeg,
                                                     chest_pixels):
    pytest.importorskip("monai.deploy.core", reason="needs monai-deploy-app-sdk")
    from monai_moco.deploy.__main__ import EXIT_OK, main

    folder = tmp_path / "PAT_77"
    copy_into(folder, dicom_mono1)
    copy_with(dicom_mono2_jpeg, folder / "anon.dcm", drop=("PatientBirthDate", "PatientName", "StudyID"),
              SOPInstanceUID="1." + "9" * 70)
    full = copy_with(dicom_mono2_jpeg, tmp_path / "full.dcm", pixels=chest_pixels, SOPInstanceUID="1.2.3.4.5")
    truncated(full, folder / "a_cut.dcm", keep=0.5)
    copy_with(dicom_mono2_jpeg, folder / "flat.dcm", pixels=np.full((64, 64), 5), SOPInstanceUID="1.2.3.4.6")
    structured_report(dicom_mono2_jpeg, folder / "sr.dcm")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["-i", str(folder), "-o", str(out), "-m", str(model_file)]) == EXIT_OK
    report = json.loads((out / "report.json").read_text())
    assert report["num_processed"] == 2 and report["num_skipped"] == 4
    assert sorted(p["source"] for p in report["processed"]) == ["RG1_UNCR.dcm", "anon.dcm"]
    skipped = {s["path"]: (s["stage"], s["reason"]) for s in report["skipped"]}
    assert skipped["a_cut.dcm"][0] == "loading" and "truncated" in skipped["a_cut.dcm"][1]
    assert skipped["flat.dcm"][0] == "loading" and "constant image" in skipped["flat.dcm"][1]
    assert skipped["sr.dcm"][0] == skipped["notes.txt"][0] == "selection"
    assert "PAT_77" not in json.dumps(report)
    assert len(list(out.glob("*_sr.dcm"))) == 2


@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
def test_unwritable_output_exits_1_before_any_image_is_read(tmp_path, model_file, dicom_mono2_jpeg, capsys,
                                                            monkeypatch, where):
    pytest.importorskip("monai.deploy.core", reason="needs monai-deploy-app-sdk")
    import monai_moco.deploy.pipeline as pipeline
    from monai_moco.deploy.__main__ import EXIT_ERROR, main

    def never(*args, **kwargs):
        raise AssertionError("an image was read before the output folder was checked")

    monkeypatch.setattr(pipeline, "load_instance", never)
    blocker = tmp_path / "results.txt"
    blocker.write_text("a regular file")
    out = blocker / "out" if where == "under_a_file" else blocker
    folder = copy_into(tmp_path / "in", dicom_mono2_jpeg)
    assert main(["-i", str(folder), "-o", str(out), "-m", str(model_file)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"ERROR: output folder {str(out)!r} cannot be created or written" in err
    assert blocker.read_text() == "a regular file"
