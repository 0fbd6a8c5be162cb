"""The candidates of an adaptive study: the grid's cells, what each still costs, and the start design (pure).

The composed grid is the pool (``grid.visual_tokens=[...]`` may list any V the
compressors can produce; ``sweep.grid`` checks it as the plan does). Held-out
LLMs are not candidates: the fit never uses them, so they cannot narrow it.

A cell's cost is what running it would still spend: its train and eval jobs
that are not done, priced from the plan (GPU-hours, with the MFU
``cost.measured`` holds where known). A job another cell or an earlier run
already did costs nothing (content ids make it reusable). A grid of CPU jobs
(the mini study) is priced in CPU-hours: ``design.cpu_overhead_s`` per job,
``design.cpu_step_s`` per training step and its FLOPs at ``design.cpu_gflops``. Shared upstream jobs (the mini study's
feature cache) are counted once, in the cost of the first batch that needs them::

    pool = Pool.build(plan, store.is_done, settings)
    pool.cost_of(cells), pool.todo(cells), pool.total, pool.spent
    start_design(pool.cells, pool.cost_of)        # corners of N x V and a centre, cheapest first
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from sweep.design.settings import DesignSettings
from sweep.plan import Job, Plan
from sweep.specs.jobs import Cell

GPU_HOURS, CPU_HOURS = "GPU-hours", "CPU-hours"


@dataclass(frozen=True)
class Pool:
    """The fit cells of a plan with their jobs' estimated costs and which jobs are done."""

    plan: Plan
    unit: str  # GPU_HOURS or CPU_HOURS
    cells: tuple[Cell, ...]  # every candidate cell (held-out LLMs excluded), in grid order
    job_cost: dict[str, float]  # job id -> estimated cost in `unit`
    done: frozenset[str]  # job ids whose done.json exists
    jobs_of: dict[str, tuple[str, ...]]  # cell name -> its jobs and their upstream, DAG order
    n_plan: dict[str, float]  # LLM name -> its N as the plan knows it (non-embedding parameters)

    @classmethod
    def build(cls, plan: Plan, is_done: Callable[[str], bool], settings: DesignSettings) -> Pool:
        gpu = any(int(j.resources.get("gpus", 0) or 0) > 0 for j in plan)
        cost = {j.id: job_cost(j, gpu, settings) for j in plan}
        cells = tuple(c for c in plan.cells if not c.heldout)
        by_id = {j.id: j for j in plan}
        jobs_of: dict[str, tuple[str, ...]] = {}
        for cell in cells:
            own = [j.id for j in plan if j.cell is not None and j.cell.name == cell.name]
            needed: list[str] = []
            for jid in own:
                _with_upstream(jid, by_id, needed)
            jobs_of[cell.name] = tuple(j.id for j in plan if j.id in set(needed))
        done = frozenset(j.id for j in plan if is_done(j.id))
        n_plan = {j.cell.llm: float(j.spec.llm.params()) for j in plan if j.cell is not None and hasattr(j.spec, "llm")}
        return cls(plan, GPU_HOURS if gpu else CPU_HOURS, cells, cost, done, jobs_of, n_plan)

    def todo(self, cells: Iterable[Cell]) -> list[str]:
        """The not-done jobs these cells need (their own and upstream), in DAG order."""
        wanted = {jid for c in cells for jid in self.jobs_of[c.name]} - self.done
        return [j.id for j in self.plan if j.id in wanted]

    def cost_of(self, cells: Iterable[Cell]) -> float:
        """What running these cells still costs (shared upstream jobs once; done jobs nothing)."""
        return float(sum(self.job_cost[j] for j in self.todo(cells)))

    def own_cost(self, cell: Cell) -> float:
        """The cell's own not-done jobs (train stages + eval): its marginal cost once shared jobs are done."""
        return float(sum(self.job_cost[j] for j in self.jobs_of[cell.name]
                         if j not in self.done and self._owner(j) == cell.name))

    def is_measured(self, cell: Cell) -> bool:
        """Whether the cell's eval job is done."""
        return all(j in self.done for j in self.jobs_of[cell.name] if self._role(j) == "eval")

    @property
    def total(self) -> float:
        """The whole grid's estimated cost (every candidate cell's jobs, done or not)."""
        every = {jid for c in self.cells for jid in self.jobs_of[c.name]}
        return float(sum(self.job_cost[j] for j in every))

    @property
    def spent(self) -> float:
        """The estimated cost of the grid's jobs already done."""
        every = {jid for c in self.cells for jid in self.jobs_of[c.name]}
        return float(sum(self.job_cost[j] for j in every & self.done))

    def plan_n(self, llm: str) -> float:
        return self.n_plan[llm]

    def _owner(self, job_id: str) -> str | None:
        cell = self._jobs[job_id].cell
        return None if cell is None else cell.name

    def _role(self, job_id: str) -> str:
        return self._jobs[job_id].role

    @cached_property
    def _jobs(self) -> dict[str, Job]:
        return {j.id: j for j in self.plan}


def _with_upstream(job_id: str, by_id: dict[str, Job], out: list[str]) -> None:
    if job_id in out:
        return
    for dep in by_id[job_id].deps:
        _with_upstream(dep, by_id, out)
    out.append(job_id)


def job_cost(job: Job, gpu_grid: bool, settings: DesignSettings) -> float:
    """A job's estimated cost: the plan's GPU-hours, or for a grid of CPU jobs its estimated CPU-hours."""
    if gpu_grid:
        return float(job.gpu_hours)
    steps = getattr(getattr(job.spec, "stage", None), "steps", 0) if job.role == "train" else 0
    return (settings.cpu_overhead_s + steps * settings.cpu_step_s + job.flops / (settings.cpu_gflops * 1e9)) / 3600.0


def budget_of(settings: DesignSettings, pool: Pool) -> float | None:
    """The study's total budget in the pool's unit (``budget``, or ``budget_share`` of the grid), or None."""
    if settings.budget is not None:
        return float(settings.budget)
    if settings.budget_share is not None:
        return float(settings.budget_share) * pool.total
    return None


def start_design(cells: Sequence[Cell], n_of: Callable[[Cell], float], cost_of: Callable[[Cell], float]) -> list[Cell]:
    """The space-filling start: the four corners of N x V and the centre, per compressor, cheapest first.

    The centre is the LLM and the V nearest the middle of the log range (ties go to the
    cheaper cell). Only each compressor's first seed is used; with one N or one V the
    corners collapse and the start is the distinct cells among them.
    """
    out: list[Cell] = []
    for comp in dict.fromkeys(c.compressor for c in cells):
        mine = [c for c in cells if c.compressor == comp]
        seed = mine[0].seed
        mine = [c for c in mine if c.seed == seed]
        llms = sorted({c.llm for c in mine}, key=lambda m: n_of(next(c for c in mine if c.llm == m)))
        vs = sorted({c.visual_tokens for c in mine})
        at = {(c.llm, c.visual_tokens): c for c in mine}
        picks = [(m, v) for m in (llms[0], llms[-1]) for v in (vs[0], vs[-1])]
        mid_n = 0.5 * (math.log(n_of(at[(llms[0], vs[0])])) + math.log(n_of(at[(llms[-1], vs[0])])))
        mid_v = 0.5 * (math.log(vs[0]) + math.log(vs[-1]))
        centre = min((c for c in mine), key=lambda c: (round(abs(math.log(n_of(c)) - mid_n), 9),
                                                     round(abs(math.log(c.visual_tokens) - mid_v), 9), cost_of(c)))
        picks.append((centre.llm, centre.visual_tokens))
        for key in dict.fromkeys(picks):
            if key in at and at[key] not in out:
                out.append(at[key])
    return sorted(out, key=lambda c: (cost_of(c), c.name))
