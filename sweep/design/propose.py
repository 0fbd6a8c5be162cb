"""The next cells to run, and why: the start design first, then the criterion (``criterion.choose``).

::

    proposal = propose(state, cfg.design, k=5)
    proposal.phase, proposal.picks, proposal.stop       # "start" / "design" / "fill", Picks, why nothing is left
    print(render(proposal))                             # or to_json(proposal)

Phases:

- ``start``: until the paper form can be fitted and ranked by (``StudyState.ready``:
  fitted on more cells than its four parameters, or with every cell's noise
  known), the unmeasured start cells (corners of N x V and a centre, per
  compressor), cheapest first, as many as ``k`` and the budget allow;
- ``design``: from then on, the cells of most expected gain per unit of cost
  (``criterion``); start cells not run yet compete like any other, so the
  dearest corner runs only if it is worth its price;
- ``fill``: the law cannot be fitted yet and the start design is used up (a
  grid with one N or one V, unaffordable corners): the cheapest cells.

``stop`` says why a proposal is empty or why the study is finished: every
target narrower than ``until_ci``, the budget spent, the grid measured, or
nothing left to narrow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweep.design.criterion import Pick, choose
from sweep.design.pool import budget_of, start_design
from sweep.design.settings import DesignSettings
from sweep.design.state import StudyState
from sweep.specs.jobs import Cell

TARGET_WORDS = {
    "vstar": "the width of the 95% interval of V* (paper form, FLOPs) at each Q",
    "frontier": "the width of the 95% interval of the least error reachable at each budget and Q",
    "alpha-beta": "the width of the 95% interval of alpha - beta",
}


@dataclass
class Proposal:
    """What to run next in a study, and where it stands."""

    state: StudyState
    settings: DesignSettings
    phase: str
    picks: list[Pick]
    budget: float | None  # the study's total budget in the pool's unit
    stop: str | None = None  # why nothing more should run (None: keep going)
    notes: list[str] = field(default_factory=list)

    @property
    def cost(self) -> float:
        return self.state.pool.cost_of([p.cell for p in self.picks])


def stop_reason(widths: dict[str, float], until_ci: float | None, spent: float, budget: float | None,
                cheapest_next: float | None, unit: str) -> str | None:
    """Why the study should stop now, or None. ``cheapest_next``: the cheapest unmeasured cell's cost (None: none left)."""
    if until_ci is not None and widths and all(w < until_ci for w in widths.values()):
        return f"every target interval is narrower than {until_ci:g} (widest {max(widths.values()):.3g})"
    if cheapest_next is None:
        return "every cell of the grid is measured"
    if budget is not None and spent + cheapest_next > budget * (1 + 1e-9):
        return (f"the budget is spent: {spent:.3g} of {budget:.3g} {unit}, and the cheapest cell left "
                f"costs {cheapest_next:.3g}")
    return None


def propose(state: StudyState, settings: DesignSettings, k: int) -> Proposal:
    """The next ``k`` cells (fewer when the budget or the targets say so)."""
    pool = state.pool
    budget = budget_of(settings, pool)
    left = None if budget is None else budget - pool.spent
    notes: list[str] = []
    open_cells = [c for c in pool.cells if c.name not in state.measured]
    runnable = [c for c in open_cells if pool.todo([c])]
    lost = [c.name for c in open_cells if not pool.todo([c])]
    if lost:
        notes.append(f"{len(lost)} cells are done in the store but have no result in MLflow ({', '.join(lost[:3])}): "
                     "not proposed; `python -m sweep status` shows them")
    cheapest = min((pool.cost_of([c]) for c in runnable), default=None)
    stop = stop_reason(state.widths(), settings.until_ci, pool.spent, budget, cheapest, pool.unit)
    if stop:
        return Proposal(state, settings, "done", [], budget, stop, notes)
    # The start runs cheapest first until the law can be fitted and ranked by; its cells not run
    # by then (the dearest corner, often) compete with every other cell on gain per unit of cost.
    start = [c for c in start_design(pool.cells, lambda c: state.n_of[c.llm], pool.own_cost)
             if c.name not in state.measured and c in runnable and (left is None or pool.cost_of([c]) <= left * (1 + 1e-9))]
    phase = "start" if start and not state.ready else ("design" if state.ready else "fill")
    if phase == "design":
        picks = choose(state.models, runnable, state.point, pool.cost_of, k, left, settings.until_ci or 0.0, pool.unit)
        if not picks:
            stop = ("no cell left is expected to narrow a target" if left is None or any(pool.cost_of([c]) <= left for c in runnable)
                    else "the budget is spent: no cell that narrows a target fits in what is left")
        return Proposal(state, settings, phase, picks, budget, stop, notes)
    pool_cells = start if phase == "start" else sorted(runnable, key=lambda c: (pool.cost_of([c]), c.name))
    why = _start_words(pool_cells, state) if phase == "start" else {c.name: "the law cannot be fitted yet: cheapest cell first" for c in pool_cells}
    picks: list[Pick] = []
    for cell in pool_cells:
        if len(picks) >= k:
            break
        before = pool.cost_of([p.cell for p in picks])
        total = pool.cost_of([*(p.cell for p in picks), cell])
        if left is not None and total > left * (1 + 1e-9):
            continue
        picks.append(Pick(cell, total - before, float("nan"), {}, why[cell.name]))
    if not picks:
        stop = "the budget is spent: no start cell fits in what is left"
    return Proposal(state, settings, phase, picks, budget, stop, notes)


def _start_words(cells: list[Cell], state: StudyState) -> dict[str, str]:
    out = {}
    for c in cells:
        mine = [x for x in state.pool.cells if x.compressor == c.compressor]
        ns = sorted({state.n_of[x.llm] for x in mine})
        vs = sorted({x.visual_tokens for x in mine})
        n, v = state.n_of[c.llm], c.visual_tokens
        if n in (ns[0], ns[-1]) and v in (vs[0], vs[-1]):
            where = f"corner ({'smallest' if n == ns[0] else 'largest'} N, {'smallest' if v == vs[0] else 'largest'} V)"
        else:
            where = "centre of N x V (log scale)"
        out[c.name] = f"start design: {where}"
    return out


def to_json(p: Proposal) -> dict[str, Any]:
    """The proposal as plain data (``suggest --json``)."""
    pool = p.state.pool
    units = p.state.units()
    return {
        "sweep": pool.plan.name,
        "target": p.settings.target,
        "unit": pool.unit,
        "phase": p.phase,
        "stop": p.stop,
        "grid_cost": pool.total,
        "spent": pool.spent,
        "budget": p.budget,
        "cells": len(pool.cells),
        "measured": sorted(p.state.measured),
        "intervals": {key: {"value": v, "low": lo, "high": hi, "width": hi - lo, "unit": units[key]}
                      for key, (v, lo, hi) in p.state.intervals().items()},
        "suggestions": [
            {**p_.cell.identity(), "cell": p_.cell.name, "N": p.state.n_of[p_.cell.llm], "cost": p_.cost,  # type: ignore[attr-defined]
             "gain": None if p_.gain != p_.gain else p_.gain,
             "gain_per_cost": None if p_.gain != p_.gain else p_.gain / max(p_.cost, 1e-12),
             "expected_widths": {k: {"before": b, "after": a} for k, (b, a) in p_.changes.items()},
             "why": p_.why}
            for p_ in p.picks
        ],
        "notes": p.notes + ([p.state.note] if p.state.note else []),
    }


def render(p: Proposal) -> str:
    """The proposal for a terminal."""
    from sweep.display import table

    pool = p.state.pool
    unit = pool.unit
    lines = [f"sweep {pool.plan.name!r}: {len(pool.cells)} candidate cells, {len(p.state.measured)} measured; "
             f"the whole grid is an estimated {pool.total:.3g} {unit}, {pool.spent:.3g} spent"
             + (f", budget {p.budget:.3g} ({p.budget / pool.total:.0%} of the grid)" if p.budget is not None and pool.total > 0 else "")]
    lines.append(f"target: {TARGET_WORDS[p.settings.target]}" + (f"; stop when every width < {p.settings.until_ci:g}" if p.settings.until_ci else ""))
    units = p.state.units()
    rows = [(key, f"{v:.4g}", f"[{lo:.4g}, {hi:.4g}]", f"{hi - lo:.3g} {units[key]}".rstrip())
            for key, (v, lo, hi) in p.state.intervals().items()]
    if rows:
        lines += ["", table(rows, ("target", "fit", "95% interval", "width"))]
    for note in p.notes + ([p.state.note] if p.state.note else []):
        lines.append(f"note: {note}")
    if p.picks:
        label = {"start": "the start design (corners of N x V and a centre, cheapest first)",
                 "design": "the cells of most expected narrowing per unit of cost, best first",
                 "fill": "the cheapest cells (no fit yet)"}[p.phase]
        body = [(i, pk.cell.name, f"{p.state.n_of[pk.cell.llm]:.3g}", pk.cell.visual_tokens, f"{pk.cost:.3g}",  # type: ignore[attr-defined]
                 "-" if pk.gain != pk.gain else f"{pk.gain:.3g}", "-" if pk.gain != pk.gain else f"{pk.gain / max(pk.cost, 1e-12):.3g}", pk.why)
                for i, pk in enumerate(p.picks, 1)]
        lines += ["", f"next {len(p.picks)}: {label}; together {p.cost:.3g} {unit}",
                  table(body, ("#", "cell", "N", "V", f"cost ({unit})", "gain", f"gain per {unit[:-1]}", "why"))]
    if p.stop:
        lines.append(f"\nstop: {p.stop}")
    return "\n".join(lines)
