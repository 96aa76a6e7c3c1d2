"""Does a heat-map point at the boxes? Mass inside the boxes and the pointing game, with their chance levels.

Two localisation scores of a saliency map against reference boxes (here: the lung fields of a chest radiograph):

* **mass in boxes**: the share of the map's (non-negative) mass that falls inside the union of the boxes; the
  "energy-based pointing game" of Wang et al., "Score-CAM" (CVPR workshops 2020).
* **pointing game**: whether the map's maximum lies inside a box (Zhang et al., "Top-down Neural Attention by
  Excitation Backprop", ECCV 2016).

Each has a chance level that depends on how much of the frame the boxes cover, which is large for lung boxes on a
chest radiograph: a uniform map puts ``union area / frame area`` of its mass inside (``chance_mass``) and, with its
maximum drawn uniformly among the map's cells, hits with probability ``share of cell centres inside``
(``chance_pointing``). A map is only informative where it beats these.

Heat-maps coarser than the image are scored on their own grid, not upsampled: cell ``(i, j)`` of an ``h x w`` map
covers ``[j W / w, (j + 1) W / w) x [i H / h, (i + 1) H / h)`` of the ``H x W`` frame the boxes live in, its weight is
spread evenly over that area (nearest-neighbour upsampling, so a ViT patch score stays a property of its patch), and
the union of the boxes is rasterised to the grid as the exact fraction of each cell it covers. The mass share is then
``sum(map * coverage) / sum(map)``, identical to scoring the nearest-upsampled map at any finer resolution. The
pointing game places a cell's value at the cell centre; when several cells share the maximum, the hit is the share of
them whose centres are inside (the expected hit of a random tie-break), so a constant map scores exactly its chance
level. A map with no positive mass (e.g. a Grad-CAM that the ReLU zeroes everywhere) has no defined score: both are
NaN and ``empty`` is true, for the caller to count.

Boxes are ``(row_min, col_min, row_max, col_max)``: corners in the heat-map's own axis order, MONAI's
``StandardMode`` for 2D (``monai.data.box_utils``), in continuous pixel coordinates of the frame (pixel ``(r, c)``
spans ``[r, r + 1) x [c, c + 1)``). That is what :class:`~monai_moco.transforms.LetterboxBoxd` returns when it moves
the COCO ``(x_min, y_min, x_max, y_max)`` boxes of :func:`monai_moco.data.coco_box_datalist` onto the letterboxed
network input, so the boxes follow the image preprocessing without a hand-made conversion.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["box_coverage_grid", "cell_centres_in_boxes", "heatmap_box_scores"]

_SCORES = ("mass_in_boxes", "pointing_hit", "chance_mass", "chance_pointing", "empty")


def _frame(image_size: Sequence[int] | int) -> tuple[int, int]:
    size = (int(image_size), int(image_size)) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(size) != 2 or min(float(s) for s in size) <= 0:
        raise ValueError(f"image_size must be (H, W) of positive numbers or one int, got {image_size!r}.")
    return float(size[0]), float(size[1])  # type: ignore[return-value]


def _boxes_array(boxes: torch.Tensor | np.ndarray | Sequence[Sequence[float]], what: str) -> np.ndarray:
    b = np.asarray(torch.as_tensor(boxes).detach().cpu(), dtype=np.float64)
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(
            f"{what}: boxes must be N x 4 (row_min, col_min, row_max, col_max), got shape {list(b.shape)}."
        )
    if not np.all(np.isfinite(b)) or np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1]):
        raise ValueError(f"{what}: every box needs finite row_min <= row_max and col_min <= col_max, got {b.tolist()}.")
    return b


def box_coverage_grid(
    boxes: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
    image_size: Sequence[int] | int,
    grid_size: Sequence[int] | int,
) -> torch.Tensor:
    """Fraction of each cell of an ``h x w`` grid over the ``H x W`` frame covered by the union of the boxes.

    Exact for axis-aligned boxes: the frame is cut along every cell edge and box edge, each elementary rectangle is
    wholly inside or outside every box, and the covered ones are summed per cell. Overlapping boxes count once.

    Args:
        boxes: ``N x 4`` ``(row_min, col_min, row_max, col_max)`` in pixel coordinates of the frame (parts outside the frame
            are ignored); ``N`` may be 0.
        image_size: the frame ``(H, W)`` (one int for a square frame).
        grid_size: the grid ``(h, w)`` (one int for a square grid), e.g. a ViT's token grid or the pixel grid.

    Returns:
        float64 ``h x w`` tensor in [0, 1].

    Raises:
        ValueError: for boxes that are not ``N x 4`` with ordered corners, or non-positive sizes.

    Example::

        >>> box_coverage_grid([[0, 0, 64, 32]], (64, 64), (2, 2))  # the left half
        tensor([[1., 0.],
                [1., 0.]], dtype=torch.float64)
    """
    fh, fw = _frame(image_size)
    gh, gw = (int(v) for v in _frame(grid_size))
    b = _boxes_array(boxes, "box_coverage_grid")
    xe = np.linspace(0.0, fw, gw + 1)
    ye = np.linspace(0.0, fh, gh + 1)
    xs = np.unique(np.concatenate([xe, np.clip(b[:, [1, 3]].ravel(), 0.0, fw)]))
    ys = np.unique(np.concatenate([ye, np.clip(b[:, [0, 2]].ravel(), 0.0, fh)]))
    cx, cy = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2
    inside = np.zeros((cy.size, cx.size), dtype=bool)
    for y0, x0, y1, x1 in b:
        inside |= ((cy >= y0) & (cy < y1))[:, None] & ((cx >= x0) & (cx < x1))[None, :]
    area = np.outer(np.diff(ys), np.diff(xs)) * inside
    col = np.clip(np.searchsorted(xe, cx, side="right") - 1, 0, gw - 1)
    row = np.clip(np.searchsorted(ye, cy, side="right") - 1, 0, gh - 1)
    covered = np.zeros((gh, gw))
    np.add.at(covered, (row[:, None], col[None, :]), area)
    return torch.from_numpy(covered / ((fh / gh) * (fw / gw)))


def cell_centres_in_boxes(
    boxes: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
    image_size: Sequence[int] | int,
    grid_size: Sequence[int] | int,
) -> torch.Tensor:
    """Whether the centre of each cell of an ``h x w`` grid over the ``H x W`` frame lies inside any box.

    Args:
        boxes: ``N x 4`` ``(row_min, col_min, row_max, col_max)`` in pixel coordinates of the frame.
        image_size: the frame ``(H, W)``.
        grid_size: the grid ``(h, w)``.

    Returns:
        bool ``h x w`` tensor (a box holds the points with ``row_min <= y < row_max`` and ``col_min <= x < col_max``).

    Raises:
        ValueError: for malformed boxes or sizes.

    Example::

        >>> cell_centres_in_boxes([[0, 0, 64, 40]], 64, 2)
        tensor([[ True, False],
                [ True, False]])
    """
    fh, fw = _frame(image_size)
    gh, gw = (int(v) for v in _frame(grid_size))
    b = _boxes_array(boxes, "cell_centres_in_boxes")
    cx = (np.arange(gw) + 0.5) * fw / gw
    cy = (np.arange(gh) + 0.5) * fh / gh
    inside = np.zeros((gh, gw), dtype=bool)
    for y0, x0, y1, x1 in b:
        inside |= ((cy >= y0) & (cy < y1))[:, None] & ((cx >= x0) & (cx < x1))[None, :]
    return torch.from_numpy(inside)


def heatmap_box_scores(
    heatmaps: torch.Tensor | np.ndarray,
    boxes: Sequence[torch.Tensor | np.ndarray | Sequence[Sequence[float]]],
    image_size: Sequence[int] | int | None = None,
) -> dict[str, torch.Tensor]:
    """Mass-in-boxes share and pointing-game hit of each heat-map, with the chance level of each.

    Args:
        heatmaps: ``B x h x w`` or ``B x 1 x h x w`` non-negative maps (e.g. the top-K pooling weights of a
            :class:`~monai_moco.networks.blocks.TopKPatchHead` on its token grid, or a Grad-CAM), one per image.
        boxes: ``B`` arrays ``N_i x 4`` of ``(row_min, col_min, row_max, col_max)`` in pixel coordinates of the frame the
            maps cover (the network input, after letterboxing).
        image_size: that frame ``(H, W)``; ``None`` when the maps are at pixel resolution (``(h, w)``).

    Returns:
        ``{"mass_in_boxes", "pointing_hit", "chance_mass", "chance_pointing"}`` float64 tensors of shape ``(B,)``
        (NaN scores for empty maps) and ``"empty"``, a bool ``(B,)`` tensor marking maps without positive mass.

    Raises:
        ValueError: when the maps are not ``B x h x w`` / ``B x 1 x h x w``, hold negative or non-finite values, or
            the number of box arrays differs from ``B``.

    Example::

        >>> maps = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])  # mass in the left column, maximum bottom-left
        >>> s = heatmap_box_scores(maps, [[[0, 0, 64, 32]]], image_size=(64, 64))  # box: the left half
        >>> s["mass_in_boxes"].item(), s["pointing_hit"].item(), s["chance_mass"].item()
        (1.0, 1.0, 0.5)
    """
    maps = torch.as_tensor(heatmaps).detach().cpu().to(torch.float64)
    shape = list(maps.shape)
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3:
        raise ValueError(f"heatmap_box_scores: heat-maps must be B x h x w or B x 1 x h x w, got shape {shape}.")
    if not torch.isfinite(maps).all() or (maps < 0).any():
        raise ValueError(
            f"heatmap_box_scores: heat-maps (shape {shape}) must be finite and non-negative (a mass); got min "
            f"{maps.nan_to_num(0.0).min().item():.4g}. Use ReLU'd Grad-CAM or softmax/pooling weights."
        )
    if len(boxes) != maps.shape[0]:
        raise ValueError(
            f"heatmap_box_scores: got {len(boxes)} box arrays for {maps.shape[0]} heat-maps (shape {shape}); "
            "expected one N_i x 4 array per map."
        )
    grid = (int(maps.shape[1]), int(maps.shape[2]))
    frame = grid if image_size is None else image_size
    out = {k: torch.full((maps.shape[0],), float("nan"), dtype=torch.float64) for k in _SCORES[:4]}
    out["empty"] = torch.zeros(maps.shape[0], dtype=torch.bool)
    for i, (m, b) in enumerate(zip(maps, boxes, strict=True)):
        coverage = box_coverage_grid(b, frame, grid)
        centres = cell_centres_in_boxes(b, frame, grid)
        out["chance_mass"][i] = coverage.mean()
        out["chance_pointing"][i] = centres.double().mean()
        total = m.sum()
        if total <= 0:
            out["empty"][i] = True
            continue
        out["mass_in_boxes"][i] = (m * coverage).sum() / total
        at_max = m == m.max()
        out["pointing_hit"][i] = centres[at_max].double().mean()
    return out
