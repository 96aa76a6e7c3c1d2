"""Tests for InfoNCELoss (MoCo): values against an explicit numpy log-sum-exp reference, stability, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from monai_moco.losses import InfoNCELoss, MemoryQueue, contrastive_accuracy, logit_stats


def _reference(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor | None, t: float) -> np.ndarray:
    """Per-sample InfoNCE with explicit loops in float64 numpy."""
    q = q.double().numpy()
    k = k.double().numpy()
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    losses = []
    for i in range(q.shape[0]):
        pos = float(q[i] @ k[i]) / t
        if queue is None:
            negs = [float(q[i] @ k[j]) / t for j in range(q.shape[0]) if j != i]
        else:
            negs = [float(q[i] @ n) / t for n in queue.double().numpy()]
        logits = np.array([pos] + negs)
        m = logits.max()
        losses.append(m + np.log(np.exp(logits - m).sum()) - pos)
    return np.array(losses)


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
@pytest.mark.parametrize("use_queue", [True, False])
def test_matches_reference(temperature, use_queue):
    torch.manual_seed(0)
    q, k = torch.randn(6, 16), torch.randn(6, 16)
    queue = F.normalize(torch.randn(20, 16), dim=1) if use_queue else None
    ref = _reference(q, k, queue, temperature)
    loss_fn = InfoNCELoss(temperature=temperature, reduction="none")
    np.testing.assert_allclose(loss_fn(q, k, queue).numpy(), ref, rtol=1e-5, atol=1e-5)
    assert InfoNCELoss(temperature)(q, k, queue).item() == pytest.approx(ref.mean(), rel=1e-5)
    assert InfoNCELoss(temperature, reduction="sum")(q, k, queue).item() == pytest.approx(ref.sum(), rel=1e-5)


def test_logits_layout_and_labels():
    torch.manual_seed(0)
    q, k = torch.randn(5, 8), torch.randn(5, 8)
    queue = F.normalize(torch.randn(11, 8), dim=1)
    loss, logits, labels = InfoNCELoss(0.5).forward_with_logits(q, k, queue)
    assert logits.shape == (5, 12) and logits.dtype == torch.float32
    assert torch.equal(labels, torch.zeros(5, dtype=torch.long))
    expected_pos = (F.normalize(q, dim=1) * F.normalize(k, dim=1)).sum(1) / 0.5
    torch.testing.assert_close(logits[:, 0], expected_pos)
    _, logits_nb, _ = InfoNCELoss(0.5).forward_with_logits(q, k)
    assert logits_nb.shape == (5, 5)  # positive + B - 1 in-batch negatives


def test_perfect_alignment_gives_high_accuracy():
    torch.manual_seed(0)
    k = F.normalize(torch.randn(8, 32), dim=1)
    queue = F.normalize(torch.randn(64, 32), dim=1)
    loss, logits, labels = InfoNCELoss(0.07).forward_with_logits(k.clone(), k, queue)
    assert contrastive_accuracy(logits, labels)["top1"] == 1.0
    pos, neg = logit_stats(logits)
    assert pos == pytest.approx(1 / 0.07, rel=1e-5) and neg < pos
    assert loss.item() < 0.1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_finite_and_close_to_fp32(dtype):
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 32)
    x1, x2 = torch.randn(16, 32), torch.randn(16, 32)
    queue = F.normalize(torch.randn(128, 32), dim=1)
    loss_fn = InfoNCELoss(0.07)
    ref = loss_fn(lin(x1), lin(x2), queue)
    with torch.autocast("cpu", dtype=dtype):
        q, k = lin(x1), lin(x2)
        assert q.dtype == dtype
        loss = loss_fn(q, k, queue.to(dtype))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(ref.item(), rel=0.05)


def test_large_magnitude_inputs_are_finite():
    torch.manual_seed(0)
    q = torch.randn(4, 8, requires_grad=True)
    loss = InfoNCELoss(0.07)(q * 1e6, torch.randn(4, 8) * 1e6, F.normalize(torch.randn(16, 8), dim=1))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(q.grad).all()


def test_gradients_reach_query_not_queue():
    torch.manual_seed(0)
    q = torch.randn(4, 8, requires_grad=True)
    k = torch.randn(4, 8, requires_grad=True)
    mq = MemoryQueue(16, 8)
    queue = mq.get()
    assert not queue.requires_grad and queue.grad_fn is None
    loss = InfoNCELoss(0.2)(q, k.detach(), queue)
    loss.backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None  # the caller detached the key: nothing flows into the key encoder
    assert not mq.keys.requires_grad


@pytest.mark.parametrize(
    "kwargs,shapes,match",
    [
        ({"temperature": 0.0}, None, "temperature"),
        ({"reduction": "avg"}, None, "avg"),
        ({}, ((4, 8), (4, 7), None), "query and key"),
        ({}, ((4, 8), (4, 8), (10, 7)), "queue"),
    ],
)
def test_errors(kwargs, shapes, match):
    with pytest.raises(ValueError, match=match):
        loss_fn = InfoNCELoss(**kwargs)
        q, k, queue = shapes
        loss_fn(torch.randn(*q), torch.randn(*k), None if queue is None else torch.randn(*queue))
