"""LARS: layer-wise adaptive rate scaling (You et al., "Large Batch Training of Convolutional Networks", 2017), the
optimiser of SimCLR's large-batch pretraining (Chen et al. 2020).

Each weight tensor's step is scaled by the trust ratio ``eta * ||w|| / (||g|| + wd * ||w|| + eps)`` before SGD with
momentum. Biases and normalisation weights (1-D parameters) are, by default, excluded from both the weight decay and
the adaptation, as in SimCLR and Barlow Twins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["LARS"]


class LARS(Optimizer):
    """SGD with momentum and layer-wise adaptive learning rates (You et al. 2017).

    For a parameter ``w`` with gradient ``g``: ``d = g + wd * w``; unless excluded, ``d *= eta * ||w|| / (||g|| +
    wd * ||w|| + eps)`` (skipped when ``||w||`` or ``||g||`` is 0); then ``buf = momentum * buf + d`` and
    ``w -= lr * buf``. Every option can be overridden per parameter group.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        momentum: momentum factor.
        weight_decay: L2 weight decay (not applied to excluded parameters).
        trust_coefficient: ``eta``, the trust coefficient.
        eps: added to the denominator of the trust ratio.
        exclude_bias_and_norm: exclude 1-D parameters (biases, norm scales/shifts) from weight decay and adaptation.

    Raises:
        ValueError: when a hyper-parameter is negative.

    Example::

        optimizer = LARS(model.parameters(), lr=0.3 * batch_size / 256, weight_decay=1e-6)
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
        exclude_bias_and_norm: bool = True,
    ) -> None:
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay),
                            ("trust_coefficient", trust_coefficient), ("eps", eps)):
            if value < 0:
                raise ValueError(f"LARS: {name} must be >= 0, got {value}.")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            exclude_bias_and_norm=exclude_bias_and_norm,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One optimisation step.

        Args:
            closure: optional closure re-evaluating the model and returning the loss.

        Returns:
            the closure's loss, if given.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                excluded = group["exclude_bias_and_norm"] and p.ndim <= 1
                if not excluded:
                    wd = group["weight_decay"]
                    update = grad.add(p, alpha=wd) if wd != 0 else grad.clone()
                    p_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(grad)
                    trust = group["trust_coefficient"] * p_norm / (g_norm + wd * p_norm + group["eps"])
                    trust = torch.where((p_norm > 0) & (g_norm > 0), trust, torch.ones_like(trust))
                    update.mul_(trust)
                else:
                    update = grad
                if group["momentum"] != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = update.detach().clone()
                    else:
                        buf.mul_(group["momentum"]).add_(update)
                    update = buf
                p.add_(update, alpha=-group["lr"])
        return loss
