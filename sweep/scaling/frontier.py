"""The inference-optimal frontier of the paper's law: closed form and numeric.

Inference cost is ``FLOPs = 2 * N * (Q + V)`` (N parameters, Q text tokens, V
visual tokens). At a fixed budget C, ``N = C / (2 (Q + V))`` and the law's
power term is proportional to ``(Q + V)^alpha * V^-beta``, whose derivative in
V has the sign of ``(alpha - beta) V - beta Q``. Hence, with ``V >= 1`` and
``V <= v_max`` (the vision encoder's patch count, 576 for CLIP-L/336):

- alpha > beta: ``V* = beta Q / (alpha - beta)``, clipped to [1, v_max]; at
  Q = 0 this is the corner V* = 1 (one visual token, the largest LLM);
- alpha <= beta: the error falls with V at every budget, V* = v_max;

and V* does not depend on the budget. ``optimum_numeric`` finds the same point
by minimising the fitted law over V on the budget line, ``grid_optimum`` picks
the best observed cell within the budget::

    vs = v_star(alpha=0.3, beta=0.06, q=50, v_max=576)   # VStar(12.5, 12.5, "interior", ...)
    cells = [(n, v, observed_error), ...]
    rows = frontier_rows(params, 50, budgets(n_list, v_list, 50), cells, v_max=576)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from sweep.scaling.laws import paper_error


@dataclass(frozen=True)
class VStar:
    """The optimal visual-token count at any budget, and why it is where it is."""

    value: float | None  # the optimum within [1, v_max]; None if alpha/beta unknown
    unconstrained: float | None  # beta Q / (alpha - beta) before clipping; None = unbounded
    case: str  # "corner" (V >= 1 binds), "interior", "cap" (V <= v_max binds), "flat", "unknown"
    note: str


def flops(n_params: np.ndarray | float, v: np.ndarray | float, q: float) -> np.ndarray:
    """Inference FLOPs of one forward pass over Q text and V visual tokens."""
    return 2.0 * np.asarray(n_params, dtype=float) * (q + np.asarray(v, dtype=float))


def v_star(alpha: float | None, beta: float | None, q: float, v_max: float) -> VStar:
    """The closed-form optimum V at fixed inference FLOPs, with V in [1, v_max]."""
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


def optimum_numeric(params: dict[str, float], budget: float, q: float, v_max: float) -> tuple[float, float, float]:
    """(N, V, error) minimising the fitted law on the budget line, by bounded search over log V."""

    def err(log_v: float) -> float:
        v = np.exp(log_v)
        return float(paper_error(params, budget / (2.0 * (q + v)), v))

    hi = float(np.log(v_max))
    res = minimize_scalar(err, bounds=(0.0, hi), method="bounded", options={"xatol": 1e-10})
    # Brent's bounded search never evaluates the ends exactly, and the corner
    # V = 1 is the usual answer at Q = 0: compare against both ends.
    candidates = [(float(res.fun), float(res.x)), (err(0.0), 0.0), (err(hi), hi)]
    best_err, best_log_v = min(candidates)
    v = float(np.exp(best_log_v))
    return budget / (2.0 * (q + v)), v, best_err


def budgets(n_params: Sequence[float], v: Sequence[float], q: float, count: int = 9) -> np.ndarray:
    """Log-spaced budgets spanning the cells' inference FLOPs at this Q."""
    f = flops(np.asarray(n_params), np.asarray(v), q)
    return np.geomspace(f.min(), f.max(), count)


def grid_optimum(params: dict[str, float], budget: float, q: float, cells: Sequence[tuple[float, float, float]]) -> dict | None:
    """The observed (N, V) cell within the budget with the lowest fitted error.

    ``cells`` holds (N, V, observed error); the cell with the lowest *observed*
    error within budget is reported alongside, so a reader sees where data and
    law disagree.
    """
    within = [(n, v, e) for n, v, e in cells if flops(n, v, q) <= budget * (1 + 1e-12)]
    if not within:
        return None
    fitted = [float(paper_error(params, n, v)) for n, v, _ in within]
    i = int(np.argmin(fitted))
    j = int(np.argmin([e for *_, e in within]))
    n, v, e = within[i]
    return {
        "N": n,
        "V": v,
        "flops": float(flops(n, v, q)),
        "fitted_error": fitted[i],
        "observed_error": e,
        "best_observed": {"N": within[j][0], "V": within[j][1], "observed_error": within[j][2]},
    }


def frontier_rows(
    params: dict[str, float],
    q: float,
    budget_list: Sequence[float],
    cells: Sequence[tuple[float, float, float]],
    v_max: float,
) -> list[dict]:
    """One row per budget: closed-form optimum, numeric optimum, best grid cell."""
    vs = v_star(params["alpha"], params["beta"], q, v_max)
    rows = []
    for c in budget_list:
        n_num, v_num, e_num = optimum_numeric(params, float(c), q, v_max)
        row = {"flops": float(c), "N": None, "V": vs.value, "error": None, "N_numeric": n_num, "V_numeric": v_num, "error_numeric": e_num}
        if vs.value is not None:
            n = float(c) / (2.0 * (q + vs.value))
            row.update(N=n, error=float(paper_error(params, n, vs.value)))
        row["grid"] = grid_optimum(params, float(c), q, cells)
        # The closed form happily asks for a 1000B model; say when it does.
        n_seen = [n for n, _, _ in cells]
        row["extrapolated"] = row["N"] is not None and not (min(n_seen) / 1.001 <= row["N"] <= max(n_seen) * 1.001)
        rows.append(row)
    return rows


def frontier_curve(params: dict[str, float], q: float, budget_list: np.ndarray, v_max: float) -> np.ndarray:
    """Fitted error along the closed-form frontier, for plotting."""
    vs = v_star(params["alpha"], params["beta"], q, v_max)
    if vs.value is None:
        return np.full(np.shape(budget_list), np.nan)
    n = np.asarray(budget_list, dtype=float) / (2.0 * (q + vs.value))
    return paper_error(params, n, vs.value)
