"""The design criterion: how much a cell is expected to narrow the targets' intervals, per unit of cost.

Each family's uncertainty is the cloud of its paper-form bootstrap refits (the
draws ``fit`` reads its intervals from). Measuring a cell adds one noisy value
``y = f(N, V) + e`` with the noise the fitter's model gives it (binomial over
the family's questions plus the seed spread at that N, inflated by the fit's
misfit; for another seed of a measured cell only the seed part is new). Over
the cloud, each target ``g`` (V*, alpha - beta, the frontier's error) and the
cell's predicted value ``f_b`` are jointly distributed; the linear-Gaussian
(Kalman) update by ``y`` removes the share

    r = Corr_b(g, f)^2 * Var_b f / (Var_b f + sigma^2)

of the target's variance: the c-optimal criterion (the linearised variance of
the target), with the linearisation read off the bootstrap cloud rather than
taken as a derivative at the fit. That is what makes it work where a
derivative vanishes: V* at Q = 0 is 1 or v_max by the sign of alpha - beta
(a step), so its derivative is 0 almost everywhere, but over a cloud that
straddles the step its variance is large and correlates with the cells whose
values tell the sides apart; once every draw is on one side its variance is 0
and it is settled. The expected width after the measurement is the present
width times ``sqrt(1 - r)`` (width in proportion to the spread).

A cell's gain is the expected fraction of each unsettled target's interval it
removes (the width above ``tolerance``, when one is asked), summed over the
targets of every family the cell measures (one eval job scores all of them),
and cells are ranked by gain per unit of cost. A batch is chosen greedily:
after each pick the clouds are shrunk as a refit with that cell's value would
shrink them (the ensemble square-root update, Whitaker and Hamill 2002, with
the value still unknown), so the next pick is valued for what it adds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from sweep.design.targets import Target, interval, public
from sweep.scaling.laws import MULTIPLICATIVE, Design, predict
from sweep.scaling.noise import Cells, NoiseModel

@dataclass(frozen=True)
class FamilyModel:
    """One family's paper-form fit as the design sees it: the cloud of refits and the noise of new cells."""

    family: str
    compressor: str | None  # the cells that measure this family (None: every cell)
    design: Design
    theta: np.ndarray  # the fit's parameters
    draws: np.ndarray  # (B, P) bootstrap refits, possibly shrunk by picks of this batch
    lower: np.ndarray
    upper: np.ndarray
    cells: Cells  # the measured cells
    noise: NoiseModel  # their noise, inflated by the fit's misfit
    fallback_var: float  # noise of a cell the model knows nothing about: the fit's residual variance
    targets: tuple[Target, ...]
    level: float
    pending: Mapping[tuple[float, float], int] = field(default_factory=dict)  # seeds picked in this batch

    def values(self, draws: np.ndarray | None = None) -> list[np.ndarray]:
        p = public(self.draws if draws is None else draws, self.design)
        return [np.asarray(t.of(p), dtype=float) for t in self.targets]

    def intervals(self) -> list[tuple[float, float, float]]:
        """(the fit's value, low, high) of each target."""
        at_fit = self.values(self.theta[None])
        return [(float(a[0]), *map(float, interval(v, self.level))) for a, v in zip(at_fit, self.values())]

    def measures(self, compressor: str) -> bool:
        return self.compressor is None or self.compressor == compressor

    def noise_of(self, n: float, v: float) -> float:
        """Variance of what measuring (N, V) once more adds: a new cell's noise, or a new seed's share."""
        p = float(np.clip(predict(MULTIPLICATIVE, self.theta[None], self.design, np.array([n]), np.array([v]))[0, 0], 1e-6, 1 - 1e-6))
        at = np.flatnonzero(np.isclose(self.cells.n, n, rtol=1e-9) & np.isclose(self.cells.v, v, rtol=1e-9))
        seeds = (int(self.cells.n_seeds[at[0]]) if at.size else 0) + self.pending.get((n, v), 0)
        inflate = self.noise.inflation ** 2
        if seeds == 0:
            var = float(self.noise.new_variance(np.array([p]), np.array([n]))[0])
            return var if np.isfinite(var) else self.fallback_var
        nq = self.cells.n_questions[at[0]] if at.size else np.nan
        b = float(self.noise.binomial_variance(np.array([p]), np.array([nq]))[0]) if np.isfinite(nq) else 0.0
        tau2 = self._seed_variance(n)
        now, then = (b + tau2 / seeds) * inflate, (b + tau2 / (seeds + 1)) * inflate
        gain = 1.0 / then - 1.0 / now if then > 0 else 0.0
        return 1.0 / gain if gain > 0 else np.inf

    def _seed_variance(self, n: float) -> float:
        at = np.isclose(self.noise.n, n, rtol=1e-9) & np.isfinite(self.noise.tau2)
        if at.any():
            return float(self.noise.tau2[at][0])
        if np.isfinite(self.noise.tau2_all):
            return float(self.noise.tau2_all)
        # No seed was repeated: what the law misses the cells by beyond their binomial noise is
        # the most the seeds can add.
        b = self.noise.binomial_variance()
        b = b[np.isfinite(b) & (b > 0)]
        if b.size:
            return max(self.noise.inflation ** 2 - 1.0, 0.0) * float(np.median(b))
        return self.fallback_var

    @cached_property
    def target_values(self) -> np.ndarray:
        """Each target over the current cloud (T, B)."""
        return np.array(self.values())

    def widths(self) -> np.ndarray:
        """Current width of each target's interval."""
        lo, hi = interval(self.target_values, self.level)
        return np.asarray(hi - lo)

    def predictions(self, n: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The law's value at cells (N, V) under every draw (B, C)."""
        return predict(MULTIPLICATIVE, self.draws, self.design, np.asarray(n, float), np.asarray(v, float))

    def explained(self, n: np.ndarray, v: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
        """Share of each target's variance one measurement of each cell removes (T, C); 0 where a target is constant."""
        h = self.predictions(n, v)
        h = h - h.mean(axis=0)
        g = self.target_values - self.target_values.mean(axis=1, keepdims=True)
        b = h.shape[0]
        var_h = (h * h).sum(axis=0) / (b - 1)
        var_g = (g * g).sum(axis=1) / (b - 1)
        cov = g @ h / (b - 1)  # (T, C)
        s = var_h + np.where(np.isfinite(sigma2), sigma2, np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = cov**2 / (var_g[:, None] * s[None, :])
        return np.clip(np.where(var_g[:, None] > 0, np.nan_to_num(share), 0.0), 0.0, 1.0)

    def expected_widths(self, n: float, v: float, sigma2: float) -> np.ndarray:
        """Each target's expected interval width after measuring (N, V) with noise ``sigma2``."""
        r = self.explained(np.array([n]), np.array([v]), np.array([sigma2]))[:, 0]
        return self.widths() * np.sqrt(1.0 - r)

    def _shrunk(self, n: float, v: float, sigma2: float) -> np.ndarray:
        """The cloud once (N, V) is measured with noise ``sigma2``, its value still unknown (square-root update)."""
        if not np.isfinite(sigma2):
            return self.draws
        h = self.predictions(np.array([n]), np.array([v]))[:, 0]
        b = h.size
        dev, eta = self.draws - self.draws.mean(axis=0), h - h.mean()
        s = float(eta @ eta) / (b - 1) + sigma2
        if s <= 0:
            return self.draws
        k = dev.T @ eta / (b - 1) / s
        return self.draws - np.outer(eta, k) / (1.0 + np.sqrt(sigma2 / s))

    def after(self, n: float, v: float) -> FamilyModel:
        """The model once (N, V) is measured, its value still unknown (``e = 0``): for the next pick of a batch."""
        base = self._shrunk(n, v, self.noise_of(n, v))
        pending = dict(self.pending)
        pending[(n, v)] = pending.get((n, v), 0) + 1
        return replace(self, draws=np.clip(base, self.lower, self.upper), pending=pending)


def gain(before: np.ndarray, after: np.ndarray, tolerance: float) -> np.ndarray:
    """Expected fraction of each target's interval above ``tolerance`` removed (0 for settled targets)."""
    b, a = np.maximum(before, tolerance), np.maximum(after, tolerance)
    active = before > tolerance * (1 + 1e-9) + 1e-12
    return np.where(active, (b - a) / np.where(b > 0, b, 1.0), 0.0)


@dataclass(frozen=True)
class Pick:
    """One chosen cell: its marginal cost, expected gain and the targets it narrows."""

    cell: object  # a sweep.specs.jobs.Cell
    cost: float
    gain: float
    changes: dict[str, tuple[float, float]]  # "family target" -> (width before, expected width after)
    why: str


def choose(
    models: Sequence[FamilyModel],
    candidates: Sequence[object],
    point: Callable[[object], tuple[float, float, str]],
    cost_of: Callable[[Sequence[object]], float],
    k: int,
    budget_left: float | None,
    tolerance: float,
    unit: str,
) -> list[Pick]:
    """Up to ``k`` candidates, greedily by expected gain per unit of cost, within ``budget_left``.

    ``point(cell)`` is the cell's (N, V, compressor); ``cost_of(cells)`` what running them
    together still costs. A candidate that narrows nothing is never picked; at equal gain per
    unit of cost the cheaper goes first.
    """
    models = list(models)
    chosen: list[Pick] = []
    for _ in range(k):
        taken = [p.cell for p in chosen]
        spent = cost_of(taken)
        left = [c for c in candidates if not any(c is t for t in taken)]
        costs = np.array([cost_of([*taken, c]) for c in left]) if left else np.zeros(0)
        fits = np.ones(len(left), bool) if budget_left is None else costs <= budget_left * (1 + 1e-9)
        left, costs = [c for c, ok in zip(left, fits) if ok], np.maximum(costs[fits] - spent, 1e-12)
        if not left:
            break
        points = [point(c) for c in left]
        total = np.zeros(len(left))
        changes: list[dict[str, tuple[float, float]]] = [{} for _ in left]
        for m in models:
            idx = [i for i, (_, _, comp) in enumerate(points) if m.measures(comp)]
            if not idx:
                continue
            n = np.array([points[i][0] for i in idx])
            v = np.array([points[i][1] for i in idx])
            sigma2 = np.array([m.noise_of(points[i][0], points[i][1]) for i in idx])
            before = m.widths()
            after = before[:, None] * np.sqrt(1.0 - m.explained(n, v, sigma2))  # (T, C)
            for j, i in enumerate(idx):
                total[i] += float(gain(before, after[:, j], tolerance).sum())
                for t, b, a in zip(m.targets, before, after[:, j]):
                    changes[i][f"{m.family} {t.key}"] = (float(b), float(a))
        useful = total > 1e-9
        if not useful.any():
            break
        ratio = np.where(useful, total / costs, -np.inf)
        best = max(range(len(left)), key=lambda i: (ratio[i], -costs[i], -i))
        cell, cost = left[best], float(costs[best])
        chosen.append(Pick(cell, cost, float(total[best]), changes[best], _why(changes[best], float(total[best]), cost, unit, tolerance)))
        n, v, comp = points[best]
        models = [m.after(n, v) if m.measures(comp) else m for m in models]
    return chosen


def _why(changes: Mapping[str, tuple[float, float]], g: float, cost: float, unit: str, tolerance: float) -> str:
    moved = sorted((((b - a) / b, key, b, a) for key, (b, a) in changes.items() if b > tolerance and b - a > 1e-3 * b), reverse=True)
    shown = "; ".join(f"{key} {b:.3g} -> {a:.3g}" for _, key, b, a in moved[:3])
    return f"expected interval widths {shown} (gain {g:.3g} for {cost:.3g} {unit})"
