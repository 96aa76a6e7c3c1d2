"""``bundles/cxr_classifier`` through ``python -m monai.bundle onnx_export`` with a dynamic batch axis: onnxruntime
equals the PyTorch network within 1e-4 on batches of real Kermany radiographs, and the MONAI Deploy app runs the
``.onnx`` file on the real DICOMs with the probabilities of the PyTorch network (heat-map left out, with its reason)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch

onnx = pytest.importorskip("onnx", reason="ONNX export needs the `onnx` extra: pip install -e '.[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="ONNX inference needs the `onnx` extra: pip install -e '.[onnx]'")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs the `onnx` extra: pip install -e '.[onnx]'")

from monai_moco.transforms import LoadXRay  # noqa: E402

BUNDLE = "bundles/cxr_classifier"
OVERRIDES = {"backbone": "resnet18", "device": "cpu"}  # resnet50 is the default recipe; 18 keeps the test CPU-sized
#: the README's converter arguments: named input/output and a dynamic batch axis.
CONVERTER_KWARGS = "{'input_names': ['image'], 'output_names': ['pred'], 'dynamic_axes': {'image': {0: 'batch'}, " \
                   "'pred': {0: 'batch'}}}"


def _kermany_images(kermany_dir: Path, per_class: int) -> list[Path]:
    """``per_class`` normal and pneumonia test images, the first ones in labels.csv order."""
    with open(kermany_dir / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    picked = [r for r in rows if r["label"] == "0"][:per_class] + [r for r in rows if r["label"] == "1"][:per_class]
    return [kermany_dir / r["path"] for r in picked]


@pytest.mark.slow
def test_onnx_export_dynamic_batch_parity_and_deploy(bundles, tmp_path, kermany_dir, dicom_mono1, dicom_mono2_jpeg):
    ckpt = tmp_path / "models" / "model.pt"
    parser, eager = bundles.cxr_classifier_checkpoint(ckpt, OVERRIDES)
    size = parser.get_parsed_content("image_size")

    model_onnx = tmp_path / "models" / "model.onnx"
    cmd = [sys.executable, "-m", "monai.bundle", "onnx_export", "network_def", "--filepath", str(model_onnx),
           "--ckpt_file", str(ckpt), "--key_in_ckpt", "model", "--meta_file", f"{BUNDLE}/metadata.json",
           "--config_file", f"{BUNDLE}/inference.json", "--input_shape", f"[1, 1, {size}, {size}]",
           "--converter_kwargs", CONVERTER_KWARGS]
    for key, value in OVERRIDES.items():
        cmd += [f"--{key}", value]
    bundles.run(cmd)
    graph = onnx.load(str(model_onnx)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert (graph.input[0].name, dims) == ("image", ["batch", 1, size, size]), dims
    assert graph.output[0].name == "pred"

    # onnxruntime == PyTorch on real radiographs, through the bundle's own preprocessing, at two batch sizes
    preprocessing = parser.get_parsed_content("preprocessing")
    images = torch.stack([preprocessing({"image": str(p)})["image"].as_tensor() for p in _kermany_images(kermany_dir, 4)])
    assert images.shape == (8, 1, size, size) and images.std() > 0.1
    session = ort.InferenceSession(str(model_onnx), providers=["CPUExecutionProvider"])
    for batch in (images, images[:3]):
        with torch.no_grad():
            expected = eager(batch)
        got = torch.from_numpy(session.run(None, {"image": batch.numpy()})[0])
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

    # the MONAI Deploy app on model.onnx: the same probabilities as the PyTorch network, no heat-map and why
    results = bundles.run_deploy_app(tmp_path, (dicom_mono1, dicom_mono2_jpeg), "-m", str(model_onnx),
                                     "--class-names", "normal", "pneumonia")
    for src, result in results.items():
        with torch.no_grad():
            expected = torch.softmax(eager(LoadXRay(spatial_size=size)(str(src)).as_tensor()[None]), 1)[0]
        assert list(result["probabilities"]) == ["normal", "pneumonia"]
        torch.testing.assert_close(torch.tensor(list(result["probabilities"].values())), expected, rtol=1e-4, atol=1e-5)
        assert result["predicted_class"] == ["normal", "pneumonia"][int(expected.argmax())]
        assert result["model"]["file"] == "model.onnx" and result["image"]["model_input_size"] == [size, size]
        assert result["heatmap"]["file"] is None and "onnxruntime" in result["heatmap"]["reason"]
        assert (tmp_path / "out" / result["sr"]["file"]).is_file()
