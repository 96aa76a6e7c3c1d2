"""Ignite handler: every N epochs, draw the patch head's saliency over a fixed batch of radiographs.

Watching which patches a :class:`~monai_moco.networks.blocks.TopKPatchHead` selects during pretraining shows whether
it learns to look at the lungs or at burnt-in text and borders (the patch-selection view of Cordonnier et al.,
"Differentiable Patch Selection for Image Recognition", CVPR 2021). The handler computes the
patch scores (eval mode, no gradient) of a fixed batch, renders :func:`~monai_moco.visualize.heatmap_overlay`
images, adds them to TensorBoard and optionally writes PNGs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from torch import nn

from monai_moco.utils.dist import device_of
from monai_moco.visualize.heatmap import heatmap_overlay, patch_scores, write_rgb_png

__all__ = ["PatchHeatmapWriter"]


class PatchHeatmapWriter:
    """Write patch-score heat-maps of a fixed image batch to TensorBoard (and PNGs) every ``interval`` epochs.

    The network (``engine.network`` unless ``network`` is given) is a
    :class:`~monai_moco.networks.nets.ContrastiveEncoder` with a top-K patch head (or another layout
    :func:`~monai_moco.visualize.heatmap.patch_scores` understands); the selected patches are outlined over the
    backbone's token grid. The network's train/eval mode is restored afterwards. Only the rank-0 process writes (and
    computes).

    Args:
        summary_writer: a TensorBoard ``SummaryWriter`` (anything with ``add_images``), a log directory (a
            ``SummaryWriter`` is created there and owned by the handler), or None for PNGs only.
        images: fixed batch ``B x 1 x H x W`` in [0, 1] (kept on CPU; moved to the network's device per call).
        interval: write every ``interval`` epochs.
        output_dir: if given, also write ``heatmap_e{epoch:04d}_{i}.png`` there.
        tag: TensorBoard image tag.
        network: model to use instead of ``engine.network``.
        alpha: heat-map weight in the overlay.
        cmap: matplotlib colormap name.

    Raises:
        ValueError: for a bad ``images`` shape, ``interval`` < 1, or neither a writer nor ``output_dir``.

    Example::

        writer = PatchHeatmapWriter("runs/moco/tb", fixed_images, interval=5, output_dir="runs/moco/heatmaps")
        writer.attach(trainer)  # trainer.network is a ContrastiveEncoder with a TopKPatchHead
    """

    def __init__(
        self,
        summary_writer: Any | str | os.PathLike | None,
        images: torch.Tensor,
        interval: int = 1,
        output_dir: str | os.PathLike | None = None,
        tag: str = "patch_heatmap",
        network: nn.Module | None = None,
        alpha: float = 0.45,
        cmap: str = "jet",
    ) -> None:
        images = torch.as_tensor(images).detach().float().cpu()
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"PatchHeatmapWriter: images must be B x 1 x H x W, got shape {list(images.shape)}.")
        if int(interval) < 1:
            raise ValueError(f"PatchHeatmapWriter: interval must be >= 1 epoch, got {interval}.")
        if summary_writer is None and output_dir is None:
            raise ValueError("PatchHeatmapWriter: give a summary_writer (or log_dir) or an output_dir, or both.")
        self._log_dir = os.fspath(summary_writer) if isinstance(summary_writer, (str, os.PathLike)) else None
        self.summary_writer = None if self._log_dir is not None else summary_writer
        self.images = images
        self.interval = int(interval)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.tag = tag
        self.network = network
        self.alpha = float(alpha)
        self.cmap = cmap
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        """Write at ``EPOCH_COMPLETED`` every ``interval`` epochs; close an owned writer at ``COMPLETED``.

        Args:
            engine: the training engine (with a ``network`` attribute unless ``network`` was given).
        """
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self.close)

    def _writer(self) -> Any:
        if self.summary_writer is None and self._log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.summary_writer = SummaryWriter(log_dir=self._log_dir)
        return self.summary_writer

    def close(self, engine: Engine | None = None) -> None:
        """Close the ``SummaryWriter`` if the handler created it (a given writer is left to its owner)."""
        if self._log_dir is not None and self.summary_writer is not None:
            self.summary_writer.close()
            self.summary_writer = None

    def compute(self, network: nn.Module) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Overlays of the fixed batch under ``network`` (eval mode, no gradient; the mode is restored).

        Args:
            network: a network :func:`~monai_moco.visualize.heatmap.patch_scores` understands.

        Returns:
            ``(overlays B x H x W x 3 uint8, scores B x N, indices B x K, grid (h, w))``.

        Raises:
            ValueError: when the network has no top-K patch head.
        """
        scores, indices, grid = patch_scores(network, self.images.to(device_of(network)))
        rows = zip(self.images, scores, indices, strict=True)
        overlays = np.stack([heatmap_overlay(img, sc, grid, idx, self.alpha, self.cmap) for img, sc, idx in rows])
        return overlays, scores, indices, grid

    def __call__(self, engine: Engine) -> None:
        """Render the heat-maps and write them (rank 0 only).

        Args:
            engine: the training engine.

        Raises:
            AttributeError: when neither ``network`` was given nor ``engine.network`` exists.
        """
        if idist.get_rank() != 0:
            return
        network = self.network if self.network is not None else getattr(engine, "network", None)
        if network is None:
            raise AttributeError("PatchHeatmapWriter: the engine has no `network` attribute; pass network=.")
        epoch = int(engine.state.epoch)
        overlays, _, _, _ = self.compute(network)
        writer = self._writer()
        if writer is not None:
            writer.add_images(self.tag, overlays, epoch, dataformats="NHWC")
            if callable(getattr(writer, "flush", None)):
                writer.flush()
        if self.output_dir is not None:
            for i in range(overlays.shape[0]):
                write_rgb_png(self.output_dir / f"heatmap_e{epoch:04d}_{i}.png", overlays[i])
        self.logger.info(f"epoch {epoch}: wrote {overlays.shape[0]} patch heat-maps ({self.tag})")
