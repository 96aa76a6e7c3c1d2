"""Geometry of an embedding: alignment, uniformity, mean pairwise cosine and effective rank.

Contrastive losses trade two properties (Wang & Isola, "Understanding Contrastive Representation Learning through
Alignment and Uniformity on the Hypersphere", ICML 2020): positives close together (**alignment**, the mean squared
distance of the normalised embeddings of two views) and all embeddings spread over the sphere (**uniformity**, the log
of the mean Gaussian potential between pairs). A collapsing embedding shows as a mean pairwise cosine near 1 and an
**effective rank** (Roy & Vetterli, EUSIPCO 2007: the exponential of the entropy of the normalised singular values)
near 1; dimensional collapse (Jing et al., ICLR 2022) as an effective rank far below the width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["alignment", "effective_rank", "embedding_geometry", "mean_pairwise_cosine", "uniformity"]


def _normalized(z: torch.Tensor, name: str) -> torch.Tensor:
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"{name}: expected N x F embeddings with N >= 2, got shape {tuple(z.shape)}.")
    return F.normalize(z.double(), dim=1)


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> float:
    """Mean ``||f(x) - f(x+)||^alpha`` of L2-normalised positive pairs (lower is better aligned; 0 to 4 for alpha 2).

    Args:
        z1: ``N x F`` embeddings of the first views.
        z2: ``N x F`` embeddings of the second views, row ``i`` the positive of ``z1[i]``.
        alpha: exponent.

    Returns:
        the alignment.

    Raises:
        ValueError: when the shapes differ.

    Example::

        alignment(encoder(view1), encoder(view2))
    """
    if z1.shape != z2.shape:
        raise ValueError(f"alignment: the two views' embeddings differ in shape: {tuple(z1.shape)} vs {tuple(z2.shape)}.")
    a, b = _normalized(z1, "alignment"), _normalized(z2, "alignment")
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    """``log E[exp(-t ||f(x) - f(y)||^2)]`` over distinct pairs of L2-normalised embeddings (lower is more uniform).

    It is 0 for a collapsed embedding (all points equal) and about -4 (``-t * 2``) for points spread over a
    high-dimensional sphere.

    Args:
        z: ``N x F`` embeddings.
        t: the Gaussian potential's scale.

    Returns:
        the uniformity.

    Example::

        uniformity(torch.randn(512, 128))  # about -3.9
    """
    x = _normalized(z, "uniformity")
    sq = torch.pdist(x).pow(2)
    return float(torch.logsumexp(-t * sq, dim=0) - torch.log(torch.tensor(float(sq.numel()), dtype=sq.dtype)))


def mean_pairwise_cosine(z: torch.Tensor) -> float:
    """Mean cosine similarity over distinct pairs (0 for spread embeddings, 1 for collapsed ones).

    Args:
        z: ``N x F`` embeddings.

    Returns:
        the mean off-diagonal cosine.

    Example::

        mean_pairwise_cosine(torch.ones(4, 8))  # 1.0
    """
    x = _normalized(z, "mean_pairwise_cosine")
    n = x.shape[0]
    total = x.sum(0).pow(2).sum() - n  # sum over i != j of <x_i, x_j>
    return float(total / (n * (n - 1)))


def effective_rank(z: torch.Tensor, center: bool = True) -> float:
    """``exp(H(p))`` with ``p`` the normalised singular values of the (centred) embedding matrix (1 to ``min(N, F)``).

    Args:
        z: ``N x F`` embeddings.
        center: subtract the mean embedding first (rank of the spread, not of the offset).

    Returns:
        the effective rank.

    Example::

        effective_rank(torch.randn(1000, 16))  # close to 16
    """
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"effective_rank: expected N x F embeddings with N >= 2, got shape {tuple(z.shape)}.")
    x = z.double()
    if center:
        x = x - x.mean(0, keepdim=True)
    s = torch.linalg.svdvals(x)
    if float(s.sum()) == 0.0:
        return 1.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def embedding_geometry(z: torch.Tensor) -> dict[str, float]:
    """``{"uniformity", "mean_cosine", "effective_rank"}`` of one set of embeddings.

    Args:
        z: ``N x F`` embeddings.

    Returns:
        the three numbers.

    Example::

        embedding_geometry(features)["effective_rank"]
    """
    return {"uniformity": uniformity(z), "mean_cosine": mean_pairwise_cosine(z), "effective_rank": effective_rank(z)}
