"""Average pooling of the patch grid to sqrt(V) x sqrt(V) (Matryoshka-style), then a linear map."""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from sweep.models.compressors.base import Compressor, side


class AvgPool(Compressor):
    """Pool the G x G grid with kernel = stride = G / sqrt(V); parameter-free apart from ``proj``."""

    def __init__(self, in_dim: int, out_dim: int, grid: int, visual_tokens: int, **dims: int | None) -> None:
        super().__init__(in_dim, out_dim, grid, visual_tokens, **dims)
        self.proj = nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim)

    def forward(self, feats, levels=None, question=None):  # noqa: D102
        b, p, c = feats.shape
        x = feats.transpose(1, 2).reshape(b, c, self.grid, self.grid)
        x = F.adaptive_avg_pool2d(x, side(self.visual_tokens))
        return self.proj(x.flatten(2).transpose(1, 2))

    def flops(self) -> float:  # noqa: D102
        pooling = self.grid * self.grid * self.in_dim
        return pooling + 2.0 * self.in_dim * self.out_dim * self.visual_tokens * (self.in_dim != self.out_dim)
