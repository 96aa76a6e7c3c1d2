"""SimCLR pretraining engine: one encoder, two views, NT-Xent over the (all-gathered) batch.

Reference:
    Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020.
"""

from __future__ import annotations

from typing import Any

import torch

from monai_moco.engines.contrastive import ContrastiveTrainer, _to_tensor
from monai_moco.losses import NTXentLoss

__all__ = ["SimCLRTrainer"]


class SimCLRTrainer(ContrastiveTrainer):
    """SimCLR training (Chen et al. ICML 2020) as a MONAI ``Trainer``.

    Per iteration: ``z1 = network(view1)``, ``z2 = network(view2)`` (projection outputs), NT-Xent where each view's
    positive is the other view of the same image and the negatives are the other ``2N - 2`` views of the batch,
    gathered across ranks with gradient (``NTXentLoss(gather_distributed=True)``); backward, (clip), step.

    SimCLR's schedule is linear warm-up then cosine decay, per iteration: ``monai.optimizers.WarmupCosineSchedule``
    driven by ``monai.handlers.LrScheduleHandler(scheduler, epoch_level=False)``. For large batches the paper uses
    ``monai_moco.optimizers.LARS`` (lr 0.3 x batch/256, weight decay 1e-6); at small batch AdamW or SGD work too.
    Gradient accumulation is supported but, unlike a larger batch, does not add negatives: each micro-batch only
    contrasts within itself (the in-batch negatives are what SimCLR's batch size buys).

    The ``network`` is the encoder, e.g. ``ContrastiveEncoder(backbone, SimCLRProjectionHead(...))``; the loss is an
    NT-Xent loss with ``forward_with_logits(z1, z2) -> (loss, logits, labels)``, by default
    ``NTXentLoss(temperature=0.1)``. With ``label_key`` the batch's class labels go to the loss as
    ``forward_with_logits(z1, z2, labels=...)``: with ``monai_moco.losses.SupConLoss`` this is supervised
    contrastive pretraining (Khosla et al., NeurIPS 2020) with the same views, network and schedule.

    Args:
        args: :class:`~monai_moco.engines.ContrastiveTrainer`'s arguments (device, max_epochs, train_data_loader,
            network, optimizer, loss_function, ...).
        joint_forward: forward both views as one batch of ``2N`` (default: BatchNorm normalises the two views
            together, the paper's setting within a device). ``False`` forwards each view on its own, so each
            BatchNorm normalises one view's batch, as lightly's and most PyTorch SimCLR code do; for a network
            without BatchNorm the two give the same result. Their speed differs by less than run-to-run noise
            (``scripts/bench_pretrain.py --simclr_views``).
        label_key: dictionary key of the class labels in the data-loader batch, passed to the loss as ``labels``
            (``None``: the loss sees only the two views).
        kwargs: :class:`~monai_moco.engines.ContrastiveTrainer`'s arguments by name.

    Raises:
        KeyError: at a step, when ``label_key`` is set and the batch is not a dictionary holding it.

    Example::

        import torch
        from monai.handlers import LrScheduleHandler
        from monai.optimizers import WarmupCosineSchedule
        from monai_moco.engines import SimCLRTrainer
        from monai_moco.losses import NTXentLoss
        from monai_moco.networks.blocks.projection_head import SimCLRProjectionHead
        from monai_moco.networks.nets.contrastive_encoder import ContrastiveEncoder
        from monai_moco.transforms.ssl import BatchedTwoView

        net = ContrastiveEncoder(backbone, SimCLRProjectionHead(512, 512, 128))
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-6)
        sched = WarmupCosineSchedule(opt, warmup_steps=100, t_total=10 * len(loader))
        trainer = SimCLRTrainer(
            device="cpu", max_epochs=10, train_data_loader=loader, network=net, optimizer=opt,
            loss_function=NTXentLoss(temperature=0.1), view_transform=BatchedTwoView(...),
            train_handlers=[LrScheduleHandler(sched, print_lr=False, epoch_level=False)],
        )
        trainer.run()
    """

    def __init__(self, *args: Any, joint_forward: bool = True, label_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.joint_forward = joint_forward
        self.label_key = label_key
        self._attach_train_handlers()

    def default_loss_function(self) -> torch.nn.Module:
        """Returns: ``NTXentLoss(temperature=0.1)``, SimCLR's."""
        return NTXentLoss(temperature=0.1)

    def forward_views(self, view1: torch.Tensor, view2: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns: ``z1``, ``z2``: projections of both views (with ``joint_forward``, one forward over the
        concatenated batch, so BatchNorm sees both views together as in the SimCLR paper's global-BN setting within a
        device; else one forward per view)."""
        if not self.joint_forward:
            return {"z1": self._network_fn(view1), "z2": self._network_fn(view2)}
        z1, z2 = self._network_fn(torch.cat([view1, view2])).chunk(2)
        return {"z1": z1, "z2": z2}

    def batch_targets(self, batchdata: Any) -> dict[str, torch.Tensor]:
        """Returns: ``{"labels": B}`` from ``batchdata[label_key]`` on the device when ``label_key`` is set, else ``{}``."""
        if self.label_key is None:
            return {}
        if not isinstance(batchdata, dict) or self.label_key not in batchdata:
            keys = sorted(batchdata) if isinstance(batchdata, dict) else type(batchdata).__name__
            raise KeyError(
                f"SimCLRTrainer(label_key={self.label_key!r}): the batch has no {self.label_key!r} (batch keys: {keys}); "
                "give the data loader a labelled datalist (items with a class label) or set label_key=None."
            )
        return {"labels": _to_tensor(batchdata[self.label_key], self.state.device, False, dtype=torch.long).reshape(-1)}

    def compute_loss(self, outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """NT-Xent of the two projections, or, with ``label_key``, the loss given the batch's labels as well."""
        if "labels" in outputs:
            return self.loss_function.forward_with_logits(outputs["z1"], outputs["z2"], labels=outputs["labels"])
        return self.loss_function.forward_with_logits(outputs["z1"], outputs["z2"])
