"""contrastive_output_transform / contrastive_stats_handlers: pick the scalar statistics, name the TensorBoard tags."""

from __future__ import annotations

import pytest
import torch
from monai.handlers import StatsHandler, TensorBoardStatsHandler

from monai_moco.handlers import contrastive_output_transform, contrastive_stats_handlers

OUTPUT = {"loss": 1.5, "acc1": 0.25, "lr": 0.1, "query": torch.zeros(4, 8), "queue_fill": torch.tensor(0.5)}


@pytest.mark.parametrize(
    "keys, prefix, expected",
    [
        (None, "", {"loss": 1.5, "acc1": 0.25, "lr": 0.1, "queue_fill": torch.tensor(0.5)}),
        (["loss", "acc1", "missing"], "train/", {"train/loss": 1.5, "train/acc1": 0.25}),
    ],
)
def test_output_transform_keeps_scalars(keys, prefix, expected):
    assert contrastive_output_transform(keys, prefix)(OUTPUT) == expected
    assert contrastive_output_transform(keys, prefix)(None) == {}


@pytest.mark.parametrize("log_dir, types", [(None, [StatsHandler]), ("tb", [StatsHandler, TensorBoardStatsHandler])])
def test_handlers(log_dir, types, tmp_path):
    handlers = contrastive_stats_handlers(None if log_dir is None else str(tmp_path / log_dir), iteration_interval=5)
    assert [type(h) for h in handlers] == types
    assert handlers[0].output_transform(OUTPUT)["loss"] == 1.5
    assert handlers[0].iteration_log(None, 10) and not handlers[0].iteration_log(None, 11)
