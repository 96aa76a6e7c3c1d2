"""Embedding geometry: alignment, uniformity, mean pairwise cosine and effective rank on known configurations."""

from __future__ import annotations

import math

import pytest
import torch

from monai_moco.metrics import alignment, effective_rank, embedding_geometry, mean_pairwise_cosine, uniformity


def _spread(n: int = 2000, f: int = 64) -> torch.Tensor:
    return torch.randn(n, f, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "z,cosine,rank,unif",
    [
        (_spread(), (-0.01, 0.01), (55, 64), (-4.0, -3.8)),  # spread over the sphere: about -2t = -4
        (torch.ones(50, 8) + 1e-9 * _spread(50, 8), (0.999, 1.0), (1.0, 8.0), (-1e-6, 1e-6)),  # collapsed to a point
        (torch.cat([torch.ones(100, 1), torch.zeros(100, 7)], dim=1) * torch.linspace(1, 2, 100)[:, None],  # a ray
         (0.999, 1.0), (1.0, 1.0001), (-1e-6, 1e-6)),
    ],
)
def test_geometry_of_known_configurations(z, cosine, rank, unif):
    geo = embedding_geometry(z)
    assert cosine[0] <= geo["mean_cosine"] <= cosine[1], geo
    assert rank[0] <= geo["effective_rank"] <= rank[1], geo
    assert unif[0] <= geo["uniformity"] <= unif[1], geo


def test_mean_pairwise_cosine_matches_the_pairwise_definition():
    z = _spread(30, 5)
    x = torch.nn.functional.normalize(z.double(), dim=1)
    sims = x @ x.T
    expected = (sims.sum() - sims.diagonal().sum()) / (30 * 29)
    assert mean_pairwise_cosine(z) == pytest.approx(float(expected), abs=1e-12)


def test_effective_rank_of_k_equal_directions_is_k():
    z = torch.zeros(4, 10)
    z[torch.arange(4), torch.arange(4)] = 1.0
    assert effective_rank(z, center=False) == pytest.approx(4.0, rel=1e-9)


@pytest.mark.parametrize("noise,low,high", [(0.0, 0.0, 1e-12), (10.0, 1.5, 2.1)])
def test_alignment_of_identical_and_unrelated_views(noise, low, high):
    z = _spread(500, 32)
    other = z + noise * _spread(500, 32).roll(1, 0)
    assert low <= alignment(z, other) <= high  # unrelated unit vectors: E||a - b||^2 = 2


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: uniformity(torch.zeros(1, 4)), r"N >= 2, got shape \(1, 4\)"),
        (lambda: effective_rank(torch.zeros(5)), r"N x F embeddings with N >= 2, got shape \(5,\)"),
        (lambda: alignment(torch.zeros(3, 4), torch.zeros(3, 5)), r"\(3, 4\) vs \(3, 5\)"),
    ],
)
def test_errors_name_the_shape(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_uniformity_is_finite_for_many_points():
    assert math.isfinite(uniformity(_spread(3000, 16)))
