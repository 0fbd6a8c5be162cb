"""What the design makes certain: targets as functions of the paper form's parameter draws (pure numpy).

A target maps parameter rows (B, P) of one family's paper-form fit to one value
per row; its interval is the central ``level`` range of those values over the
bootstrap refits, the same draws ``fit`` reads V*'s interval from::

    targets = family_targets("vstar", qs=[0, 50], v_max=576)
    values = targets[1].of(public(draws, design))      # V*(Q=50) of every draw
    width(values, 0.95)

- ``vstar``: V* at each Q in closed form, ``beta Q / (alpha - beta)`` clipped to
  [1, v_max], ``v_max`` where alpha <= beta. At Q = 0 it is a corner: 1 or
  v_max by the sign of alpha - beta, so its derivative vanishes almost
  everywhere. The interval of the draws still says how sure the answer is
  (width 0 once every draw agrees, v_max - 1 while they split), and the
  criterion (``criterion``) takes its expectation over where the next result
  may move the fit, which is smooth in the candidate.
- ``alpha-beta``: alpha - beta, the sign that decides the corner.
- ``frontier``: the least error reachable at an inference-FLOPs budget C: V*
  as above, N = C / (2 (Q + V*)), error = A N^-alpha V*^-beta + D.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sweep.scaling.laws import BILLION, MULTIPLICATIVE, Design


@dataclass(frozen=True)
class Params:
    """Public paper-form parameters of many rows at once (A refers to N in billions)."""

    alpha: np.ndarray
    beta: np.ndarray
    A: np.ndarray
    D: np.ndarray


def public(thetas: np.ndarray, design: Design) -> Params:
    """The public parameters of internal rows ``thetas`` (..., 4)."""
    p = MULTIPLICATIVE.to_public(thetas, design)
    return Params(p["alpha"], p["beta"], p["A"], p["D"])


@dataclass(frozen=True)
class Target:
    """One quantity of one family the design shrinks the interval of."""

    key: str  # "V*(Q=50)", "alpha-beta", "error(C=1e+12, Q=0)"
    unit: str  # for the reader: "tokens", "", "error"
    of: Callable[[Params], np.ndarray]


def v_star(alpha: np.ndarray, beta: np.ndarray, q: float, v_max: float) -> np.ndarray:
    """The paper form's V* at fixed FLOPs, row by row (``sweep.scaling.frontier.v_star`` vectorised)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(alpha > beta, beta * q / (alpha - beta), np.inf)
    out = np.clip(raw, 1.0, v_max)
    if q == 0:
        out = np.where(alpha == beta, 1.0, out)
    return out


def frontier_error(p: Params, q: float, budget: float, v_max: float) -> np.ndarray:
    """Least predicted error at inference FLOPs ``budget`` (N free, 1 <= V <= v_max), row by row."""
    v = v_star(p.alpha, p.beta, q, v_max)
    n_b = budget / (2.0 * (q + v)) / BILLION
    return p.A * n_b ** (-p.alpha) * v ** (-p.beta) + p.D


def family_targets(kind: str, qs: Sequence[float], v_max: float, budgets: Mapping[float, Sequence[float]] | None = None) -> list[Target]:
    """The targets of one family for ``design.target`` = ``kind`` (``budgets``: the frontier's, per Q)."""
    if kind == "alpha-beta":
        return [Target("alpha-beta", "", lambda p: p.alpha - p.beta)]
    if kind == "vstar":
        return [Target(f"V*(Q={q:g})", "tokens", lambda p, q=q: v_star(p.alpha, p.beta, q, v_max)) for q in qs]
    return [Target(f"error(C={c:.3g}, Q={q:g})", "error", lambda p, q=q, c=c: frontier_error(p, q, c, v_max))
            for q in qs for c in (budgets or {}).get(q, ())]


def interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` range of the finite values along the last axis (nan where none are)."""
    v = np.asarray(values, dtype=float)
    tail = 50.0 * (1.0 - level)
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanpercentile(np.where(np.isfinite(v), v, np.nan), [tail, 100.0 - tail], axis=-1)
    return lo, hi


def width(values: np.ndarray, level: float) -> np.ndarray:
    """Width of the central ``level`` range along the last axis."""
    lo, hi = interval(values, level)
    return np.asarray(hi - lo)


def default_budgets(n_values: Sequence[float], v_values: Sequence[float], q: float) -> list[float]:
    """The frontier target's budgets: the geometric middle and the top of the grid's inference FLOPs at Q."""
    costs = [2.0 * n * (q + v) for n in n_values for v in v_values]
    lo, hi = min(costs), max(costs)
    return [float(np.sqrt(lo * hi)), float(hi)]
