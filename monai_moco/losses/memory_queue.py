"""The memory queue of MoCo (He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR
2020, section 3.1): a first-in first-out dictionary of ``K`` negative keys, decoupled from the batch size.

The keys, the write pointer and the count of enqueued keys are registered **buffers**, so ``state_dict()`` (and so
MONAI's ``CheckpointSaver`` / ``CheckpointLoader``) saves and restores the queue with the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from monai_moco.utils.dist import concat_all_gather, get_world_size

__all__ = ["MemoryQueue"]


class MemoryQueue(nn.Module):
    """FIFO queue of ``size`` L2-normalised keys of dimension ``dim`` (MoCo's negatives).

    Initialised, like facebookresearch/moco, with random L2-normalised vectors. :meth:`enqueue` gathers the keys of
    every rank first (when distributed), so all ranks hold the same queue, and writes them after the pointer; at the
    end of the buffer the write wraps around to the start, so every enqueued key is kept (``K`` need not be a multiple
    of the global batch, only ``K >= global batch``).

    Args:
        size: number of keys ``K``.
        dim: key dimension ``D``.

    Raises:
        ValueError: when ``size`` or ``dim`` is not positive.

    Example::

        queue = MemoryQueue(size=4096, dim=128)
        loss = InfoNCELoss(0.2)(q, k, queue.get())
        queue.enqueue(k)  # after the loss, as MoCo does
    """

    keys: torch.Tensor
    ptr: torch.Tensor
    num_enqueued: torch.Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"MemoryQueue: size and dim must be >= 1, got size={size}, dim={dim}.")
        self.size = int(size)
        self.dim = int(dim)
        self.register_buffer("keys", F.normalize(torch.randn(self.size, self.dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_enqueued", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, gather: bool = True) -> None:
        """Write ``keys`` (gathered from all ranks first, in rank order) after the pointer, wrapping around.

        Keys are stored as given (callers pass normalised keys, e.g. the key encoder output after
        ``F.normalize``), detached and cast to the queue's dtype.

        Args:
            keys: ``B x D`` keys of this rank.
            gather: all-gather the keys of every rank first when ``torch.distributed`` is initialised.

        Raises:
            ValueError: when ``keys`` is not ``B x D`` or the (global) batch is larger than the queue.
        """
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"MemoryQueue.enqueue: keys must be B x {self.dim}, got {tuple(keys.shape)}.")
        if gather and get_world_size() > 1:
            keys = concat_all_gather(keys)
        n = keys.shape[0]
        if n > self.size:
            raise ValueError(
                f"MemoryQueue.enqueue: {n} keys (global batch) do not fit in a queue of size {self.size}; "
                "use a queue size >= the global batch size."
            )
        keys = keys.detach().to(device=self.keys.device, dtype=self.keys.dtype)
        ptr = int(self.ptr)
        first = min(n, self.size - ptr)
        self.keys[ptr : ptr + first] = keys[:first]
        if first < n:
            self.keys[: n - first] = keys[first:]
        self.ptr.fill_((ptr + n) % self.size)
        self.num_enqueued.add_(n)

    def get(self) -> torch.Tensor:
        """The ``K x D`` keys as a detached clone, safe to use in a loss while the queue is updated afterwards.

        Returns:
            the queue contents (order in the buffer; the order does not matter to the loss).
        """
        return self.keys.detach().clone()

    def forward(self) -> torch.Tensor:
        """Same as :meth:`get`.

        Returns:
            the ``K x D`` keys, detached clone.
        """
        return self.get()

    @property
    def fill_fraction(self) -> float:
        """Fraction of the queue holding real keys rather than the random initialisation, ``min(n, K) / K``."""
        return min(int(self.num_enqueued), self.size) / self.size

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
