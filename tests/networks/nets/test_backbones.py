"""Tests for monai_moco.networks.nets.backbones: every name builds a pooled B x F feature extractor."""

from __future__ import annotations

import pytest
import torch

from monai_moco.networks.nets.backbones import BACKBONE_NAMES, build_backbone, known_backbone_names

# small depth / image size so that every architecture builds and runs in a fraction of a second
CASES = [
    ("resnet18", {}, 512),
    ("resnet50", {}, 2048),
    ("timm:vit_base_patch16_224", {"img_size": 32, "depth": 1}, 768),
    ("timm:resnet18", {}, 512),
    ("monai:DenseNet121", {}, 1024),
    ("convstem_vit_tiny", {"img_size": 32, "num_layers": 2}, 192),
    ("convstem_vit_small", {"img_size": 32, "num_layers": 2}, 384),
    ("convstem_vit_base", {"img_size": 32, "num_layers": 2}, 768),
    ("patchify_vit_tiny", {"img_size": 32, "num_layers": 1}, 192),
    ("patchify_vit_small", {"img_size": 32, "num_layers": 1}, 384),
    ("patchify_vit_base", {"img_size": 32, "num_layers": 1}, 768),
]


@pytest.mark.parametrize("name, kwargs, width", CASES, ids=[c[0] for c in CASES])
def test_each_name_builds_pooled_features(name, kwargs, width):
    net = build_backbone(name, in_channels=1, **kwargs).eval()
    assert net.out_features == width
    with torch.no_grad():
        out = net(torch.rand(2, 1, 32, 32))
    assert out.shape == (2, width)
    assert torch.isfinite(out).all()


def test_every_plain_name_is_tested():
    assert set(BACKBONE_NAMES) <= {c[0] for c in CASES}


def test_convstem_vs_patchify_stem_and_three_channels():
    conv = build_backbone("convstem_vit_tiny", img_size=32, num_layers=2)
    patch = build_backbone("patchify_vit_tiny", img_size=32, num_layers=2)
    assert type(conv.stem).__name__ == "ConvStem" and type(patch.stem).__name__ == "PatchifyStem"
    assert build_backbone("resnet18", in_channels=3).conv1.in_channels == 3
    assert build_backbone("resnet18").conv1.weight.shape == (64, 1, 7, 7)


@pytest.mark.parametrize("name", ["resnet34", "vit_tiny", "monai:UNet", "timm:not_a_timm_model"])
def test_unknown_name_lists_known_names(name):
    with pytest.raises(ValueError, match="known names") as err:
        build_backbone(name)
    for known in ("resnet18", "convstem_vit_small", "monai:DenseNet121", "timm:<name>"):
        assert known in str(err.value)
    assert "resnet18" in known_backbone_names()


@pytest.mark.parametrize("weights", ["IMAGENET1K_V1", "DEFAULT", "hf-hub:timm/vit_base_patch16_224.augreg_in21k",
                                     "https://download.pytorch.org/models/resnet18-f37072fd.pth", "facebook/moco"])
def test_hub_like_weights_are_refused(weights):
    with pytest.raises(ValueError, match="local"):
        build_backbone("resnet18", weights=weights)


def test_missing_weights_file_and_download_flags(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here.pth"):
        build_backbone("resnet18", weights=tmp_path / "nothing_here.pth")
    with pytest.raises(ValueError, match="download"):
        build_backbone("timm:resnet18", pretrained=True)
    with pytest.raises(ValueError, match="local file"):
        build_backbone("resnet18", weights_enum="x", pretrained=True)
