"""training_schedule: at least min_steps optimizer steps, a batch no larger than the subset, validated last epoch."""

from __future__ import annotations

import logging

import pytest

from monai_moco.evaluation import training_schedule


@pytest.mark.parametrize(
    "n,batch,epochs,min_steps,val_checks,expected",
    [
        # 1 % of Kermany: 47 images, one step per epoch -> 200 epochs, validated 10 times
        (47, 32, 3, 200, 10, {"epochs": 200, "batch_size": 32, "steps_per_epoch": 1, "steps": 200, "val_interval": 20}),
        # fewer images than the batch: the batch shrinks to the subset
        (5, 32, 3, 10, 0, {"epochs": 10, "batch_size": 5, "steps_per_epoch": 1, "steps": 10, "val_interval": 1}),
        # enough steps already: the epochs asked for
        (4694, 32, 3, 200, 0, {"epochs": 3, "batch_size": 32, "steps_per_epoch": 146, "steps": 438, "val_interval": 1}),
        # min_steps 0: the epochs asked for, rounded up to a multiple of the interval
        (469, 32, 7, 0, 3, {"epochs": 8, "batch_size": 32, "steps_per_epoch": 14, "steps": 112, "val_interval": 2}),
    ],
)
def test_schedule(n, batch, epochs, min_steps, val_checks, expected):
    got = training_schedule(n, batch, epochs, min_steps=min_steps, val_checks=val_checks)
    assert got == expected
    assert got["epochs"] % got["val_interval"] == 0 and got["steps"] >= min_steps


def test_warns_when_more_epochs_are_needed_and_when_capped(caplog):
    with caplog.at_level(logging.WARNING, logger="monai_moco.evaluation.schedule"):
        training_schedule(47, 32, 3, min_steps=200)
        assert "3 epochs would be 3 steps, fewer than min_steps 200; training 200 epochs" in caplog.text
        caplog.clear()
        got = training_schedule(47, 32, 3, min_steps=200, max_epochs=50)
    assert got["steps"] == 50 and "makes 50 optimizer steps, fewer than min_steps 200" in caplog.text


@pytest.mark.parametrize("n,batch", [(0, 32), (10, 0)])
def test_refuses_empty(n, batch):
    with pytest.raises(ValueError, match="need n_train >= 1 and batch_size >= 1"):
        training_schedule(n, batch, 1)
