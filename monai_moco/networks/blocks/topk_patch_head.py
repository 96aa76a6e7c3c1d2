"""Top-K patch head: score every patch token, keep the K most salient, pool them into one embedding.

A small MLP gives each patch token of a ViT (B x N x D, e.g. ``ConvStemViT(pooling="none")``) one scalar score; the
K highest-scoring tokens are pooled into the view embedding (B x D). The scores double as a patch-level saliency map
(see :mod:`monai_moco.visualize.heatmap`).

Hard top-K selection has no gradient with respect to the scores, so the scorer would never learn. Two differentiable
paths are used instead:

* ``pooling="weighted"``: the kept tokens are averaged with weights ``softmax(kept_scores / temperature)``; the loss
  then reaches the scorer through the weights (relative scores of the kept tokens). With K = 1 the softmax is
  constant, so the straight-through gate below is used instead.
* ``pooling="mean"`` / ``"concat"``: each kept token is multiplied by a straight-through gate
  ``1 + s - s.detach()`` (``s`` = its score / temperature). The gate is exactly 1 in the forward pass (the output is
  the plain mean / concatenation), while its gradient ``d out / d s = token`` tells the scorer whether scaling that
  token up would lower the loss -- the straight-through estimator (Bengio, Léonard, Courville 2013).

Not taken: the perturbed-optimiser differentiable top-K (Cordonnier et al., "Differentiable Patch Selection for
Image Recognition", CVPR 2021; Berthet et al. 2020), which averages top-K indicator matrices over many Gaussian
perturbations of the scores. It gives smoother gradients but costs ``num_samples`` top-K passes and a dense
B x K x N selection matrix per view, which is too expensive on the CPU-sized runs this project targets; the
score-weighted / straight-through estimators need one top-K and no extra memory.

Volumes: a 3D backbone (``ConvStemViT(spatial_dims=3)``) flattens its ``d x h x w`` token grid row-major into the same
B x N x D tokens, so selection and pooling are unchanged; with ``spatial_dims=3`` :meth:`TopKPatchHead.score_map`
and :meth:`TopKPatchHead.kept_positions` give the scores as a ``B x d x h x w`` heat-map and the kept tokens as
``(z, y, x)`` grid positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.utils import look_up_option

__all__ = ["TopKPatchHead"]

_POOLINGS = ("weighted", "mean", "concat")


class TopKPatchHead(nn.Module):
    """Score patch tokens with an MLP, keep the top K and pool them (score-weighted mean, mean or concat + linear).

    Args:
        in_features: token width D.
        k: tokens kept per view. Exclusive with ``keep_ratio``; required for ``pooling="concat"``.
        keep_ratio: fraction of the N tokens kept (``K = max(1, round(keep_ratio * N))``, so it adapts to the input
            size). If neither ``k`` nor ``keep_ratio`` is given, ``keep_ratio=0.25``.
        pooling: ``"weighted"`` (softmax of the kept scores as weights), ``"mean"``, or ``"concat"``
            (concatenate the K tokens in descending score order, then ``Linear(K * D -> out_features)``).
        out_features: output width; default D. For "weighted"/"mean" a ``Linear(D -> out_features)`` is added
            only when given.
        scorer_hidden: hidden width of the scorer MLP ``Linear(D, h) -> GELU -> Linear(h, 1)``; default
            ``max(1, D // 4)``.
        temperature: scores are divided by it before the softmax (weighted) or the straight-through gate.
        spatial_dims: dimensions of the token grid the scores are laid out on: 2 (images, ``h x w``) or 3 (volumes,
            ``d x h x w``). Only :meth:`score_map` and :meth:`kept_positions` use it; it adds no parameters, so
            checkpoints are the same for both.

    Attributes:
        out_features: width of the returned embedding.

    Raises:
        ValueError: for both/invalid ``k`` and ``keep_ratio``, "concat" without ``k``, a non-positive
            ``temperature``, an unknown ``pooling`` or ``spatial_dims`` not 2 or 3.

    Example::

        >>> head = TopKPatchHead(192, k=16, pooling="weighted")
        >>> emb, scores, idx = head(torch.randn(2, 196, 192), return_scores=True)
        >>> emb.shape, scores.shape, idx.shape
        (torch.Size([2, 192]), torch.Size([2, 196]), torch.Size([2, 16]))
        >>> head3d = TopKPatchHead(192, k=8, spatial_dims=3)  # tokens of a 4 x 4 x 4 grid of a 32^3 volume, patch 8
        >>> emb, scores, idx = head3d(torch.randn(2, 64, 192), return_scores=True)
        >>> head3d.score_map(scores, (4, 4, 4)).shape, head3d.kept_positions(idx, (4, 4, 4)).shape
        (torch.Size([2, 4, 4, 4]), torch.Size([2, 8, 3]))
    """

    def __init__(
        self,
        in_features: int,
        k: int | None = None,
        keep_ratio: float | None = None,
        pooling: str = "weighted",
        out_features: int | None = None,
        scorer_hidden: int | None = None,
        temperature: float = 1.0,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"TopKPatchHead: spatial_dims must be 2 (images) or 3 (volumes), got {spatial_dims!r}.")
        self.spatial_dims = int(spatial_dims)
        self.pooling: str = look_up_option(pooling, _POOLINGS)
        if k is not None and keep_ratio is not None:
            raise ValueError(f"TopKPatchHead: give k or keep_ratio, not both (got k={k}, keep_ratio={keep_ratio}).")
        if k is not None and (isinstance(k, bool) or int(k) != k or k < 1):
            raise ValueError(f"TopKPatchHead: k must be a positive integer, got {k!r}.")
        if k is None and keep_ratio is None:
            keep_ratio = 0.25
        if keep_ratio is not None and not 0.0 < float(keep_ratio) <= 1.0:
            raise ValueError(f"TopKPatchHead: keep_ratio must be in (0, 1], got {keep_ratio}.")
        if self.pooling == "concat" and k is None:
            raise ValueError(
                "TopKPatchHead: pooling='concat' needs a fixed k (its Linear takes K * D inputs); keep_ratio would "
                "change K with the input size."
            )
        if temperature <= 0:
            raise ValueError(f"TopKPatchHead: temperature must be > 0, got {temperature}.")
        self.in_features = in_features
        self.k: int | None = None if k is None else int(k)
        self.keep_ratio: float | None = None if keep_ratio is None else float(keep_ratio)
        self.temperature = float(temperature)
        hidden = max(1, in_features // 4) if scorer_hidden is None else int(scorer_hidden)
        self.scorer = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.out_features = in_features if out_features is None else int(out_features)
        self.proj: nn.Module
        if self.pooling == "concat":
            self.proj = nn.Linear(int(k) * in_features, self.out_features)  # type: ignore[arg-type]
        elif out_features is not None:
            self.proj = nn.Linear(in_features, self.out_features)
        else:
            self.proj = nn.Identity()

    def num_kept(self, num_tokens: int) -> int:
        """K for a view with ``num_tokens`` patch tokens.

        Args:
            num_tokens: N.

        Returns:
            ``k``, or ``max(1, round(keep_ratio * N))``.

        Raises:
            ValueError: if ``k`` exceeds ``num_tokens``.
        """
        if self.k is not None:
            if self.k > num_tokens:
                raise ValueError(
                    f"TopKPatchHead: k={self.k} exceeds the number of patch tokens N={num_tokens}; use a smaller k, "
                    "a larger input, or keep_ratio."
                )
            return self.k
        assert self.keep_ratio is not None
        return max(1, min(num_tokens, int(round(self.keep_ratio * num_tokens))))

    def _check_grid(self, num_tokens: int, grid: Sequence[int], what: str) -> tuple[int, ...]:
        """``grid`` as ints, checked against ``spatial_dims`` and the ``num_tokens`` it must hold."""
        size = tuple(int(g) for g in grid)
        if len(size) != self.spatial_dims or math.prod(size) != num_tokens or min(size) < 1:
            raise ValueError(
                f"TopKPatchHead.{what}: token grid {size} does not fit {num_tokens} patch tokens with "
                f"spatial_dims={self.spatial_dims}; expected {self.spatial_dims} positive sizes whose product is "
                f"{num_tokens} (the backbone's grid_size of the input)."
            )
        return size

    def score_map(self, scores: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """Lay the per-patch scores out on the token grid: the patch heat-map (2D or 3D).

        Args:
            scores: ``B x N`` scores from ``forward(..., return_scores=True)``, row-major over ``grid``.
            grid: the backbone's token grid, ``(h, w)`` or ``(d, h, w)`` (``ConvStemViT.grid_size`` of the input).

        Returns:
            ``B x h x w`` or ``B x d x h x w`` (a view of ``scores``).

        Raises:
            ValueError: if ``scores`` is not B x N or ``grid`` does not hold N tokens in ``spatial_dims`` dimensions.
        """
        if scores.dim() != 2:
            raise ValueError(f"TopKPatchHead.score_map: expected scores B x N, got shape {list(scores.shape)}.")
        size = self._check_grid(int(scores.shape[1]), grid, "score_map")
        return scores.reshape(scores.shape[0], *size)

    def kept_positions(self, indices: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """Grid coordinates of the kept tokens.

        Args:
            indices: ``B x K`` flat indices from ``forward(..., return_scores=True)``.
            grid: the backbone's token grid, ``(h, w)`` or ``(d, h, w)``.

        Returns:
            ``B x K x spatial_dims`` integer coordinates ``(y, x)`` or ``(z, y, x)`` on the grid.

        Raises:
            ValueError: if ``indices`` is not B x K or an index lies outside the grid.
        """
        if indices.dim() != 2:
            raise ValueError(f"TopKPatchHead.kept_positions: expected indices B x K, got shape {list(indices.shape)}.")
        size = tuple(int(g) for g in grid)
        n = math.prod(size) if size else 0
        size = self._check_grid(n, size, "kept_positions")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n):
            raise ValueError(
                f"TopKPatchHead.kept_positions: indices span [{int(indices.min())}, {int(indices.max())}] but the "
                f"token grid {size} has {n} tokens."
            )
        return torch.stack(torch.unravel_index(indices, size), dim=-1)

    def score(self, tokens: torch.Tensor) -> torch.Tensor:
        """Raw patch scores ``B x N`` (before ``temperature``) for tokens ``B x N x D``."""
        return self.scorer(tokens).squeeze(-1)

    def forward(
        self, tokens: torch.Tensor, return_scores: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pool the top-K tokens of each view.

        Args:
            tokens: ``B x N x D`` patch tokens (no CLS token).
            return_scores: also return every patch's score and the kept indices.

        Returns:
            ``embedding`` (B x out_features), or ``(embedding, scores, indices)`` with ``scores`` B x N (raw scorer
            output) and ``indices`` B x K (into N, descending score).

        Raises:
            ValueError: if ``tokens`` is not B x N x D with D = ``in_features``, or K > N.
        """
        if tokens.dim() != 3 or tokens.shape[-1] != self.in_features:
            raise ValueError(
                f"TopKPatchHead: expected patch tokens B x N x {self.in_features}, got shape {list(tokens.shape)}."
            )
        n, d = tokens.shape[1], tokens.shape[2]
        scores = self.score(tokens)
        kk = self.num_kept(n)
        kept, indices = scores.topk(kk, dim=1, largest=True, sorted=True)
        selected = tokens.gather(1, indices.unsqueeze(-1).expand(-1, -1, d))
        kept = kept / self.temperature
        if self.pooling == "weighted" and kk > 1:
            weights = torch.softmax(kept, dim=1)
            embedding = (weights.unsqueeze(-1) * selected).sum(dim=1)
        else:
            # straight-through gate: exactly 1 in the forward pass, d/ds = token in the backward pass
            selected = selected * (1.0 + kept - kept.detach()).unsqueeze(-1)
            embedding = selected.flatten(1) if self.pooling == "concat" else selected.mean(dim=1)
        embedding = self.proj(embedding)
        if return_scores:
            return embedding, scores, indices
        return embedding
