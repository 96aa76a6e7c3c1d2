"""Every bundle config accepts the device as a string (``--device cpu`` on the command line) or a ``torch.device``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
MULTI_GPU = sorted(p.parent.name for p in BUNDLES.glob("*/multi_gpu_train.json"))


@pytest.mark.parametrize("name", MULTI_GPU)
@pytest.mark.parametrize(
    "device,expected",
    [("cpu", None), (torch.device("cpu"), None), ("cuda:1", [torch.device("cuda:1")])],
    ids=["str-cpu", "device-cpu", "str-cuda"],
)
def test_multi_gpu_overlay_takes_string_devices(name: str, device: str | torch.device, expected: list | None) -> None:
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / name / f) for f in ("train.json", "cpu.json", "multi_gpu_train.json")])
    parser["device"] = device
    assert parser.get_parsed_content("network#device_ids") == expected


@pytest.mark.parametrize("config", ["inference.json", "train.json"])
def test_classifier_network_moves_to_a_string_device(config: str) -> None:
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / "cxr_classifier" / config), str(BUNDLES / "cxr_classifier" / "cpu.json")])
    parser.update({"device": "cpu", "class_names": ["normal", "pneumonia"]})
    network = parser.get_parsed_content("network")
    assert next(network.parameters()).device == torch.device("cpu")
