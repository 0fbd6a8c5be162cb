"""Pixel shuffle (space-to-depth) by r, then an MLP: the InternVL / Idefics-style compressor.

Each r x r block of patches is stacked on the channel axis (width r*r*C) and an
MLP (LayerNorm, Linear, GELU, Linear) maps it to ``out_dim``. No token is
dropped or averaged, but the MLP's input width grows as r^2, so the method is
only offered for small r: r = G / sqrt(V) must divide G and be at most
``max_ratio``. Valid V: (G/r)^2 for r = 1..max_ratio dividing G.

Built from ``conf/compressor/pixelshuffle.yaml``; see ``base.py`` for the contract.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sweep.models.compressors.base import Compressor, side
from sweep.models.compressors.regions import from_map, linear_flops, to_map


class PixelShuffle(Compressor):
    """Space-to-depth by r = G / sqrt(V), then a 2-layer MLP to ``out_dim``."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        grid: int,
        visual_tokens: int,
        level_dim: int | None = None,
        question_dim: int | None = None,
        max_ratio: int = 4,
        hidden: int | None = None,
    ) -> None:
        """``max_ratio`` bounds r; ``hidden`` is the MLP's hidden width (default ``out_dim``)."""
        super().__init__(
            in_dim,
            out_dim,
            grid,
            visual_tokens,
            level_dim=level_dim,
            question_dim=question_dim,
            valid_params={"max_ratio": max_ratio},
        )
        self.ratio = grid // side(visual_tokens)
        self.hidden = hidden or out_dim
        width = in_dim * self.ratio**2
        self.mlp = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, self.hidden), nn.GELU(), nn.Linear(self.hidden, out_dim)
        )

    @classmethod
    def valid_visual_tokens(cls, grid: int, max_ratio: int = 4, **params: object) -> list[int]:
        """(G/r)^2 for every r <= ``max_ratio`` that divides G."""
        if max_ratio < 1:
            raise ValueError(f"pixelshuffle max_ratio must be >= 1, got {max_ratio}")
        return sorted((grid // r) ** 2 for r in range(1, min(max_ratio, grid) + 1) if grid % r == 0)

    def forward(
        self,
        feats: torch.Tensor,
        levels: torch.Tensor | None = None,
        question: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, P, in_dim) -> (B, V, out_dim)."""
        stacked = F.pixel_unshuffle(to_map(feats, self.grid), self.ratio)
        return self.mlp(from_map(stacked))

    def flops(self) -> float:  # noqa: D102
        v = self.visual_tokens
        width = self.in_dim * self.ratio**2
        return linear_flops(v, width, self.hidden) + linear_flops(v, self.hidden, self.out_dim)
