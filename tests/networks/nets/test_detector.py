"""Tests for build_retinanet_detector: MONAI's RetinaNet on our (pretrained) ResNet backbones."""

from __future__ import annotations

import pytest
import torch

from monai_moco.networks.nets import build_backbone, build_retinanet_detector
from monai_moco.networks.weights import to_moco_state_dict

SHAPES = [[20.0, 12.0], [26.0, 14.0]]


def _targets(n: int):
    return [{"boxes": torch.tensor([[8.0, 6.0, 56.0, 30.0], [8.0, 34.0, 56.0, 60.0]]), "labels": torch.tensor([0, 1])}
            for _ in range(n)]


@pytest.mark.parametrize("returned_layers, fpn_channels", [((2, 3), 32), ((1, 2, 3), 16)])
def test_trains_and_detects(returned_layers, fpn_channels):
    torch.manual_seed(0)
    detector = build_retinanet_detector(
        build_backbone("resnet18", in_channels=1), 2, SHAPES, returned_layers=returned_layers, fpn_channels=fpn_channels
    )
    assert detector.network.feature_extractor.out_channels == fpn_channels
    assert detector.num_anchors_per_loc == len(SHAPES)
    images = [torch.rand(1, 64, 64) for _ in range(2)]
    detector.train()
    losses = detector(images, _targets(2))
    loss = losses[detector.cls_key] + losses[detector.box_reg_key]
    loss.backward()
    grads = [p.grad for n, p in detector.named_parameters() if n.startswith("network.feature_extractor.body.conv1")]
    assert grads and grads[0] is not None and grads[0].abs().sum() > 0  # the whole backbone trains
    detector.eval()
    with torch.no_grad():
        out = detector(images)
    assert len(out) == 2 and set(out[0]) == {"boxes", "labels", "labels_scores"}
    assert out[0]["boxes"].shape[1] == 4 and len(out[0]["boxes"]) <= 100


def test_pretrained_weights_reach_the_detector(tmp_path):
    """A MoCo-CXR-format checkpoint (module.encoder_q.*) loaded by build_backbone ends up inside the FPN body."""
    torch.manual_seed(1)
    source = build_backbone("resnet18", in_channels=1)
    path = tmp_path / "moco_cxr.pth.tar"
    torch.save({"state_dict": to_moco_state_dict(source.state_dict())}, path)
    backbone = build_backbone("resnet18", in_channels=1, weights=path)
    expected = source.layer2[0].conv1.weight.detach().clone()
    detector = build_retinanet_detector(backbone, 2, SHAPES, trainable_backbone_layers=3)
    body = detector.network.feature_extractor.body
    torch.testing.assert_close(body["layer2"][0].conv1.weight, expected)
    assert not body["layer1"][0].conv1.weight.requires_grad and body["layer2"][0].conv1.weight.requires_grad
    assert "layer4" not in body  # stages above the last returned one are dropped


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backbone": torch.nn.Linear(2, 2)}, "must be a ResNet"),
        ({"num_classes": 0}, "num_classes"),
        ({"base_anchor_shapes": []}, "base_anchor_shapes"),
        ({"base_anchor_shapes": [[10.0, -1.0]]}, "base_anchor_shapes"),
        ({"returned_layers": (0, 5)}, "returned_layers"),
        ({"trainable_backbone_layers": 6}, "trainable_backbone_layers"),
    ],
)
def test_errors(kwargs, match):
    args = {"backbone": build_backbone("resnet18"), "num_classes": 2, "base_anchor_shapes": SHAPES, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_retinanet_detector(**args)
