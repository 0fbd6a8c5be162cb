"""TokenPacker (Li et al. 2024): coarse queries that each gather the fine detail of their own region.

The G x G grid of final-layer features is bilinearly downsampled to
sqrt(V) x sqrt(V); each of these V points is a query that attends only to the
``s x s`` region it was pooled from (s = G / sqrt(V)), with keys and values taken
from the multi-level features (several encoder layers concatenated). This
"point-to-region" attention is what the scaling-law paper (arXiv 2411.03312)
used for its main sweep. Valid V: (G/s)^2 for every s dividing G.

Built from ``conf/compressor/tokenpacker.yaml``; see ``base.py`` for the contract.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sweep.models.compressors.base import Compressor, side
from sweep.models.compressors.regions import (
    LevelKeyValue,
    RegionAttention,
    from_map,
    head_count,
    linear_flops,
    to_map,
)


class TokenPacker(Compressor):
    """Bilinear-downsampled queries, point-to-region cross-attention into multi-level features."""

    needs_levels = True

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        grid: int,
        visual_tokens: int,
        level_dim: int | None = None,
        question_dim: int | None = None,
        head_dim: int = 128,
        dim: int | None = None,
    ) -> None:
        """``dim``: attention width (default ``in_dim``, as in the original); ``head_dim``: width per head."""
        super().__init__(in_dim, out_dim, grid, visual_tokens, level_dim=level_dim, question_dim=question_dim)
        self.dim = dim or in_dim
        # Without multi-level features the final layer stands in for them, so the
        # compressor still works on a tower that exposes only one layer.
        self.kv_dim = level_dim or in_dim
        self.query = nn.Sequential(nn.Linear(in_dim, self.dim, bias=False), nn.LayerNorm(self.dim))
        self.kv = LevelKeyValue(self.kv_dim, self.dim)
        self.attn = RegionAttention(self.dim, head_count(self.dim, head_dim), out_dim)

    def forward(
        self,
        feats: torch.Tensor,
        levels: torch.Tensor | None = None,
        question: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, P, in_dim) final-layer features and (B, P, level_dim) levels -> (B, V, out_dim)."""
        if levels is None:
            if self.level_dim is not None:
                raise ValueError(f"TokenPacker was built with level_dim={self.level_dim} but got no levels")
            levels = feats
        n = side(self.visual_tokens)
        # Plain bilinear (no antialiasing), as in the original: for s = 2 it is exactly the
        # 2x2 mean; for larger s it samples the centre of each region.
        points = F.interpolate(to_map(feats, self.grid), size=(n, n), mode="bilinear", align_corners=False)
        keys, values = self.kv(levels, self.grid, self.grid // n)
        return self.attn(self.query(from_map(points)), keys, values)

    def flops(self) -> float:  # noqa: D102
        p, v = self.grid * self.grid, self.visual_tokens
        interpolate = 2.0 * 4 * v * self.in_dim  # four taps per output point
        return (
            interpolate
            + linear_flops(v, self.in_dim, self.dim)
            + self.kv.flops(p)
            + self.attn.flops(self.grid, v)
        )
