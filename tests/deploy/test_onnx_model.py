"""``.onnx`` models in the deploy app: onnxruntime outputs, where names and sizes come from, fixed-batch graphs, bad
files, and the heat-map falling back with its reason while the JSON and SR are still written (no SDK needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

onnx = pytest.importorskip("onnx", reason="ONNX export needs the `onnx` extra: pip install -e '.[onnx]'")
pytest.importorskip("onnxruntime", reason="ONNX inference needs the `onnx` extra: pip install -e '.[onnx]'")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs the `onnx` extra: pip install -e '.[onnx]'")
pytest.importorskip("highdicom", reason="the deploy outputs need highdicom (pip install -e '.[deploy]')")
from deploy_helpers import CLASS_NAMES, SIZE, copy_into, metadata  # noqa: E402

from monai_moco.deploy import DeployOptions, ExportedClassifier, process_instances, select_chest_radiographs  # noqa: E402
from monai_moco.deploy.onnx_model import OnnxRuntimeModule  # noqa: E402
from monai_moco.transforms import LoadXRay  # noqa: E402


def _small_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    ).eval()


def _export(net: torch.nn.Module, path: Path, batch: int = 1, dynamic: bool = True, props: dict | None = None) -> Path:
    kwargs = {"dynamic_axes": {"image": {0: "batch"}, "pred": {0: "batch"}}} if dynamic else {}
    torch.onnx.export(net, (torch.rand(batch, 1, SIZE, SIZE),), str(path), input_names=["image"],
                      output_names=["pred"], **kwargs)
    if props:
        model = onnx.load(str(path))
        for key, value in props.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module]]:
    folder = tmp_path_factory.mktemp("onnx")
    net = _small_net()
    return {
        "dynamic": (_export(net, folder / "dynamic.onnx"), net),
        "fixed1": (_export(net, folder / "fixed1.onnx", dynamic=False), net),
        "fixed2": (_export(net, folder / "fixed2.onnx", batch=2, dynamic=False), net),
        "meta": (_export(net, folder / "meta.onnx", props={
            "metadata.json": json.dumps(metadata(version="1.2.3")),
            "inference.json": json.dumps({"task": "multilabel", "class_names": "$@x"})}), net),
    }


@pytest.mark.parametrize("kind, batch", [("dynamic", 1), ("dynamic", 5), ("fixed1", 1), ("fixed1", 3), ("fixed2", 1),
                                         ("fixed2", 2), ("fixed2", 5)])
def test_logits_equal_pytorch(exported, kind, batch):
    path, net = exported[kind]
    clf = ExportedClassifier.load(path)
    assert isinstance(clf.model, OnnxRuntimeModule) and clf.image_size == (SIZE, SIZE)
    x = torch.rand(batch, 1, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(clf.logits(x), net(x), rtol=1e-4, atol=1e-5)


def test_names_and_size_from_arguments_graph_or_metadata_props(exported):
    plain = ExportedClassifier.load(exported["dynamic"][0])
    assert plain.class_names == ["class_0", "class_1"] and plain.name == "dynamic.onnx" and plain.activation == "softmax"
    named = ExportedClassifier.load(exported["dynamic"][0], class_names=CLASS_NAMES)
    assert named.class_names == CLASS_NAMES
    meta = ExportedClassifier.load(exported["meta"][0])
    assert (meta.name, meta.version, meta.class_names) == ("tiny_cxr", "1.2.3", CLASS_NAMES)
    assert meta.activation == "sigmoid"  # task from the embedded inference.json; its "$" value is never evaluated
    with pytest.raises(ValueError, match="3 class names"):
        ExportedClassifier.load(exported["dynamic"][0], class_names=["a", "b", "c"])


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        ExportedClassifier.load(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match="junk.onnx.*not an ONNX model"):
        ExportedClassifier.load(junk)
    two_inputs = tmp_path / "two.onnx"

    class Two(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a.mean((2, 3)) + b.mean((2, 3))

    torch.onnx.export(Two(), (torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)), str(two_inputs))
    with pytest.raises(ValueError, match="expected one input of shape B x 1 x H x W"):
        ExportedClassifier.load(two_inputs)


def test_pipeline_writes_json_and_sr_and_says_why_there_is_no_heatmap(exported, tmp_path, dicom_mono1,
                                                                       dicom_mono2_jpeg):
    path, net = exported["dynamic"]
    clf = ExportedClassifier.load(path, class_names=CLASS_NAMES)
    with pytest.raises(RuntimeError, match="onnxruntime, which computes no gradients"):
        clf.heatmap(torch.rand(1, SIZE, SIZE))
    folder = copy_into(tmp_path / "in", dicom_mono1, dicom_mono2_jpeg)
    selected, skipped = select_chest_radiographs(folder)
    report = process_instances(selected, clf, tmp_path / "out", DeployOptions())
    assert len(report.processed) == 2 and not report.skipped and not skipped
    for inst, src in zip(selected, (report.processed[0], report.processed[1]), strict=True):
        result = json.loads((tmp_path / "out" / f"{inst.sop_instance_uid}.json").read_text())
        assert sorted(src["files"]) == sorted([f"{inst.sop_instance_uid}.json", f"{inst.sop_instance_uid}_sr.dcm"])
        assert result["heatmap"]["file"] is None and result["heatmap"]["method"] == "none"
        assert "onnxruntime" in result["heatmap"]["reason"] and "TorchScript" in result["heatmap"]["reason"]
        with torch.no_grad():
            expected = torch.softmax(net(LoadXRay(spatial_size=SIZE)(str(inst.path)).as_tensor()[None]), 1)[0]
        torch.testing.assert_close(torch.tensor(list(result["probabilities"].values())), expected, rtol=1e-4,
                                   atol=1e-5)
        assert result["model"]["file"] == "dynamic.onnx" and result["model"]["sha256"]
