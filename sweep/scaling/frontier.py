"""The inference-optimal frontier of a fitted law, against FLOPs or measured latency.

A cost is linear in N at fixed V: ``cost = a0 + a1 V + (b0 + b1 V) N``.
FLOPs ``2 N (Q + V)`` are ``b0 = 2Q, b1 = 2``; a latency model
(``latency.LatencyModel``) gives all four. At a budget C every V fixes the N it
can afford, and the frontier is the V (and N) of least predicted error.

For the paper's form and FLOPs there is a closed form. The law's power term
is proportional to ``(Q + V)^alpha V^-beta``, whose derivative in V has the sign
of ``(alpha - beta) V - beta Q``. Hence, with ``1 <= V <= v_max``:

- alpha > beta: ``V* = beta Q / (alpha - beta)``, clipped to [1, v_max]; at
  Q = 0 this is the corner V* = 1 (one visual token, the largest LLM);
- alpha <= beta: the error falls with V at every budget, V* = v_max;

and V* does not depend on the budget (nor does it for the threshold form,
whose N-term factors the same way). Every other case is solved numerically:
a dense log grid of V on the budget line, refined by a bounded Brent search::

    vs = v_star(alpha=0.3, beta=0.06, q=50, v_max=576)       # VStar(12.5, 12.5, "interior", ...)
    n, v, err = optimum(law, theta, design, CostModel.flops(50), 1e12, v_max=576)
    v_star_draws(law, boot_thetas, design, cost, 1e12, 576)   # V* of every bootstrap fit
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from sweep.scaling.laws import MULTIPLICATIVE, THRESHOLD, Design, Law, paper_error, predict

_GRID = 241  # log-spaced V per search: 2.7% steps from 1 to 576 before refinement
_DRAW_GRID = 481  # for bootstrap V*, without refinement: 1.3% steps


@dataclass(frozen=True)
class VStar:
    """The optimal visual-token count at any budget, and why it is where it is."""

    value: float | None  # the optimum within [1, v_max]; None if alpha/beta unknown
    unconstrained: float | None  # beta Q / (alpha - beta) before clipping; None = unbounded
    case: str  # "corner" (V >= 1 binds), "interior", "cap" (V <= v_max binds), "flat", "unknown"
    note: str


@dataclass(frozen=True)
class CostModel:
    """``cost = a0 + a1 V + (b0 + b1 V) N`` (N in parameters)."""

    kind: str  # "flops" or "latency"
    a: tuple[float, float]
    b: tuple[float, float]
    unit: str  # "FLOPs" or "ms"
    q: float | None = None  # text tokens per query (FLOPs only)

    @classmethod
    def flops(cls, q: float) -> CostModel:
        return cls("flops", (0.0, 0.0), (2.0 * q, 2.0), "FLOPs", float(q))

    def of(self, n: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return self.a[0] + self.a[1] * v + (self.b[0] + self.b[1] * v) * np.asarray(n, dtype=float)

    def n_at(self, budget: float, v: np.ndarray) -> np.ndarray:
        """The N a budget affords at each V (<= 0 where it affords none)."""
        v = np.asarray(v, dtype=float)
        return (budget - self.a[0] - self.a[1] * v) / (self.b[0] + self.b[1] * v)


def flops(n_params: np.ndarray | float, v: np.ndarray | float, q: float) -> np.ndarray:
    """Inference FLOPs of one forward pass over Q text and V visual tokens."""
    return 2.0 * np.asarray(n_params, dtype=float) * (q + np.asarray(v, dtype=float))


def v_star(alpha: float | None, beta: float | None, q: float, v_max: float) -> VStar:
    """The paper form's closed-form optimum V at fixed inference FLOPs, with V in [1, v_max]."""
    if alpha is None or beta is None:
        return VStar(None, None, "unknown", "alpha or beta is not identifiable from these data, so V* is unknown.")
    if alpha > beta:
        raw = beta * q / (alpha - beta)
        if raw <= 1.0:
            why = "Q = 0" if q == 0 else f"beta*Q/(alpha-beta) = {raw:.3g} <= 1"
            return VStar(1.0, raw, "corner", f"alpha > beta and {why}: the constraint V >= 1 binds, so one visual token and the largest LLM the budget allows.")
        if raw >= v_max:
            return VStar(float(v_max), raw, "cap", f"beta*Q/(alpha-beta) = {raw:.3g} exceeds v_max = {v_max:g}: V* = v_max.")
        return VStar(raw, raw, "interior", "V* = beta*Q/(alpha-beta), independent of the budget.")
    if q == 0 and alpha == beta:
        return VStar(1.0, None, "flat", "alpha == beta and Q = 0: every V on the budget line gives the same error.")
    return VStar(float(v_max), None, "cap", f"alpha <= beta: error falls with V at any budget, so V* is the largest V allowed ({v_max:g}).")


def budget_free(law: Law, cost: CostModel) -> bool:
    """Whether V* is the same at every budget: FLOPs with a form whose N-term factors out."""
    return cost.kind == "flops" and law in (MULTIPLICATIVE, THRESHOLD)


def optimum(law: Law, theta: np.ndarray, design: Design, cost: CostModel, budget: float, v_max: float) -> tuple[float | None, float | None, float | None]:
    """(N, V, error) of least predicted error on the budget line; Nones if the budget affords no LLM."""
    log_v = np.linspace(0.0, np.log(v_max), _GRID)
    n = cost.n_at(budget, np.exp(log_v))
    ok = n > 0
    if not ok.any():
        return None, None, None
    err = np.full(_GRID, np.inf)
    err[ok] = predict(law, theta[None], design, n[ok], np.exp(log_v[ok]))[0]
    i = int(np.argmin(err))

    def at(lv: float) -> float:
        nn = float(cost.n_at(budget, np.exp(lv)))
        return float(predict(law, theta[None], design, np.array([nn]), np.array([np.exp(lv)]))[0, 0]) if nn > 0 else np.inf

    lo, hi = log_v[max(i - 1, 0)], log_v[min(i + 1, _GRID - 1)]
    res = minimize_scalar(at, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    # Brent's bounded search never evaluates the ends exactly, and the corner
    # V = 1 is the usual answer at Q = 0: compare against the grid point too.
    best_err, best = min((float(res.fun), float(res.x)), (float(err[i]), float(log_v[i])))
    v = float(np.exp(best))
    return float(cost.n_at(budget, v)), v, best_err


def v_star_draws(law: Law, thetas: np.ndarray, design: Design, cost: CostModel, budget: float, v_max: float) -> np.ndarray:
    """V* of each parameter row at one budget (nan where the budget affords no LLM)."""
    if law is MULTIPLICATIVE and cost.kind == "flops":
        return np.array([v_star(float(t[1]), float(t[2]), cost.q or 0.0, v_max).value for t in thetas], dtype=float)
    v = np.geomspace(1.0, v_max, _DRAW_GRID)
    n = cost.n_at(budget, v)
    ok = n > 0
    if not ok.any():
        return np.full(len(thetas), np.nan)
    err = predict(law, thetas, design, n[ok], v[ok])
    return v[ok][np.argmin(err, axis=1)]


def budgets(cost_values: Sequence[float], count: int = 9) -> np.ndarray:
    """Log-spaced budgets spanning the cells' costs."""
    c = np.asarray(cost_values, dtype=float)
    return np.geomspace(c.min(), c.max(), count)


def frontier_rows(
    law: Law,
    theta: np.ndarray,
    design: Design,
    cost: CostModel,
    budget_list: Sequence[float],
    cells: Sequence[tuple[float, float, float, float]],
    v_max: float,
    closed: VStar | None = None,
) -> list[dict]:
    """One row per budget: the optimum (closed form where given, else numeric), the numeric check, the best cell.

    ``cells`` holds (N, V, observed error, cost of the cell); the best cell is
    the one within budget of least *fitted* error, with the cell of least
    *observed* error beside it, so a reader sees where data and law disagree.
    """
    n_seen = [c[0] for c in cells]
    rows = []
    for c in budget_list:
        n_num, v_num, e_num = optimum(law, theta, design, cost, float(c), v_max)
        row = {"cost": float(c), "N": n_num, "V": v_num, "error": e_num, "N_numeric": n_num, "V_numeric": v_num, "error_numeric": e_num}
        if cost.kind == "flops":
            row["flops"] = float(c)
        if closed is not None and closed.value is not None:
            n = float(cost.n_at(float(c), closed.value))
            row.update(N=n, V=closed.value, error=float(predict(law, theta[None], design, np.array([n]), np.array([closed.value]))[0, 0]))
        row["grid"] = _grid_optimum(law, theta, design, float(c), cells)
        # The optimum happily asks for a 1000B model; say when it does.
        row["extrapolated"] = row["N"] is not None and not (min(n_seen) / 1.001 <= row["N"] <= max(n_seen) * 1.001)
        rows.append(row)
    return rows


def _grid_optimum(law: Law, theta: np.ndarray, design: Design, budget: float, cells: Sequence[tuple[float, float, float, float]]) -> dict | None:
    within = [c for c in cells if c[3] <= budget * (1 + 1e-12)]
    if not within:
        return None
    fitted = predict(law, theta[None], design, np.array([c[0] for c in within]), np.array([c[1] for c in within]))[0]
    i = int(np.argmin(fitted))
    j = int(np.argmin([c[2] for c in within]))
    n, v, e, cost = within[i]
    return {
        "N": n,
        "V": v,
        "cost": cost,
        "fitted_error": float(fitted[i]),
        "observed_error": e,
        "best_observed": {"N": within[j][0], "V": within[j][1], "observed_error": within[j][2]},
    }


def frontier_curve(law: Law, theta: np.ndarray, design: Design, cost: CostModel, budget_list: np.ndarray, v_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Least predicted error and the N it needs along a dense list of budgets, for plotting."""
    out = np.array([optimum(law, theta, design, cost, float(c), v_max) for c in budget_list], dtype=float)
    return out[:, 2], out[:, 0]


def optimum_numeric(params: dict[str, float], budget: float, q: float, v_max: float) -> tuple[float, float, float]:
    """(N, V, error) minimising the paper law (public parameters) on a FLOPs budget line."""
    frame = Design(np.zeros(1), np.zeros(1), 0.0, 0.0)
    theta = MULTIPLICATIVE.from_public(params, frame)
    n, v, err = optimum(MULTIPLICATIVE, theta, frame, CostModel.flops(q), budget, v_max)
    assert n is not None and v is not None and err is not None  # FLOPs budgets always afford some N
    return n, v, float(paper_error(params, n, v))
