"""Re-seed a dataset's random transforms from torch's generator at every epoch, so a resumed run repeats the draws.

Why: with ``num_workers=0`` MONAI's ``DataLoader`` seeds the dataset's ``Randomizable`` transforms once, when it is
built, and their NumPy ``RandomState`` s then run on across epochs. A checkpoint restores torch's generators (see
``monai_moco.engines.TorchRNGState``) but not those states, so a run resumed at epoch ``e`` would draw epoch ``e + 1``'s
crops and flips from the start of the streams, not where the first run was. Seeding them at every epoch start from
torch's global generator (as MONAI's ``worker_init_fn`` does for each worker process) ties the augmentations to the
checkpointed state: the resumed run then trains on the same views as an uninterrupted one. With ``num_workers > 0`` and
non-persistent workers the workers are seeded from torch's generator anyway; with persistent workers this handler
does not reach them.
"""

from __future__ import annotations

from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.data.utils import set_rnd
from monai.utils import MAX_SEED

__all__ = ["EpochSeededTransforms"]


class EpochSeededTransforms:
    """At ``EPOCH_STARTED``, seed every random transform of ``dataset`` from one draw of torch's global generator.

    Args:
        dataset: the training dataset (its ``transform`` and anything else reachable that has ``set_random_state``;
            MONAI's ``set_rnd`` walks it).

    Example::

        EpochSeededTransforms(train_dataset).attach(trainer)  # before trainer.run()
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def attach(self, engine: Engine) -> None:
        """Seed the transforms at the start of every epoch of ``engine``.

        Args:
            engine: the trainer.
        """
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine | None = None) -> int:
        """Draw a seed from torch's global generator and seed the dataset's transforms with it.

        Args:
            engine: the trainer (unused; ignite passes it).

        Returns:
            the seed used.
        """
        seed = int(torch.randint(0, MAX_SEED, (1,), dtype=torch.int64).item())
        set_rnd(getattr(self.dataset, "transform", self.dataset), seed)
        return seed
