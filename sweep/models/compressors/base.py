"""The token-compressor interface: P patch tokens on a G x G grid -> V visual tokens.

Every compressor is an ``nn.Module`` built from its config entry in
``conf/compressor/<name>.yaml`` (``_target_`` names the class, the other keys are
its keyword arguments, plus ``in_dim``/``out_dim``/``grid``/``visual_tokens``
supplied by the model builder). It also states, *before* anything is built,
which token counts it can produce for a given grid, so the planner can reject an
impossible V at plan time (see ``valid_visual_tokens``).

Inputs to ``forward``:
  feats     (B, P, C)   final-layer patch features, P = G*G, row-major grid
  levels    (B, P, C_l) multi-level features (several encoder layers concatenated
                        on the channel axis) or None; only passed when the
                        compressor sets ``needs_levels = True``
  question  (B, C_q)    question embedding (LLM last-token hidden state, no grad)
                        or None; only passed when ``needs_question = True``
Output: (B, V, out_dim).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn


class Compressor(nn.Module):
    """Base class of all token compressors."""

    needs_levels: ClassVar[bool] = False
    needs_question: ClassVar[bool] = False

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        grid: int,
        visual_tokens: int,
        level_dim: int | None = None,
        question_dim: int | None = None,
        valid_params: Mapping[str, object] | None = None,
    ) -> None:
        # ``valid_params`` are the subclass's own config kwargs that decide which V it can
        # produce (e.g. the resampler's ``num_queries``), checked here exactly as the
        # planner checks them through ``valid_visual_tokens(grid, **params)``.
        super().__init__()
        valid = self.valid_visual_tokens(grid, **dict(valid_params or {}))
        if visual_tokens not in valid:
            raise ValueError(
                f"{type(self).__name__} cannot produce V={visual_tokens} tokens from a "
                f"{grid}x{grid} grid; valid V: {format_counts(valid)}"
            )
        self.in_dim, self.out_dim, self.grid, self.visual_tokens = in_dim, out_dim, grid, visual_tokens
        self.level_dim, self.question_dim = level_dim, question_dim

    def flops(self) -> float:
        """Forward FLOPs for one image (multiply-add = 2). Subclasses with attention override it.

        The default counts every parameter once per output token, which is exact for
        per-token linear maps and a fair estimate for small MLPs.
        """
        n = sum(p.numel() for p in self.parameters())
        return 2.0 * n * self.visual_tokens

    @classmethod
    def valid_visual_tokens(cls, grid: int, **params: object) -> list[int]:
        """Token counts this compressor can produce from a ``grid x grid`` patch grid."""
        return square_divisor_counts(grid)

    def forward(
        self,
        feats: torch.Tensor,
        levels: torch.Tensor | None = None,
        question: torch.Tensor | None = None,
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def square_divisor_counts(grid: int) -> list[int]:
    """V = (grid/s)^2 for every s that divides grid: the grid-based compressors' V."""
    return sorted({(grid // s) ** 2 for s in range(1, grid + 1) if grid % s == 0})


def format_counts(counts: Sequence[int]) -> str:
    """A short listing of token counts: runs of consecutive values are written ``a..b``.

    The resampler accepts every V from 1 to its query count (576 values at paper scale),
    which would make an error message unreadable if listed one by one.
    """
    parts: list[str] = []
    values = sorted(set(counts))
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(f"{values[i]}..{values[j]}" if j - i >= 2 else ", ".join(map(str, values[i : j + 1])))
        i = j + 1
    return "[" + ", ".join(parts) + "]"


def side(visual_tokens: int) -> int:
    """sqrt(V) for a square token grid (callers have validated V already)."""
    r = math.isqrt(visual_tokens)
    return r
