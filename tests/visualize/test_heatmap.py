"""Tests for patch-score heat-maps: upsampling, overlay colours, outlines, PNG size (on a real radiograph)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.visualize import GradCAM
from PIL import Image

from monai_moco.networks.blocks import MoCoV2ProjectionHead, TopKPatchHead
from monai_moco.networks.nets import ContrastiveEncoder, XRayClassifier, build_backbone
from monai_moco.visualize.heatmap import (
    classifier_heatmap,
    draw_boxes,
    gradcam_maps,
    heatmap_overlay,
    is_topk_patch_head,
    patch_score_map,
    patch_scores,
    token_grid,
    topk_pooling_weights,
    write_rgb_png,
)


def _radiograph(kermany_dir: Path, hw: tuple[int, int]) -> torch.Tensor:
    path = sorted((kermany_dir / "test").rglob("*.jpeg"))[0]
    img = Image.open(path).convert("L").resize((hw[1], hw[0]), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]


@pytest.mark.parametrize("batched", [False, True])
def test_patch_score_map(batched: bool) -> None:
    scores = torch.arange(6.0)  # grid 2 x 3, increasing row-major
    s = scores[None].repeat(2, 1) if batched else scores
    m = patch_score_map(s, (2, 3), (40, 60))
    assert m.shape == ((2, 40, 60) if batched else (40, 60))
    m = m[0] if batched else m
    assert m.min() == 0.0 and m.max() == 1.0
    assert m[5, 5] < m[5, 55] < m[35, 55]  # increases left->right and top->bottom
    assert torch.count_nonzero(patch_score_map(torch.ones(6), (2, 3), (8, 8))) == 0  # constant -> zeros
    with pytest.raises(ValueError, match=r"\(2, 3\).*N = 6"):
        patch_score_map(torch.ones(5), (2, 3), (8, 8))


def test_overlay_and_png_on_a_real_radiograph(kermany_dir: Path, tmp_path: Path) -> None:
    hw = (160, 128)  # non-square: grid 10 x 8 for patch 16
    image = _radiograph(kermany_dir, hw)
    grid = (10, 8)
    scores = torch.zeros(80)
    scores.view(10, 8)[:, :4] = 5.0  # left half salient
    out = write_rgb_png(tmp_path / "sub" / "h.png", heatmap_overlay(image, scores, grid, topk_indices=[0, 79]))
    png = Image.open(out)
    assert png.size == (hw[1], hw[0]) and png.mode == "RGB"
    rgb = np.asarray(png).astype(np.int32)
    assert np.array_equal(rgb, heatmap_overlay(image, scores, grid, topk_indices=[0, 79]))
    # jet: high scores red, low scores blue -> red minus blue is larger on the left than on the right
    red_minus_blue = rgb[..., 0] - rgb[..., 2]
    assert red_minus_blue[30:130, 10:50].mean() > red_minus_blue[30:130, 78:118].mean() + 100
    # outlines of the selected patches (first and last) are white, a patch interior is not forced white
    assert (rgb[0, 0:16] == 255).all() and (rgb[159, 112:128] == 255).all() and (rgb[150:160, 127] == 255).all()
    assert not (rgb[80, 60] == 255).all()
    # the radiograph still shows through: the overlay is not constant inside a region of constant score
    assert rgb[20:140, 70:120, 1].std() > 5


def test_overlay_alpha_and_errors() -> None:
    image = torch.linspace(0, 1, 32)[None].repeat(32, 1)
    scores = torch.rand(16)
    gray = heatmap_overlay(image, scores, (4, 4), alpha=0.0)
    assert np.array_equal(gray[..., 0], gray[..., 2])  # only the grey image
    assert np.array_equal(gray[..., 0], np.rint(image.numpy() * 255).astype(np.uint8))
    assert heatmap_overlay(image[None], scores[None], (4, 4), cmap="viridis").shape == (32, 32, 3)
    with pytest.raises(ValueError, match="outside the 4 x 4"):
        heatmap_overlay(image, scores, (4, 4), topk_indices=[16])
    with pytest.raises(ValueError, match=r"\[2, 32, 32\]"):
        heatmap_overlay(torch.rand(2, 32, 32), scores, (4, 4))


def _resnet_classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    model = XRayClassifier(build_backbone("resnet18", in_channels=1), 2).eval()
    with torch.no_grad():  # a head that separates the classes, so the map is not flat
        model.head.weight.normal_(0, 0.5)
    return model


def _topk_classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    vit = build_backbone("convstem_vit_tiny", img_size=64, patch_size=16, num_layers=2, pooling="none")
    backbone = torch.nn.Sequential(vit, TopKPatchHead(vit.out_features, k=3))
    backbone.out_features = vit.out_features
    return XRayClassifier(backbone, 2).eval()


def test_topk_head_and_grid_are_found_by_type_and_by_the_backbone_in_eager_and_scripted_models() -> None:
    """The head is a TopKPatchHead (isinstance, or its TorchScript class) and the grid is the encoder's own, so a
    non-square input gives a non-square grid."""
    model = _topk_classifier()
    vit, head = model.backbone[0], model.backbone[1]
    assert is_topk_patch_head(head) and not is_topk_patch_head(vit)
    assert is_topk_patch_head(torch.jit.script(TopKPatchHead(8, k=2)))
    assert token_grid([vit], (64, 32)) == (4, 2) == token_grid([torch.jit.script(vit)], (64, 32))
    scores, indices, grid = patch_scores(model.backbone, torch.rand(2, 1, 64, 32))
    assert grid == (4, 2) and scores.shape == (2, 8) and indices.shape == (2, 3)
    heat = classifier_heatmap(model, torch.rand(1, 1, 64, 32), class_index=0)
    assert heat.method == "topk_patch_scores" and tuple(heat.scores.shape) == (4, 2) and len(heat.topk_indices) == 3


@pytest.mark.parametrize("scripted", [False, True])
def test_gradcam_is_monai_gradcam_on_the_last_resnet_stage(scripted: bool) -> None:
    model = _resnet_classifier()
    x = torch.rand(1, 1, 64, 64)
    cls = int(model(x).argmax())
    heat = classifier_heatmap(torch.jit.script(model) if scripted else model, x, class_index=cls)
    expected = GradCAM(nn_module=model, target_layers="backbone.layer4")(x, class_idx=cls)[0, 0]
    assert heat.method == "gradcam" and tuple(heat.scores.shape) == (64, 64) and float(heat.scores.max()) == 1.0
    torch.testing.assert_close(heat.scores, expected)
    assert not any(m.training for m in model.modules())  # still in eval mode: BatchNorm keeps its running statistics


def test_input_gradient_is_the_fallback_and_no_gradient_is_an_error() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2))
    heat = classifier_heatmap(net, torch.rand(1, 1, 16, 16), class_index=0)
    assert heat.method == "gradient" and tuple(heat.scores.shape) == (16, 16)
    frozen = XRayClassifier(build_backbone("convstem_vit_tiny", img_size=32, patch_size=16, num_layers=2), 2,
                            frozen=True).eval()
    with pytest.raises(RuntimeError, match="no gradient"):
        classifier_heatmap(frozen, torch.rand(1, 1, 32, 32), class_index=0)


@pytest.mark.parametrize("pooling, k", [("weighted", 4), ("mean", 4), ("weighted", 1)])
def test_topk_pooling_weights_are_the_heads_pooling_weights_on_the_token_grid(pooling: str, k: int) -> None:
    torch.manual_seed(0)
    backbone = build_backbone("convstem_vit_tiny", in_channels=1, img_size=32, patch_size=8, pooling="none")
    head = TopKPatchHead(backbone.out_features, k=k, pooling=pooling, temperature=0.5)
    enc = ContrastiveEncoder(backbone, MoCoV2ProjectionHead(backbone.out_features, 16, 8), patch_head=head).eval()
    images = torch.rand(3, 1, 32, 32)
    maps, kept = topk_pooling_weights(enc, images)
    assert maps.shape == (3, 4, 4) and kept.shape == (3, k)
    torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(3))
    scores, indices, _ = patch_scores(enc, images)
    flat = maps.flatten(1)
    assert torch.equal((flat > 0).nonzero()[:, 1].sort().values, indices.flatten().sort().values) or k == 1
    expected = torch.softmax(scores.gather(1, indices) / 0.5, 1) if pooling == "weighted" and k > 1 else 1.0 / k
    torch.testing.assert_close(flat.gather(1, indices), torch.as_tensor(expected).expand(3, k).float())
    with torch.no_grad():  # the embedding is the tokens averaged with exactly these weights
        tokens = enc.backbone(images)
        torch.testing.assert_close(enc.embed(images), torch.einsum("bn,bnd->bd", flat, tokens), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer, grid", [("layer4", (2, 2)), ("layer3", (4, 4))])
def test_gradcam_maps_are_monai_gradcam_masses_at_the_layer_resolution(layer: str, grid: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = XRayClassifier(build_backbone("resnet18", in_channels=1), num_classes=2, frozen=True).eval()
    with torch.no_grad():  # a positive pneumonia weight on the (ReLU, non-negative) features: the CAM is not all zero
        model.head.weight[1].abs_()
    images = torch.rand(3, 1, 64, 64)
    maps = gradcam_maps(model, images, class_index=1, layer=layer)
    assert maps.shape == (3, *grid) and (maps >= 0).all() and maps.sum() > 0
    single = gradcam_maps(model, images[1:2], class_index=1, layer=layer)
    torch.testing.assert_close(maps[1:2], single, atol=1e-5, rtol=1e-4)  # each map depends on its own image only
    plain = XRayClassifier(model.backbone, num_classes=2).eval().requires_grad_(True)  # same weights, not frozen
    plain.head = model.head
    expected = GradCAM(nn_module=plain, target_layers=f"backbone.{layer}").compute_map(images, class_idx=1)[:, 0]
    torch.testing.assert_close(maps, expected.detach(), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="layer must be one of"):
        gradcam_maps(model, images, 1, layer="fc")
    with pytest.raises(ValueError, match="torchvision-layout ResNet"):
        gradcam_maps(torch.nn.Linear(2, 2), images, 1)


def test_draw_boxes_outlines_in_the_image_axis_order() -> None:
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    out = draw_boxes(rgb, torch.tensor([[1.0, 2.0, 4.0, 8.0]]), colour=(0, 255, 0), scale=2.0)  # rows 2-7, cols 4-15
    green = (out == np.array([0, 255, 0], dtype=np.uint8)).all(-1)
    assert green[2, 4:16].all() and green[7, 4:16].all() and green[2:8, 4].all() and green[2:8, 15].all()
    assert green.sum() == 2 * 12 + 2 * 4 and not rgb.any()  # the input is not modified
    with pytest.raises(ValueError, match=r"boxes must be N x 4"):
        draw_boxes(rgb, torch.zeros(2, 3))
