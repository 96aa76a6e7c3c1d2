"""BatchNorm over sub-batches: MoCo's ShuffleBN emulated in one process, in one forward of the network.

ShuffleBN (He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020, section 3.3)
shuffles the key batch across GPUs so that each GPU's BatchNorm sees a different subset of samples than the query
encoder did. In one process the same effect needs ``num_splits`` sub-batches with their own BatchNorm statistics.
Forwarding the sub-batches one after the other through the whole encoder runs every layer ``num_splits`` times on
smaller batches; only BatchNorm needs the split, every other layer treats samples independently. :class:`SplitBatchNorm`
splits inside BatchNorm alone, so the rest of the encoder runs once on the full batch and the outputs are the same (the
same idea as the ``SplitBatchNorm`` of the MoCo CIFAR-10 demo and of lightly).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["SplitBatchNorm"]


class SplitBatchNorm(_BatchNorm):
    """BatchNorm that, in training mode, normalises ``num_splits`` consecutive sub-batches with their own statistics.

    The sub-batches are ``torch.tensor_split(x, num_splits)`` (sizes differ by at most one), normalised one after the
    other by the BatchNorm of PyTorch, so the running statistics and ``num_batches_tracked`` are updated once per
    sub-batch, in order: exactly what forwarding the sub-batches separately through the layer would give. In eval mode,
    or with ``num_splits=1``, it is a plain BatchNorm. The input is ``N x C x ...`` of any rank (it stands in for
    ``BatchNorm1d/2d/3d``), and the state dict has the same keys as theirs.

    Args:
        num_features: channels ``C``.
        num_splits: sub-batches per training forward (``>= 1``); a batch smaller than this is split into single
            samples.
        eps: added to the variance.
        momentum: running-statistics momentum (``None``: cumulative average), as in ``torch.nn.BatchNorm2d``.
        affine: learnable scale and shift.
        track_running_stats: keep running statistics.
        device: parameter device.
        dtype: parameter dtype.

    Raises:
        ValueError: when ``num_splits < 1``, or the input has fewer than 2 dimensions.

    Example::

        key_encoder = SplitBatchNorm.convert_split_batchnorm(copy.deepcopy(encoder), num_splits=2)
        k = key_encoder(x_shuffled)  # each BatchNorm normalises x_shuffled[:B//2] and x_shuffled[B//2:] separately
    """

    def __init__(
        self,
        num_features: int,
        num_splits: int = 2,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        if int(num_splits) < 1:
            raise ValueError(f"SplitBatchNorm: num_splits must be >= 1, got {num_splits}.")
        self.num_splits = int(num_splits)

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 (the name PyTorch's BatchNorm uses)
        if input.dim() < 2:
            raise ValueError(f"SplitBatchNorm: expected an N x C x ... input, got shape {tuple(input.shape)}.")

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        """Normalise ``input`` (``N x C x ...``), per sub-batch in training mode.

        Args:
            input: ``N x C x ...``; its memory format (e.g. channels-last) is kept.

        Returns:
            The normalised tensor, same shape.
        """
        splits = min(self.num_splits, input.shape[0])
        if not self.training or splits <= 1:
            return super().forward(input)
        outputs = []
        for chunk in torch.tensor_split(input, splits, dim=0):
            outputs.append(super().forward(chunk))
        return torch.cat(outputs, dim=0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_splits={self.num_splits}"

    @classmethod
    def convert_split_batchnorm(cls, module: nn.Module, num_splits: int) -> nn.Module:
        """Replace every BatchNorm (``torch.nn.modules.batchnorm._BatchNorm``) in ``module`` by a
        :class:`SplitBatchNorm` that shares its parameters and buffers (as ``torch.nn.SyncBatchNorm
        .convert_sync_batchnorm`` does), so optimizers, momentum updates and state dicts are unaffected.

        Args:
            module: the network, changed in place; a BatchNorm itself is returned converted.
            num_splits: sub-batches per training forward.

        Returns:
            ``module`` with its BatchNorm layers converted (a new object only when ``module`` is a BatchNorm).

        Example::

            key_encoder = SplitBatchNorm.convert_split_batchnorm(key_encoder, num_splits=2)
        """
        if isinstance(module, cls):
            module.num_splits = int(num_splits)
            return module
        if isinstance(module, _BatchNorm):
            converted = cls(
                module.num_features, num_splits, module.eps, module.momentum, module.affine, module.track_running_stats
            )
            if module.affine:
                converted.weight = module.weight
                converted.bias = module.bias
            if module.track_running_stats:
                converted.running_mean = module.running_mean
                converted.running_var = module.running_var
                converted.num_batches_tracked = module.num_batches_tracked
            converted.train(module.training)
            return converted
        for name, child in module.named_children():
            new_child = cls.convert_split_batchnorm(child, num_splits)
            if new_child is not child:
                module.add_module(name, new_child)
        return module
