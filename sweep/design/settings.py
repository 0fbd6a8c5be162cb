"""Every setting of the adaptive study design, as one frozen typed spec: the config's ``design`` section.

``python -m sweep suggest`` and ``python -m sweep run --adaptive`` read it; their
flags are shorthands for its fields (``--k 3`` is ``design.k=3``, ``--budget 60%``
is ``design.budget_share=0.6``, ``--budget 12`` is ``design.budget=12``,
``--target frontier`` is ``design.target=frontier``, ``--until-ci 2`` is
``design.until_ci=2``), so a bad value stops the command with exit code 2 naming
``design.<key>`` before anything runs. No field changes a job's id (all are
``incidental``): the design picks which cells run, never what a cell computes.
The module imports nothing of numpy or of the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sweep.errors import SweepError
from sweep.specs.schema import Spec, at_least, incidental, non_negative, positive, probability

TARGETS = ("vstar", "frontier", "alpha-beta")


@dataclass(frozen=True, kw_only=True)
class DesignSettings(Spec):
    """What the design shrinks, how much it may spend and when it stops; ``DesignSettings()`` is the default."""

    # What the design makes certain, per benchmark family: vstar = the 95% interval of V* (paper form,
    # FLOPs) at each fit.q_values Q; frontier = the interval of the least error reachable at each of
    # `budgets` (inference FLOPs) and Q; alpha-beta = the interval of alpha - beta.
    target: Literal["vstar", "frontier", "alpha-beta"] = incidental("vstar")
    # Cells per suggestion and per adaptive round. null: `run --adaptive` fills the launcher's free
    # slots (local: workers, inline: 1, ray: its CPUs or GPUs, slurm: array_parallelism), `suggest` lists 5.
    k: int | None = incidental(None, check=at_least(1))
    # Total estimated cost of the study's cells, done ones included, in the grid's cost unit
    # (GPU-hours; CPU-hours for a grid of CPU jobs). null: no limit.
    budget: float | None = incidental(None, check=positive)
    # The budget as a fraction of the whole grid's estimated cost (`--budget 60%` sets 0.6).
    budget_share: float | None = incidental(None, check=probability)
    # Stop when every target's interval is narrower than this, in the target's unit (tokens for
    # vstar, error for frontier, exponent for alpha-beta). null: run until the budget or the grid ends.
    until_ci: float | None = incidental(None, check=positive)
    # Inference-FLOPs budgets of the frontier target; empty: the geometric middle and the top of the
    # grid's cells' inference FLOPs 2N(Q+V), at each Q.
    budgets: tuple[float, ...] = incidental(())
    # CPU jobs (the mini grid) are priced in CPU-hours: seconds = cpu_overhead_s per job + cpu_step_s per
    # training step + the plan's FLOPs at cpu_gflops. Measured with `bench/bench_adaptive.py --cpu-costs`
    # (one torch thread; at the mini sizes a step's fixed cost outweighs its FLOPs: m costs 3x xs, not 16x).
    cpu_gflops: float = incidental(32.0, check=positive)
    cpu_step_s: float = incidental(0.045, check=non_negative)
    cpu_overhead_s: float = incidental(10.0, check=non_negative)
    # At most this many rounds in one `run --adaptive` (a guard; the budget or the grid ends it first).
    max_rounds: int = incidental(50, check=at_least(1))
    # Bootstrap refits behind the design's intervals and criterion. null: fit.n_boot (at least 200), and
    # then the design's intervals are the paper form's intervals `fit` reports (same seed, same draws).
    n_boot: int | None = incidental(None, check=at_least(50))

    def check(self, where: str) -> None:
        if self.budget is not None and self.budget_share is not None:
            raise SweepError(f"{where}.budget" if where else "budget", "and budget_share are both set",
                             "give the budget once: an amount (--budget 12) or a share of the grid (--budget 60%)")
        if any(b <= 0 for b in self.budgets):
            raise SweepError(f"{where}.budgets" if where else "budgets", f"{list(self.budgets)} has a budget <= 0",
                             "list inference-FLOPs budgets > 0, e.g. [1e11, 1e12], or [] for the grid's own")


def flag_overrides(k: str | None, budget: str | None, target: str | None, until_ci: str | None) -> list[str]:
    """The ``design.*`` overrides the CLI flags stand for (``--budget 60%`` -> ``design.budget_share=0.6``)."""
    out = []
    if k is not None:
        out.append(f"design.k={k}")
    if budget is not None:
        text = budget.strip()
        if text.endswith("%"):
            try:
                share = float(text[:-1]) / 100.0
            except ValueError:
                raise SweepError("--budget", f"{budget!r} is not a percentage", "write --budget 60% or an amount such as --budget 12.5") from None
            out.append(f"design.budget_share={share}")
        else:
            out.append(f"design.budget={text}")
    if target is not None:
        out.append(f"design.target={target}")
    if until_ci is not None:
        out.append(f"design.until_ci={until_ci}")
    return out
