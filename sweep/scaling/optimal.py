"""What a fitted family says to do: frontiers against FLOPs and latency, V*, per-cell intervals.

Used by ``family.fit_family`` on the chosen (best-predicting) form::

    frontiers = flops_frontiers(best, cells, qs=[0, 50], v_max=576, level=0.95, unidentified=False)
    latency, model = latency_frontier(best, cells, v_max=576, level=0.95)
    paper_v_star(paper_form, qs, v_max, 0.95)     # the paper's closed form with its interval
    cell_table(best, cells, noise, rng, 0.95)     # observed, fitted, fit and prediction intervals

V* comes from the closed form where there is one (the paper's form against
FLOPs) and from the numeric search otherwise; for forms whose N-term factors
out (paper, threshold) V* is the same at every FLOPs budget, else it is
reported at the middle of the measured budgets with its range over them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sweep.scaling.frontier import CostModel, VStar, budget_free, budgets, frontier_rows, optimum, v_star, v_star_draws
from sweep.scaling.intervals import percentile, prediction_band
from sweep.scaling.laws import MULTIPLICATIVE
from sweep.scaling.latency import LatencyModel, fit_latency
from sweep.scaling.noise import Cells, NoiseModel
from sweep.scaling.study import FormFit, Frontier


def flops_frontiers(best: FormFit, cells: Cells, qs: Sequence[float], v_max: float, level: float, unidentified: bool) -> dict[float, Frontier]:
    """The FLOPs frontier of the chosen form at every Q."""
    out = {}
    for q in qs:
        cost = CostModel.flops(q)
        costs = cost.of(cells.n, cells.v)
        if best.form == "multiplicative" and unidentified:
            unknown = v_star(None, None, q, v_max)
            out[q] = Frontier("flops", q, cost.unit, best.form, unknown, True, float(np.sqrt(costs.min() * costs.max())), None, None, None, [])
            continue
        closed = v_star(best.params["alpha"], best.params["beta"], q, v_max) if best.form == "multiplicative" else None
        out[q] = _frontier(best, cells, cost, costs, v_max, level, closed)
    return out


def latency_frontier(best: FormFit, cells: Cells, v_max: float, level: float) -> tuple[Frontier, LatencyModel]:
    """The frontier against measured prefill latency (a fitted latency model between the cells)."""
    ok = np.isfinite(cells.latency_ms)
    model = fit_latency(cells.n[ok], cells.v[ok], cells.latency_ms[ok])
    cost = model.cost()
    costs = np.where(ok, cells.latency_ms, model(cells.n, cells.v))
    if max(cost.b) <= 0:  # a budget line needs a cost that grows with N; otherwise any N fits any budget
        spent = budgets(costs)
        note = ("measured latency does not grow with N in these cells (the latency model's N terms fit to 0: fixed "
                "costs dominate at these sizes), so a latency budget does not bound the LLM: no latency frontier.")
        return Frontier(cost=cost.kind, q=None, unit=cost.unit, form=best.form, v_star=VStar(None, None, "unknown", note),
                        budget_free=False, reference_budget=float(np.sqrt(spent[0] * spent[-1])), numeric=None, ci=None,
                        v_range=None, rows=[]), model
    return _frontier(best, cells, cost, costs, v_max, level, None), model


def _frontier(best: FormFit, cells: Cells, cost: CostModel, costs: np.ndarray, v_max: float, level: float, closed: VStar | None) -> Frontier:
    law, theta, design = best.problem.law, best.theta, best.problem.design
    budget_list = budgets(costs)
    reference = float(np.sqrt(budget_list[0] * budget_list[-1]))
    grid = [(float(n), float(v), float(y), float(c)) for n, v, y, c in zip(cells.n, cells.v, cells.y, costs)]
    rows = frontier_rows(law, theta, design, cost, budget_list, grid, v_max, closed)
    numeric = optimum(law, theta, design, cost, reference, v_max)[1]
    free = budget_free(law, cost)
    if closed is None:
        closed = _numeric_vstar(numeric, v_max, free, cost, best.label, reference)
    draws = v_star_draws(law, best.boot, design, cost, reference, v_max) if best.boot is not None else None
    vs = [r["V"] for r in rows if r["V"] is not None]
    return Frontier(
        cost=cost.kind,
        q=cost.q,
        unit=cost.unit,
        form=best.form,
        v_star=closed,
        budget_free=free,
        reference_budget=reference,
        numeric=numeric,
        ci=percentile(draws, level),
        v_range=(min(vs), max(vs)) if vs else None,
        rows=rows,
    )


def _numeric_vstar(value: float | None, v_max: float, free: bool, cost: CostModel, label: str, reference: float) -> VStar:
    if value is None:
        return VStar(None, None, "unknown", f"no budget in the measured range affords an LLM under this {cost.kind} model.")
    case = "corner" if value <= 1.0 + 1e-6 else ("cap" if value >= v_max * (1 - 1e-6) else "interior")
    where = "the same at every budget" if free else f"at the middle budget {reference:.3g} {cost.unit} (the frontier rows give it per budget)"
    return VStar(value, None, case, f"numeric optimum of the {label} on the budget line, {where}.")


def paper_v_star(paper: FormFit, qs: Sequence[float], v_max: float, level: float) -> dict[float, tuple[VStar, tuple[float, float] | None]]:
    """The paper form's closed-form V* per Q, with a bootstrap interval (its closed form per resample)."""
    a, b = paper.params["alpha"], paper.params["beta"]
    out = {}
    for q in qs:
        ci = None
        if paper.boot is not None and a is not None and b is not None:
            ci = percentile(v_star_draws(MULTIPLICATIVE, paper.boot, paper.problem.design, CostModel.flops(q), 1.0, v_max), level)
        out[q] = (v_star(a, b, q, v_max), ci)
    return out


def cell_table(best: FormFit, cells: Cells, noise: NoiseModel, rng: np.random.Generator, level: float) -> list[dict]:
    """Per fitted cell: observed, fitted by the chosen form, its sampling noise, fit and prediction intervals.

    The prediction interval is for one new single-seed measurement of the cell.
    """
    law, design = best.problem.law, best.problem.design
    fitted = best.problem.predict(best.theta)
    sd = np.sqrt(noise.variance(np.clip(fitted, 1e-12, None)))
    band = None
    if best.boot is not None:
        var = noise.with_inflation(best.quality["noise_inflation"]).new_variance(np.clip(fitted, 1e-12, None), cells.n, cells.n_questions)
        q = best.quality
        var = np.where(np.isfinite(var), var, q["rss"] / max(q["n"] - q["k"], 1))
        band = prediction_band(law, best.boot, best.theta, design, cells.n, cells.v, var, rng, level)
    rows = []
    for i in range(len(cells)):
        row = {
            "N": float(cells.n[i]),
            "V": float(cells.v[i]),
            "llm": cells.llm[i],
            "seeds": int(cells.seeds[i].size),
            "n_questions": float(cells.n_questions[i]) if np.isfinite(cells.n_questions[i]) else None,
            "observed": float(cells.y[i]),
            "fitted": float(fitted[i]),
            "noise_sd": float(sd[i]) if np.isfinite(sd[i]) else None,
            "form": best.form,
        }
        if band is not None:
            row["fit_ci"] = [float(band["fit_lo"][i]), float(band["fit_hi"][i])]
            row["prediction_interval"] = [float(band["pred_lo"][i]), float(band["pred_hi"][i])]
        rows.append(row)
    return rows
