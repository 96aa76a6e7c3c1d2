"""How long a supervised run trains when its labelled set is small: a minimum number of optimizer steps.

At 1 % of the Kermany labels a classifier sees about 47 images; an epoch count chosen for 100 % labels then makes a
handful of optimizer steps and the result says more about the schedule than about the backbone (MoCo-CXR,
Sowrirajan et al., MIDL 2021, and most label-fraction studies fix the number of steps, not epochs, for this reason).
:func:`training_schedule` turns ``(images, batch, epochs, min_steps)`` into the epochs that give at least
``min_steps`` steps, a batch no larger than the subset, and a validation interval that keeps the number of
validation passes (model picking) about constant.
"""

from __future__ import annotations

import logging
import math
from typing import Any

__all__ = ["training_schedule"]

logger = logging.getLogger(__name__)


def training_schedule(
    n_train: int,
    batch_size: int,
    epochs: int,
    min_steps: int = 0,
    val_checks: int = 0,
    max_epochs: int = 1000,
    drop_last: bool = True,
) -> dict[str, Any]:
    """Epochs, batch and validation interval of one supervised run with at least ``min_steps`` optimizer steps.

    Args:
        n_train: labelled training images.
        batch_size: the batch asked for; capped at ``n_train``.
        epochs: the epochs asked for (a floor).
        min_steps: at least this many optimizer steps; more epochs are run when ``epochs`` would make fewer (a
            warning says so).
        val_checks: about this many validation passes; 0 validates every epoch.
        max_epochs: never more epochs than this (a warning says when ``min_steps`` is then not reached).
        drop_last: the loader drops the last partial batch when there is more than one batch (as the bundle does).

    Returns:
        ``{"epochs", "batch_size", "steps_per_epoch", "steps", "val_interval"}``; ``epochs`` is a multiple of
        ``val_interval``, so the last epoch is validated.

    Raises:
        ValueError: when ``n_train`` or ``batch_size`` is below 1.

    Example::

        training_schedule(n_train=47, batch_size=32, epochs=3, min_steps=100, val_checks=10)
        # {"epochs": 100, "batch_size": 32, "steps_per_epoch": 1, "steps": 100, "val_interval": 10}
    """
    if n_train < 1 or batch_size < 1:
        raise ValueError(f"training_schedule: need n_train >= 1 and batch_size >= 1, got {n_train} and {batch_size}.")
    batch = min(int(batch_size), int(n_train))
    steps_per_epoch = n_train // batch if drop_last else math.ceil(n_train / batch)
    asked = max(1, int(epochs))
    run = max(asked, math.ceil(max(0, int(min_steps)) / steps_per_epoch))
    if run > max_epochs:
        run = max(asked, int(max_epochs))
    interval = max(1, run // val_checks) if val_checks > 0 else 1
    run = int(math.ceil(run / interval) * interval)
    steps = run * steps_per_epoch
    if run > asked:
        logger.warning(
            f"{n_train} training images in batches of {batch} make {steps_per_epoch} optimizer step(s) per epoch: "
            f"{asked} epochs would be {asked * steps_per_epoch} steps, fewer than min_steps {min_steps}; "
            f"training {run} epochs ({steps} steps) instead."
        )
    if steps < min_steps:
        logger.warning(
            f"this run makes {steps} optimizer steps, fewer than min_steps {min_steps} (capped at max_epochs "
            f"{max_epochs}); raise max_epochs or the label fraction."
        )
    return {"epochs": run, "batch_size": batch, "steps_per_epoch": steps_per_epoch, "steps": steps,
            "val_interval": interval}
