"""``bundles/cxr_classifier`` exported for deployment: ``verify_net_in_out`` and ``ckpt_export`` offline (TorchScript
``model.ts`` with metadata.json and inference.json embedded), the exported model equals the eager one, and the
MONAI Deploy app runs it on the real DICOMs with the bundle's own preprocessing."""

from __future__ import annotations

import json
import sys

import torch
from monai.data import load_net_with_metadata

from monai_moco.transforms import LoadXRay

BUNDLE = "bundles/cxr_classifier"
OVERRIDES = {"backbone": "resnet18", "device": "cpu"}  # resnet50 is the default recipe; 18 keeps the test CPU-sized


def _cli(bundles, command: str, *args: str) -> list[str]:
    cmd = [sys.executable, "-m", "monai.bundle", command, "network_def", "--meta_file", f"{BUNDLE}/metadata.json",
           "--config_file", f"{BUNDLE}/inference.json", *args]
    for key, value in OVERRIDES.items():
        cmd += [f"--{key}", value]
    return cmd


def test_verify_export_and_deploy(bundles, tmp_path, dicom_mono1, dicom_mono2_jpeg):
    ckpt = tmp_path / "models" / "model.pt"
    parser, eager = bundles.cxr_classifier_checkpoint(ckpt, OVERRIDES)

    # offline bundle checks, exactly as documented
    bundles.run(_cli(bundles, "verify_net_in_out", "--device", "cpu"))
    model_ts = tmp_path / "models" / "model.ts"
    bundles.run(_cli(bundles, "ckpt_export", "--filepath", str(model_ts), "--ckpt_file", str(ckpt),
                     "--key_in_ckpt", "model"))
    assert model_ts.is_file()

    net, meta, extra = load_net_with_metadata(str(model_ts), more_extra_files=["inference.json"])
    assert meta["name"] == "cxr_classifier" and meta["version"] == json.loads(
        (bundles.root / BUNDLE / "metadata.json").read_text())["version"]
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "normal", "1": "pneumonia"}
    assert json.loads(extra["inference.json"])["class_names"] == ["normal", "pneumonia"]

    # the bundle's own preprocessing and the deploy app's LoadXRay give the same tensor; exported == eager
    preprocessing = parser.get_parsed_content("preprocessing")
    size = parser.get_parsed_content("image_size")
    for src in (dicom_mono1, dicom_mono2_jpeg):
        bundle_x = preprocessing({"image": str(src)})["image"].as_tensor()[None]
        deploy_x = LoadXRay(spatial_size=size)(str(src)).as_tensor()[None]
        torch.testing.assert_close(bundle_x, deploy_x)
        with torch.no_grad():
            torch.testing.assert_close(net(bundle_x), eager(bundle_x), rtol=1e-5, atol=1e-5)
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        torch.testing.assert_close(net(x), eager(x), rtol=1e-5, atol=1e-5)

    # the MONAI Deploy app on that model.ts
    results = bundles.run_deploy_app(tmp_path, (dicom_mono1, dicom_mono2_jpeg), "-m", str(model_ts.parent))
    for src, result in results.items():
        assert result["model"]["name"] == "cxr_classifier" and result["model"]["version"] == meta["version"]
        with torch.no_grad():
            expected = torch.softmax(eager(LoadXRay(spatial_size=size)(str(src)).as_tensor()[None]), 1)[0]
        assert list(result["probabilities"]) == ["normal", "pneumonia"]
        torch.testing.assert_close(torch.tensor(list(result["probabilities"].values())), expected, rtol=1e-4, atol=1e-5)
        assert result["heatmap"]["method"] == "gradcam" and result["image"]["model_input_size"] == [size, size]
