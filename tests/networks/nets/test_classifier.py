"""Tests for monai_moco.networks.nets.classifier: linear probe keeps the backbone fixed, fine-tuning does not."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from monai_moco.networks.nets.backbones import build_backbone
from monai_moco.networks.nets.classifier import XRayClassifier


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _steps(model: XRayClassifier, n: int = 3) -> None:
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.param_groups(lr=0.1, backbone_lr=0.05), lr=0.1, momentum=0.9)
    model.train()
    for _ in range(n):
        x, y = torch.rand(4, 1, 32, 32), torch.tensor([0, 1, 0, 1])
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("frozen", [True, False])
def test_frozen_probe_leaves_backbone_unchanged(frozen):
    torch.manual_seed(0)
    model = XRayClassifier(build_backbone("resnet18"), num_classes=2, frozen=frozen, dropout=0.1)
    before, head_before = _snapshot(model.backbone), _snapshot(model.head)
    _steps(model)
    after = _snapshot(model.backbone)
    bn_stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert bn_stats
    if frozen:
        assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics
        assert not model.backbone.training and model.training and model.head.training
        assert all(not p.requires_grad for p in model.backbone.parameters())
        assert len(model.param_groups(lr=0.1)) == 1
    else:
        assert any(not torch.equal(before[k], after[k]) for k in before if "weight" in k)
        assert any(not torch.equal(before[k], after[k]) for k in bn_stats)
        groups = model.param_groups(lr=0.1, backbone_lr=0.01)
        assert [g["lr"] for g in groups] == [0.1, 0.01]
    assert any(not torch.equal(head_before[k], v) for k, v in model.head.state_dict().items())


@pytest.mark.parametrize("name, kwargs, num_classes", [("resnet18", {}, 2), ("convstem_vit_tiny",
                         {"img_size": 32, "num_layers": 2}, 5), ("resnet18", {}, 1)])
def test_output_shape(name, kwargs, num_classes):
    model = XRayClassifier(build_backbone(name, **kwargs), num_classes=num_classes).eval()
    with torch.no_grad():
        assert model(torch.rand(3, 1, 32, 32)).shape == (3, num_classes)
        assert model.embed(torch.rand(3, 1, 32, 32)).shape == (3, model.backbone.out_features)


def test_frozen_features_equal_pretrained_backbone():
    backbone = build_backbone("resnet18")
    reference = copy.deepcopy(backbone).eval()
    model = XRayClassifier(backbone, 2, frozen=True).train()
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(model.embed(x), reference(x))


def test_errors():
    with pytest.raises(ValueError, match="out_features"):
        XRayClassifier(nn.Sequential(nn.Flatten()), 2)
    with pytest.raises(ValueError, match="num_classes"):
        XRayClassifier(build_backbone("resnet18"), 0)
