"""The exported classifier and the per-image pipeline on the real chest DICOMs (no MONAI Deploy SDK needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

pytest.importorskip("highdicom", reason="the deploy outputs need highdicom (pip install -e '.[deploy]')")
from deploy_helpers import (  # noqa: E402
    CLASS_NAMES,
    SIZE,
    copy_into,
    copy_with,
    metadata,
    monochrome2_twin,
    save_scripted,
    tiny_classifier,
    truncated,
)

from monai_moco.deploy import (  # noqa: E402
    DeployOptions,
    ExportedClassifier,
    RunReport,
    process_instances,
    select_chest_radiographs,
)
from monai_moco.transforms import LoadXRay  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module]]:
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for kind in ("resnet", "topk"):
        eager = tiny_classifier(kind)
        out[kind] = (save_scripted(eager, folder / f"{kind}.ts"), eager)
    return out


def test_load_reads_embedded_metadata_and_matches_eager(models, dicom_mono1):
    path, eager = models["resnet"]
    clf = ExportedClassifier.load(path)
    assert clf.class_names == CLASS_NAMES and clf.image_size == (SIZE, SIZE) and clf.activation == "softmax"
    assert (clf.name, clf.version) == ("tiny_cxr", "0.0.1")
    x = LoadXRay(spatial_size=SIZE)(str(dicom_mono1)).as_tensor()[None]
    with torch.no_grad():
        torch.testing.assert_close(clf.logits(x), eager(x), rtol=1e-5, atol=1e-5)
    probs = clf.probabilities(x[0])
    assert list(probs) == CLASS_NAMES and abs(sum(probs.values()) - 1.0) < 1e-6


def test_multilabel_config_gives_per_class_sigmoid(tmp_path):
    names = ["effusion", "pneumonia", "pneumothorax"]
    path = save_scripted(tiny_classifier("resnet", num_classes=3), tmp_path / "ml.ts", metadata(class_names=names),
                         {"inference.json": {"task": "multilabel", "image_size": "$@x"}})
    clf = ExportedClassifier.load(path)
    assert clf.activation == "sigmoid" and clf.class_names == names
    x = torch.rand(1, SIZE, SIZE)
    probs = clf.probabilities(x)
    np.testing.assert_allclose(list(probs.values()), torch.sigmoid(clf.logits(x[None]))[0].numpy(), rtol=1e-6)


def test_plain_torchscript_without_metadata(tmp_path):
    path = tmp_path / "plain.ts"
    torch.jit.save(torch.jit.script(tiny_classifier("resnet")), str(path))
    clf = ExportedClassifier.load(path, image_size=SIZE)
    assert clf.class_names == ["class_0", "class_1"] and clf.version == ""
    with pytest.raises(ValueError, match="3 class names"):
        ExportedClassifier.load(path, class_names=["a", "b", "c"], image_size=SIZE)


def test_not_a_torchscript_file_is_refused(tmp_path):
    bad = tmp_path / "model.ts"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ValueError, match="is not a TorchScript model"):
        ExportedClassifier.load(bad)


@pytest.mark.parametrize("kind,method", [("resnet", "gradcam"), ("topk", "topk_patch_scores")])
def test_heatmaps(models, dicom_mono2_jpeg, kind, method):
    clf = ExportedClassifier.load(models[kind][0])
    x = LoadXRay(spatial_size=SIZE)(str(dicom_mono2_jpeg)).as_tensor()
    heat = clf.heatmap(x)
    assert heat.method == method
    assert heat.scores.min() >= 0 and heat.scores.max() <= 1 and heat.scores.max() > 0
    if kind == "topk":
        assert tuple(heat.scores.shape) == (SIZE // 16, SIZE // 16) and len(heat.topk_indices) == 4
    else:  # monai.visualize.GradCAM upsamples layer4's map to the input
        assert tuple(heat.scores.shape) == (SIZE, SIZE) and heat.topk_indices is None


def test_gradient_fallback_for_other_backbones(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2))
    clf = ExportedClassifier.from_module(torch.jit.script(net), image_size=16)
    heat = clf.heatmap(torch.rand(1, 16, 16))
    assert heat.method == "gradient" and tuple(heat.scores.shape) == (16, 16)


def test_frozen_model_without_gradients_still_gives_a_result(tmp_path, dicom_mono2_jpeg):
    """A linear probe (frozen backbone, no_grad inside) on a non-ResNet backbone has no heat-map: said so in the JSON."""
    from monai_moco.networks.nets import XRayClassifier

    backbone = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten())
    backbone.out_features = 4
    path = save_scripted(XRayClassifier(backbone, 2, frozen=True).eval(), tmp_path / "probe.ts")
    folder = copy_into(tmp_path / "in", dicom_mono2_jpeg)
    report = process_instances(select_chest_radiographs(folder)[0], ExportedClassifier.load(path), tmp_path / "out")
    assert len(report.processed) == 1 and not report.skipped
    result = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert result["heatmap"]["method"] == "none" and "no gradient" in result["heatmap"]["reason"]
    assert not list((tmp_path / "out").glob("*.png"))


def test_pipeline_end_to_end_without_sdk(tmp_path, models, dicom_mono1, dicom_mono2_jpeg):
    folder = copy_into(tmp_path / "in", dicom_mono1, dicom_mono2_jpeg)
    # uncompressed and cut short: the header passes selection, LoadXRay then reports the missing pixel bytes
    truncated(copy_with(dicom_mono1, tmp_path / "t.dcm", SOPInstanceUID="1.2.3.9"), folder / "zz_truncated.dcm", 0.9)
    clf = ExportedClassifier.load(models["resnet"][0])
    selected, skipped = select_chest_radiographs(folder)
    out = tmp_path / "out"
    report = process_instances(selected, clf, out, DeployOptions(), RunReport(skipped=skipped))
    assert len(report.processed) == 2
    reasons = {s.path.name: s for s in report.skipped}
    assert set(reasons) == {"zz_truncated.dcm"} and "truncated" in reasons["zz_truncated.dcm"].reason
    for src in (dicom_mono1, dicom_mono2_jpeg):
        uid = pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID
        result = json.loads((out / f"{uid}.json").read_text())
        assert result["SOPInstanceUID"] == uid and list(result["probabilities"]) == CLASS_NAMES
        assert abs(sum(result["probabilities"].values()) - 1.0) < 1e-6
        assert result["model"]["version"] == "0.0.1" and len(result["model"]["sha256"]) == 64
        assert "patient" not in result and "PatientName" not in json.dumps(result)
        x = LoadXRay(spatial_size=SIZE)(str(src)).as_tensor()[None]
        expected = torch.softmax(models["resnet"][1](x), 1)[0].tolist()
        np.testing.assert_allclose(list(result["probabilities"].values()), expected, rtol=1e-5, atol=1e-6)
        sr = pydicom.dcmread(out / f"{uid}_sr.dcm")
        assert sr.Modality == "SR" and sr.SOPClassUID.name == "Comprehensive SR Storage"
        assert sr.StudyInstanceUID == result["StudyInstanceUID"]
        nums = {i.ConceptNameCodeSequence[0].CodeMeaning: float(i.MeasuredValueSequence[0].NumericValue)
                for i in sr.ContentSequence if i.ValueType == "NUM"}
        assert set(nums) == {f"Probability of {c}" for c in CLASS_NAMES}
        png = out / f"{uid}_heatmap.png"
        from PIL import Image

        assert Image.open(png).size == (SIZE, SIZE) and result["heatmap"]["method"] == "gradcam"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporaries left


def test_both_photometric_interpretations_give_the_same_prediction(tmp_path, models, dicom_mono1, dicom_mono2_jpeg):
    """The MONOCHROME1 radiograph and its MONOCHROME2 twin (stored values and window mirrored) read the same and
    predict the same; the two different real chest films (MONOCHROME1 CR and MONOCHROME2 JPEG) read the same way
    round (positively correlated), which they would not be if MONOCHROME1 were left uninverted."""
    twin = monochrome2_twin(dicom_mono1, tmp_path / "twin.dcm")
    load = LoadXRay(spatial_size=SIZE)
    a, b = load(str(dicom_mono1)).as_tensor(), load(str(twin)).as_tensor()
    assert (a - b).abs().max() < 1e-3
    clf = ExportedClassifier.load(models["resnet"][0])
    pa, pb = clf.probabilities(a), clf.probabilities(b)
    np.testing.assert_allclose(list(pa.values()), list(pb.values()), atol=1e-4)
    c = load(str(dicom_mono2_jpeg)).as_tensor()
    corr = np.corrcoef(a.flatten().numpy(), c.flatten().numpy())[0, 1]
    uninverted = 1.0 - a  # what a reader ignoring MONOCHROME1 would feed the model
    assert corr > 0.4 and np.corrcoef(uninverted.flatten().numpy(), c.flatten().numpy())[0, 1] < -0.4


def test_path_like_uid_stays_inside_the_output_folder(tmp_path, models, dicom_mono2_jpeg):
    folder = tmp_path / "deep" / "in"
    folder.mkdir(parents=True)
    copy_with(dicom_mono2_jpeg, folder / "evil.dcm", SOPInstanceUID="../../x")
    copy_with(dicom_mono2_jpeg, folder / "evil2.dcm", SOPInstanceUID="/tmp/../../etc/y")
    out = tmp_path / "deep" / "out"
    selected, skipped = select_chest_radiographs(folder)
    assert not skipped
    report = process_instances(selected, ExportedClassifier.load(models["resnet"][0]), out)
    assert len(report.processed) == 2
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(["_.._x.json", "_.._x_heatmap.png", "_.._x_sr.dcm", "_tmp_.._.._etc_y.json",
                              "_tmp_.._.._etc_y_heatmap.png", "_tmp_.._.._etc_y_sr.dcm"])
    assert json.loads((out / "_.._x.json").read_text())["SOPInstanceUID"] == "../../x"
    outside = {p for p in tmp_path.rglob("*") if p.is_file()} - set(out.iterdir()) - set(folder.iterdir())
    assert outside == set()


def test_patient_info_only_when_asked(tmp_path, models, dicom_mono1):
    folder = copy_into(tmp_path / "in", dicom_mono1)
    selected, _ = select_chest_radiographs(folder)
    clf = ExportedClassifier.load(models["resnet"][0])
    process_instances(selected, clf, tmp_path / "out", DeployOptions(write_sr=False, write_heatmap=False,
                                                                      include_patient_info=True))
    result = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert result["patient"]["PatientName"] == "CompressedSamples^RG1" and "PatientBirthDate" in result["patient"]
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".json"]
