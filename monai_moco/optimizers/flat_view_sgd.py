"""SGD that updates each dense tensor through a 1-D view, so channels-last weights are never copied by the step.

``torch.optim.SGD(fused=True)`` on CPU runs its kernel on contiguous memory: a channels-last convolution weight (what
``StepOptions(channels_last=True)`` makes) is copied to contiguous and back on every step. The SGD update is
elementwise, so when a parameter, its gradient and its momentum buffer share one dense memory layout (autograd gives a
dense parameter a gradient of its own strides) the same update can run on 1-D views of the three memory blocks, with
no copy and the same result, and a channels-last step then costs what a contiguous one does.

The algorithm is SGD with momentum as in ``torch.optim.SGD`` (Sutskever et al., "On the importance of initialization
and momentum in deep learning", ICML 2013), used by MoCo v2 (Chen et al., arXiv:2003.04297).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.sgd import sgd

__all__ = ["FlatViewSGD", "flat_view"]


def _layout(tensor: torch.Tensor) -> tuple[tuple[int, int], ...]:
    """The (size, stride) pairs of the dimensions longer than 1, which alone decide the order of the elements."""
    return tuple((size, stride) for size, stride in zip(tensor.shape, tensor.stride(), strict=True) if size != 1)


def flat_view(tensor: torch.Tensor) -> torch.Tensor | None:
    """A 1-D view of all of ``tensor``'s elements in memory order, or None when they are not one dense block.

    Dense tensors are the contiguous ones and their permutations (channels-last weights, transposes); a slice with
    gaps or a broadcast (stride 0) tensor is not.

    Args:
        tensor: any strided tensor.

    Returns:
        a 1-D view sharing ``tensor``'s memory, or None.

    Example::

        w = torch.rand(8, 3, 3, 3).contiguous(memory_format=torch.channels_last)
        flat_view(w).mul_(2)  # doubles every element of w, no copy
        flat_view(torch.rand(4, 4)[:, :2])  # None: the rows have gaps
    """
    if tensor.layout != torch.strided:
        return None
    if tensor.is_contiguous():
        return tensor.view(-1)
    expected = 1
    for size, stride in sorted(_layout(tensor), key=lambda pair: pair[1]):
        if stride != expected:
            return None
        expected *= size
    return tensor.as_strided((tensor.numel(),), (1,), tensor.storage_offset())


class FlatViewSGD(torch.optim.SGD):
    """``torch.optim.SGD`` whose step runs on 1-D views of dense parameters, gradients and momentum buffers.

    Same arguments, state and results as ``torch.optim.SGD``; the difference is speed with ``fused=True`` (or
    ``foreach``) for parameters that are dense but not contiguous, such as channels-last convolution weights, which
    ``torch.optim.SGD`` copies to contiguous and back on each step. A parameter whose gradient has another layout, or
    that is not dense, is passed to the kernel as it is, and to the foreach/loop kernel instead of the fused one: torch
    2.14's fused CPU kernel updates a strided slice, or a parameter whose momentum buffer has another layout, at the
    wrong elements (see the tests). A momentum buffer of another layout than its parameter (e.g. loaded from a
    checkpoint of contiguous weights) is re-laid out once. ``differentiable=True`` and sparse gradients use
    ``torch.optim.SGD.step`` unchanged.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        momentum: momentum factor.
        dampening: dampening of the momentum.
        weight_decay: L2 penalty.
        nesterov: Nesterov momentum.
        maximize: maximise the objective.
        foreach: use the foreach kernels.
        differentiable: allow autograd through the step (then nothing is flattened).
        fused: use the fused kernel (CPU and CUDA; the fast choice for channels-last networks).

    Example::

        net = torchvision.models.resnet18().to(memory_format=torch.channels_last)
        optimizer = FlatViewSGD(net.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4, fused=True)
        loss.backward()
        optimizer.step()  # no copy of the channels-last weights
    """

    def _buffer_for(self, param: torch.Tensor) -> torch.Tensor | None:
        """The momentum buffer of ``param`` in ``param``'s layout (re-laid out once if it came in another)."""
        state = self.state[param]
        buf = state.get("momentum_buffer")
        if buf is not None and _layout(buf) != _layout(param):
            state["momentum_buffer"] = buf = torch.empty_like(param).copy_(buf)
        return buf

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One optimisation step.

        Args:
            closure: optional closure re-evaluating the model and returning the loss.

        Returns:
            the closure's loss, if given.
        """
        plain = any(
            group["differentiable"] or any(p.grad is not None and p.grad.is_sparse for p in group["params"])
            for group in self.param_groups
        )
        if plain:
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                self._step_group(group)
        return loss

    def _step_group(self, group: dict) -> None:
        """The update of one parameter group: dense tensors through 1-D views, the others as they are."""
        use_momentum = group["momentum"] != 0
        grad_scale, found_inf = getattr(self, "grad_scale", None), getattr(self, "found_inf", None)
        # flattened -> (params, the tensors passed to the kernel, their gradients, their momentum buffers)
        parts: dict[bool, tuple[list, list, list, list]] = {True: ([], [], [], []), False: ([], [], [], [])}
        for p in group["params"]:
            if p.grad is None:
                continue
            buf = self._buffer_for(p) if use_momentum else None
            p_view, g_view = flat_view(p), flat_view(p.grad)
            flat = p_view is not None and g_view is not None and _layout(p.grad) == _layout(p)
            params, tensors, grads, bufs = parts[flat]
            params.append(p)
            tensors.append(p_view if flat else p)
            grads.append(g_view if flat else p.grad)
            bufs.append(flat_view(buf) if flat and buf is not None else buf)
        for flattened, (params, tensors, grads, bufs) in parts.items():
            if not params:
                continue
            # torch's fused CPU kernel treats every tensor as contiguous (a strided slice is updated at the wrong
            # elements), so tensors that could not be flattened take the foreach/loop kernel unless a GradScaler step
            # (grad_scale / found_inf, which only the fused kernel takes) needs the fused one
            fused = group["fused"] and (flattened or grad_scale is not None or found_inf is not None)
            sgd(
                tensors,
                grads,
                bufs,
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                lr=group["lr"],
                dampening=group["dampening"],
                nesterov=group["nesterov"],
                maximize=group["maximize"],
                has_sparse_grad=False,
                foreach=group["foreach"] if not fused else None,
                fused=fused,
                grad_scale=grad_scale,
                found_inf=found_inf,
            )
            if use_momentum:
                for p, buf in zip(params, bufs, strict=True):
                    if buf is not None and flattened:
                        buf = buf.as_strided(p.size(), p.stride(), buf.storage_offset())  # back to p's layout
                    self.state[p]["momentum_buffer"] = buf
