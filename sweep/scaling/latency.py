"""Measured prefill latency as a cost: a small model of it in N and V, fitted to the cells.

FLOPs ``2N(Q+V)`` leave out the vision tower, the compressor, QueCC's question
pass and how a real kernel's time grows with tokens (fixed overheads dominate
small models; users of token compression report fewer FLOPs without faster
answers). Each eval logs ``latency/prefill_ms``, the median wall time of a
batch-1 prefill, so the frontier can be drawn against it too::

    model = fit_latency(n_params, v, ms)          # non-negative least squares
    model(n_params=7e9, v=16)                     # predicted ms
    model.cost()                                  # a frontier.CostModel (linear in N at fixed V)

The model is ``ms = c0 + c1 N + c2 V + c3 N V`` (N in billions), all four
coefficients >= 0: a fixed overhead (launches, the vision tower, which does
not depend on V), time per parameter (reading the weights: memory-bound small
batches), time per visual token (compressor, projector) and time per token per
parameter (the prefill's arithmetic). It is the simplest form that is linear in
N at fixed V, which keeps the frontier a one-dimensional search. The latency
was measured at the eval's own prompt, so its Q is the measured one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from sweep.scaling.frontier import CostModel
from sweep.scaling.laws import BILLION

TERMS = ("overhead_ms", "ms_per_billion_params", "ms_per_visual_token", "ms_per_billion_params_token")


@dataclass(frozen=True)
class LatencyModel:
    """``ms = c0 + c1 N_B + c2 V + c3 N_B V`` with its goodness on the measured cells."""

    coef: tuple[float, float, float, float]
    r2: float | None
    rmse_ms: float
    max_rel_error: float
    n_cells: int

    def __call__(self, n_params: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
        return self.cost().of(n_params, v)

    def cost(self) -> CostModel:
        c0, c1, c2, c3 = self.coef
        return CostModel("latency", (c0, c2), (c1 / BILLION, c3 / BILLION), "ms")

    def to_json(self) -> dict:
        return {**dict(zip(TERMS, self.coef)), "r2": self.r2, "rmse_ms": self.rmse_ms, "max_rel_error": self.max_rel_error, "n_cells": self.n_cells}


def fit_latency(n_params: np.ndarray, v: np.ndarray, ms: np.ndarray) -> LatencyModel:
    """Non-negative least squares of the four-term model, relative errors weighted alike."""
    n_b = np.asarray(n_params, dtype=float) / BILLION
    v = np.asarray(v, dtype=float)
    ms = np.asarray(ms, dtype=float)
    x = np.column_stack([np.ones_like(n_b), n_b, v, n_b * v])
    # Divide each row by its latency: a 2 ms cell and a 200 ms cell then count
    # alike (relative error), as a reader of the frontier compares ratios.
    coef, _ = nnls(x / ms[:, None], np.ones_like(ms))
    pred = x @ coef
    tss = float(np.sum((ms - ms.mean()) ** 2))
    rss = float(np.sum((ms - pred) ** 2))
    return LatencyModel(
        coef=tuple(float(c) for c in coef),  # type: ignore[arg-type]
        r2=1.0 - rss / tss if tss > 0 else None,
        rmse_ms=float(np.sqrt(rss / ms.size)),
        max_rel_error=float(np.max(np.abs(pred - ms) / ms)),
        n_cells=int(ms.size),
    )
