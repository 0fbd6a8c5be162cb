"""Learned-query resampler (Perceiver / Q-Former style), optionally trained MQT-style.

M learned queries cross-attend to all P patch tokens (keys carry a fixed 2-D
sin-cos position code, so queries can look at places); the first V of them make
the V output tokens. Queries do not attend to each other, so any prefix of them
is a self-contained compressor. With ``mqt: true`` (Matryoshka Query
Transformer, Hu et al. 2024) each training step uses a random prefix length in
1..M, so one trained model can later serve any V <= M through
``set_visual_tokens``; evaluation uses the cell's V. Valid V: 1..M, where M is
``num_queries`` (default: P, one query per patch).

Built from ``conf/compressor/resampler.yaml``; see ``base.py`` for the contract.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sweep.models.compressors.base import Compressor
from sweep.models.compressors.regions import head_count, linear_flops


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """Fixed (G*G, dim) position code: sin/cos of row and column at geometric frequencies.

    A quarter of the channels each for sin(row), cos(row), sin(col), cos(col); any
    channels left over when dim is not a multiple of 4 stay zero.
    """
    quarter = dim // 4
    freq = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / max(quarter, 1))
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    ay = rows.flatten().float()[:, None] * freq
    ax = cols.flatten().float()[:, None] * freq
    code = torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], dim=1)
    return F.pad(code, (0, dim - code.shape[1]))


class Resampler(Compressor):
    """M learned queries, one cross-attention layer over all patches; output = the first V queries."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        grid: int,
        visual_tokens: int,
        level_dim: int | None = None,
        question_dim: int | None = None,
        head_dim: int = 64,
        dim: int | None = None,
        num_queries: int | None = None,
        mqt: bool = False,
    ) -> None:
        """``num_queries`` = M (default P); ``mqt`` trains on a random query prefix per step."""
        super().__init__(
            in_dim,
            out_dim,
            grid,
            visual_tokens,
            level_dim=level_dim,
            question_dim=question_dim,
            valid_params={"num_queries": num_queries},
        )
        self.dim = dim or in_dim
        self.heads, self.mqt = head_count(self.dim, head_dim), mqt
        self.num_queries = num_queries or grid * grid
        self.queries = nn.Parameter(nn.init.trunc_normal_(torch.empty(self.num_queries, self.dim), std=0.02))
        self.query_norm = nn.LayerNorm(self.dim)
        self.key = nn.Sequential(nn.Linear(in_dim, self.dim), nn.LayerNorm(self.dim))
        self.value = nn.Sequential(nn.Linear(in_dim, self.dim), nn.LayerNorm(self.dim))
        self.register_buffer("position", sincos_2d(grid, self.dim), persistent=False)
        self.out = nn.Linear(self.dim, out_dim)

    @classmethod
    def valid_visual_tokens(cls, grid: int, num_queries: int | None = None, **params: object) -> list[int]:
        """Every V from 1 to M = ``num_queries`` (P when unset): any prefix of the queries."""
        m = num_queries or grid * grid
        if m < 1:
            raise ValueError(f"resampler num_queries must be >= 1, got {num_queries}")
        return list(range(1, m + 1))

    def set_visual_tokens(self, visual_tokens: int) -> None:
        """Serve another V <= M from the same trained queries (meant for ``mqt: true`` models)."""
        if not 1 <= visual_tokens <= self.num_queries:
            raise ValueError(f"Resampler has {self.num_queries} queries; cannot serve V={visual_tokens}")
        self.visual_tokens = visual_tokens

    def forward(
        self,
        feats: torch.Tensor,
        levels: torch.Tensor | None = None,
        question: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, P, in_dim) -> (B, V, out_dim); in MQT training, (B, n, out_dim) for a random n <= M."""
        b = feats.shape[0]
        n = self.visual_tokens
        if self.training and self.mqt:
            # One length per batch (as MQT does), drawn from torch's global generator so a
            # seeded run replays the same sequence of lengths.
            n = int(torch.randint(1, self.num_queries + 1, ()).item())
        h, hd = self.heads, self.dim // self.heads
        q = self.query_norm(self.queries[:n]).reshape(1, n, h, hd).transpose(1, 2).expand(b, -1, -1, -1)
        k = (self.key(feats) + self.position).reshape(b, -1, h, hd).transpose(1, 2)
        v = self.value(feats).reshape(b, -1, h, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out(out.transpose(1, 2).reshape(b, n, self.dim))

    def flops(self) -> float:  # noqa: D102
        p, v = self.grid * self.grid, self.visual_tokens
        return (
            2 * linear_flops(p, self.in_dim, self.dim)  # keys and values
            + 2 * 2.0 * v * p * self.dim  # scores and weighted sum
            + linear_flops(v, self.dim, self.out_dim)
        )
