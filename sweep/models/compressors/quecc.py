"""QueCC (Li et al. 2024, arXiv 2411.03312): query-conditioned convolutional cross-attention.

The user's question, embedded by the LLM (its last-token hidden state, computed
without gradient by the VLM wiring), is projected to the vision width and added
to every patch feature. An MLP turns these question-aware features into query
candidates, and a depth-wise convolution with kernel = stride = k
(k = G / sqrt(V)) condenses each k x k region into one query. Each query then
attends only to its own region of the multi-level features, as in TokenPacker.
So the few tokens that survive compression carry what this question needs.
Valid V: (G/k)^2 for every k dividing G.

Built from ``conf/compressor/quecc.yaml``; see ``base.py`` for the contract.
"""

from __future__ import annotations

import torch
from torch import nn

from sweep.models.compressors.base import Compressor, side
from sweep.models.compressors.regions import (
    LevelKeyValue,
    RegionAttention,
    head_count,
    linear_flops,
    projection_mlp,
    split_regions,
)


class QueCC(Compressor):
    """Question-aware depth-wise-conv queries, point-to-region cross-attention into multi-level features."""

    needs_levels = True
    needs_question = True

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
        if question_dim is None:
            raise ValueError("QueCC needs question_dim (the LLM hidden size) to embed the question")
        self.dim = dim or in_dim
        self.kv_dim = level_dim or in_dim
        self.k = grid // side(visual_tokens)
        self.question_proj = nn.Sequential(nn.Linear(question_dim, in_dim), nn.LayerNorm(in_dim))
        self.query = projection_mlp(in_dim, self.dim)
        self.downsample = nn.Conv2d(self.dim, self.dim, kernel_size=self.k, stride=self.k, groups=self.dim)
        self.kv = LevelKeyValue(self.kv_dim, self.dim)
        self.attn = RegionAttention(self.dim, head_count(self.dim, head_dim), out_dim)

    def forward(
        self,
        feats: torch.Tensor,
        levels: torch.Tensor | None = None,
        question: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, P, in_dim) feats, (B, P, level_dim) levels, (B, question_dim) question -> (B, V, out_dim)."""
        if question is None:
            raise ValueError("QueCC needs the question embedding (B, question_dim); got None")
        if levels is None:
            if self.level_dim is not None:
                raise ValueError(f"QueCC was built with level_dim={self.level_dim} but got no levels")
            levels = feats
        # The question is an input, not something to train through: the LLM that made it
        # is updated by its own loss path, never via the compressor.
        conditioned = feats + self.question_proj(question.detach()).unsqueeze(1)
        queries = self.condense(self.query(conditioned))
        keys, values = self.kv(levels, self.grid, self.k)
        return self.attn(queries, keys, values)

    def condense(self, tokens: torch.Tensor) -> torch.Tensor:
        """The depth-wise conv (kernel = stride = k) on (B, G*G, dim) tokens -> (B, V, dim) queries.

        Each query is its region's patches weighted per channel and summed, computed so
        with the conv's own weights, because the convolution is slow on CPU at large k
        (``bench/bench_mini_step.py --cells sm:1:quecc --steps 40``, k = 16: 74-77 ms per
        step this way, 108-110 ms through ``nn.Conv2d``).
        """
        regions = split_regions(tokens, self.grid, self.k)  # (B, V, k*k, dim)
        weight = self.downsample.weight.reshape(self.dim, self.k * self.k).t()
        return (regions * weight).sum(2) + self.downsample.bias

    def flops(self) -> float:  # noqa: D102
        p, v = self.grid * self.grid, self.visual_tokens
        return (
            linear_flops(1, self.question_dim or 0, self.in_dim)
            + linear_flops(p, self.in_dim, self.dim)
            + linear_flops(p, self.dim, self.dim)
            + 2.0 * p * self.dim  # depth-wise conv: k*k taps per channel for each of the V queries
            + self.kv.flops(p)
            + self.attn.flops(self.grid, v)
        )
