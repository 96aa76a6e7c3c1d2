"""Tests for TopKPatchHead: selection, pooling, gradients to the scorer, call contract."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch

from monai_moco.networks.blocks.topk_patch_head import TopKPatchHead

D = 16


def _tokens(b: int = 3, n: int = 20) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(b, n, D)


@pytest.mark.parametrize(
    "kwargs", [{"k": 5, "pooling": "weighted"}, {"k": 5, "pooling": "mean"}, {"k": 5, "pooling": "concat"},
               {"k": 1, "pooling": "weighted"}, {"keep_ratio": 0.3, "pooling": "mean"}]
)
def test_scorer_receives_gradients(kwargs: dict) -> None:
    torch.manual_seed(1)
    head = TopKPatchHead(D, **kwargs)
    tokens = _tokens().requires_grad_(True)
    target = torch.randn(3, head.out_features)
    (head(tokens) - target).pow(2).sum().backward()
    for name, p in head.scorer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    _, _, idx = head(tokens, return_scores=True)
    grad_rows = tokens.grad.abs().sum(-1) > 0
    # every selected token has a gradient (rows outside the top K only through the scorer)
    assert grad_rows.gather(1, idx).all()


@pytest.mark.parametrize("pooling", ["weighted", "mean", "concat"])
def test_returns_indices_of_the_k_highest_scores(pooling: str) -> None:
    head = TopKPatchHead(D, k=4, pooling=pooling)
    tokens = _tokens()
    emb, scores, idx = head(tokens, return_scores=True)
    assert emb.shape == (3, D) and scores.shape == (3, 20) and idx.shape == (3, 4)
    expected = scores.argsort(dim=1, descending=True)[:, :4]
    assert torch.equal(idx.sort(dim=1).values, expected.sort(dim=1).values)
    # descending score order
    kept = scores.gather(1, idx)
    assert torch.all(kept[:, :-1] >= kept[:, 1:])
    torch.testing.assert_close(scores, head.score(tokens))
    # plain call returns the same embedding
    torch.testing.assert_close(head(tokens), emb)


def test_pooling_values() -> None:
    tokens = _tokens()
    mean_head = TopKPatchHead(D, k=4, pooling="mean")
    emb, _, idx = mean_head(tokens, return_scores=True)
    sel = tokens.gather(1, idx.unsqueeze(-1).expand(-1, -1, D))
    # the straight-through gate leaves the forward value unchanged
    torch.testing.assert_close(emb, sel.mean(1))
    w_head = TopKPatchHead(D, k=4, pooling="weighted", temperature=0.5)
    w_head.load_state_dict(mean_head.state_dict())
    emb_w, scores, idx_w = w_head(tokens, return_scores=True)
    weights = torch.softmax(scores.gather(1, idx_w) / 0.5, dim=1)
    torch.testing.assert_close(emb_w, (weights.unsqueeze(-1) * sel).sum(1))
    cat = TopKPatchHead(D, k=4, pooling="concat", out_features=8)
    assert cat.proj.in_features == 4 * D and cat(tokens).shape == (3, 8) and cat.out_features == 8
    assert TopKPatchHead(D, k=2, pooling="mean", out_features=7)(tokens).shape == (3, 7)


@pytest.mark.parametrize("ratio, n, k", [(0.25, 196, 49), (0.1, 64, 6), (0.01, 20, 1), (1.0, 20, 20)])
def test_keep_ratio_to_k(ratio: float, n: int, k: int) -> None:
    head = TopKPatchHead(D, keep_ratio=ratio)
    assert head.num_kept(n) == k
    _, _, idx = head(torch.randn(2, n, D), return_scores=True)
    assert idx.shape == (2, k)


def test_default_keep_ratio() -> None:
    assert TopKPatchHead(D).num_kept(100) == 25


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"k=30.*N=20"):
        TopKPatchHead(D, k=30)(torch.randn(1, 20, D))
    with pytest.raises(ValueError, match="not both"):
        TopKPatchHead(D, k=3, keep_ratio=0.5)
    with pytest.raises(ValueError, match="concat.*fixed k"):
        TopKPatchHead(D, keep_ratio=0.5, pooling="concat")
    with pytest.raises(ValueError, match=r"B x N x 16.*\[2, 16\]"):
        TopKPatchHead(D, k=2)(torch.randn(2, D))
    with pytest.raises(ValueError, match="keep_ratio"):
        TopKPatchHead(D, keep_ratio=1.5)


def test_deepcopy_trace_and_script() -> None:
    head = TopKPatchHead(D, k=3, pooling="weighted")
    tokens = _tokens()
    head(tokens).sum().backward()
    twin = copy.deepcopy(head)
    torch.testing.assert_close(twin(tokens), head(tokens))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(head, tokens)
        scripted = torch.jit.script(head)
    torch.testing.assert_close(traced(tokens), head(tokens))
    torch.testing.assert_close(scripted(tokens), head(tokens))
    emb, scores, idx = scripted(tokens, return_scores=True)
    assert torch.equal(idx, head(tokens, return_scores=True)[2])


@pytest.mark.parametrize("grid", [(4, 5), (2, 3, 4)], ids=["2d", "3d"])
def test_score_map_and_kept_positions_on_the_token_grid(grid: tuple[int, ...]) -> None:
    head = TopKPatchHead(D, k=3, spatial_dims=len(grid))
    tokens = _tokens(b=2, n=math.prod(grid)).requires_grad_(True)
    emb, scores, idx = head(tokens, return_scores=True)
    heat = head.score_map(scores, grid)
    assert heat.shape == (2, *grid)
    positions = head.kept_positions(idx, grid)
    assert positions.shape == (2, 3, len(grid))
    for b in range(2):
        for j in range(3):  # each kept position holds that token's score in the heat-map
            assert heat[(b, *positions[b, j].tolist())] == scores[b, idx[b, j]]
    # the K kept voxels/pixels are the K highest of the heat-map
    assert torch.equal(heat.flatten(1).topk(3, dim=1).values, scores.gather(1, idx))
    emb.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.scorer.parameters())


@pytest.mark.parametrize(
    "spatial_dims, grid, match",
    [(3, (4, 5), r"token grid \(4, 5\).*20 patch tokens.*spatial_dims=3"),
     (3, (2, 2, 4), r"token grid \(2, 2, 4\).*20 patch tokens"),
     (2, (2, 2, 5), r"token grid \(2, 2, 5\).*spatial_dims=2")],
    ids=["2d-grid-for-3d-head", "3d-grid-wrong-count", "3d-grid-for-2d-head"],
)
def test_score_map_errors_name_the_grid(spatial_dims: int, grid: tuple[int, ...], match: str) -> None:
    head = TopKPatchHead(D, k=2, spatial_dims=spatial_dims)
    _, scores, _ = head(_tokens(b=1, n=20), return_scores=True)
    with pytest.raises(ValueError, match=match):
        head.score_map(scores, grid)
    with pytest.raises(ValueError, match=r"indices span \[.*\] but the token grid \(2, 2\) has 4 tokens"):
        TopKPatchHead(D, k=1).kept_positions(torch.tensor([[7]]), (2, 2))
    with pytest.raises(ValueError, match="spatial_dims must be 2 .* or 3 .*, got 1"):
        TopKPatchHead(D, k=1, spatial_dims=1)


def test_spatial_dims_adds_no_parameters() -> None:
    torch.manual_seed(0)
    two = TopKPatchHead(D, k=2)
    three = TopKPatchHead(D, k=2, spatial_dims=3)
    assert two.state_dict().keys() == three.state_dict().keys()
    three.load_state_dict(two.state_dict())
