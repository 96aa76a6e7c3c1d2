"""Tests for MemoryQueue (MoCo's dictionary): FIFO writes, wrap-around keeping every key, errors, state_dict
round-trip, fill fraction, and 2-rank gloo enqueue in rank order."""

from __future__ import annotations

import pytest
import torch
from testing_helpers import run_distributed

from monai_moco.losses import MemoryQueue


def test_init_normalised_buffers():
    torch.manual_seed(0)
    q = MemoryQueue(size=32, dim=8)
    names = dict(q.named_buffers())
    assert set(names) == {"keys", "ptr", "num_enqueued"}
    assert q.keys.shape == (32, 8)
    torch.testing.assert_close(q.keys.norm(dim=1), torch.ones(32))
    assert int(q.ptr) == 0 and q.fill_fraction == 0.0
    assert list(q.parameters()) == []  # nothing for the optimiser


def test_enqueue_writes_after_pointer():
    q = MemoryQueue(size=10, dim=3)
    k = torch.randn(4, 3)
    q.enqueue(k)
    assert torch.equal(q.keys[:4], k)
    assert int(q.ptr) == 4 and q.fill_fraction == pytest.approx(0.4)


def test_wrap_around_keeps_every_key():
    q = MemoryQueue(size=10, dim=3)
    k1, k2, k3 = (torch.full((4, 3), float(i)) + torch.arange(4.0)[:, None] / 10 for i in (1, 2, 3))
    for k in (k1, k2, k3):
        q.enqueue(k)
    expected = torch.cat([k3[2:], k1[2:], k2, k3[:2]])
    assert torch.equal(q.keys, expected)
    assert int(q.ptr) == 2 and int(q.num_enqueued) == 12 and q.fill_fraction == 1.0


@pytest.mark.parametrize("size,batch", [(4, 4), (7, 3), (12, 5)])
def test_fifo_holds_the_last_k_keys(size, batch):
    q = MemoryQueue(size=size, dim=1)
    stream = torch.arange(5 * batch, dtype=torch.float32)[:, None]
    for chunk in stream.split(batch):
        q.enqueue(chunk)
    assert set(q.keys.flatten().tolist()) == set(stream[-size:].flatten().tolist())


def test_get_is_a_detached_clone():
    q = MemoryQueue(size=6, dim=2)
    snapshot = q.get()
    assert torch.equal(snapshot, q()) and not snapshot.requires_grad
    q.enqueue(torch.zeros(2, 2))
    assert not torch.equal(snapshot, q.get())  # enqueue after get() does not change what the loss saw


def test_enqueue_casts_and_detaches():
    q = MemoryQueue(size=6, dim=2)
    k = torch.randn(3, 2, requires_grad=True)
    q.enqueue(k.to(torch.bfloat16))
    assert q.keys.dtype == torch.float32 and not q.keys.requires_grad


@pytest.mark.parametrize(
    "shape,match", [((11, 3), "do not fit in a queue of size 10"), ((4, 5), "B x 3"), ((4,), "B x 3")]
)
def test_enqueue_errors(shape, match):
    with pytest.raises(ValueError, match=match):
        MemoryQueue(size=10, dim=3).enqueue(torch.randn(*shape))


def test_bad_size():
    with pytest.raises(ValueError, match="size and dim"):
        MemoryQueue(size=0, dim=3)


def test_state_dict_round_trip(tmp_path):
    q = MemoryQueue(size=10, dim=3)
    for _ in range(3):
        q.enqueue(torch.randn(4, 3))
    torch.save(q.state_dict(), tmp_path / "queue.pt")
    restored = MemoryQueue(size=10, dim=3)
    restored.load_state_dict(torch.load(tmp_path / "queue.pt"))
    assert torch.equal(restored.keys, q.keys)
    assert int(restored.ptr) == 2 and int(restored.num_enqueued) == 12
    assert restored.fill_fraction == 1.0
    # as part of a model (the way CheckpointSaver stores it)
    model = torch.nn.ModuleDict({"queue": q})
    assert "queue.keys" in model.state_dict() and "queue.ptr" in model.state_dict()


# ---- 2-process gloo worker ----
def _enqueue_worker(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    q = MemoryQueue(size=10, dim=2)
    for step in range(2):
        q.enqueue(torch.full((3, 2), float(10 * step + rank)))
    local = MemoryQueue(size=10, dim=2)
    local.enqueue(torch.full((3, 2), float(rank)), gather=False)
    return {"keys": q.keys, "ptr": q.ptr, "n": q.num_enqueued, "local": local.keys[:3], "local_ptr": local.ptr}


def test_two_process_enqueue_rank_order():
    res = run_distributed(_enqueue_worker, world_size=2)
    # step 0 fills rows 0-5 with rank 0's keys (0) then rank 1's (1); step 1 writes 6 keys from ptr 6: rows 6-8 get
    # rank 0's keys (10), row 9 and, wrapping around, rows 0-1 get rank 1's keys (11)
    values = [11.0, 11.0, 0.0, 1.0, 1.0, 1.0, 10.0, 10.0, 10.0, 11.0]
    expected = torch.tensor(values)[:, None].repeat(1, 2)
    for rank, r in enumerate(res):
        assert torch.equal(r["keys"], expected), r["keys"][:, 0]
        assert int(r["ptr"]) == 2 and int(r["n"]) == 12
        assert torch.equal(r["local"], torch.full((3, 2), float(rank))) and int(r["local_ptr"]) == 3
