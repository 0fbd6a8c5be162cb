"""Point-to-region attention shared by TokenPacker and QueCC.

Both compressors make one query per ``k x k`` region of the ``G x G`` patch grid
(``k = G / sqrt(V)``) and let each query attend only to the patches of its own
region, read from the multi-level features. This module holds the pieces they
share: grid <-> map reshapes, the key/value projection of the multi-level
features, the region attention itself, and their FLOP counts (multiply-add = 2;
normalisation, activations and softmax are left out: under 1% at these widths).
"""

from __future__ import annotations

import torch
from torch import nn


def to_map(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, G*G, C) row-major tokens -> (B, C, G, G) feature map."""
    b, p, c = tokens.shape
    if p != grid * grid:
        raise ValueError(f"expected {grid}x{grid}={grid * grid} patch tokens, got {p}")
    return tokens.transpose(1, 2).reshape(b, c, grid, grid)


def from_map(fmap: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) feature map -> (B, H*W, C) row-major tokens."""
    return fmap.flatten(2).transpose(1, 2)


def split_regions(tokens: torch.Tensor, grid: int, k: int) -> torch.Tensor:
    """(B, G*G, C) -> (B, (G/k)^2, k*k, C): the patches of each k x k region, regions row-major.

    Region i of the output is the one whose query sits at position i of a row-major
    (G/k) x (G/k) query grid, so queries and regions line up without any index maps.
    """
    b, _, c = tokens.shape
    n = grid // k
    x = tokens.reshape(b, n, k, n, k, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, n * n, k * k, c)


def head_count(dim: int, head_dim: int) -> int:
    """Attention heads of width ``head_dim`` in ``dim`` channels; one head when dim is narrower.

    Configs give the head width rather than the count so one YAML fits both scales:
    at CLIP width (1024) it yields the original head counts, at mini width (64) a
    single head, which is faster on CPU than many 8-wide heads.
    """
    if dim <= head_dim:
        return 1
    if dim % head_dim:
        raise ValueError(
            f"attention width {dim} is not a multiple of head_dim={head_dim}; pick a head_dim dividing it"
        )
    return dim // head_dim


def linear_flops(tokens: int, in_dim: int, out_dim: int) -> float:
    """FLOPs of a dense layer applied to ``tokens`` vectors."""
    return 2.0 * tokens * in_dim * out_dim


def projection_mlp(in_dim: int, dim: int) -> nn.Sequential:
    """Linear, GELU, Linear, LayerNorm: the originals project keys, values (and QueCC queries) so."""
    return nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.LayerNorm(dim))


class LevelKeyValue(nn.Module):
    """Keys and values from the multi-level features: a 2-layer MLP each, then LayerNorm.

    As in TokenPacker and QueCC, the wide concatenation of encoder layers is squeezed
    to the attention width by an MLP rather than a single linear map. The features are
    put in region order *before* the MLPs: that copies the input (which needs no
    gradient) instead of the keys and values (which do), so the attention then reads
    contiguous per-region blocks with no further copies, forward or backward.
    """

    def __init__(self, level_dim: int, dim: int) -> None:
        super().__init__()
        self.key = projection_mlp(level_dim, dim)
        self.value = projection_mlp(level_dim, dim)
        self.level_dim, self.dim = level_dim, dim

    def forward(self, levels: torch.Tensor, grid: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, G*G, level_dim) -> keys, values (B, (G/k)^2, k*k, dim), regions row-major."""
        regions = split_regions(levels, grid, k)
        return self.key(regions), self.value(regions)

    def flops(self, patches: int) -> float:
        """FLOPs for the keys and values of ``patches`` patch tokens."""
        p = patches
        per_projection = linear_flops(p, self.level_dim, self.dim) + linear_flops(p, self.dim, self.dim)
        return 2 * per_projection


class RegionAttention(nn.Module):
    """Multi-head attention of each query to the k x k patch region it stands for.

    The originals run ``nn.MultiheadAttention`` over the normalised queries, keys and
    values, so each side gets one more (per-head) linear map before the scores and the
    weighted sum; here too. Two of them are applied where they cost least, with the same
    result: the key map moves to the query side (``q . (W_k k + b_k) = (W_k^T q) . k``
    plus a per-query constant, which the softmax drops, so ``b_k`` has no effect and is
    left out), and the value map comes after the weighted sum (the weights sum to 1,
    so ``sum w (W_v v + b_v) = W_v (sum w v) + b_v``). The output map goes straight to the
    compressor's ``out_dim``.
    """

    def __init__(self, dim: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.dim, self.heads, self.out_dim = dim, heads, out_dim
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """queries (B, Q, dim); keys/values (B, Q, k*k, dim), region i for query i -> (B, Q, out_dim)."""
        b, q, r, d = keys.shape
        h, hd = self.heads, self.dim // self.heads
        # Per head, W_k,h^T (hd x dim) maps the head's query into key space; the 1/sqrt(hd)
        # scale goes on these V queries, not on the P scores.
        qh = (self.query(queries) * hd**-0.5).reshape(b, q, h, hd)
        qk = torch.einsum("bqhe,hed->bqhd", qh, self.key.weight.reshape(h, hd, d))
        # One query per region: broadcast products and sums beat batched 1-row matmuls
        # (measured about 2x faster on CPU, forward + backward) and need no transposes.
        weights = (qk.unsqueeze(2) * keys.unsqueeze(3)).sum(-1).softmax(dim=2)  # (B, Q, r, H)
        pooled = (weights.unsqueeze(-1) * values.unsqueeze(3)).sum(2)  # (B, Q, H, dim)
        heads = torch.einsum("bqhd,hed->bqhe", pooled, self.value.weight.reshape(h, hd, d))
        heads = heads + self.value.bias.reshape(h, hd)
        return self.out(heads.reshape(b, q, self.dim))

    def flops(self, grid: int, queries: int) -> float:
        """Scores and weighted sums (each query sees G*G/Q patches, so G*G in all; full width per
        head) plus the query, key, value and output maps on the V queries."""
        attention = 2 * 2.0 * grid * grid * self.dim * self.heads
        return attention + 3 * linear_flops(queries, self.dim, self.dim) + linear_flops(queries, self.dim, self.out_dim)
