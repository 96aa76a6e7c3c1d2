"""Tests for monai_moco.networks.weights: MoCo, monai_moco and ImageNet checkpoints, loaded without pickle code."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest
import timm
import torch
import torchvision
from ignite.engine import Engine
from monai.handlers import CheckpointSaver
from testing_helpers import save_code_running_checkpoint
from torch import nn

from monai_moco.networks.blocks import MoCoV2ProjectionHead
from monai_moco.networks.nets import ContrastiveEncoder
from monai_moco.networks.nets.backbones import build_backbone
from monai_moco.networks.weights import (
    UnsafeCheckpointError,
    extract_backbone_state_dict,
    load_backbone_weights,
    load_checkpoint_file,
    to_moco_state_dict,
)


def _trained_resnet18(in_channels: int = 1, seed: int = 0) -> nn.Module:
    """A resnet18 backbone with non-default weights and BatchNorm statistics."""
    torch.manual_seed(seed)
    net = build_backbone("resnet18", in_channels=in_channels)
    net.train()
    with torch.no_grad():
        net(torch.rand(4, in_channels, 32, 32) * 3)
    return net.eval()


def _same_output(a: nn.Module, b: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x if y is None else y), rtol=1e-5, atol=1e-5)


def test_moco_checkpoint_with_mlp_head(tmp_path):
    """facebookresearch/moco layout: module.encoder_q.* with the MLP head fc.0/fc.2, plus encoder_k and queue."""
    source = _trained_resnet18()
    sd = source.state_dict()
    moco_sd = {**to_moco_state_dict(sd), **to_moco_state_dict(sd, prefix="module.encoder_k.")}
    for enc in ("encoder_q", "encoder_k"):
        moco_sd[f"module.{enc}.fc.0.weight"] = torch.randn(512, 512)
        moco_sd[f"module.{enc}.fc.0.bias"] = torch.randn(512)
        moco_sd[f"module.{enc}.fc.2.weight"] = torch.randn(128, 512)
        moco_sd[f"module.{enc}.fc.2.bias"] = torch.randn(128)
    moco_sd["module.queue"] = torch.randn(128, 65536 // 64)
    moco_sd["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    optimizer = torch.optim.SGD(source.parameters(), lr=0.03, momentum=0.9)
    path = tmp_path / "checkpoint_0199.pth.tar"
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": moco_sd, "optimizer": optimizer.state_dict()}, path)

    fresh = build_backbone("resnet18", in_channels=1)
    report = load_backbone_weights(fresh, path)  # strict by default
    assert report["format"] == "moco" and report["missing_keys"] == [] and report["unexpected_keys"] == []
    assert "module.encoder_q.fc.0.weight" in report["dropped_keys"] and "module.queue" in report["dropped_keys"]
    _same_output(source, fresh, torch.rand(2, 1, 32, 32))


def _encoder(seed: int) -> ContrastiveEncoder:
    return ContrastiveEncoder(_trained_resnet18(seed=seed), MoCoV2ProjectionHead(512, 64, 16))


def test_monai_moco_checkpoint_saved_by_monai_checkpoint_saver(tmp_path):
    """Our format, written by MONAI's real CheckpointSaver from a trainer-like save_dict."""
    network = _encoder(seed=1)
    momentum_network = copy.deepcopy(network)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    engine = Engine(lambda e, b: 0.0)
    save_dict = {"network": network, "momentum_network": momentum_network, "optimizer": optimizer,
                 "trainer": engine}
    CheckpointSaver(str(tmp_path / "full"), save_dict, save_final=True, final_filename="final.pt").attach(engine)
    CheckpointSaver(str(tmp_path / "alone"), {"network": network}, save_final=True,
                    final_filename="final.pt").attach(engine)
    engine.run([0, 1], max_epochs=1)

    for folder in ("full", "alone"):  # ignite saves a lone object without its name: both layouts must load
        fresh = build_backbone("resnet18", in_channels=1)
        report = load_backbone_weights(fresh, tmp_path / folder / "final.pt", format="auto")
        assert report["format"] == "monai_moco" and not report["missing_keys"]
        assert any(k.startswith("projection.") for k in report["dropped_keys"])
        x = torch.rand(2, 1, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(fresh.eval()(x), network.eval().embed(x), rtol=1e-5, atol=1e-5)
    via_factory = build_backbone("resnet18", weights=tmp_path / "full" / "final.pt")
    assert via_factory.weights_report["format"] == "monai_moco"
    _same_output(via_factory, network.backbone, torch.rand(2, 1, 32, 32))


def test_imagenet_torchvision_rgb_into_grey_sums_kernels(tmp_path):
    """1-channel model on grey x == 3-channel ImageNet model on x replicated to RGB (what summing means)."""
    torch.manual_seed(0)
    rgb = torchvision.models.resnet18(weights=None).train()
    with torch.no_grad():
        rgb(torch.rand(4, 3, 32, 32))
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(rgb.state_dict(), path)  # includes the 1000-class fc
    grey = build_backbone("resnet18", in_channels=1)
    report = load_backbone_weights(grey, path)
    assert report["format"] == "torchvision" and report["adapted_keys"] == ["conv1.weight"]
    assert set(report["dropped_keys"]) == {"fc.weight", "fc.bias"}
    rgb.fc = nn.Identity()
    x = torch.rand(2, 1, 32, 32)
    _same_output(grey, rgb, x, x.repeat(1, 3, 1, 1))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_imagenet_timm_vit_rgb_into_grey(tmp_path, suffix):
    torch.manual_seed(0)
    rgb = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1, num_classes=1000)
    path = tmp_path / f"vit_tiny{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(rgb.state_dict(), str(path))
    else:
        torch.save(rgb.state_dict(), path)
    grey = build_backbone("timm:vit_tiny_patch16_224", img_size=32, depth=1, weights=path)
    assert grey.weights_report["adapted_keys"] == ["patch_embed.proj.weight"]
    assert {"head.weight", "head.bias"} <= set(grey.weights_report["dropped_keys"])
    rgb.reset_classifier(0)
    x = torch.rand(2, 1, 32, 32)
    _same_output(grey, rgb, x, x.repeat(1, 3, 1, 1))


def test_to_moco_state_dict_roundtrip_and_prefixes(tmp_path):
    source = _trained_resnet18(seed=3)
    sd = to_moco_state_dict(source.state_dict())
    assert all(k.startswith("module.encoder_q.") for k in sd) and len(sd) == len(source.state_dict())
    torch.save({"state_dict": sd}, tmp_path / "moco.pth")
    fresh = build_backbone("resnet18")
    assert load_backbone_weights(fresh, tmp_path / "moco.pth", format="moco")["format"] == "moco"
    _same_output(source, fresh, torch.rand(1, 1, 32, 32))


def test_pickle_bearing_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    save_code_running_checkpoint(path, marker, {"state_dict": {"conv1.weight": torch.zeros(1)}})
    backbone = build_backbone("resnet18")
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        load_backbone_weights(backbone, path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_file(path)
    assert not marker.exists()
    # the file really is malicious: an unsafe load runs the payload
    torch.load(path, weights_only=False)
    assert marker.exists()
    assert issubclass(UnsafeCheckpointError, RuntimeError) and not isinstance(UnsafeCheckpointError(), pickle.PickleError)


def test_mismatches_name_the_file_and_keys(tmp_path):
    torch.save(build_backbone("resnet50").state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ValueError, match=r"r50\.pth.*wrong shape.*conv1|r50\.pth.*layer1"):
        load_backbone_weights(build_backbone("resnet18"), tmp_path / "r50.pth")
    partial = {k: v for k, v in _trained_resnet18().state_dict().items() if not k.startswith("layer4.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"partial\.pth.*missing keys.*layer4"):
        load_backbone_weights(build_backbone("resnet18"), tmp_path / "partial.pth")
    report = load_backbone_weights(build_backbone("resnet18"), tmp_path / "partial.pth", strict=False)
    assert report["missing_keys"] and all(k.startswith("layer4.") for k in report["missing_keys"])
    with pytest.raises(ValueError, match="encoder_q"):
        extract_backbone_state_dict({"state_dict": {"conv1.weight": torch.zeros(1)}}, "moco", "x.pth")
    with pytest.raises(ValueError, match="no state dict"):
        extract_backbone_state_dict({"epoch": 3}, "auto", "x.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_backbone_weights(build_backbone("resnet18"), tmp_path / "missing.pth")


@pytest.mark.parametrize("strict", [True, False])
def test_the_load_is_logged_with_format_tensor_count_and_dropped_keys(tmp_path, caplog, strict):
    """build_backbone(weights=...) says what it loaded: format, tensors, dropped (and with strict=False missing) keys."""
    rgb = torchvision.models.resnet18(weights=None)
    state = rgb.state_dict()
    if not strict:
        state = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    torch.save(state, tmp_path / "imagenet.pth")
    with caplog.at_level(logging.INFO, logger="monai_moco.networks.weights"):
        if strict:
            backbone = build_backbone("resnet18", in_channels=1, weights=tmp_path / "imagenet.pth")
            report = backbone.weights_report
        else:
            report = load_backbone_weights(build_backbone("resnet18"), tmp_path / "imagenet.pth", strict=False)
    expected = len(state) - 2  # the 1000-class fc is dropped
    assert report["num_tensors"] == expected and len(caplog.records) == 1
    record = caplog.records[0]
    message = record.getMessage()
    assert record.levelno == (logging.INFO if strict else logging.WARNING)
    for text in ("pretrained weights loaded", "imagenet.pth", "format 'torchvision'", f"{expected} of ",
                 "'fc.weight'", "'conv1.weight'"):
        assert text in message, (text, message)
    assert ("missing (left as initialised) none" in message) == strict
    assert strict or "'layer4." in message
