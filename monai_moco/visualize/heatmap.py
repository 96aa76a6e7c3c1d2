"""Patch-score heat-maps over radiographs: which patches the top-K patch head found salient.

The per-patch scores of :class:`~monai_moco.networks.blocks.TopKPatchHead` (one per ViT token, row-major over the
token grid) are upsampled bilinearly to the image size, normalised to [0, 1], coloured with a matplotlib colormap and
blended over the grey radiograph; the K selected patches can be outlined. This is the patch-selection view of
Cordonnier et al., "Differentiable Patch Selection for Image Recognition" (CVPR 2021), drawn like a CAM overlay
(Zhou et al., CVPR 2016). Only matplotlib colormaps and PIL are used (no pyplot figures, no display needed).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["patch_score_map", "heatmap_overlay", "save_heatmap_png", "write_rgb_png"]


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


def save_heatmap_png(
    path: str | os.PathLike,
    image: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    grid_hw: Sequence[int],
    topk_indices: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    alpha: float = 0.45,
    cmap: str = "jet",
) -> Path:
    """Write :func:`heatmap_overlay` as an RGB PNG of the image's size (parent folders are created).

    Args:
        path: output ``.png`` path.
        image: ``1 x H x W`` or ``H x W`` in [0, 1].
        scores: ``N`` patch scores.
        grid_hw: token grid ``(h, w)``.
        topk_indices: kept patches to outline.
        alpha: heat-map weight.
        cmap: matplotlib colormap name.

    Returns:
        the written path.

    Example::

        save_heatmap_png("runs/heat/0.png", image, scores, net.backbone.grid_size(image.shape[-2:]))
    """
    return write_rgb_png(path, heatmap_overlay(image, scores, grid_hw, topk_indices, alpha, cmap))


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
