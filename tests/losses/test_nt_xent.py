"""Tests for NTXentLoss (SimCLR): explicit 2N-2 negatives reference, symmetry, stability, and 2-rank gloo equivalence
with one process on the global batch (loss and input gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from testing_helpers import run_distributed

from monai_moco.losses import NTXentLoss, contrastive_accuracy, logit_stats

B, D = 8, 16


def _reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> np.ndarray:
    """Per-anchor NT-Xent with explicit loops in float64: anchor, its positive, and its 2N - 2 negatives."""
    a = z1.double().numpy()
    b = z2.double().numpy()
    z = np.concatenate([a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)])
    n = a.shape[0]
    losses = []
    for i in range(2 * n):
        pos_j = (i + n) % (2 * n)
        pos = float(z[i] @ z[pos_j]) / t
        negs = [float(z[i] @ z[j]) / t for j in range(2 * n) if j not in (i, pos_j)]
        assert len(negs) == 2 * n - 2
        logits = np.array([pos] + negs)
        m = logits.max()
        losses.append(m + np.log(np.exp(logits - m).sum()) - pos)
    return np.array(losses)


@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
def test_matches_reference(temperature):
    torch.manual_seed(0)
    z1, z2 = torch.randn(B, D), torch.randn(B, D)
    ref = _reference(z1, z2, temperature)
    np.testing.assert_allclose(
        NTXentLoss(temperature, reduction="none")(z1, z2).numpy(), ref, rtol=1e-5, atol=1e-5
    )
    assert NTXentLoss(temperature)(z1, z2).item() == pytest.approx(ref.mean(), rel=1e-5)


def test_symmetric_in_views():
    torch.manual_seed(0)
    z1, z2 = torch.randn(B, D), torch.randn(B, D)
    loss_fn = NTXentLoss(0.1)
    torch.testing.assert_close(loss_fn(z1, z2), loss_fn(z2, z1))


def test_logits_labels_and_stats():
    torch.manual_seed(0)
    z = torch.randn(B, D)
    loss, logits, labels = NTXentLoss(0.1).forward_with_logits(z, z.clone())
    assert logits.shape == (2 * B, 2 * B - 1) and labels.shape == (2 * B,)
    assert torch.isfinite(logits).all()
    assert contrastive_accuracy(logits, labels, topk=(1, 5)) == {"top1": 1.0, "top5": 1.0}
    pos, neg = logit_stats(logits, labels)
    assert pos == pytest.approx(10.0, rel=1e-5) and neg < pos


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_finite_and_close_to_fp32(dtype):
    torch.manual_seed(0)
    lin = torch.nn.Linear(D, D)
    x1, x2 = torch.randn(32, D), torch.randn(32, D)
    loss_fn = NTXentLoss(0.07)
    ref = loss_fn(lin(x1), lin(x2))
    with torch.autocast("cpu", dtype=dtype):
        loss = loss_fn(lin(x1), lin(x2))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(ref.item(), rel=0.05)


def test_large_magnitude_inputs_are_finite():
    z1 = (torch.randn(B, D) * 1e6).requires_grad_()
    loss = NTXentLoss(0.07)(z1, torch.randn(B, D) * 1e6)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all()


def test_errors():
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=-1)
    with pytest.raises(ValueError, match="z1 and z2"):
        NTXentLoss()(torch.randn(4, 8), torch.randn(5, 8))


# ---- 2-process gloo worker ----
def _global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)


def _ntxent_worker(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    z1_all, z2_all = _global_batch()
    b = B // world_size
    z1 = z1_all[rank * b : (rank + 1) * b].clone().requires_grad_()
    z2 = z2_all[rank * b : (rank + 1) * b].clone().requires_grad_()
    loss, logits, labels = NTXentLoss(0.1).forward_with_logits(z1, z2)
    loss.backward()
    return {"loss": loss.detach(), "g1": z1.grad, "g2": z2.grad, "logits_shape": torch.tensor(logits.shape)}


def test_two_process_equals_one_process_global_batch():
    res = run_distributed(_ntxent_worker, world_size=2)
    z1_all, z2_all = _global_batch()
    z1_all.requires_grad_()
    z2_all.requires_grad_()
    loss = NTXentLoss(0.1)(z1_all, z2_all)
    loss.backward()
    # each rank's loss is the mean over its 2B/2 anchors against all 2B - 2 global negatives
    assert torch.equal(res[0]["logits_shape"], torch.tensor([B, 2 * B - 1]))
    mean_loss = torch.stack([r["loss"] for r in res]).mean()
    torch.testing.assert_close(mean_loss, loss.detach())
    # gradients summed over ranks; DDP averages them, so grad / world_size equals the single-process gradient
    g1 = torch.cat([r["g1"] for r in res]) / 2
    g2 = torch.cat([r["g2"] for r in res]) / 2
    torch.testing.assert_close(g1, z1_all.grad)
    torch.testing.assert_close(g2, z2_all.grad)
