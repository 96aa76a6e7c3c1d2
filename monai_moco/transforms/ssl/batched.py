"""Batched two-view augmentation: the per-sample path's augmentations on a whole batch, on the training device.

Same parameters and order as :func:`monai_moco.transforms.ssl.array.cxr_ssl_augmentation` (SimCLR, Chen et al., ICML
2020; MoCo v2, Chen et al., 2020; MoCo-CXR, Sowrirajan et al., MIDL 2021), each sample with its own random parameters,
but computed as a few batched tensor ops instead of a chain of per-image MONAI transforms: crop, aspect, scale,
rotation and flip are one ``affine_grid``/``grid_sample``; brightness, contrast and gamma are per-sample broadcasts; the
blur is one grouped separable convolution with a per-sample kernel; the noise one ``randn``. This is several times
faster than the per-sample path (``scripts/bench_augment.py`` measures it) and moves augmentation off the data-loader
workers.

Differences from the per-sample path, all below what a network can see: the crop box is not rounded to whole pixels,
and the crop, rotation and flip are interpolated once instead of twice.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from torch import nn

from monai_moco.transforms.ssl.array import CROP_TRIES, CXRAugmentConfig, resized_crop_boxes

__all__ = ["BatchedCXRAugment", "BatchedTwoView"]

#: MONAI ``GaussianFilter`` defaults: kernel tail ``int(4 * sigma + 0.5)`` pixels, "erf" discretisation, zero padding.
_BLUR_TRUNCATED = 4.0
#: MONAI ``AdjustContrast`` epsilon.
_GAMMA_EPS = 1e-7


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index or 0) == (b.index or 0)


class _SeededModule(nn.Module):
    """An ``nn.Module`` owning a ``torch.Generator`` on the device of its input, seeded from ``seed``."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._user_generator = False

    def set_generator(self, generator: torch.Generator) -> None:
        """Draw all random parameters from ``generator`` (which must live on the device of the images).

        Args:
            generator: the generator to use from now on.
        """
        self._generator = generator
        self._user_generator = True

    def manual_seed(self, seed: int) -> None:
        """Restart the random stream from ``seed`` (a new generator is made on the next call's device).

        Args:
            seed: the seed.
        """
        self.seed = seed
        self._generator = None
        self._user_generator = False

    def generator_for(self, device: torch.device) -> torch.Generator:
        """The generator for images on ``device``, created and seeded on first use.

        Args:
            device: the device of the images.

        Returns:
            A generator on ``device``.

        Raises:
            ValueError: when a generator given by ``set_generator`` lives on another device.
        """
        if self._generator is not None and _same_device(self._generator.device, device):
            return self._generator
        if self._user_generator:
            raise ValueError(
                f"{type(self).__name__}: the generator given to set_generator is on {self._generator.device} "  # type: ignore[union-attr]
                f"but the images are on {device}; pass a generator on {device}."
            )
        generator = torch.Generator(device=device)
        if self.seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(self.seed))
        self._generator = generator
        return generator


def _gaussian_kernels(sigma: torch.Tensor, tail: int) -> torch.Tensor:
    """``N x (2 * tail + 1)`` MONAI-style "erf" Gaussian kernels (not renormalised), one per sigma."""
    x = torch.arange(-tail, tail + 1, dtype=sigma.dtype, device=sigma.device).view(1, -1)
    t = (0.70710678 / sigma).view(-1, 1)
    return 0.5 * (torch.erf(t * (x + 0.5)) - torch.erf(t * (x - 0.5)))


def _interval(p: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of ``{u : |p * u + q| <= 1}`` elementwise (``p`` broadcasts against ``q``); empty when lo > hi."""
    p = p.expand_as(q)
    inv = 1.0 / torch.where(p == 0, 1.0, p)
    a, c = (-1.0 - q) * inv, (1.0 - q) * inv
    whole = torch.where(q.abs() <= 1.0, math.inf, -math.inf)
    lo = torch.where(p == 0, -whole, torch.minimum(a, c))
    hi = torch.where(p == 0, whole, torch.maximum(a, c))
    return lo, hi


class BatchedCXRAugment(_SeededModule):
    """One augmented view of every image of a batch, with per-sample random parameters.

    Args:
        config: the parameters (default ``CXRAugmentConfig()``), shared with the per-sample path.
        seed: seed of the generator (``None``: a random seed); see ``set_generator`` / ``manual_seed``.
        overrides: ``CXRAugmentConfig`` field names and values, e.g. ``spatial_size=128``.

    Raises:
        TypeError: when an override names no ``CXRAugmentConfig`` field.

    Example::

        aug = BatchedCXRAugment(spatial_size=224, seed=0)
        views = aug(torch.rand(64, 1, 256, 256))  # 64 x 1 x 224 x 224 in [0, 1]
    """

    def __init__(self, config: CXRAugmentConfig | None = None, seed: int | None = None, **overrides: Any) -> None:
        super().__init__(seed)
        self.config = CXRAugmentConfig.resolve(config, **overrides)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch.

        Args:
            images: ``B x C x H x W`` float images in [0, 1] (``C`` is 1 for radiographs; channels are never mixed).
            generator: draw from this generator instead of the module's own.

        Returns:
            ``B x C x S_h x S_w`` views in [0, 1], a plain tensor on the device of ``images``.

        Raises:
            ValueError: when ``images`` is not a ``B x C x H x W`` batch.
        """
        x = images.as_tensor() if isinstance(images, MetaTensor) else images
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects a B x C x H x W batch, got shape {tuple(x.shape)}.")
        if not x.is_floating_point():
            x = x.float()
        g = generator if generator is not None else self.generator_for(x.device)
        out = self._geometry(x, g)
        out = self._intensity(out, g)
        out = self._blur(out, g)
        out = self._noise(out, g)
        return out.clamp_(0.0, 1.0)

    def _rand(self, n: int, g: torch.Generator, device: torch.device, *shape: int) -> torch.Tensor:
        return torch.rand((n, *shape), generator=g, device=device)

    def _geometry(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Crop + resize + rotation + flip as one affine resampling (bilinear, zeros outside the rotated crop)."""
        cfg = self.config
        b, c, height, width = x.shape
        out_h, out_w = cfg.output_size
        dev = x.device
        boxes = resized_crop_boxes(
            height,
            width,
            cfg.crop_scale,
            cfg.crop_ratio,
            self._rand(b, g, dev, CROP_TRIES),
            self._rand(b, g, dev, CROP_TRIES),
            self._rand(b, g, dev),
            self._rand(b, g, dev),
        )
        angle = (self._rand(b, g, dev) * 2.0 - 1.0) * math.radians(cfg.rotate_degrees)
        flip = self._rand(b, g, dev) < cfg.flip_prob
        y0, x0, box_h, box_w = (v.to(x.dtype) for v in boxes.unbind(1))
        cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
        fx = torch.where(flip, -1.0, 1.0).to(x.dtype)
        # Output u -> crop coordinates v = M u (normalised, align_corners=False): flip, then rotate in pixel units
        # about the centre. Crop -> input: scale by the box size, shift to the box centre.
        m = torch.stack([cos * fx, -sin * (out_h / out_w), sin * fx * (out_w / out_h), cos], dim=1).view(b, 2, 2)
        half = torch.stack([box_w / width, box_h / height], dim=1)  # box half-size in normalised input units
        centre = torch.stack([(2.0 * x0 + box_w) / width - 1.0, (2.0 * y0 + box_h) / height - 1.0], dim=1)
        ux = (torch.arange(out_w, device=dev, dtype=x.dtype) + 0.5) * (2.0 / out_w) - 1.0
        uy = (torch.arange(out_h, device=dev, dtype=x.dtype) + 0.5) * (2.0 / out_h) - 1.0
        # grid[b, i, j, k] = (half * M)[b, k, 0] * ux[j] + (half * M)[b, k, 1] * uy[i] + centre[b, k], written as one
        # batched matmul (rows (uy, 1)) x (per column terms) straight into the B x H x W x 2 layout: several times
        # faster on CPU than F.affine_grid or broadcasting into a trailing dimension of 2.
        a = m * half.unsqueeze(2)
        rows = torch.stack([uy, torch.ones_like(uy)], dim=1).unsqueeze(0)  # 1 x H x 2
        cols = torch.stack(
            [
                a[:, :, 1].unsqueeze(1).expand(b, out_w, 2),
                a[:, :, 0].unsqueeze(1) * ux.view(1, out_w, 1) + centre.unsqueeze(1),
            ],
            dim=1,
        ).reshape(b, 2, out_w * 2)
        grid = torch.matmul(rows, cols).view(b, out_h, out_w, 2)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if cfg.rotate_degrees <= 0:
            return out
        # zero the corners the rotation uncovers (outside the crop), as the per-sample RandRotate does: per row, the
        # columns with |v_x| <= 1 and |v_y| <= 1 form one interval [lo, hi] of ux.
        lo, hi = _interval(m[:, 0, 0, None], m[:, 0, 1, None] * uy)
        lo2, hi2 = _interval(m[:, 1, 0, None], m[:, 1, 1, None] * uy)
        lo, hi = torch.maximum(lo, lo2), torch.minimum(hi, hi2)
        # ux[j] = (j + 0.5) * 2 / W - 1, so the row keeps columns first <= j < stop; the B x H x W mask is gathered
        # from a table of row masks (two row lookups instead of comparisons over every pixel)
        first = torch.ceil((lo + 1.0) * (out_w / 2.0) - 0.5).clamp(0, out_w).long()
        stop = (torch.floor((hi + 1.0) * (out_w / 2.0) - 0.5) + 1.0).clamp(0, out_w).long()
        at_or_after = torch.arange(out_w, device=dev).view(1, -1) >= torch.arange(out_w + 1, device=dev).view(-1, 1)
        outside = ~at_or_after[first] | at_or_after[stop]  # empty rows (first >= stop) are all outside
        return out.masked_fill_(outside.unsqueeze(1), 0.0)

    def _intensity(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Brightness ``x * (1 + f)``, contrast ``(x - mean) * (1 + f) + mean``, gamma on the min/max-rescaled image."""
        cfg = self.config
        b, dev = x.shape[0], x.device
        view = (b, 1, 1, 1)
        on_b = self._rand(b, g, dev) < cfg.jitter_prob
        f_b = (self._rand(b, g, dev) * 2.0 - 1.0) * cfg.brightness
        on_c = self._rand(b, g, dev) < cfg.jitter_prob
        f_c = (self._rand(b, g, dev) * 2.0 - 1.0) * cfg.contrast
        on_g = self._rand(b, g, dev) < cfg.gamma_prob
        gam = cfg.gamma[0] + (cfg.gamma[1] - cfg.gamma[0]) * self._rand(b, g, dev)
        # brightness then contrast in one multiply-add: mean(x * fb) = fb * mean(x)
        fb = (1.0 + torch.where(on_b, f_b, 0.0)).to(x.dtype).view(view)
        fc = (1.0 + torch.where(on_c, f_c, 0.0)).to(x.dtype).view(view)
        if bool((on_b | on_c).any()):
            mean = x.mean(dim=(1, 2, 3), keepdim=True) * fb
            x = torch.addcmul(mean * (1.0 - fc), x, fb * fc)
        idx = on_g.nonzero().squeeze(1)
        if cfg.gamma != (1.0, 1.0) and idx.numel() > 0:
            sub = x[idx]
            low = sub.amin(dim=(1, 2, 3), keepdim=True)
            span = sub.amax(dim=(1, 2, 3), keepdim=True) - low
            sub.sub_(low).div_(span + _GAMMA_EPS).pow_(gam[idx].to(x.dtype).view(-1, 1, 1, 1)).mul_(span).add_(low)
            x.index_copy_(0, idx, sub)  # x is this module's own intermediate: in place is safe
        return x

    def _blur(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Separable Gaussian blur with per-sample sigmas (height and width drawn independently), zero padding.

        One grouped convolution per axis with a per-sample kernel, all as long as the largest sigma's MONAI kernel
        (``int(4 * sigma + 0.5)`` each side; the longer kernels of small sigmas differ from MONAI's below 1e-4). The
        width pass runs on the transposed images: a ``K x 1`` kernel is faster than ``1 x K`` on CPU, and
        grouping samples by kernel length was slower (a new oneDNN primitive per shape).
        """
        cfg = self.config
        b, c, height, width = x.shape
        dev = x.device
        on = self._rand(b, g, dev) < cfg.blur_prob
        lo, hi = cfg.blur_sigma
        sigma = lo + (hi - lo) * self._rand(b, g, dev, 2)
        idx = on.nonzero().squeeze(1)
        n = idx.numel()
        if n == 0:
            return x
        sigma = sigma[idx].to(x.dtype)
        tail = int(max(float(sigma.max()) * _BLUR_TRUNCATED, 0.5) + 0.5)
        kernels = _gaussian_kernels(sigma.reshape(-1), tail).view(n, 2, -1).repeat_interleave(c, dim=0)
        sub = x[idx].reshape(1, n * c, height, width)
        for axis in (0, 1):  # MONAI's sigma_x blurs height, then sigma_y width (on the transposed images)
            sub = F.conv2d(sub, kernels[:, axis].reshape(n * c, 1, -1, 1), padding=(tail, 0), groups=n * c)
            sub = sub.transpose(2, 3).contiguous()
        return x.index_copy_(0, idx, sub.reshape(n, c, height, width))

    def _noise(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Additive zero-mean Gaussian noise, per-sample standard deviation uniform in ``[0, noise_std]``."""
        cfg = self.config
        b, dev = x.shape[0], x.device
        on = self._rand(b, g, dev) < cfg.noise_prob
        std = self._rand(b, g, dev) * cfg.noise_std
        idx = on.nonzero().squeeze(1)
        if cfg.noise_std <= 0 or idx.numel() == 0:
            return x
        noise = torch.randn((idx.numel(), *x.shape[1:]), generator=g, device=dev, dtype=x.dtype)
        return x.index_add_(0, idx, noise.mul_(std[idx].to(x.dtype).view(-1, 1, 1, 1)))


class BatchedTwoView(_SeededModule):
    """Two independently augmented views of every image of a batch (the positive pairs of SimCLR / MoCo).

    Both views draw from one generator, so a seed fixes the pair. ``config2`` gives the second view its own
    parameters (asymmetric views); ``overrides`` apply to both.

    Args:
        config: parameters of view 1 (default ``CXRAugmentConfig()``).
        config2: parameters of view 2 (default: those of view 1).
        seed: seed of the one generator both views draw from, as for :class:`BatchedCXRAugment`.
        overrides: ``CXRAugmentConfig`` fields for both views (a name that is no field raises ``TypeError``).

    Example::

        two_view = BatchedTwoView(spatial_size=224, seed=0)
        view1, view2 = two_view(batch.to(device))  # batch: B x 1 x H x W in [0, 1]
    """

    def __init__(
        self,
        config: CXRAugmentConfig | None = None,
        config2: CXRAugmentConfig | None = None,
        seed: int | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(seed)
        self.view1 = BatchedCXRAugment(config, **overrides)
        self.view2 = BatchedCXRAugment(config2 if config2 is not None else self.view1.config, **overrides)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(view1, view2)``, each ``B x C x S_h x S_w`` in [0, 1].

        Args:
            images: ``B x C x H x W`` float images in [0, 1].

        Returns:
            The two batches of views.
        """
        g = self.generator_for(images.device)
        return self.view1(images, generator=g), self.view2(images, generator=g)
