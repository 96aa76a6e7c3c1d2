"""Distributed and momentum helpers shared by the contrastive engines, losses and the memory queue (written once).

* gathers: :func:`concat_all_gather` (no gradient, MoCo keys / queue) and :func:`concat_all_gather_with_grad`
  (gradient flows back to every rank's slice, SimCLR negatives across ranks);
* shuffled BatchNorm for the MoCo key encoder: :func:`batch_shuffle`, :func:`batch_unshuffle`,
  :func:`forward_shuffled` (He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020,
  section 3.3; code follows facebookresearch/moco ``_batch_shuffle_ddp`` / ``_batch_unshuffle_ddp``);
* the momentum (EMA) encoder update :func:`update_momentum` and the BYOL-style :func:`cosine_schedule`
  (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020).
* :func:`device_of`, the device a module runs on (where to move its inputs).

Every helper works in one process (no ``torch.distributed`` initialised) and under DDP. All gathers assume the same
batch size on every rank (as DDP with ``drop_last=True`` gives).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "is_dist_initialized",
    "get_world_size",
    "get_rank",
    "concat_all_gather",
    "concat_all_gather_with_grad",
    "batch_shuffle",
    "batch_unshuffle",
    "forward_shuffled",
    "update_momentum",
    "cosine_schedule",
    "device_of",
]


def is_dist_initialized() -> bool:
    """Whether ``torch.distributed`` is available and a default process group is initialised.

    Returns:
        ``True`` under DDP / ``torchrun``, ``False`` in a plain single process.

    Example::

        if is_dist_initialized():
            print("rank", get_rank(), "of", get_world_size())
    """
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default group, 1 when not distributed.

    Returns:
        the world size.

    Example::

        global_batch = local_batch * get_world_size()
    """
    return dist.get_world_size() if is_dist_initialized() else 1


def get_rank() -> int:
    """Rank of this process in the default group, 0 when not distributed.

    Returns:
        the rank.

    Example::

        if get_rank() == 0:
            print("only the main process logs")
    """
    return dist.get_rank() if is_dist_initialized() else 0


@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather ``tensor`` from every rank and concatenate along dim 0, without gradient (MoCo keys).

    The result is in rank order: rows ``[r * B, (r + 1) * B)`` come from rank ``r``. Every rank must pass the same
    shape. In one process this is a detached copy of ``tensor``.

    Args:
        tensor: the local tensor, ``B x ...``.

    Returns:
        the ``(world_size * B) x ...`` concatenation, detached.

    Example::

        keys = concat_all_gather(k)  # k: B x D on each rank -> (W*B) x D everywhere
    """
    if get_world_size() == 1:
        return tensor.detach().clone()
    tensor = tensor.detach().contiguous()
    gathered = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(gathered, tensor)
    return torch.cat(gathered, dim=0)


def concat_all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather ``tensor`` from every rank and concatenate along dim 0, keeping the autograd graph.

    Used for SimCLR negatives across ranks; wraps ``torch.distributed.nn.functional.all_gather`` (its backward works
    on gloo through ``all_to_all`` and on NCCL through ``reduce_scatter``, checked in tests/utils/test_dist.py), so no
    custom ``GatherLayer`` is needed. The gradient that reaches this rank's ``tensor`` is the sum over ranks of each
    rank's loss gradient with respect to these rows (as SimCLR's and lightly's ``GatherLayer``); with DDP's gradient
    averaging the parameter gradients equal those of one process on the global batch (so, w.r.t. the inputs,
    ``grad / world_size`` matches the single-process gradient). In one process ``tensor`` is returned unchanged (same
    graph).

    Args:
        tensor: the local tensor, ``B x ...`` (same shape on every rank).

    Returns:
        the ``(world_size * B) x ...`` concatenation in rank order, differentiable.

    Example::

        z_all = concat_all_gather_with_grad(z)  # negatives from every rank, gradients flow back to z
    """
    if get_world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)


@torch.no_grad()
def batch_shuffle(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle a batch for MoCo's shuffled BatchNorm (He et al. 2020; facebookresearch/moco ``_batch_shuffle_ddp``).

    Under DDP: gather the batches of all ranks, permute the global batch with a random permutation broadcast from
    rank 0, and return this rank's slice of it, so each rank's key-encoder BatchNorm sees samples from other ranks.
    In one process: a random permutation of the batch. No gradient (the key path of MoCo has none).

    Args:
        x: the local batch, ``B x ...`` (same ``B`` on every rank).
        generator: optional random generator for the permutation (on rank 0 under DDP).

    Returns:
        ``(x_shuffled, idx_unshuffle)``: the ``B x ...`` shuffled local batch and the global inverse permutation to
        pass to :func:`batch_unshuffle`.

    Example::

        xs, idx_unshuffle = batch_shuffle(x)
        k = batch_unshuffle(key_encoder(xs), idx_unshuffle)
    """
    x_gather = concat_all_gather(x)
    batch_size_all = x_gather.shape[0]
    idx_shuffle = torch.randperm(batch_size_all, generator=generator, device="cpu").to(x.device)
    if get_world_size() > 1:
        dist.broadcast(idx_shuffle, src=0)
    idx_unshuffle = torch.argsort(idx_shuffle)
    idx_this = idx_shuffle.view(get_world_size(), -1)[get_rank()]
    return x_gather[idx_this], idx_unshuffle


@torch.no_grad()
def batch_unshuffle(x: torch.Tensor, idx_unshuffle: torch.Tensor) -> torch.Tensor:
    """Undo :func:`batch_shuffle`: return this rank's outputs in the original order of its own batch.

    Args:
        x: outputs computed on the shuffled local batch, ``B x ...``.
        idx_unshuffle: the inverse permutation returned by :func:`batch_shuffle`.

    Returns:
        ``B x ...`` outputs aligned with the original local batch.

    Raises:
        ValueError: when ``idx_unshuffle`` does not cover ``world_size * B`` samples.

    Example::

        xs, idx = batch_shuffle(x)
        assert torch.equal(batch_unshuffle(xs, idx), x)
    """
    world_size = get_world_size()
    if idx_unshuffle.numel() != world_size * x.shape[0]:
        raise ValueError(
            f"batch_unshuffle: idx_unshuffle has {idx_unshuffle.numel()} entries but world_size ({world_size}) x local "
            f"batch ({x.shape[0]}) = {world_size * x.shape[0]} were expected; pass the index from batch_shuffle."
        )
    x_gather = concat_all_gather(x)
    idx_this = idx_unshuffle.to(x.device).view(world_size, -1)[get_rank()]
    return x_gather[idx_this]


@torch.no_grad()
def forward_shuffled(
    module: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MoCo key-encoder forward with shuffled BatchNorm (He et al. 2020, section 3.3), without gradient.

    Shuffles the batch (:func:`batch_shuffle`), runs ``module``, and unshuffles the output. Under DDP the cross-rank
    shuffle gives every rank's BatchNorm a different subset of samples than the query encoder saw. In one process a
    permutation alone changes nothing for BatchNorm: ShuffleBN is emulated by a key encoder whose BatchNorm layers
    normalise sub-batches of the shuffled batch with their own statistics
    (:meth:`monai_moco.networks.blocks.SplitBatchNorm.convert_split_batchnorm`, which ``MoCoTrainer`` applies).

    Args:
        module: the key encoder (any callable ``B x ... -> B x ...``).
        x: the local batch of key views.
        generator: optional random generator for the permutation.

    Returns:
        ``module`` outputs in the original batch order.

    Example::

        key_encoder = SplitBatchNorm.convert_split_batchnorm(key_encoder, num_splits=2)  # one process
        k = forward_shuffled(key_encoder, view2)  # B x D, no grad
    """
    x_shuffled, idx_unshuffle = batch_shuffle(x, generator=generator)
    return batch_unshuffle(module(x_shuffled), idx_unshuffle)


@torch.no_grad()
def update_momentum(model: nn.Module, model_ema: nn.Module, m: float, copy_buffers: bool = False) -> None:
    """Momentum (EMA) update of the key encoder: ``ema = m * ema + (1 - m) * param`` (He et al. 2020, eq. 2).

    Only parameters are updated, as in facebookresearch/moco: the key encoder's buffers (BatchNorm running
    statistics) keep their own values, accumulated from the key encoder's own forwards. Pass ``copy_buffers=True`` to
    copy the buffers of ``model`` instead (as some BYOL implementations do).

    Args:
        model: the online (query) encoder.
        model_ema: the momentum (key) encoder, same architecture; updated in place.
        m: momentum in ``[0, 1]``; ``0`` copies ``model``, ``1`` keeps ``model_ema``.
        copy_buffers: copy buffers from ``model`` into ``model_ema`` too.

    Raises:
        ValueError: when ``m`` is outside ``[0, 1]`` or the two models have different parameter lists.

    Example::

        update_momentum(encoder_q, encoder_k, m=0.999)
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"update_momentum: momentum m must be in [0, 1], got {m}.")
    params = [p.detach() for p in model.parameters()]
    params_ema = [p.detach() for p in model_ema.parameters()]
    if len(params) != len(params_ema) or any(a.shape != b.shape for a, b in zip(params, params_ema, strict=False)):
        raise ValueError(
            f"update_momentum: model ({len(params)} parameters) and model_ema ({len(params_ema)} parameters) must "
            "have the same architecture (same parameters, same shapes, same order)."
        )
    if params:  # one pass, ema + (1 - m) * (param - ema): reads each tensor once, unlike mul_ + add_
        torch._foreach_lerp_(params_ema, params, 1.0 - m)
    if copy_buffers:
        for b, b_ema in zip(model.buffers(), model_ema.buffers(), strict=True):
            b_ema.copy_(b)


def cosine_schedule(step: int, max_steps: int, start_value: float, end_value: float) -> float:
    """Cosine ramp from ``start_value`` (step 0) to ``end_value`` (step ``max_steps`` and after).

    ``value = end - (end - start) * (1 + cos(pi * step / max_steps)) / 2``, the BYOL momentum schedule (Grill et al.
    2020) ramping MoCo's momentum towards 1; also usable for a learning rate or temperature.

    Args:
        step: current step, ``>= 0`` (clamped to ``max_steps``).
        max_steps: length of the ramp, ``>= 1``.
        start_value: value at step 0.
        end_value: value at ``max_steps``.

    Returns:
        the scheduled value.

    Raises:
        ValueError: when ``step < 0`` or ``max_steps < 1``.

    Example::

        m = cosine_schedule(iteration, total_iterations, 0.99, 1.0)
    """
    if step < 0:
        raise ValueError(f"cosine_schedule: step must be >= 0, got {step}.")
    if max_steps < 1:
        raise ValueError(f"cosine_schedule: max_steps must be >= 1, got {max_steps}.")
    progress = min(step, max_steps) / max_steps
    return end_value - (end_value - start_value) * (1.0 + math.cos(math.pi * progress)) / 2.0


def device_of(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter, else of its first buffer, else the CPU.

    Where to move a batch before calling a module that is not driven by an engine (feature extraction, heat-maps);
    assumes the module sits on one device.

    Args:
        module: the network.

    Returns:
        its device; ``cpu`` for a module with neither parameters nor buffers.

    Example::

        images = images.to(device_of(encoder))
    """
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")
