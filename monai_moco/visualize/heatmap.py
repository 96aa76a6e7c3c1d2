"""Heat-maps over radiographs, written once for the training handler and the deploy application.

What a network looked at, three ways, each a :class:`HeatMap` (a grid over the input in [0, 1]):

* ``"topk_patch_scores"``: the per-patch scores of a :class:`~monai_moco.networks.blocks.TopKPatchHead` (one per ViT
  token, row-major over the backbone's own token grid), with the K kept patches; the patch-selection view of
  Cordonnier et al., "Differentiable Patch Selection for Image Recognition" (CVPR 2021).
* ``"gradcam"``: ``monai.visualize.GradCAM`` (Selvaraju et al., ICCV 2017) on the last stage of a torchvision-layout
  ResNet backbone.
* ``"gradient"``: the absolute input gradient of the class (Simonyan et al., ICLR workshop 2014), which any
  differentiable model has.

For measuring where a map points (:mod:`monai_moco.metrics.heatmap_faithfulness`) the un-normalised masses are
needed: :func:`topk_pooling_weights` gives the weight each patch has in the top-K head's pooled embedding (zero outside
the kept K), :func:`gradcam_maps` the ReLU'd Grad-CAM of a batch at the target layer's own resolution, and
:func:`draw_boxes` outlines reference boxes on an overlay.

The head is found by type: ``isinstance`` for an eager module, the TorchScript class type for a scripted one (an
exported model keeps its classes' qualified names, not their Python types). Maps are drawn by
:func:`heatmap_overlay`: upsampled bilinearly, min-max normalised, coloured with a matplotlib colormap and blended
over the grey radiograph (no pyplot figures, no display needed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.utils import eval_mode
from monai.visualize import GradCAM
from PIL import Image
from torch import nn

from monai_moco.networks.blocks import TopKPatchHead

__all__ = [
    "HeatMap",
    "classifier_heatmap",
    "draw_boxes",
    "gradcam_maps",
    "gradcam_heatmap",
    "heatmap_overlay",
    "input_gradient_heatmap",
    "is_topk_patch_head",
    "patch_score_map",
    "patch_scores",
    "token_grid",
    "topk_pooling_weights",
    "write_rgb_png",
]

_RESNET_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


@dataclass
class HeatMap:
    """A saliency grid over the model input.

    Attributes:
        scores: ``h x w`` float tensor in [0, 1].
        method: ``"topk_patch_scores"``, ``"gradcam"`` or ``"gradient"``.
        topk_indices: kept patch indices (row-major into ``h x w``) for the top-K head, else ``None``.
    """

    scores: torch.Tensor
    method: str
    topk_indices: list[int] | None = None


def _normalise(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().float()
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)


def is_topk_patch_head(module: nn.Module) -> bool:
    """Whether ``module`` is a :class:`~monai_moco.networks.blocks.TopKPatchHead`, eager or TorchScript.

    Args:
        module: any module, e.g. a child of a loaded ``model.ts``.

    Returns:
        ``isinstance(module, TopKPatchHead)``, or for a scripted module whether its TorchScript class is that class.

    Example::

        is_topk_patch_head(torch.jit.script(TopKPatchHead(192, k=4)))  # True
    """
    if isinstance(module, TopKPatchHead):
        return True
    if isinstance(module, torch.jit.ScriptModule):  # TorchScript numbers a class scripted again: ___torch_mangle_N.
        script_class = re.sub(r"___torch_mangle_\d+\.", "", module._c._type().qualified_name())
        return script_class == f"__torch__.{TopKPatchHead.__module__}.{TopKPatchHead.__qualname__}"
    return False


def token_grid(modules: Iterable[nn.Module], image_hw: Sequence[int]) -> tuple[int, int]:
    """The token grid of the first token producer among ``modules`` (searched depth-first), from its own geometry.

    Args:
        modules: the modules before a patch head (e.g. ``[encoder.backbone]``).
        image_hw: input size ``(H, W)``.

    Returns:
        ``(h, w)`` from the producer's ``grid_size((H, W))`` (eager :class:`~monai_moco.networks.nets.ConvStemViT`)
        or, for a scripted one, its ``patch_size`` attribute.

    Raises:
        ValueError: when no module has a ``grid_size`` method or an integer ``patch_size``.

    Example::

        token_grid([ConvStemViT(img_size=64, patch_size=16)], (64, 48))  # (4, 3)
    """
    h, w = (int(v) for v in image_hw)
    for top in modules:
        for m in top.modules():
            fn = getattr(m, "grid_size", None)
            if callable(fn):
                gh, gw = (int(g) for g in fn((h, w)))
                return gh, gw
            patch = getattr(m, "patch_size", None)
            if isinstance(patch, int) and patch > 0:
                return h // patch, w // patch
    raise ValueError("token_grid: no module before the patch head knows its token grid (grid_size or patch_size).")


def patch_scores(network: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Top-K patch scores of a batch (eval mode, no gradient; the network's mode is restored).

    Two layouts are understood: an encoder with ``embed_with_scores`` and a ``backbone`` (as
    :class:`~monai_moco.networks.nets.ContrastiveEncoder` with a patch head), or a module whose children are token
    producers followed by a :class:`~monai_moco.networks.blocks.TopKPatchHead` (a classifier's backbone, also
    scripted).

    Args:
        network: the network.
        images: ``B x C x H x W`` on the network's device.

    Returns:
        ``(scores B x N, indices B x K, grid (h, w))`` on the CPU.

    Raises:
        ValueError: when the network has neither layout.

    Example::

        scores, indices, grid = patch_scores(encoder, images)  # encoder: ContrastiveEncoder with a TopKPatchHead
    """
    hw = tuple(images.shape[-2:])
    with eval_mode(network), torch.no_grad():
        if callable(getattr(network, "embed_with_scores", None)) and hasattr(network, "backbone"):
            _, scores, indices = network.embed_with_scores(images)
            grid = token_grid([network.backbone], hw)
        else:
            children = list(network.children())
            heads = [i for i, c in enumerate(children) if is_topk_patch_head(c)]
            if len(heads) != 1 or heads[0] == 0:
                raise ValueError(f"patch_scores: {type(network).__name__} has no token producer and TopKPatchHead.")
            tokens = images
            for part in children[: heads[0]]:
                tokens = part(tokens)
            _, scores, indices = children[heads[0]](tokens, True)
            grid = token_grid(children[: heads[0]], hw)
    return scores.float().cpu(), indices.cpu(), grid


class _StagedClassifier(nn.Module):
    """Eager ``head(pool(features(x)))`` over a ResNet's stages, so ``GradCAM`` can hook ``features`` even when the
    stages are TorchScript (which takes no hooks)."""

    def __init__(self, stages: Sequence[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.features = nn.Sequential(*stages)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def gradcam_heatmap(model: nn.Module, image: torch.Tensor, class_index: int) -> HeatMap | None:
    """Grad-CAM of ``class_index`` on the last stage of ``model.backbone``, a torchvision-layout ResNet.

    Args:
        model: a classifier with ``backbone`` (``conv1 ... layer4``, ``avgpool``) and a linear ``head`` on the
            pooled features, eager or TorchScript (e.g. :class:`~monai_moco.networks.nets.XRayClassifier`).
        image: ``1 x C x H x W``.
        class_index: the logit to explain.

    Returns:
        the ``H x W`` map, or ``None`` when the model is not such a ResNet classifier.

    Example::

        heat = gradcam_heatmap(XRayClassifier(build_backbone("resnet18"), 2).eval(), torch.rand(1, 1, 64, 64), 1)
    """
    backbone, head = getattr(model, "backbone", None), getattr(model, "head", None)
    names = dict(backbone.named_children()) if backbone is not None else {}
    if head is None or "avgpool" not in names or not all(n in names for n in _RESNET_STAGES):
        return None
    staged = _StagedClassifier([names[n] for n in _RESNET_STAGES], head).train(backbone.training)  # GradCAM restores it
    with torch.enable_grad():  # the input needs a gradient when the weights have none (a frozen backbone)
        cam = GradCAM(nn_module=staged, target_layers="features")(image.clone().requires_grad_(True), class_index)
    return HeatMap(_normalise(cam[0, 0]), "gradcam")


def input_gradient_heatmap(model: nn.Module, image: torch.Tensor, class_index: int) -> HeatMap | None:
    """The absolute input gradient of ``class_index`` (first channel).

    Args:
        model: any differentiable classifier, eager or TorchScript.
        image: ``1 x C x H x W``.
        class_index: the logit to explain.

    Returns:
        the ``H x W`` map, or ``None`` when the output has no gradient with respect to the input (e.g. features
        computed under ``no_grad``, as a frozen linear probe does).

    Example::

        heat = input_gradient_heatmap(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2)),
                                      torch.rand(1, 1, 8, 8), 0)
    """
    with torch.enable_grad():
        x = image.clone().requires_grad_(True)
        logit = model(x)[0, class_index]
        grad = torch.autograd.grad(logit, x, allow_unused=True)[0] if logit.requires_grad else None
    return None if grad is None else HeatMap(_normalise(grad.abs()[0, 0]), "gradient")


def classifier_heatmap(model: nn.Module, image: torch.Tensor, class_index: int) -> HeatMap:
    """The best heat-map a classifier offers: top-K patch scores, else Grad-CAM, else the input gradient.

    Args:
        model: a classifier (``backbone`` + ``head`` for the first two methods), eager or TorchScript, in eval mode.
        image: ``1 x C x H x W`` model input.
        class_index: the logit to explain (Grad-CAM and gradient; the patch scores do not depend on it).

    Returns:
        the :class:`HeatMap`.

    Raises:
        RuntimeError: when none applies (no top-K head, not a ResNet, no input gradient).

    Example::

        heat = classifier_heatmap(model, x, class_index=1)
        rgb = heatmap_overlay(x[0], heat.scores.flatten(), tuple(heat.scores.shape), heat.topk_indices)
    """
    backbone = getattr(model, "backbone", None)
    if backbone is not None and any(is_topk_patch_head(c) for c in backbone.children()):
        scores, indices, grid = patch_scores(backbone, image)
        return HeatMap(_normalise(scores[0].reshape(grid)), "topk_patch_scores", [int(i) for i in indices[0]])
    heat = gradcam_heatmap(model, image, class_index) or input_gradient_heatmap(model, image, class_index)
    if heat is None:
        raise RuntimeError(
            "no heat-map: the model's output has no gradient with respect to its input (features computed without "
            "gradient, e.g. a frozen linear probe), it has no TopKPatchHead and its backbone is not a "
            "torchvision-layout ResNet for Grad-CAM."
        )
    return heat


def patch_score_map(
    scores: torch.Tensor | np.ndarray, grid_hw: Sequence[int], image_hw: Sequence[int]
) -> torch.Tensor:
    """Upsample patch scores to the image size (bilinear) and min-max normalise each map to [0, 1].

    Args:
        scores: ``B x N`` or ``N`` scores, row-major over the ``grid_hw`` token grid.
        grid_hw: token grid ``(h, w)`` with ``h * w == N`` (e.g. ``ConvStemViT.grid_size((H, W))``).
        image_hw: output size ``(H, W)``.

    Returns:
        float32 ``B x H x W`` (or ``H x W`` for 1D ``scores``) in [0, 1]; a constant map becomes all zeros.

    Raises:
        ValueError: if ``scores`` is not 1D/2D or ``N != h * w``.

    Example::

        >>> patch_score_map(torch.arange(4.0), (2, 2), (64, 64)).shape
        torch.Size([64, 64])
    """
    s = torch.as_tensor(scores).detach().float().cpu()
    squeeze = s.dim() == 1
    if squeeze:
        s = s[None]
    gh, gw = (int(g) for g in grid_hw)
    if s.dim() != 2 or s.shape[1] != gh * gw:
        raise ValueError(
            f"patch_score_map: scores of shape {list(torch.as_tensor(scores).shape)} do not fit the token grid "
            f"{(gh, gw)}; expected N or B x N with N = {gh * gw}."
        )
    maps = F.interpolate(s.reshape(-1, 1, gh, gw), size=tuple(int(v) for v in image_hw), mode="bilinear",
                         align_corners=False)[:, 0]
    lo = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - lo
    maps = torch.where(span > 0, (maps - lo) / span.clamp_min(1e-12), torch.zeros_like(maps))
    return maps[0] if squeeze else maps


def _topk_head(network: nn.Module) -> nn.Module:
    head = getattr(network, "patch_head", None)
    if head is not None and is_topk_patch_head(head):
        return head
    heads = [c for c in network.children() if is_topk_patch_head(c)]
    if len(heads) != 1:
        raise ValueError(f"topk_pooling_weights: {type(network).__name__} has no (single) TopKPatchHead.")
    return heads[0]


def topk_pooling_weights(network: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight of every patch in a top-K head's pooled embedding, laid out on the token grid.

    For ``pooling="weighted"`` (K > 1) the kept patches carry ``softmax(kept_scores / temperature)`` and the rest 0,
    exactly the weights :class:`~monai_moco.networks.blocks.TopKPatchHead` averages the tokens with; for ``"mean"``,
    ``"concat"`` or K = 1 each kept patch carries ``1 / K``. Each map sums to 1: the share of the embedding a patch
    contributes (Cordonnier et al., "Differentiable Patch Selection for Image Recognition", CVPR 2021).

    Args:
        network: an encoder with a top-K head (a layout :func:`patch_scores` understands), e.g.
            :class:`~monai_moco.networks.nets.ContrastiveEncoder`.
        images: ``B x C x H x W`` on the network's device.

    Returns:
        ``(weights B x h x w, indices B x K)`` on the CPU, ``(h, w)`` the token grid.

    Raises:
        ValueError: when the network has no top-K head.

    Example::

        weights, kept = topk_pooling_weights(encoder, images)  # weights[i].sum() == 1
    """
    scores, indices, grid = patch_scores(network, images)
    head = _topk_head(network)
    kept = scores.gather(1, indices) / float(getattr(head, "temperature", 1.0))
    if getattr(head, "pooling", "weighted") == "weighted" and indices.shape[1] > 1:
        w = torch.softmax(kept, dim=1)
    else:
        w = torch.full_like(kept, 1.0 / indices.shape[1])
    maps = torch.zeros_like(scores).scatter_(1, indices, w)
    return maps.reshape(scores.shape[0], *grid), indices


def gradcam_maps(model: nn.Module, images: torch.Tensor, class_index: int, layer: str = "layer4") -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017) of a batch at ``layer`` of a ResNet classifier, not upsampled.

    ``monai.visualize.GradCAM.compute_map``: ``ReLU(sum_c mean(dlogit/dA_c) * A_c)`` on the layer's own grid (e.g.
    2 x 2 at ``layer4`` of a ResNet on 64 px input), without the min-max normalisation of the displayed map, so the
    values are a mass. The model runs in eval mode (each image's map depends on that image only).

    Args:
        model: a classifier with a torchvision-layout ResNet ``backbone`` and a linear ``head``, e.g. a frozen
            :class:`~monai_moco.networks.nets.XRayClassifier` (features are recomputed with gradients).
        images: ``B x C x H x W``.
        class_index: the logit to explain (1 = pneumonia for the Kermany classifiers).
        layer: the ResNet stage whose activations are weighted (``"layer1"`` ... ``"layer4"``).

    Returns:
        ``B x h x w`` float tensor (non-negative) on the CPU.

    Raises:
        ValueError: when the model is not such a ResNet classifier or ``layer`` is not a stage.

    Example::

        cams = gradcam_maps(classifier, images, class_index=1)  # B x 2 x 2 for 64 px input
    """
    backbone, head = getattr(model, "backbone", None), getattr(model, "head", None)
    names = dict(backbone.named_children()) if backbone is not None else {}
    if head is None or not all(n in names for n in _RESNET_STAGES):
        raise ValueError(
            f"gradcam_maps: {type(model).__name__} needs a torchvision-layout ResNet 'backbone' ({_RESNET_STAGES}) "
            "and a linear 'head'."
        )
    if layer not in _RESNET_STAGES[4:]:
        raise ValueError(f"gradcam_maps: layer must be one of {_RESNET_STAGES[4:]}, got {layer!r}.")
    staged = _StagedClassifier([names[n] for n in _RESNET_STAGES], head)
    with eval_mode(staged), torch.enable_grad():
        cam = GradCAM(nn_module=staged, target_layers=f"features.{_RESNET_STAGES.index(layer)}")
        maps = cam.compute_map(images.clone().requires_grad_(True), class_idx=class_index)
    return maps[:, 0].detach().float().cpu()


def draw_boxes(
    rgb: np.ndarray, boxes: torch.Tensor | np.ndarray, colour: Sequence[int] = (255, 255, 255), scale: float = 1.0
) -> np.ndarray:
    """Outline boxes on an RGB image (a copy), e.g. reference lung boxes on a :func:`heatmap_overlay`.

    Args:
        rgb: ``H x W x 3`` uint8.
        boxes: ``N x 4`` ``(row_min, col_min, row_max, col_max)`` in pixels of the frame the image shows before
            ``scale`` (the image axis order, as :class:`~monai_moco.transforms.LetterboxBox` returns them).
        colour: RGB of the outline.
        scale: factor from box coordinates to ``rgb`` pixels (e.g. 4 for a 64 px frame drawn at 256 px).

    Returns:
        the outlined ``H x W x 3`` uint8 copy.

    Raises:
        ValueError: if ``rgb`` is not ``H x W x 3`` uint8 or ``boxes`` is not ``N x 4``.

    Example::

        rgb = draw_boxes(heatmap_overlay(image, scores, (8, 8)), lung_boxes, colour=(0, 255, 0))
    """
    out = np.array(rgb, copy=True)
    if out.ndim != 3 or out.shape[-1] != 3 or out.dtype != np.uint8:
        raise ValueError(f"draw_boxes: expected an H x W x 3 uint8 image, got {out.dtype} {list(out.shape)}.")
    b = np.asarray(torch.as_tensor(boxes).detach().cpu(), dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"draw_boxes: boxes must be N x 4 (row_min, col_min, row_max, col_max), got {list(b.shape)}.")
    h, w = out.shape[:2]
    for r0, c0, r1, c1 in np.rint(b * scale).astype(int):
        r0, r1 = int(np.clip(r0, 0, h - 1)), int(np.clip(r1 - 1, 0, h - 1))
        c0, c1 = int(np.clip(c0, 0, w - 1)), int(np.clip(c1 - 1, 0, w - 1))
        out[r0, c0 : c1 + 1] = colour
        out[r1, c0 : c1 + 1] = colour
        out[r0 : r1 + 1, c0] = colour
        out[r0 : r1 + 1, c1] = colour
    return out


def _gray_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    img = torch.as_tensor(image).detach().float().cpu()
    if img.dim() == 3 and img.shape[0] == 1:
        img = img[0]
    if img.dim() != 2:
        raise ValueError(f"heatmap_overlay: image must be 1 x H x W or H x W, got shape {list(img.shape)}.")
    return img.clamp(0.0, 1.0).numpy()


def heatmap_overlay(
    image: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    grid_hw: Sequence[int],
    topk_indices: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    alpha: float = 0.45,
    cmap: str = "jet",
) -> np.ndarray:
    """Grey radiograph blended with the coloured patch-score map; selected patches outlined in white.

    Args:
        image: ``1 x H x W`` or ``H x W`` intensities in [0, 1] (clipped).
        scores: ``N`` scores (or ``1 x N``) over the token grid.
        grid_hw: token grid ``(h, w)``, ``h * w == N``.
        topk_indices: indices into N of the kept patches to outline (e.g. ``TopKPatchHead`` ``indices[i]``).
        alpha: weight of the heat-map in the blend (0 = image only, 1 = heat-map only).
        cmap: a matplotlib colormap name.

    Returns:
        ``H x W x 3`` uint8 RGB.

    Raises:
        ValueError: for a bad image/scores shape, ``alpha`` outside [0, 1] or an index outside the grid.

    Example::

        >>> rgb = heatmap_overlay(torch.rand(1, 64, 64), torch.rand(16), (4, 4), topk_indices=[0, 5])
        >>> rgb.shape, rgb.dtype
        ((64, 64, 3), dtype('uint8'))
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"heatmap_overlay: alpha must be in [0, 1], got {alpha}.")
    gray = _gray_image(image)
    h, w = gray.shape
    s = torch.as_tensor(scores)
    if s.dim() == 2 and s.shape[0] == 1:
        s = s[0]
    heat = patch_score_map(s, grid_hw, (h, w)).numpy()
    colour = matplotlib.colormaps[cmap](heat)[..., :3]
    rgb = (1.0 - alpha) * gray[..., None] + alpha * colour
    out = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    if topk_indices is not None:
        gh, gw = (int(g) for g in grid_hw)
        t = max(1, round(min(h, w) / 150))
        for idx in np.asarray(torch.as_tensor(topk_indices).cpu()).reshape(-1).tolist():
            if not 0 <= idx < gh * gw:
                raise ValueError(f"heatmap_overlay: top-K index {idx} is outside the {gh} x {gw} token grid.")
            r, c = divmod(int(idx), gw)
            y0, y1 = r * h // gh, max(r * h // gh + 1, (r + 1) * h // gh)
            x0, x1 = c * w // gw, max(c * w // gw + 1, (c + 1) * w // gw)
            out[y0 : y0 + t, x0:x1] = 255
            out[max(y0, y1 - t) : y1, x0:x1] = 255
            out[y0:y1, x0 : x0 + t] = 255
            out[y0:y1, max(x0, x1 - t) : x1] = 255
    return out


def write_rgb_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an ``H x W x 3`` uint8 array as a PNG, creating parent folders.

    Args:
        path: output path.
        rgb: ``H x W x 3`` uint8 (e.g. from :func:`heatmap_overlay`).

    Returns:
        the written path.

    Raises:
        ValueError: if ``rgb`` is not ``H x W x 3`` uint8.

    Example::

        write_rgb_png("out/overlay.png", heatmap_overlay(image, scores, (14, 14)))
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"write_rgb_png: expected an H x W x 3 uint8 array, got {arr.dtype} {list(arr.shape)}.")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(out)
    return out
