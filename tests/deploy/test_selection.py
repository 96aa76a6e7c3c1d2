"""Chest radiograph selection rules and output-name sanitising (no MONAI Deploy SDK needed)."""

from __future__ import annotations

import pytest

pytest.importorskip("highdicom", reason="the deploy outputs need highdicom (pip install -e '.[deploy]')")
from deploy_helpers import copy_with, structured_report, truncated  # noqa: E402

from monai_moco.deploy.selection import safe_output_stem, select_chest_radiographs  # noqa: E402


@pytest.mark.parametrize(
    "uid,expected",
    [
        ("1.2.840.113619.2.55.3", "1.2.840.113619.2.55.3"),
        ("../../x", "_.._x"),
        ("a/b\\c:d", "a_b_c_d"),
        ("/etc/passwd", "_etc_passwd"),
        (".hidden", "hidden"),
        ("x\x00y", "x_y"),
    ],
)
def test_safe_output_stem(tmp_path, uid, expected):
    stem = safe_output_stem(uid)
    assert stem == expected
    assert (tmp_path / f"{stem}.json").resolve().parent == tmp_path.resolve()


@pytest.mark.parametrize("uid", ["..", "../..", "/", "  "])
def test_safe_output_stem_refuses_names_with_nothing_left(uid):
    with pytest.raises(ValueError, match="no usable file name"):
        safe_output_stem(uid)


def test_selection_rules_on_real_and_crafted_files(tmp_path, dicom_mono1, dicom_mono2_jpeg):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    good1 = copy_with(dicom_mono1, folder / "a_mono1.dcm")
    good2 = copy_with(dicom_mono2_jpeg, folder / "b_mono2.dcm")
    (folder / "c_notes.txt").write_text("not a dicom")
    structured_report(dicom_mono2_jpeg, folder / "d_sr.dcm")
    copy_with(dicom_mono2_jpeg, folder / "e_ct.dcm", Modality="CT", SOPInstanceUID="1.2.3.4")
    copy_with(dicom_mono2_jpeg, folder / "f_lateral.dcm", ViewPosition="LL", SOPInstanceUID="1.2.3.5")
    copy_with(dicom_mono2_jpeg, folder / "g_hand.dcm", BodyPartExamined="HAND", SOPInstanceUID="1.2.3.6")
    truncated(dicom_mono2_jpeg, folder / "h_truncated.dcm")
    copy_with(dicom_mono2_jpeg, folder / "sub" / "i_duplicate.dcm")
    (folder / "j_empty.dcm").write_bytes(b"")

    selected, skipped = select_chest_radiographs(folder)
    # copies of one instance are all selected: the pipeline keeps the first that decodes (test_robustness.py)
    assert [s.path for s in selected] == [good1, good2, folder / "sub" / "i_duplicate.dcm"]
    assert [(s.modality, s.view_position) for s in selected] == [("CR", "PA")] * 3
    reasons = {s.path.name: s.reason for s in skipped}
    assert set(reasons) == {"c_notes.txt", "d_sr.dcm", "e_ct.dcm", "f_lateral.dcm", "g_hand.dcm", "h_truncated.dcm",
                            "j_empty.dcm"}
    assert reasons["c_notes.txt"].startswith("not a DICOM file")
    assert reasons["d_sr.dcm"].startswith("non-image DICOM (SOP Class Comprehensive SR")
    assert "Modality 'CT' is not a radiograph" in reasons["e_ct.dcm"]
    assert "View Position 'LL' is not frontal" in reasons["f_lateral.dcm"]
    assert "Body Part Examined 'HAND' is not chest" in reasons["g_hand.dcm"]
    assert "truncated" in reasons["h_truncated.dcm"]
    assert reasons["j_empty.dcm"].startswith(("not a DICOM file", "corrupt"))
    assert all(s.stage == "selection" for s in skipped)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        select_chest_radiographs(tmp_path / "nope")
