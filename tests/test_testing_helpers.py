"""Tests for testing_helpers.run_distributed: results in rank order, errors reported, subprocess mode."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from testing_helpers import find_free_port, run_distributed


def _rank_worker(rank: int, world_size: int) -> dict[str, int]:
    t = torch.tensor([rank + 1])
    dist.all_reduce(t)
    return {"rank": dist.get_rank(), "world": dist.get_world_size(), "sum": int(t)}


def _failing_worker(rank: int, world_size: int) -> None:
    if rank == 1:
        raise ValueError("boom on rank 1")


def test_find_free_port():
    assert 0 < find_free_port() < 65536


@pytest.mark.parametrize("world_size", [2, 3])
def test_fork_results_in_rank_order(world_size):
    res = run_distributed(_rank_worker, world_size=world_size)
    total = world_size * (world_size + 1) // 2
    assert res == [{"rank": r, "world": world_size, "sum": total} for r in range(world_size)]


def test_failure_is_reported_with_traceback():
    with pytest.raises(RuntimeError, match="boom on rank 1"):
        run_distributed(_failing_worker, world_size=2, timeout=60)


@pytest.mark.slow
def test_subprocess_mode():
    res = run_distributed(_rank_worker, world_size=2, start_method="subprocess")
    assert [r["sum"] for r in res] == [3, 3]
