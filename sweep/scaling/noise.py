"""Cells and their sampling noise: what each measured error could have been.

A family's observations are grouped into cells (one (N, V)); a cell's value is
the mean over its seeds. Its noise has two sources, modelled the way the data
were made:

- questions: every seed of a cell answers the same benchmark questions, so the
  question sample is one shared draw: binomial, variance ``p (1 - p) / n``
  with ``n`` the (effective) number of questions behind the score. Scores that
  are not right/wrong (ANLS, VQA accuracy) vary less, so this is an upper bound;
- seeds: training seeds differ beyond that; their between-seed variance
  ``tau^2`` is pooled over the cells of the same LLM size (seed noise depends
  mostly on N: a tiny LLM learns or not), and the cell mean carries
  ``tau^2 / S`` for S seeds.

::

    cells = Cells.from_observations(members)
    noise = NoiseModel.build(cells, binomial=True)
    noise.variance()                   # variance of each cell mean (nan where unknown)
    noise.draw(rng, 1000)              # (1000, cells): seeds resampled within cells, questions within benchmarks
    noise.new_variance(p, n_params)    # one new single-seed measurement, for prediction intervals

A resample draws each cell's seeds with replacement (deviations scaled by
``sqrt(S / (S - 1))``, the small-sample correction, so the resampled mean has
the seeds' variance ``tau^2 / S``) and adds a binomial redraw of its questions
(``Binomial(n, p) / n``: exactly resampling ``n`` right/wrong answers with
replacement). ``inflation`` scales every draw when the law misses the cells by
more than their noise (the Birge ratio), so intervals then also cover the misfit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sweep.scaling.table import Observation


@dataclass(frozen=True)
class Cells:
    """One family's fitted cells: (N, V), the seed-mean value and what is known about its noise."""

    n: np.ndarray  # LLM parameters
    v: np.ndarray  # visual tokens
    y: np.ndarray  # mean over seeds
    seeds: tuple[np.ndarray, ...]  # each cell's per-seed values
    n_questions: np.ndarray  # mean effective question count; nan where unknown
    latency_ms: np.ndarray  # mean measured prefill latency; nan where unknown
    q: np.ndarray  # mean text tokens per query; nan where unknown
    llm: tuple[str | None, ...]

    @classmethod
    def from_observations(cls, members: Sequence[Observation]) -> Cells:
        groups: dict[tuple[float, float], list[Observation]] = {}
        for o in members:
            groups.setdefault((o.N, o.V), []).append(o)
        keys = sorted(groups)

        def mean(attr: str, rows: list[Observation]) -> float:
            vals = [getattr(o, attr) for o in rows if getattr(o, attr) is not None]
            return float(np.mean(vals)) if vals else np.nan

        seeds = tuple(np.array([o.error for o in groups[k]], dtype=float) for k in keys)
        return cls(
            n=np.array([k[0] for k in keys], dtype=float),
            v=np.array([k[1] for k in keys], dtype=float),
            y=np.array([s.mean() for s in seeds]),
            seeds=seeds,
            n_questions=np.array([mean("n_questions", groups[k]) for k in keys]),
            latency_ms=np.array([mean("latency_ms", groups[k]) for k in keys]),
            q=np.array([mean("Q", groups[k]) for k in keys]),
            llm=tuple(groups[k][0].llm for k in keys),
        )

    def __len__(self) -> int:
        return int(self.y.size)

    def subset(self, keep: np.ndarray) -> Cells:
        idx = np.flatnonzero(keep)
        return Cells(
            self.n[idx], self.v[idx], self.y[idx], tuple(self.seeds[i] for i in idx), self.n_questions[idx],
            self.latency_ms[idx], self.q[idx], tuple(self.llm[i] for i in idx),
        )

    @property
    def n_seeds(self) -> np.ndarray:
        return np.array([s.size for s in self.seeds])


@dataclass(frozen=True)
class NoiseModel:
    """The sampling noise of each cell mean, and resamples drawn the way the data were made."""

    y: np.ndarray  # cell means
    n: np.ndarray  # LLM parameters per cell (seed variance is pooled per N)
    deviations: tuple[np.ndarray, ...]  # seeds minus cell mean, per cell
    n_questions: np.ndarray  # nan where unknown or not binomial
    tau2: np.ndarray  # between-seed variance pooled over the cell's N; nan where no N has two seeds
    tau2_all: float  # pooled over every cell (for an LLM size never measured); nan if none
    inflation: float = 1.0  # sqrt of the reduced chi-square when above 1

    @classmethod
    def build(cls, cells: Cells, binomial: bool) -> NoiseModel:
        dev = tuple(s - s.mean() for s in cells.seeds)
        ss = np.array([float(d @ d) for d in dev])
        dof = cells.n_seeds - 1.0
        tau2 = np.full(len(cells), np.nan)
        for n in np.unique(cells.n):
            at = cells.n == n
            if dof[at].sum() > 0:
                tau2[at] = ss[at].sum() / dof[at].sum()
        tau2_all = float(ss.sum() / dof.sum()) if dof.sum() > 0 else np.nan
        nq = cells.n_questions if binomial else np.full(len(cells), np.nan)
        return cls(cells.y, cells.n, dev, nq, tau2, tau2_all)

    @property
    def known(self) -> np.ndarray:
        """Cells whose noise is modelled (questions known, or seeds of their N measured)."""
        return np.isfinite(self.n_questions) | np.isfinite(self.tau2)

    @property
    def complete(self) -> bool:
        return bool(self.known.all())

    def binomial_variance(self, p: np.ndarray | None = None, n_questions: np.ndarray | None = None) -> np.ndarray:
        """``p (1 - p) / n``, with p kept half a question away from 0 and 1 (a perfect score is not noiseless)."""
        n = self.n_questions if n_questions is None else n_questions
        p = self.y if p is None else p
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.clip(p, 0.5 / n, 1.0 - 0.5 / n)
            return np.where(np.isfinite(n), q * (1.0 - q) / n, 0.0)

    def variance(self, p: np.ndarray | None = None) -> np.ndarray:
        """Variance of each cell's mean (nan where nothing is known), inflation included."""
        seeds = np.array([d.size for d in self.deviations])
        v = self.binomial_variance(p) + np.where(np.isfinite(self.tau2), self.tau2, 0.0) / seeds
        return np.where(self.known, v * self.inflation**2, np.nan)

    def new_variance(self, p: np.ndarray, n_params: np.ndarray, n_questions: np.ndarray | None = None, seeds: np.ndarray | None = None) -> np.ndarray:
        """Variance of a new measurement (mean of ``seeds`` seeds, default 1) at cells of these N (nan where unknown).

        Without its own question count a new cell is assumed to be asked as
        many questions as the median measured cell.
        """
        nq = np.full(np.shape(p), np.nanmedian(self.n_questions) if np.isfinite(self.n_questions).any() else np.nan)
        if n_questions is not None:
            nq = np.where(np.isfinite(n_questions), n_questions, nq)
        tau = np.array([self._tau2_at(x) for x in np.atleast_1d(n_params)])
        known = np.isfinite(nq) | np.isfinite(tau)
        s = np.ones(np.shape(p)) if seeds is None else np.asarray(seeds, dtype=float)
        v = self.binomial_variance(p, nq) + np.where(np.isfinite(tau), tau, 0.0) / s
        return np.where(known, v * self.inflation**2, np.nan)

    def subset(self, keep: np.ndarray) -> NoiseModel:
        """The noise of some cells only (pooled seed variances as measured on all)."""
        idx = np.flatnonzero(keep)
        return replace(self, y=self.y[idx], n=self.n[idx], deviations=tuple(self.deviations[i] for i in idx), n_questions=self.n_questions[idx], tau2=self.tau2[idx])

    def with_inflation(self, factor: float) -> NoiseModel:
        return replace(self, inflation=max(1.0, float(factor)))

    def draw(self, rng: np.random.Generator, n_boot: int) -> np.ndarray:
        """Resampled cell means (n_boot, cells): seeds within cells, questions within benchmarks."""
        out = np.zeros((n_boot, self.y.size))
        sizes = np.array([d.size for d in self.deviations])
        for s in np.unique(sizes[sizes >= 2]):
            at = np.flatnonzero(sizes == s)
            dev = np.stack([self.deviations[i] for i in at])  # (cells, S)
            pick = rng.integers(0, s, size=(n_boot, at.size, s))
            drawn = np.take_along_axis(np.broadcast_to(dev, (n_boot, *dev.shape)), pick, axis=2).mean(axis=2)
            out[:, at] += drawn * np.sqrt(s / (s - 1.0))
        # A single-seed cell whose LLM size has seed noise measured elsewhere gets it as a normal draw.
        lone = (sizes == 1) & np.isfinite(self.tau2)
        out[:, lone] += rng.normal(0.0, 1.0, size=(n_boot, int(lone.sum()))) * np.sqrt(self.tau2[lone])
        binom = np.isfinite(self.n_questions)
        if binom.any():
            n = np.maximum(np.round(self.n_questions[binom]).astype(np.int64), 1)
            p = np.clip(self.y[binom], 0.5 / n, 1.0 - 0.5 / n)
            out[:, binom] += rng.binomial(n, p, size=(n_boot, int(binom.sum()))) / n - p
        return self.y + self.inflation * out

    def _tau2_at(self, n_params: float) -> float:
        at = np.isclose(self.n, n_params, rtol=1e-9)
        if at.any() and np.isfinite(self.tau2[at]).any():
            return float(self.tau2[at][0])
        return self.tau2_all
