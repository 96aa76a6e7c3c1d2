"""Two-view augmentation for contrastive pretraining on chest radiographs: shared config and per-sample (array) path.

The augmentation follows SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020) and MoCo v2 (Chen et al., "Improved Baselines with Momentum Contrastive Learning", arXiv:2003.04297, 2020),
adapted to grayscale chest X-rays as in MoCo-CXR (Sowrirajan et al., "MoCo Pretraining Improves Representation and
Transferability of Chest X-ray Models", MIDL 2021): no hue/saturation/grayscale ops, a small rotation (±10°) and a
horizontal flip, and a gentler random resized crop than ImageNet's because a small crop can cut away the only
abnormal region of a radiograph.

``CXRAugmentConfig`` is the single source of truth for the parameters of both paths: the per-sample MONAI path built
by :func:`cxr_ssl_augmentation` (this module) and the batched tensor path ``BatchedCXRAugment`` / ``BatchedTwoView``
(``batched.py``). Both draw the crop box with :func:`resized_crop_boxes`.

Volumes (CT, MR): ``VolumeAugmentConfig`` and :func:`volume_ssl_augmentation` build the 3D view from MONAI transforms
(random sub-volume crop, flips along every axis, intensity shift / scale / gamma contrast, Gaussian noise), the 3D
counterpart used by 3D contrastive pretraining (Taleb et al., "3D Self-Supervised Methods for Medical Imaging",
NeurIPS 2020; Chaitanya et al., "Contrastive learning of global and local features for medical image segmentation
with limited annotations", NeurIPS 2020); :class:`VolumeTwoView` pairs two such views.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta, set_track_meta
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandFlip,
    RandGaussianNoise,
    RandGaussianSmooth,
    Randomizable,
    RandRotate,
    RandScaleCrop,
    RandScaleIntensity,
    RandScaleIntensityFixedMean,
    RandShiftIntensity,
    Resize,
    ScaleIntensityRange,
    SpatialCrop,
    Transform,
)
from monai.utils import MAX_SEED, TransformBackends, convert_to_tensor, ensure_tuple_rep

__all__ = [
    "CXRAugmentConfig",
    "RandResizedCropXRay",
    "TwoView",
    "VolumeAugmentConfig",
    "VolumeTwoView",
    "cxr_ssl_augmentation",
    "resized_crop_boxes",
    "volume_ssl_augmentation",
]

#: number of rejection-sampling attempts for a crop box before falling back to a centre crop (as torchvision).
CROP_TRIES = 10


def _pair(value: Any, name: str, owner: str = "CXRAugmentConfig") -> tuple[float, float]:
    """Return ``value`` as a sorted ``(low, high)`` float pair; lists from JSON configs are accepted."""
    if isinstance(value, (int, float)):
        raise ValueError(f"{owner}.{name} must be a (low, high) pair, got the number {value!r}.")
    values = tuple(float(v) for v in value)
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"{owner}.{name} must be a (low, high) pair with low <= high, got {value!r}.")
    return values  # type: ignore[return-value]


def _check_prob(value: float, name: str, owner: str = "CXRAugmentConfig") -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}.{name} must be a probability in [0, 1], got {value!r}.")


def _replace_fields(config: Any, overrides: dict[str, Any]) -> Any:
    """``dataclasses.replace`` with a clear error naming unknown fields (shared by the 2D and 3D configs)."""
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"{type(config).__name__} has no field(s) {unknown}; valid fields: {sorted(fields)}.")
    return dataclasses.replace(config, **overrides)


@dataclass(frozen=True)
class CXRAugmentConfig:
    """Parameters of one augmented view, shared by the per-sample and the batched path.

    Defaults: SimCLR / MoCo v2 strengths for the intensity ops (brightness and contrast 0.4 applied with probability
    0.8, Gaussian blur with sigma in [0.1, 2.0] output pixels with probability 0.5) plus what MoCo-CXR found suitable
    for radiographs (rotation ±10°, horizontal flip 0.5). MoCo-CXR drops random crops altogether because a small crop
    can remove the disease; the default crop area range is therefore (0.5, 1.0) of the image instead of MoCo v2's
    (0.2, 1.0): every view keeps at least half of the radiograph while crops still give the scale/translation
    invariance that SimCLR found most useful. ``CXRAugmentConfig.moco_cxr()`` gives the MoCo-CXR recipe exactly.

    Args:
        spatial_size: output size ``S`` or ``(H, W)`` of each view.
        crop_scale: range of the crop area as a fraction of the input area (``RandomResizedCrop`` semantics).
        crop_ratio: range of the crop aspect ratio width/height, sampled log-uniformly.
        rotate_degrees: rotation angle drawn uniformly from ``[-rotate_degrees, rotate_degrees]`` (always applied);
            corners uncovered by the rotation are zero.
        flip_prob: probability of a horizontal (left/right) flip.
        brightness: multiplicative brightness factor ``1 + f`` with ``f`` uniform in ``[-brightness, brightness]``.
        contrast: contrast factor ``1 + f`` around the image mean, ``f`` uniform in ``[-contrast, contrast]``.
        jitter_prob: probability of applying brightness, and independently contrast.
        gamma: range of the gamma exponent, applied on the image rescaled to its own min/max.
        gamma_prob: probability of the gamma change.
        blur_prob: probability of a Gaussian blur.
        blur_sigma: range of the blur sigma in output pixels, drawn independently for height and width.
        noise_prob: probability of additive Gaussian noise.
        noise_std: the noise standard deviation is drawn uniformly from ``[0, noise_std]``.

    Raises:
        ValueError: when a range is not an ordered pair, a probability is outside [0, 1] or a size is not positive.

    Example::

        cfg = CXRAugmentConfig(spatial_size=128, crop_scale=(0.3, 1.0))
        cfg = cfg.replace(blur_prob=0.0)
        moco_cxr = CXRAugmentConfig.moco_cxr(spatial_size=224)
    """

    spatial_size: int | tuple[int, int] = 224
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    rotate_degrees: float = 10.0
    flip_prob: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    jitter_prob: float = 0.8
    gamma: tuple[float, float] = (0.7, 1.5)
    gamma_prob: float = 0.5
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise_prob: float = 0.5
    noise_std: float = 0.02

    def __post_init__(self) -> None:
        size = tuple(int(s) for s in ensure_tuple_rep(self.spatial_size, 2))
        if len(size) != 2 or min(size) < 1:
            raise ValueError(
                f"CXRAugmentConfig.spatial_size must be a positive int or (H, W), got {self.spatial_size!r}."
            )
        object.__setattr__(self, "spatial_size", size)
        for name in ("crop_scale", "crop_ratio", "gamma", "blur_sigma"):
            object.__setattr__(self, name, _pair(getattr(self, name), name))
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"CXRAugmentConfig.crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}.")
        if self.crop_ratio[0] <= 0.0:
            raise ValueError(f"CXRAugmentConfig.crop_ratio must be positive, got {self.crop_ratio}.")
        if self.gamma[0] <= 0.0:
            raise ValueError(f"CXRAugmentConfig.gamma must be positive, got {self.gamma}.")
        if self.blur_sigma[0] <= 0.0:
            raise ValueError(f"CXRAugmentConfig.blur_sigma must be positive, got {self.blur_sigma}.")
        for name in ("rotate_degrees", "brightness", "contrast", "noise_std"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"CXRAugmentConfig.{name} must be >= 0, got {getattr(self, name)!r}.")
        if self.brightness >= 1.0 or self.contrast > 1.0:
            raise ValueError(
                f"CXRAugmentConfig.brightness must be < 1 and contrast <= 1 (factor 1 + f must stay >= 0), "
                f"got brightness={self.brightness!r}, contrast={self.contrast!r}."
            )
        for name in ("flip_prob", "jitter_prob", "gamma_prob", "blur_prob", "noise_prob"):
            _check_prob(getattr(self, name), name)

    @property
    def output_size(self) -> tuple[int, int]:
        """``(H, W)`` of each view."""
        return self.spatial_size  # type: ignore[return-value]

    def replace(self, **overrides: Any) -> CXRAugmentConfig:
        """Return a copy with some fields changed.

        Args:
            overrides: field names and new values.

        Returns:
            A new validated config.

        Raises:
            TypeError: when a name is not a field of ``CXRAugmentConfig``.
        """
        return _replace_fields(self, overrides)  # type: ignore[no-any-return]

    @classmethod
    def resolve(cls, config: CXRAugmentConfig | None = None, **overrides: Any) -> CXRAugmentConfig:
        """Return ``config`` (or the defaults) with ``overrides`` applied: how every public entry point reads options.

        Args:
            config: a base config, default ``CXRAugmentConfig()``.
            overrides: field names and values, e.g. from a bundle JSON.

        Returns:
            The resolved config.

        Raises:
            TypeError: when ``config`` is not a ``CXRAugmentConfig`` or an override names no field.
        """
        if config is None:
            config = cls()
        if not isinstance(config, CXRAugmentConfig):
            raise TypeError(f"config must be a CXRAugmentConfig or None, got {type(config).__name__}.")
        return config.replace(**overrides) if overrides else config

    @classmethod
    def moco_cxr(cls, **overrides: Any) -> CXRAugmentConfig:
        """The MoCo-CXR recipe (Sowrirajan et al., MIDL 2021): rotation ±10° and horizontal flip only.

        Args:
            overrides: further field changes (e.g. ``spatial_size``).

        Returns:
            A config with no crop, no intensity jitter, no blur and no noise.
        """
        base = cls(
            crop_scale=(1.0, 1.0),
            crop_ratio=(1.0, 1.0),
            jitter_prob=0.0,
            gamma_prob=0.0,
            blur_prob=0.0,
            noise_prob=0.0,
        )
        return base.replace(**overrides)


def resized_crop_boxes(
    height: int,
    width: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    u_area: torch.Tensor,
    u_ratio: torch.Tensor,
    u_y: torch.Tensor,
    u_x: torch.Tensor,
) -> torch.Tensor:
    """Random-resized-crop boxes (torchvision ``RandomResizedCrop`` sampling) from given uniform numbers.

    For each of ``N`` samples, up to ``T`` candidate boxes are tried; the first that fits the image is used, otherwise
    the largest centred box with the aspect ratio clamped into ``ratio``. Taking the uniform numbers as input lets the
    per-sample path (NumPy ``RandomState``) and the batched path (``torch.Generator``) share this one definition.

    Args:
        height: input image height in pixels.
        width: input image width in pixels.
        scale: ``(low, high)`` crop area as a fraction of ``height * width``.
        ratio: ``(low, high)`` crop aspect ratio width/height, sampled log-uniformly.
        u_area: ``N x T`` uniform numbers in [0, 1) for the area.
        u_ratio: ``N x T`` uniform numbers in [0, 1) for the aspect ratio.
        u_y: ``N`` uniform numbers in [0, 1) for the vertical position.
        u_x: ``N`` uniform numbers in [0, 1) for the horizontal position.

    Returns:
        ``N x 4`` float tensor of boxes ``(y0, x0, h, w)`` in pixels, inside the image.

    Raises:
        ValueError: when the shapes of the uniform numbers disagree.

    Example::

        u = torch.rand(4, 10)
        boxes = resized_crop_boxes(224, 224, (0.5, 1.0), (3 / 4, 4 / 3), u, torch.rand(4, 10), torch.rand(4), torch.rand(4))
    """
    if u_area.shape != u_ratio.shape or u_area.ndim != 2 or u_y.shape != u_x.shape or u_y.shape[0] != u_area.shape[0]:
        raise ValueError(
            "resized_crop_boxes expects u_area, u_ratio of shape N x T and u_y, u_x of shape N, got "
            f"{tuple(u_area.shape)}, {tuple(u_ratio.shape)}, {tuple(u_y.shape)}, {tuple(u_x.shape)}."
        )
    area = float(height * width)
    target = area * (scale[0] + (scale[1] - scale[0]) * u_area)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
    w = torch.sqrt(target * aspect)
    h = torch.sqrt(target / aspect)
    fits = (w <= width) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)
    w_pick = w.gather(1, first).squeeze(1)
    h_pick = h.gather(1, first).squeeze(1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = height * ratio[1], float(height)
    else:
        fallback_w, fallback_h = float(width), float(height)
    w_box = torch.where(found, w_pick, torch.full_like(w_pick, fallback_w))
    h_box = torch.where(found, h_pick, torch.full_like(h_pick, fallback_h))
    y0 = torch.where(found, u_y, torch.full_like(u_y, 0.5)) * (height - h_box)
    x0 = torch.where(found, u_x, torch.full_like(u_x, 0.5)) * (width - w_box)
    return torch.stack([y0, x0, h_box, w_box], dim=1)


class RandResizedCropXRay(Randomizable, Transform):
    """Random resized crop of a channel-first 2D image (``C x H x W``), the crop of SimCLR / MoCo v2.

    MONAI's ``RandSpatialCrop``/``RandScaleCrop`` draw each side independently; this draws the crop *area* and the
    aspect ratio like torchvision's ``RandomResizedCrop`` (Szegedy et al., CVPR 2015; Chen et al., SimCLR, ICML 2020),
    then crops with MONAI ``SpatialCrop`` and resizes with MONAI ``Resize`` (bilinear, no anti-aliasing, the same
    interpolation as the batched path), so MetaTensor metadata stays correct.

    Args:
        spatial_size: output ``S`` or ``(H, W)``.
        scale: crop area range as a fraction of the input area.
        ratio: crop aspect ratio range (width/height).

    Example::

        crop = RandResizedCropXRay(224, scale=(0.5, 1.0))
        crop.set_random_state(seed=0)
        view = crop(torch.rand(1, 256, 256))  # 1 x 224 x 224
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        spatial_size: int | Sequence[int],
        scale: Sequence[float] = (0.5, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    ) -> None:
        self.spatial_size = tuple(int(s) for s in ensure_tuple_rep(spatial_size, 2))
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.resizer = Resize(self.spatial_size, mode="bilinear", align_corners=False, anti_aliasing=False)
        self.box: tuple[int, int, int, int] | None = None

    def randomize(self, data: Sequence[int]) -> None:
        """Draw the crop box for an image of spatial shape ``data`` (``(H, W)``); stores ``self.box`` = (y0, x0, h, w)."""
        height, width = int(data[0]), int(data[1])
        u = torch.from_numpy(self.R.random_sample(2 * CROP_TRIES + 2))
        y0, x0, h, w = resized_crop_boxes(
            height,
            width,
            self.scale,
            self.ratio,
            u[:CROP_TRIES].view(1, -1),
            u[CROP_TRIES : 2 * CROP_TRIES].view(1, -1),
            u[-2:-1],
            u[-1:],
        )[0].tolist()
        h_int = min(max(round(h), 1), height)
        w_int = min(max(round(w), 1), width)
        y_int = min(max(round(y0), 0), height - h_int)
        x_int = min(max(round(x0), 0), width - w_int)
        self.box = (y_int, x_int, h_int, w_int)

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        """Crop a random box of ``img`` (``C x H x W``) and resize it to ``spatial_size``.

        Args:
            img: channel-first 2D image.
            randomize: draw a new box (``False`` reuses the last one).

        Returns:
            ``C x spatial_size`` image (a MetaTensor when meta tracking is on).

        Raises:
            ValueError: when ``img`` is not ``C x H x W``.
        """
        if img.ndim != 3:
            raise ValueError(
                f"RandResizedCropXRay expects a channel-first 2D image C x H x W, got shape {tuple(img.shape)}."
            )
        img = convert_to_tensor(img, track_meta=get_track_meta())
        if randomize or self.box is None:
            self.randomize(img.shape[1:])
        y0, x0, h, w = self.box  # type: ignore[misc]
        cropped = SpatialCrop(roi_start=(y0, x0), roi_end=(y0 + h, x0 + w))(img)
        return self.resizer(cropped)  # type: ignore[no-any-return]


def cxr_ssl_augmentation(config: CXRAugmentConfig | None = None, **overrides: Any) -> Compose:
    """One augmented view of a chest radiograph as a MONAI ``Compose`` (the per-sample path).

    Order (SimCLR / MoCo v2 with the MoCo-CXR rotation): random resized crop -> rotation -> horizontal flip ->
    brightness -> contrast -> gamma -> Gaussian blur -> Gaussian noise -> clamp to [0, 1]. Ops whose probability or
    strength is zero are left out. Expects a ``C x H x W`` float image in [0, 1] (``C`` is 1 for radiographs; nothing
    mixes channels). Do not wrap it in ``Compose(lazy=True)``: MONAI 1.6.1 crashes intermittently when a skipped
    ``RandFlip`` follows a resize.

    Args:
        config: the parameters (default ``CXRAugmentConfig()``).
        overrides: ``CXRAugmentConfig`` field names and values, e.g. ``spatial_size=128``.

    Returns:
        A ``monai.transforms.Compose``; ``set_random_state(seed)`` on it makes the views reproducible.

    Raises:
        TypeError: when an override names no ``CXRAugmentConfig`` field.

    Example::

        aug = cxr_ssl_augmentation(spatial_size=224, crop_scale=(0.5, 1.0)).set_random_state(seed=0)
        view = aug(torch.rand(1, 256, 256))  # 1 x 224 x 224 in [0, 1]
    """
    cfg = CXRAugmentConfig.resolve(config, **overrides)
    transforms: list[Callable[..., Any]] = [RandResizedCropXRay(cfg.output_size, cfg.crop_scale, cfg.crop_ratio)]
    if cfg.rotate_degrees > 0:
        transforms.append(
            RandRotate(
                range_x=math.radians(cfg.rotate_degrees),
                prob=1.0,
                keep_size=True,
                mode="bilinear",
                padding_mode="zeros",
                align_corners=False,
            )
        )
    if cfg.flip_prob > 0:
        transforms.append(RandFlip(prob=cfg.flip_prob, spatial_axis=1))
    if cfg.jitter_prob > 0 and cfg.brightness > 0:
        transforms.append(RandScaleIntensity(factors=cfg.brightness, prob=cfg.jitter_prob))
    if cfg.jitter_prob > 0 and cfg.contrast > 0:
        transforms.append(RandScaleIntensityFixedMean(prob=cfg.jitter_prob, factors=cfg.contrast, fixed_mean=True))
    if cfg.gamma_prob > 0 and cfg.gamma != (1.0, 1.0):
        transforms.append(RandAdjustContrast(prob=cfg.gamma_prob, gamma=cfg.gamma))
    if cfg.blur_prob > 0:
        transforms.append(RandGaussianSmooth(sigma_x=cfg.blur_sigma, sigma_y=cfg.blur_sigma, prob=cfg.blur_prob))
    if cfg.noise_prob > 0 and cfg.noise_std > 0:
        transforms.append(RandGaussianNoise(prob=cfg.noise_prob, mean=0.0, std=cfg.noise_std, sample_std=True))
    transforms.append(ScaleIntensityRange(a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True))
    return Compose(transforms)


@dataclass(frozen=True)
class VolumeAugmentConfig:
    """Parameters of one augmented view of a volume (``C x D x H x W``, intensities in [0, 1]).

    The 3D analogue of :class:`CXRAugmentConfig`: SimCLR's crop + flip + intensity recipe (Chen et al., ICML 2020) as
    used for 3D medical contrastive pretraining (Taleb et al., NeurIPS 2020; Chaitanya et al., NeurIPS 2020), with
    MONAI transforms only. A CT or MR volume has no canonical "up" for a sub-volume, so flips are drawn independently
    along every axis; colour ops become additive shift, multiplicative scale and gamma contrast of the grey values.

    Args:
        spatial_size: output size ``S`` or ``(D, H, W)`` of each view (a multiple of the ViT patch size).
        crop_scale: range of each side of the random sub-volume crop as a fraction of the input side (MONAI
            ``RandScaleCrop(random_size=True)``: each side drawn independently, then resized to ``spatial_size``).
        flip_prob: probability of a flip along each of the three axes (independently).
        intensity_prob: probability of the intensity shift, and independently of the intensity scale.
        shift: additive offset drawn uniformly from ``[-shift, shift]`` (``RandShiftIntensity``).
        scale: multiplicative factor ``1 + f``, ``f`` uniform in ``[-scale, scale]`` (``RandScaleIntensity``).
        gamma: range of the gamma exponent (``RandAdjustContrast``).
        gamma_prob: probability of the gamma change.
        noise_prob: probability of additive Gaussian noise.
        noise_std: the noise standard deviation is drawn uniformly from ``[0, noise_std]``.

    Raises:
        ValueError: when a size is not positive, a range is not an ordered pair, a crop scale is outside (0, 1], a
            probability is outside [0, 1] or a strength is negative (or ``scale >= 1``).

    Example::

        cfg = VolumeAugmentConfig(spatial_size=32, crop_scale=(0.6, 1.0))
        cfg = cfg.replace(noise_prob=0.0)
    """

    spatial_size: int | tuple[int, int, int] = 32
    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip_prob: float = 0.5
    intensity_prob: float = 0.8
    shift: float = 0.1
    scale: float = 0.2
    gamma: tuple[float, float] = (0.7, 1.5)
    gamma_prob: float = 0.5
    noise_prob: float = 0.5
    noise_std: float = 0.02

    def __post_init__(self) -> None:
        owner = "VolumeAugmentConfig"
        raw = self.spatial_size
        size = (int(raw),) * 3 if isinstance(raw, (int, float)) else tuple(int(s) for s in raw)
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"{owner}.spatial_size must be a positive int or (D, H, W), got {self.spatial_size!r}.")
        object.__setattr__(self, "spatial_size", size)
        for name in ("crop_scale", "gamma"):
            object.__setattr__(self, name, _pair(getattr(self, name), name, owner))
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"{owner}.crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}.")
        if self.gamma[0] <= 0.0:
            raise ValueError(f"{owner}.gamma must be positive, got {self.gamma}.")
        for name in ("shift", "scale", "noise_std"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"{owner}.{name} must be >= 0, got {getattr(self, name)!r}.")
        if self.scale >= 1.0:
            raise ValueError(f"{owner}.scale must be < 1 (factor 1 + f must stay > 0), got {self.scale!r}.")
        for name in ("flip_prob", "intensity_prob", "gamma_prob", "noise_prob"):
            _check_prob(getattr(self, name), name, owner)

    @property
    def output_size(self) -> tuple[int, int, int]:
        """``(D, H, W)`` of each view."""
        return self.spatial_size  # type: ignore[return-value]

    def replace(self, **overrides: Any) -> VolumeAugmentConfig:
        """Return a validated copy with some fields changed.

        Args:
            overrides: field names and new values.

        Returns:
            A new config.

        Raises:
            TypeError: when a name is not a field of ``VolumeAugmentConfig``.
        """
        return _replace_fields(self, overrides)  # type: ignore[no-any-return]


def volume_ssl_augmentation(config: VolumeAugmentConfig | None = None, **overrides: Any) -> Compose:
    """One augmented view of a volume as a MONAI ``Compose`` (3D SimCLR view).

    Order: random sub-volume crop (``RandScaleCrop``, each side a fraction in ``crop_scale`` of the input's) -> resize
    to ``spatial_size`` (trilinear) -> flip along each axis -> intensity shift -> intensity scale -> gamma contrast ->
    Gaussian noise -> clamp to [0, 1]. Ops whose probability or strength is zero are left out. Expects a
    ``C x D x H x W`` float volume in [0, 1] (e.g. after ``ScaleIntensityRange`` windowing of CT).

    Args:
        config: the parameters (default ``VolumeAugmentConfig()``).
        overrides: ``VolumeAugmentConfig`` field names and values, e.g. ``spatial_size=48``.

    Returns:
        A ``monai.transforms.Compose``; ``set_random_state(seed)`` on it makes the views reproducible.

    Raises:
        TypeError: when ``config`` is not a ``VolumeAugmentConfig`` or an override names no field.

    Example::

        aug = volume_ssl_augmentation(spatial_size=32, crop_scale=(0.5, 1.0)).set_random_state(seed=0)
        view = aug(torch.rand(1, 64, 64, 64))  # 1 x 32 x 32 x 32 in [0, 1]
    """
    if config is not None and not isinstance(config, VolumeAugmentConfig):
        raise TypeError(f"config must be a VolumeAugmentConfig or None, got {type(config).__name__}.")
    cfg = (config or VolumeAugmentConfig()).replace(**overrides)
    transforms: list[Callable[..., Any]] = [
        RandScaleCrop(roi_scale=cfg.crop_scale[0], max_roi_scale=cfg.crop_scale[1], random_center=True, random_size=True),
        Resize(cfg.output_size, mode="trilinear", align_corners=False, anti_aliasing=False),
    ]
    if cfg.flip_prob > 0:
        transforms += [RandFlip(prob=cfg.flip_prob, spatial_axis=axis) for axis in range(3)]
    if cfg.intensity_prob > 0 and cfg.shift > 0:
        transforms.append(RandShiftIntensity(offsets=cfg.shift, prob=cfg.intensity_prob))
    if cfg.intensity_prob > 0 and cfg.scale > 0:
        transforms.append(RandScaleIntensity(factors=cfg.scale, prob=cfg.intensity_prob))
    if cfg.gamma_prob > 0 and cfg.gamma != (1.0, 1.0):
        transforms.append(RandAdjustContrast(prob=cfg.gamma_prob, gamma=cfg.gamma))
    if cfg.noise_prob > 0 and cfg.noise_std > 0:
        transforms.append(RandGaussianNoise(prob=cfg.noise_prob, mean=0.0, std=cfg.noise_std, sample_std=True))
    transforms.append(ScaleIntensityRange(a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True))
    return Compose(transforms)


@contextmanager
def _meta_tracking(enabled: bool) -> Iterator[None]:
    """Set MONAI's process-wide ``set_track_meta`` for the duration of the block, then restore it."""
    previous = get_track_meta()
    set_track_meta(enabled)
    try:
        yield
    finally:
        set_track_meta(previous)


class TwoView(Randomizable, Transform):
    """Two independently augmented views of one image, the positive pair of SimCLR / MoCo.

    The same transform is called twice (it draws new random parameters on each call), or ``transform`` and
    ``transform2`` once each for asymmetric views (e.g. BYOL-style).

    Args:
        transform: a (random) transform producing one view, e.g. ``cxr_ssl_augmentation()``.
        transform2: the transform for the second view; default ``transform``.
        track_meta: ``False`` runs the transforms with MONAI meta tracking switched off (faster) and
            returns plain tensors. It flips MONAI's process-wide flag for the duration of the call, which is safe in
            ``DataLoader`` worker processes and the main process, but not with ``ThreadDataLoader`` or other threads
            that build MetaTensors at the same time.

    Example::

        two = TwoView(cxr_ssl_augmentation(spatial_size=224), track_meta=False).set_random_state(seed=0)
        view1, view2 = two(torch.rand(1, 224, 224))
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self, transform: Callable[..., Any], transform2: Callable[..., Any] | None = None, track_meta: bool = True
    ) -> None:
        if not callable(transform) or (transform2 is not None and not callable(transform2)):
            raise TypeError("TwoView expects callable transforms (e.g. monai.transforms.Compose).")
        self.transform = transform
        self.transform2 = transform if transform2 is None else transform2
        self.track_meta = track_meta

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> TwoView:
        """Seed this transform and, from it, each held random transform.

        Args:
            seed: seed for this transform's ``RandomState``.
            state: a ``RandomState`` to use instead.

        Returns:
            self.
        """
        super().set_random_state(seed=seed, state=state)
        distinct = [self.transform] if self.transform2 is self.transform else [self.transform, self.transform2]
        for t in distinct:
            if isinstance(t, Randomizable):
                t.set_random_state(seed=int(self.R.randint(MAX_SEED, dtype="uint32")))
        return self

    def randomize(self, data: Any = None) -> None:
        """Nothing to draw here: each held transform draws its own parameters when called."""

    def __call__(self, img: Any) -> tuple[Any, Any]:
        """Return ``(view1, view2)``, each an independent augmentation of ``img``.

        Args:
            img: the image (``C x H x W`` tensor or MetaTensor for the default augmentation).

        Returns:
            The two views.
        """
        if self.track_meta:
            return self.transform(img), self.transform2(img)
        if isinstance(img, MetaTensor):
            img = img.as_tensor()
        with _meta_tracking(False):
            return self.transform(img), self.transform2(img)


class VolumeTwoView(TwoView):
    """Two independently augmented 3D views of one volume (:func:`volume_ssl_augmentation`), SimCLR's positive pair.

    A :class:`TwoView` whose view transform is built from a :class:`VolumeAugmentConfig`, so a bundle can write the
    recipe as plain arguments.

    Args:
        config: base parameters (default ``VolumeAugmentConfig()``).
        track_meta: see :class:`TwoView`.
        overrides: ``VolumeAugmentConfig`` fields, e.g. ``spatial_size=32, crop_scale=(0.5, 1.0)``.

    Raises:
        TypeError: when an override names no ``VolumeAugmentConfig`` field.
        ValueError: when a field value is invalid (see :class:`VolumeAugmentConfig`).

    Example::

        two = VolumeTwoView(spatial_size=32, track_meta=False).set_random_state(seed=0)
        view1, view2 = two(torch.rand(1, 64, 64, 64))  # each 1 x 32 x 32 x 32
    """

    def __init__(self, config: VolumeAugmentConfig | None = None, track_meta: bool = True, **overrides: Any) -> None:
        self.config = (config or VolumeAugmentConfig()).replace(**overrides)
        super().__init__(volume_ssl_augmentation(self.config), track_meta=track_meta)

    def __call__(self, img: Any) -> tuple[Any, Any]:
        """Return ``(view1, view2)`` of a ``C x D x H x W`` volume.

        Args:
            img: the volume.

        Returns:
            The two views, each ``C x spatial_size``.

        Raises:
            ValueError: when ``img`` is not ``C x D x H x W``.
        """
        if getattr(img, "ndim", None) != 4:
            raise ValueError(
                f"VolumeTwoView expects a channel-first volume C x D x H x W, got shape {tuple(getattr(img, 'shape', ()))}."
            )
        return super().__call__(img)
