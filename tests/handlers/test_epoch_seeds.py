"""EpochSeededTransforms: a dataset's random transforms follow torch's generator, epoch by epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import Dataset
from monai.transforms import Compose, RandGaussianNoise, RandSpatialCrop

from monai_moco.handlers import EpochSeededTransforms


def _epoch_draws(torch_seed: int, epochs: int, state_after: int | None = None) -> tuple[list[np.ndarray], list]:
    """Run ``epochs`` epochs over one random-crop-and-noise sample; return the sample of each epoch (and torch's RNG
    state after epoch ``state_after``)."""
    ds = Dataset([np.arange(64, dtype=np.float32).reshape(1, 8, 8)],
                 transform=Compose([RandSpatialCrop((4, 4), random_size=False), RandGaussianNoise(prob=1.0)]))
    torch.manual_seed(torch_seed)
    seen: list[np.ndarray] = []
    states: list = []
    engine = Engine(lambda e, b: seen.append(np.asarray(ds[0])))
    EpochSeededTransforms(ds).attach(engine)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: states.append(torch.get_rng_state()))
    engine.run([0], max_epochs=epochs)
    return seen, states


@pytest.mark.parametrize("epochs", [2, 3])
def test_same_torch_state_same_views_and_epochs_differ(epochs: int) -> None:
    a, _ = _epoch_draws(0, epochs)
    b, _ = _epoch_draws(0, epochs)
    c, _ = _epoch_draws(1, epochs)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[0], c[0])


def test_restoring_torch_state_repeats_the_next_epoch() -> None:
    """What a resumed run relies on: torch's state after epoch 1 (as a checkpoint holds it) gives epoch 2's views."""
    full, states = _epoch_draws(0, 2)
    ds = Dataset([np.arange(64, dtype=np.float32).reshape(1, 8, 8)],
                 transform=Compose([RandSpatialCrop((4, 4), random_size=False), RandGaussianNoise(prob=1.0)]))
    ds.transform.set_random_state(seed=123)  # whatever the fresh process drew at start
    torch.set_rng_state(states[0])
    seed = EpochSeededTransforms(ds)()
    assert 0 <= seed
    np.testing.assert_array_equal(np.asarray(ds[0]), full[1])
