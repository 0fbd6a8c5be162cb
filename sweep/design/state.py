"""Where an adaptive study stands: the results so far matched to the grid's cells, the fit, the targets' intervals.

::

    state = assess(pool, observations, cfg.fit, cfg.design, q_values)
    state.measured          # names of the cells with a result
    state.models            # one FamilyModel per family (empty until the law can be fitted)
    state.intervals()       # {"reasoning V*(Q=50)": (value, low, high)}

Results come as the fitter's ``Observation`` rows (from MLflow or a CSV). A row
belongs to the grid cell of its LLM, V, compressor (the ``@compressor`` suffix of
a family when the sweep has several) and seed (the grid's first when the row has
none). The design fits the paper form only (``Y = A N^-alpha V^-beta + D``: the
law whose alpha - beta and closed-form V* it targets), with the fit's own
settings, and reads every interval from its bootstrap refits.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sweep.design.criterion import FamilyModel
from sweep.design.pool import Pool
from sweep.design.settings import DesignSettings
from sweep.design.targets import default_budgets, family_targets
from sweep.errors import SweepError
from sweep.scaling.settings import FitSettings
from sweep.scaling.table import Observation
from sweep.specs.jobs import Cell

PAPER_PARAMS = 4  # A, alpha, beta, D
MIN_DRAWS = 200  # the design needs a cloud of refits even where `fit` is asked for no intervals (fit.n_boot=0)


@dataclass
class StudyState:
    """The results so far, as the design sees them."""

    pool: Pool
    observations: list[Observation]
    measured: set[str]  # cell names with a result
    n_of: dict[str, float]  # LLM name -> N in the results' unit
    models: list[FamilyModel] = field(default_factory=list)
    note: str = ""  # why there is no fit yet

    @property
    def ready(self) -> bool:
        """Whether the design can rank cells: the law fitted, on more cells than it has parameters or with every cell's noise known."""
        return bool(self.models) and all(len(m.cells) > PAPER_PARAMS or m.noise.complete for m in self.models)

    def point(self, cell: Cell) -> tuple[float, float, str]:
        return self.n_of[cell.llm], float(cell.visual_tokens), cell.compressor

    def intervals(self) -> dict[str, tuple[float, float, float]]:
        """``"family target"`` -> (the fit's value, low, high)."""
        return {f"{m.family} {t.key}": iv for m in self.models for t, iv in zip(m.targets, m.intervals())}

    def widths(self) -> dict[str, float]:
        return {key: hi - lo for key, (_, lo, hi) in self.intervals().items()}

    def units(self) -> dict[str, str]:
        return {f"{m.family} {t.key}": t.unit for m in self.models for t in m.targets}


def cell_key(obs: Observation, compressors: Sequence[str], first_seed: int) -> tuple[str | None, float, str, int]:
    """(LLM, V, compressor, seed) of the grid cell a result row belongs to."""
    family, _, comp = obs.family.partition("@")
    return obs.llm, float(obs.V), comp or compressors[0], obs.seed if obs.seed is not None else first_seed


def assess(pool: Pool, observations: Sequence[Observation], fit: FitSettings, settings: DesignSettings,
           q_values: Sequence[float] | None = None) -> StudyState:
    """Match the results to the grid, fit the paper form per family and build the design's models."""
    comps = list(dict.fromkeys(c.compressor for c in pool.cells))
    first_seed = pool.cells[0].seed if pool.cells else 0
    by_key = {(c.llm, float(c.visual_tokens), c.compressor, c.seed): c for c in pool.cells}
    measured = {by_key[k].name for k in (cell_key(o, comps, first_seed) for o in observations) if k in by_key}
    state = StudyState(pool, list(observations), measured, _n_of(pool, observations))
    usable = [o for o in observations if not o.heldout]
    if not usable:
        state.note = "no results yet"
        return state
    qs = tuple(q_values if q_values is not None else fit.q_values)
    try:
        from sweep.scaling import fit_study

        n_boot = settings.n_boot or max(fit.n_boot, MIN_DRAWS)
        study = fit_study(usable, fit, forms=("multiplicative",), heldout="none", n_boot=n_boot, cost="flops", q_values=qs)
    except SweepError as e:
        state.note = f"the law cannot be fitted yet: {e.problem}"
        return state
    v_max = float(max(c.visual_tokens for c in pool.cells))
    v_values = sorted({float(c.visual_tokens) for c in pool.cells})
    budgets = {q: list(settings.budgets) or default_budgets(list(state.n_of.values()), v_values, q) for q in qs}
    for name, fam in study.families.items():
        paper = fam.paper
        if paper.boot is None or paper.params["alpha"] is None or paper.params["beta"] is None:
            state.models = []
            state.note = f"family {name}: alpha or beta is not identifiable yet (needs two N and two V)"
            return state
        q = paper.quality
        resid = q["rss"] / max(q["n"] - q["k"], 1)
        _, _, comp = name.partition("@")
        state.models.append(FamilyModel(
            family=name, compressor=comp or None, design=paper.problem.design, theta=paper.theta,
            draws=paper.boot, lower=paper.problem.lower, upper=paper.problem.upper, cells=fam.cells,
            noise=fam.noise.with_inflation(q["noise_inflation"]), fallback_var=max(resid, 1e-8),
            targets=tuple(family_targets(settings.target, qs, v_max, budgets)), level=fit.ci_level,
        ))
    return state


def _n_of(pool: Pool, observations: Sequence[Observation]) -> dict[str, float]:
    """N per LLM in the results' unit; an LLM without results gets its plan N times the results' ratio to it."""
    plan_n = {c.llm: pool.plan_n(c.llm) for c in pool.cells}
    seen: dict[str, list[float]] = {}
    for o in observations:
        if o.llm is not None:
            seen.setdefault(o.llm, []).append(o.N)
    ratios = [statistics.median(v) / plan_n[m] for m, v in seen.items() if m in plan_n and plan_n[m] > 0]
    ratio = math.exp(statistics.median(np.log(ratios))) if ratios else 1.0
    return {m: (statistics.median(seen[m]) if m in seen else n * ratio) for m, n in plan_n.items()}
