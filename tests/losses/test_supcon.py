"""Tests for SupConLoss (Khosla et al. 2020, L_out): NT-Xent when every label is unique, a hand-computed case, the
explicit per-anchor formula in float64, batch-order invariance, both input layouts, finite gradients, shape errors,
and a 2-rank gloo run equal to one process on the global batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from testing_helpers import run_distributed

from monai_moco.losses import NTXentLoss, SupConLoss

B, D = 8, 16


def _reference(views: list[torch.Tensor], labels: list[int], t: float) -> np.ndarray:
    """Per-anchor L_out with explicit loops in float64 (anchor order: view 1's batch, then view 2's, ...)."""
    z = np.concatenate([v.double().numpy() / np.linalg.norm(v.double().numpy(), axis=1, keepdims=True) for v in views])
    lab = np.tile(np.asarray(labels), len(views))
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        log_denominator = np.log(sum(np.exp(z[i] @ z[a] / t) for a in others))
        positives = [p for p in others if lab[p] == lab[i]]
        losses.append(-np.mean([z[i] @ z[p] / t - log_denominator for p in positives]))
    return np.asarray(losses)


@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
def test_unique_labels_reduce_to_nt_xent(temperature):
    torch.manual_seed(0)
    z1, z2 = torch.randn(B, D), torch.randn(B, D)
    expected = NTXentLoss(temperature, reduction="none")(z1, z2)
    for labels in (torch.arange(B), torch.arange(B).flip(0) * 3 + 1, None):
        got = SupConLoss(temperature, reduction="none")(z1, z2, labels=labels)
        torch.testing.assert_close(got, expected)
    _, logits, positives = SupConLoss(temperature).forward_with_logits(z1, z2, labels=torch.arange(B))
    _, nt_logits, nt_labels = NTXentLoss(temperature).forward_with_logits(z1, z2)
    torch.testing.assert_close(logits, nt_logits)
    assert torch.equal(positives, nt_labels)


def test_hand_computed_two_pairs_one_class():
    """Two images of one class, two views each, at right angles except the views of one image: every anchor has three
    positives; the loss is computed by hand from the three cosines."""
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    z1 = torch.stack([e1, e2])  # view 1 of images 0 and 1
    z2 = torch.stack([e1, e2])  # view 2: identical to view 1
    t = 0.5
    # anchor 0 (image 0, view 1): others are image 1 view 1 (cos 0), image 0 view 2 (cos 1), image 1 view 2 (cos 0)
    log_den = math.log(math.exp(0 / t) + math.exp(1 / t) + math.exp(0 / t))
    same_class = -((0 / t + 1 / t + 0 / t) / 3 - log_den)  # all three are positives
    own_class = -(1 / t - log_den)  # different labels: only the other view
    loss = SupConLoss(t, reduction="none")
    torch.testing.assert_close(loss(z1, z2, labels=torch.tensor([3, 3])), torch.full((4,), same_class))
    torch.testing.assert_close(loss(z1, z2, labels=torch.tensor([0, 1])), torch.full((4,), own_class))
    assert same_class > own_class  # pulling the orthogonal image of the same class in costs loss


@pytest.mark.parametrize("n_views,temperature", [(2, 0.1), (3, 0.2), (4, 0.07)])
def test_matches_explicit_formula(n_views, temperature):
    g = torch.Generator().manual_seed(n_views)
    feats = torch.randn(B, n_views, D, generator=g)
    labels = [0, 1, 1, 2, 0, 1, 2, 2]
    ref = _reference(list(feats.unbind(1)), labels, temperature)
    got = SupConLoss(temperature, reduction="none")(feats, labels=torch.tensor(labels))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-5)
    assert SupConLoss(temperature)(feats, labels=torch.tensor(labels)).item() == pytest.approx(ref.mean(), rel=1e-5)
    assert SupConLoss(temperature, reduction="sum")(feats, labels=torch.tensor(labels)).item() == pytest.approx(
        ref.sum(), rel=1e-5
    )


def test_stacked_and_two_tensor_inputs_agree():
    torch.manual_seed(1)
    z1, z2, labels = torch.randn(B, D), torch.randn(B, D), torch.randint(0, 2, (B,))
    loss = SupConLoss(0.1)
    torch.testing.assert_close(loss(torch.stack([z1, z2], dim=1), labels=labels), loss(z1, z2, labels=labels))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invariant_to_batch_order(seed):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    labels = torch.randint(0, 3, (B,), generator=g)
    perm = torch.randperm(B, generator=g)
    loss = SupConLoss(0.1, reduction="none")
    base = loss(z1, z2, labels=labels).view(2, B)
    permuted = loss(z1[perm], z2[perm], labels=labels[perm]).view(2, B)
    torch.testing.assert_close(permuted, base[:, perm])
    torch.testing.assert_close(permuted.mean(), base.mean())


def test_gradient_finite_and_nonzero_under_autocast_and_large_inputs():
    z1 = (torch.randn(B, D) * 1e6).requires_grad_()
    z2 = torch.randn(B, D).requires_grad_()
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = SupConLoss(0.07)(z1, z2, labels=labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    for grad in (z1.grad, z2.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda f: f(torch.randn(4, 8), torch.randn(5, 8), labels=torch.zeros(4, dtype=torch.long)),
         r"z1 \(4, 8\) and z2 \(5, 8\)"),
        (lambda f: f(torch.randn(4, 1, 8), labels=torch.zeros(4, dtype=torch.long)), r"B x V x D with V >= 2.*\(4, 1, 8\)"),
        (lambda f: f(torch.randn(4, 8), labels=torch.zeros(4, dtype=torch.long)), r"B x V x D.*\(4, 8\)"),
        (lambda f: f(torch.randn(4, 8), torch.randn(4, 8), labels=torch.zeros(5, dtype=torch.long)),
         r"shape \(4,\).*z1 \(4, 8\).*got torch.int64 of shape \(5,\)"),
        (lambda f: f(torch.randn(4, 8), torch.randn(4, 8), labels=torch.zeros(4)), r"integer class labels.*float32"),
    ],
)
def test_shape_errors_name_the_shapes(call, match):
    with pytest.raises(ValueError, match=match):
        call(SupConLoss(0.1))


def test_bad_temperature():
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        SupConLoss(temperature=0)


def test_real_radiographs_class_positives_cost_more_than_own_view(kermany_dir):
    """On real Kermany radiographs (8 normal, 8 pneumonia, 32 px pixels as features), the supervised loss is higher
    than NT-Xent's for the same views: the same-class positives are harder to match than each image's own view."""
    from PIL import Image

    paths = sorted((kermany_dir / "train" / "NORMAL").glob("*.jpeg"))[:8]
    paths += sorted((kermany_dir / "train" / "PNEUMONIA").glob("*.jpeg"))[:8]
    imgs = torch.stack([
        torch.from_numpy(np.asarray(Image.open(p).convert("L").resize((32, 32)), dtype=np.float32) / 255.0)
        for p in paths
    ])
    feats = (imgs - imgs.mean(0)).flatten(1)
    view2 = (imgs.flip(-1) - imgs.mean(0)).flatten(1)  # a horizontally flipped view
    labels = torch.tensor([0] * 8 + [1] * 8)
    supcon, nt_xent = SupConLoss(0.1)(feats, view2, labels=labels), NTXentLoss(0.1)(feats, view2)
    assert torch.isfinite(supcon) and supcon > nt_xent
    # relabelling the images one class each gives back NT-Xent exactly
    torch.testing.assert_close(SupConLoss(0.1)(feats, view2, labels=torch.arange(16)), nt_xent)


# ---- 2-process gloo worker ----
def _global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    return torch.randn(B, D, generator=g), torch.randn(B, D, generator=g), torch.randint(0, 2, (B,), generator=g)


def _supcon_worker(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    z1_all, z2_all, labels_all = _global_batch()
    b = B // world_size
    part = slice(rank * b, (rank + 1) * b)
    z1, z2 = z1_all[part].clone().requires_grad_(), z2_all[part].clone().requires_grad_()
    loss = SupConLoss(0.1)(z1, z2, labels=labels_all[part])
    loss.backward()
    return {"loss": loss.detach(), "g1": z1.grad, "g2": z2.grad}


def test_two_process_equals_one_process_global_batch():
    res = run_distributed(_supcon_worker, world_size=2)
    z1_all, z2_all, labels_all = _global_batch()
    z1_all.requires_grad_()
    z2_all.requires_grad_()
    SupConLoss(0.1)(z1_all, z2_all, labels=labels_all).backward()
    loss = SupConLoss(0.1)(z1_all.detach(), z2_all.detach(), labels=labels_all)
    torch.testing.assert_close(torch.stack([r["loss"] for r in res]).mean(), loss)
    torch.testing.assert_close(torch.cat([r["g1"] for r in res]) / 2, z1_all.grad)
    torch.testing.assert_close(torch.cat([r["g2"] for r in res]) / 2, z2_all.grad)
