"""MoCo-v2 pretraining engine: a query encoder trained against a momentum key encoder and a queue of negatives.

References:
    He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.
    Chen et al., "Improved Baselines with Momentum Contrastive Learning", arXiv:2003.04297, 2020 (MoCo v2).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import look_up_option
from torch.nn.parallel import DistributedDataParallel

from monai_moco.engines.contrastive import ContrastiveTrainer
from monai_moco.losses import InfoNCELoss, MemoryQueue
from monai_moco.networks.blocks import SplitBatchNorm
from monai_moco.utils.dist import (
    cosine_schedule,
    forward_shuffled,
    get_world_size,
    is_dist_initialized,
    update_momentum,
)

__all__ = ["MoCoTrainer", "SHUFFLE_BN_MODES"]

SHUFFLE_BN_MODES = ("shuffle", "sync", "none")


def _output_dim(network: torch.nn.Module) -> int:
    """Width of the network's projection output (``ContrastiveEncoder.out_features``), for sizing the queue."""
    value = getattr(network, "out_features", None)
    if not isinstance(value, int):
        raise ValueError(
            f"cannot read the embedding width of {type(network).__name__} (no integer out_features): pass "
            "queue_dim=... or a ready MemoryQueue as queue_size."
        )
    return value


class MoCoTrainer(ContrastiveTrainer):
    """MoCo-v2 training (He et al. CVPR 2020; Chen et al. 2020) as a MONAI ``Trainer``.

    Per iteration: ``q = normalize(network(view1))``; ``k = normalize(momentum_network(view2))`` without gradient
    and with shuffled BatchNorm; InfoNCE of ``q`` against its positive ``k`` and the queue's negatives; backward,
    (clip), step; then the momentum update ``key = m * key + (1 - m) * query`` and the enqueue of the (all-gathered)
    keys. With ``symmetric=True`` the views swap roles too and the two losses are averaged (both key sets are
    enqueued). Gradients reach only ``network``; ``momentum_network`` changes only through the momentum update.

    The momentum follows ``engine.state.iteration`` (constant ``momentum``, or a cosine ramp to ``momentum_end``
    over all iterations), so it resumes with the trainer state. Under gradient accumulation the keys of all
    micro-batches are enqueued after the step, so every micro-batch sees the same queue and, for a network without
    BatchNorm, accumulating ``n`` micro-batches equals one step on the ``n``-times larger batch.

    The ``network`` is the query encoder, e.g. ``ContrastiveEncoder(backbone, MoCoV2ProjectionHead(...))`` (a DDP
    wrapper is accepted and its ``module`` copied for the key encoder); MoCo v2's optimizer is SGD lr 0.03 x batch/256,
    momentum 0.9, weight decay 1e-4 with a cosine schedule; the loss is an InfoNCE loss with
    ``forward_with_logits(query, key, queue)``, by default ``InfoNCELoss(temperature=0.2)`` (MoCo v2).

    Args:
        args: :class:`~monai_moco.engines.ContrastiveTrainer`'s arguments (device, max_epochs, train_data_loader,
            network, optimizer, loss_function, ...).
        queue_size: number of negatives, or a ready ``MemoryQueue``.
        queue_dim: embedding width for a new queue; default: read from the network.
        momentum: momentum of the key encoder (0.999 in MoCo).
        momentum_end: if given, the momentum follows a cosine ramp from ``momentum`` to this over all iterations.
        shuffle_bn: ``"shuffle"`` (ShuffleBN: the key batch is shuffled across GPUs, or, in one process, shuffled and
            normalised by every BatchNorm of the key encoder in ``shuffle_splits`` sub-batches with their own
            statistics (:class:`~monai_moco.networks.blocks.SplitBatchNorm`, so the other layers run once on the
            whole batch); skipped for a key encoder without BatchNorm, where it changes nothing), ``"sync"``
            (SyncBatchNorm under DDP on GPU; plain in one process) or ``"none"``.
        shuffle_splits: sub-batches for single-process ShuffleBN (``>= 1``); decided when the trainer is built: in a
            process group of several ranks the cross-rank shuffle is used instead.
        symmetric: also use view2 as query and view1 as key, average the two losses.
        kwargs: :class:`~monai_moco.engines.ContrastiveTrainer`'s arguments by name.

    Raises:
        ValueError: for an unknown ``shuffle_bn``, ``shuffle_splits < 1``, ``momentum``/``momentum_end`` outside [0, 1],
            ``shuffle_bn="sync"`` on CPU under torch.distributed, or no ``queue_dim`` and no integer ``out_features``
            on the network (a queue of the wrong width fails at the first step).

    Example::

        import torch
        from monai_moco.engines import MoCoTrainer, StepOptions
        from monai_moco.losses import InfoNCELoss
        from monai_moco.networks.blocks.projection_head import MoCoV2ProjectionHead
        from monai_moco.networks.nets.contrastive_encoder import ContrastiveEncoder
        from monai_moco.transforms.ssl import BatchedTwoView

        backbone = ...  # any nn.Module giving (B, 512) features
        net = ContrastiveEncoder(backbone, MoCoV2ProjectionHead(512, 512, 128))
        trainer = MoCoTrainer(
            device="cpu", max_epochs=10, train_data_loader=loader,  # batches {"image": (B, 1, 64, 64)}
            network=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4),
            loss_function=InfoNCELoss(temperature=0.2), queue_size=4096, view_transform=BatchedTwoView(...),
            step=StepOptions(amp="auto", channels_last=True),
        )
        trainer.run()
        trainer.state.output  # {"loss": ..., "acc1": ..., "queue_fill": ..., "momentum": ..., ...}
    """

    def __init__(
        self,
        *args: Any,
        queue_size: int | MemoryQueue = 65536,
        queue_dim: int | None = None,
        momentum: float = 0.999,
        momentum_end: float | None = None,
        shuffle_bn: str = "shuffle",
        shuffle_splits: int = 2,
        symmetric: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= momentum <= 1.0 or (momentum_end is not None and not 0.0 <= momentum_end <= 1.0):
            raise ValueError(f"momentum and momentum_end must be in [0, 1], got {momentum!r}, {momentum_end!r}.")
        self.shuffle_bn = look_up_option(shuffle_bn, SHUFFLE_BN_MODES)
        self.shuffle_splits = int(shuffle_splits)
        if self.shuffle_splits < 1:
            raise ValueError(f"shuffle_splits must be >= 1, got {shuffle_splits!r}.")
        self.symmetric = symmetric
        self.momentum = momentum
        self.momentum_end = momentum_end

        network = self.network
        query = network.module if isinstance(network, DistributedDataParallel) else network
        if self.shuffle_bn == "sync":
            if is_dist_initialized() and self.state.device.type == "cpu":
                raise ValueError(
                    "shuffle_bn='sync' needs SyncBatchNorm, which PyTorch runs only on GPU/XPU; on CPU under "
                    "torch.distributed use shuffle_bn='shuffle' (cross-rank ShuffleBN)."
                )
            if is_dist_initialized():
                query = torch.nn.SyncBatchNorm.convert_sync_batchnorm(query)  # same Parameter objects: optimizer ok
                if not isinstance(network, DistributedDataParallel):
                    self.network = network = query
            else:
                warnings.warn("shuffle_bn='sync' without torch.distributed: plain BatchNorm (one process).", stacklevel=2)
        self.momentum_network = copy.deepcopy(query)
        for p in self.momentum_network.parameters():
            p.requires_grad_(False)
        # ShuffleBN only matters for batch statistics: a key encoder without BatchNorm (e.g. a ViT) gives the same keys
        # from one forward over the whole batch, which is faster than shuffled sub-batches
        self._key_has_batch_norm = any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.momentum_network.modules()
        )
        if self.shuffle_bn == "shuffle" and self._key_has_batch_norm and get_world_size() == 1:
            # one process: the sub-batches of emulated ShuffleBN are split inside each BatchNorm (same keys and running
            # statistics as forwarding the sub-batches one by one, with the other layers run once on the whole batch)
            self.momentum_network = SplitBatchNorm.convert_split_batchnorm(self.momentum_network, self.shuffle_splits)
        self._momentum_fn = self.maybe_compile(self.momentum_network)

        if isinstance(queue_size, MemoryQueue):
            self.queue = queue_size
        else:
            self.queue = MemoryQueue(int(queue_size), queue_dim if queue_dim is not None else _output_dim(query))
        self.queue.to(self.state.device)
        self._pending_keys: list[torch.Tensor] = []
        self._last_momentum = self.momentum_at(0)
        self._attach_train_handlers()

    def default_loss_function(self) -> torch.nn.Module:
        """Returns: ``InfoNCELoss(temperature=0.2)``, MoCo v2's."""
        return InfoNCELoss(temperature=0.2)

    def momentum_at(self, iteration: int) -> float:
        """The key-encoder momentum used after optimizer step number ``iteration`` (1-based engine iteration).

        Args:
            iteration: ``engine.state.iteration``.

        Returns:
            ``momentum``, or the cosine ramp from ``momentum`` (first iteration) to ``momentum_end`` (last iteration,
            ``max_epochs * epoch_length``).
        """
        if self.momentum_end is None:
            return self.momentum
        total = (self.state.epoch_length or 1) * (self.state.max_epochs or 1)
        return float(cosine_schedule(max(iteration - 1, 0), max(total - 1, 1), self.momentum, self.momentum_end))

    def train_mode(self) -> None:
        """Query and key encoders in training mode (the key encoder's BatchNorm uses batch statistics)."""
        self.network.train()
        self.momentum_network.train()

    def buffers_to_guard(self) -> list[torch.Tensor]:
        """BatchNorm statistics of both encoders."""
        return super().buffers_to_guard() + list(self.momentum_network.buffers())

    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.shuffle_bn == "shuffle" and self._key_has_batch_norm:
                k = forward_shuffled(self._momentum_fn, x)
            else:
                k = self._momentum_fn(x)
        return F.normalize(k.float(), dim=1)

    def forward_views(self, view1: torch.Tensor, view2: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns: ``query`` (grad) and ``key`` (no grad), and ``query2``/``key2`` when symmetric."""
        out = {"query": self._network_fn(view1), "key": self._keys(view2)}
        if self.symmetric:
            out["query2"] = self._network_fn(view2)
            out["key2"] = self._keys(view1)
        return out

    def compute_loss(self, outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """InfoNCE of ``query`` vs ``key`` and the queue (averaged with the swapped pair when symmetric)."""
        negatives = self.queue.get()
        loss, logits, labels = self.loss_function.forward_with_logits(outputs["query"], outputs["key"], negatives)
        if self.symmetric:
            loss2, logits2, labels2 = self.loss_function.forward_with_logits(outputs["query2"], outputs["key2"], negatives)
            loss = 0.5 * (loss + loss2)
            logits, labels = torch.cat([logits, logits2]), torch.cat([labels, labels2])
        return loss, logits, labels

    def after_backward(self, outputs: dict[str, torch.Tensor]) -> None:
        """Keep this micro-batch's keys; they join the queue after the optimizer step."""
        self._pending_keys.append(outputs["key"].detach())
        if self.symmetric:
            self._pending_keys.append(outputs["key2"].detach())

    def after_step(self) -> None:
        """Momentum update of the key encoder, then enqueue the (gathered) keys of the step's micro-batches."""
        self._last_momentum = self.momentum_at(self.state.iteration)
        update_momentum(self.network.module if isinstance(self.network, DistributedDataParallel) else self.network,
                        self.momentum_network, self._last_momentum)
        if self._pending_keys:
            self.queue.enqueue(torch.cat(self._pending_keys))
            self._pending_keys = []

    def extra_stats(self) -> dict[str, float]:
        """Returns: ``queue_fill`` (0..1) and ``momentum`` (of the last update)."""
        return {"queue_fill": float(self.queue.fill_fraction), "momentum": float(self._last_momentum)}

    def checkpoint_items(self) -> dict[str, Any]:
        """Adds ``momentum_network`` and ``queue`` to the base items."""
        items = super().checkpoint_items()
        items["momentum_network"] = self.momentum_network
        items["queue"] = self.queue
        return items
