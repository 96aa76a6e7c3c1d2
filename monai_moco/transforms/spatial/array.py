"""Aspect-preserving resize plus centred padding ("letterbox") for channel-first 2D images, and its inverse mapping.

Chest radiographs come in many aspect ratios (e.g. 1955x1841, 2048x2500); networks want one fixed size. Squashing
distorts anatomy (heart width, costophrenic angles), so the longer side is fitted and the shorter one padded, as in
the "letterbox" preprocessing of the Darknet/YOLO code (Redmon & Farhadi, "YOLOv3: An Incremental Improvement", 2018).
The parameters are stored in the image metadata so that a heat-map on the network input can be mapped back to the
original radiograph with :func:`unletterbox`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import Transform
from monai.utils import convert_to_tensor, look_up_option

__all__ = ["LETTERBOX_MODES", "Letterbox", "LetterboxBox", "resize_spatial", "unletterbox", "unletterbox_boxes"]

#: interpolation modes: ``"area"`` averages pixel areas when shrinking (no aliasing) and is bilinear when enlarging;
#: ``"bilinear"``/``"bicubic"`` use torch's antialiased kernels; ``"nearest"``/``"nearest-exact"`` are for label maps.
LETTERBOX_MODES = ("area", "bilinear", "bicubic", "nearest", "nearest-exact")

# metadata keys written by Letterbox (all in (H, W) row-major order)
_KEYS = (
    "letterbox_input_shape",
    "letterbox_resized_shape",
    "letterbox_scale",
    "letterbox_pad",
    "letterbox_spatial_size",
)


def _as_hw(spatial_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(spatial_size, (int, np.integer)):
        size = (int(spatial_size), int(spatial_size))
    else:
        size = tuple(int(s) for s in spatial_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"spatial_size must be an int or (H, W) of positive ints, got {spatial_size!r}.")
    return size  # type: ignore[return-value]


def resize_spatial(img: torch.Tensor, size: Sequence[int], mode: str = "area") -> torch.Tensor:
    """Resize the two trailing (H, W) dimensions of a ``C×H×W`` or ``B×C×H×W`` float tensor.

    Args:
        img: float tensor, channel-first, 3D or 4D.
        size: output (H, W).
        mode: one of :data:`LETTERBOX_MODES`; ``"area"`` is area averaging when shrinking, bilinear when enlarging.

    Returns:
        A plain tensor (metadata is not carried) of shape ``(..., size[0], size[1])``.

    Raises:
        ValueError: when ``img`` is not 3D/4D or ``mode`` is unknown.

    Example::

        >>> resize_spatial(torch.rand(1, 100, 50), (50, 25)).shape
        torch.Size([1, 50, 25])
    """
    mode = look_up_option(mode, LETTERBOX_MODES)
    if img.ndim not in (3, 4):
        raise ValueError(f"expected a C×H×W or B×C×H×W tensor, got shape {tuple(img.shape)}.")
    x = torch.as_tensor(img)
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    batched = x.ndim == 4
    x = x if batched else x.unsqueeze(0)
    if mode == "area":
        enlarge = size[0] > x.shape[-2] or size[1] > x.shape[-1]
        mode = "bilinear" if enlarge else "area"
    if mode in ("bilinear", "bicubic"):
        out = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)
    else:
        out = F.interpolate(x, size=size, mode=mode)
    return out if batched else out[0]


class Letterbox(Transform):
    """Resize a channel-first 2D image so it fits ``spatial_size`` keeping its aspect ratio, then pad it centred.

    The scale is ``min(H_out / H, W_out / W)``; the resized image is padded with ``pad_value`` on both sides (the odd
    pixel goes to the bottom/right) to exactly ``spatial_size``. With ``keep_aspect=False`` it is a plain resize to
    ``spatial_size`` (no padding), recorded the same way. When the input is a ``MetaTensor`` (and meta tracking is on)
    the result is a ``MetaTensor`` whose affine follows the resampling and whose ``meta`` holds
    ``letterbox_input_shape`` (H, W), ``letterbox_resized_shape`` (h, w), ``letterbox_scale`` (h/H, w/W),
    ``letterbox_pad`` (top, bottom, left, right) and ``letterbox_spatial_size``; :func:`unletterbox` uses them.

    Reference: the "letterbox" preprocessing of the Darknet/YOLO code (Redmon & Farhadi, 2018).

    Args:
        spatial_size: output (H, W), or one int for a square output.
        mode: interpolation, one of :data:`LETTERBOX_MODES` (default ``"area"``: area averaging when shrinking,
            bilinear when enlarging).
        pad_value: constant written into the padding.
        keep_aspect: ``False`` for a plain (distorting) resize to ``spatial_size``.

    Example::

        >>> lb = Letterbox(224)
        >>> out = lb(MetaTensor(torch.rand(1, 400, 200)))
        >>> out.shape, out.meta["letterbox_pad"]
        (torch.Size([1, 224, 224]), (0, 0, 56, 56))
    """

    backend = [torch.Tensor.__name__]

    def __init__(
        self,
        spatial_size: int | Sequence[int],
        mode: str = "area",
        pad_value: float = 0.0,
        keep_aspect: bool = True,
    ) -> None:
        self.spatial_size = _as_hw(spatial_size)
        self.mode = look_up_option(mode, LETTERBOX_MODES)
        self.pad_value = float(pad_value)
        self.keep_aspect = keep_aspect

    def params(self, in_shape: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
        """Resized (h, w) and padding (top, bottom, left, right) for an input of spatial shape (H, W).

        Args:
            in_shape: input (H, W).

        Returns:
            ``(resized_shape, pad)``.

        Example::

            >>> Letterbox((100, 100)).params((50, 200))
            ((25, 100), (37, 38, 0, 0))
        """
        h, w = int(in_shape[0]), int(in_shape[1])
        th, tw = self.spatial_size
        if not self.keep_aspect:
            return (th, tw), (0, 0, 0, 0)
        scale = min(th / h, tw / w)
        rh = min(th, max(1, round(h * scale)))
        rw = min(tw, max(1, round(w * scale)))
        top, left = (th - rh) // 2, (tw - rw) // 2
        return (rh, rw), (top, th - rh - top, left, tw - rw - left)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        """Letterbox a ``C×H×W`` image.

        Args:
            img: channel-first 2D image (numpy array, tensor or MetaTensor).

        Returns:
            ``C×H_out×W_out`` float tensor (a ``MetaTensor`` with updated affine and meta when meta is tracked).

        Raises:
            ValueError: when ``img`` is not 3D (C×H×W).
        """
        if img.ndim != 3:
            raise ValueError(f"Letterbox expects a channel-first C×H×W image, got shape {tuple(img.shape)}.")
        track = get_track_meta()
        t = convert_to_tensor(img, track_meta=track)
        in_shape = (int(t.shape[-2]), int(t.shape[-1]))
        (rh, rw), pad = self.params(in_shape)
        x = t.as_tensor() if isinstance(t, MetaTensor) else t
        if not torch.is_floating_point(x):
            x = x.float()
        out = resize_spatial(x, (rh, rw), self.mode)
        if any(pad):
            top, bottom, left, right = pad
            out = F.pad(out, (left, right, top, bottom), mode="constant", value=self.pad_value)
        if not track:
            return out
        meta = dict(t.meta) if isinstance(t, MetaTensor) else {}
        affine = t.affine if isinstance(t, MetaTensor) else None
        scale = (rh / in_shape[0], rw / in_shape[1])
        meta.update(
            {
                "letterbox_input_shape": in_shape,
                "letterbox_resized_shape": (rh, rw),
                "letterbox_scale": scale,
                "letterbox_pad": pad,
                "letterbox_spatial_size": self.spatial_size,
            }
        )
        result = MetaTensor(out, meta=meta)
        if affine is not None:
            # new index n maps to old index o = (n - pad + 0.5) / scale - 0.5 (half-pixel centres, align_corners=False)
            aff = affine.clone().to(torch.float64)
            step = torch.eye(aff.shape[0], dtype=torch.float64)
            for d, (s, p) in enumerate(zip(scale, (pad[0], pad[2]), strict=True)):
                step[d, d] = 1.0 / s
                step[d, -1] = (0.5 - p) / s - 0.5
            result.affine = aff @ step
            result.applied_operations = list(t.applied_operations)
        return result


def unletterbox(img: NdarrayOrTensor, meta: Mapping[str, Any], mode: str = "bilinear") -> torch.Tensor:
    """Map an image on the letterboxed grid (e.g. a heat-map) back onto the original (pre-letterbox) grid.

    The input may be at any resolution covering the whole letterboxed frame (e.g. a 14×14 ViT patch map for a 224×224
    input): it is first resized to ``letterbox_spatial_size``, then the padding is cropped and the rest resized to
    ``letterbox_input_shape``.

    Args:
        img: ``C×h×w`` or ``B×C×h×w`` tensor/array on the letterboxed frame.
        meta: the metadata written by :class:`Letterbox` (e.g. ``MetaTensor.meta`` of a loaded X-ray). For a batch,
            index the collated values first (every key must hold one image's values).
        mode: interpolation, one of :data:`LETTERBOX_MODES`.

    Returns:
        A float tensor of shape ``C×H×W`` (or ``B×C×H×W``) with (H, W) = ``letterbox_input_shape``.

    Raises:
        KeyError: when ``meta`` lacks the letterbox keys.

    Example::

        >>> x = Letterbox(64)(MetaTensor(torch.rand(1, 128, 64)))
        >>> unletterbox(torch.rand(1, 8, 8), x.meta).shape
        torch.Size([1, 128, 64])
    """
    missing = [k for k in _KEYS if k not in meta]
    if missing:
        raise KeyError(f"unletterbox needs the Letterbox metadata keys {missing}; got keys {sorted(meta)}.")

    def _ints(v: Any) -> list[int]:
        return [int(i) for i in torch.as_tensor(v).reshape(-1).tolist()]

    frame = _ints(meta["letterbox_spatial_size"])
    rh, rw = _ints(meta["letterbox_resized_shape"])
    top, _, left, _ = _ints(meta["letterbox_pad"])
    x = convert_to_tensor(img, track_meta=False)
    if not torch.is_floating_point(x):
        x = x.float()
    x = resize_spatial(x, frame, mode)
    x = x[..., top : top + rh, left : left + rw]
    return resize_spatial(x, _ints(meta["letterbox_input_shape"]), mode)


def _letterbox_params(meta: Mapping[str, Any], caller: str) -> tuple[tuple[float, float], tuple[int, int]]:
    """``((scale_h, scale_w), (top, left))`` from the metadata :class:`Letterbox` writes."""
    missing = [k for k in ("letterbox_scale", "letterbox_pad") if k not in meta]
    if missing:
        raise KeyError(
            f"{caller} needs the Letterbox metadata keys {missing} (load the image with LoadXRayd(spatial_size=...) "
            f"or Letterboxd first); got keys {sorted(meta)}."
        )
    scale = [float(v) for v in torch.as_tensor(meta["letterbox_scale"]).reshape(-1).tolist()]
    pad = [int(v) for v in torch.as_tensor(meta["letterbox_pad"]).reshape(-1).tolist()]
    return (scale[0], scale[1]), (pad[0], pad[2])


def _check_boxes(boxes: NdarrayOrTensor, caller: str) -> torch.Tensor:
    b = torch.as_tensor(np.asarray(boxes) if not isinstance(boxes, torch.Tensor) else boxes)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{caller} expects N x 4 corner boxes, got shape {tuple(b.shape)}.")
    return b.float()


class LetterboxBox(Transform):
    """Move pixel boxes ``(x_min, y_min, x_max, y_max)`` of an original image onto its :class:`Letterbox` frame.

    MONAI's detection stack (``monai.apps.detection``, ``monai.data.box_utils``) orders box corners like the array
    axes, and :class:`Letterbox` keeps the row-major ``C×H×W`` order, so the output corners are
    ``(row_min, col_min, row_max, col_max)`` = ``(y_min, x_min, y_max, x_max)`` on the letterboxed grid (MONAI's
    ``StandardMode``): scaled by ``letterbox_scale`` and shifted by the top/left padding. Anchors, losses, flips and
    the COCO metric then all work in the image's own axes. :func:`unletterbox_boxes` is the inverse.

    Reference: the "letterbox" preprocessing of the Darknet/YOLO code (Redmon & Farhadi, "YOLOv3", 2018), whose
    boxes are moved the same way.

    Example::

        >>> img = Letterbox(100)(MetaTensor(torch.rand(1, 50, 200)))  # scale 0.5, 37 rows of padding on top
        >>> LetterboxBox()(np.array([[20.0, 10.0, 60.0, 30.0]]), img.meta)
        tensor([[42., 10., 52., 30.]])
    """

    backend = [torch.Tensor.__name__]

    def __call__(self, boxes: NdarrayOrTensor, meta: Mapping[str, Any]) -> torch.Tensor:
        """Map the boxes.

        Args:
            boxes: ``N×4`` pixel boxes ``(x_min, y_min, x_max, y_max)`` on the original image.
            meta: the metadata :class:`Letterbox` wrote on the image (``letterbox_scale``, ``letterbox_pad``).

        Returns:
            ``N×4`` float tensor ``(row_min, col_min, row_max, col_max)`` on the letterboxed frame.

        Raises:
            KeyError: when ``meta`` lacks the letterbox keys.
            ValueError: when ``boxes`` is not ``N×4``.
        """
        b = _check_boxes(boxes, "LetterboxBox")
        (sh, sw), (top, left) = _letterbox_params(meta, "LetterboxBox")
        row = b[:, [1, 3]] * sh + top
        col = b[:, [0, 2]] * sw + left
        return torch.stack([row[:, 0], col[:, 0], row[:, 1], col[:, 1]], dim=1)


def unletterbox_boxes(boxes: NdarrayOrTensor, meta: Mapping[str, Any]) -> torch.Tensor:
    """Inverse of :class:`LetterboxBox`: ``(row_min, col_min, row_max, col_max)`` on the letterboxed frame back to
    pixel ``(x_min, y_min, x_max, y_max)`` on the original image (e.g. to report a detector's boxes).

    Args:
        boxes: ``N×4`` boxes in the letterboxed frame's axis order.
        meta: the metadata :class:`Letterbox` wrote on the image.

    Returns:
        ``N×4`` float tensor of original-image pixel boxes ``(x_min, y_min, x_max, y_max)``.

    Raises:
        KeyError: when ``meta`` lacks the letterbox keys.
        ValueError: when ``boxes`` is not ``N×4``.

    Example::

        >>> img = Letterbox(100)(MetaTensor(torch.rand(1, 50, 200)))
        >>> unletterbox_boxes(torch.tensor([[42.0, 10.0, 52.0, 30.0]]), img.meta)
        tensor([[20., 10., 60., 30.]])
    """
    b = _check_boxes(boxes, "unletterbox_boxes")
    (sh, sw), (top, left) = _letterbox_params(meta, "unletterbox_boxes")
    y = (b[:, [0, 2]] - top) / sh
    x = (b[:, [1, 3]] - left) / sw
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)
