"""Fitting one law to one family: multi-start bounded L-BFGS, Huber option, cell bootstrap.

This is the numerical core, free of I/O and of the study's bookkeeping::

    problem = Problem.build(MULTIPLICATIVE, design, y, cells, loss="l2")
    with single_threaded_blas():
        best = fit(problem)                                  # multi-start
        boot = bootstrap(problem, best.theta, 1000, rng)     # (1000, 4) thetas
    problem.identifiability(best.theta)                      # rank-deficient directions

The objective is ``mean_i w_i * rho(r_i / s)`` with ``r`` the residuals, ``s``
the spread of the data (so the loss is O(1) whatever the error scale) and
``rho`` the square or Huber's function; gradients are analytic. A bootstrap
resample draws cells with replacement, which is the same as re-weighting the
observations by how often their cell was drawn: every resample reuses the
same arrays, and starts from the full fit (warm start), so each refit takes a
handful of L-BFGS iterations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from sweep.scaling.laws import Design, Law

# Tight tolerances: the loss is O(1e-2) at the optimum and L-BFGS-B's ftol is
# absolute below 1, so the defaults would stop while exponents still move.
_LBFGS_OPTIONS = {"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-10}
# Two optima whose losses differ by less than this (relative) are "as good".
_NEAR_TIE = 1e-6


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with one BLAS thread.

    L-BFGS-B calls BLAS on 4-vectors thousands of times; on a shared machine a
    multi-threaded OpenBLAS spends far longer waking its threads than
    computing (measured: 15 s against 0.6 s for 1000 refits on 2 busy cores).
    Without threadpoolctl the block runs as it is.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@dataclass(frozen=True)
class Problem:
    """One law, one family's data, one loss; some parameters may be held fixed."""

    law: Law
    design: Design
    y: np.ndarray
    cells: np.ndarray  # index of each observation's (N, V) cell, 0..n_cells-1
    n_cells: int
    free: np.ndarray  # bool mask over law.names: which parameters are optimised
    fixed: np.ndarray  # full-length parameter vector supplying the fixed values
    loss: str = "l2"
    delta: float = np.inf  # Huber threshold, in units of ``scale``
    scale: float = 1.0

    @classmethod
    def build(
        cls,
        law: Law,
        design: Design,
        y: np.ndarray,
        cells: np.ndarray,
        *,
        loss: str = "l2",
        huber_delta: float | None = None,
        fixed: dict[str, float] | None = None,
    ) -> Problem:
        """``huber_delta`` is in error units; ``fixed`` maps internal names to values."""
        y = np.asarray(y, dtype=float)
        free = np.ones(len(law.names), dtype=bool)
        base = np.zeros(len(law.names))
        for name, value in (fixed or {}).items():
            i = law.names.index(name)
            free[i], base[i] = False, value
        scale = float(max(np.std(y), 1e-3))
        delta = np.inf if loss == "l2" else float(huber_delta) / scale
        _, cells = np.unique(np.asarray(cells), return_inverse=True)
        return cls(law, design, y, cells, int(cells.max()) + 1, free, base, loss, delta, scale)

    @property
    def bounds(self) -> list[tuple[float, float]]:
        return list(zip(self.law.lower[self.free], self.law.upper[self.free]))

    def full(self, x: np.ndarray) -> np.ndarray:
        if x.size == self.fixed.size:
            return x
        theta = self.fixed.copy()
        theta[self.free] = x
        return theta

    def objective(self, x: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and its gradient over the free parameters; ``weights`` sum to 1."""
        y, scale, delta = self.y, self.scale, self.delta

        def dloss(pred: np.ndarray) -> tuple[float, np.ndarray]:
            z = (pred - y) / scale
            if self.loss == "l2":
                return float(weights @ (z * z)), weights * (2.0 / scale) * z
            a = np.abs(z)
            inside = a <= delta
            value = float(weights @ np.where(inside, z * z, 2.0 * delta * a - delta**2))
            return value, weights * (2.0 / scale) * np.where(inside, z, delta * np.sign(z))

        value, grad = self.law.value_grad(self.full(x), self.design.u, self.design.w, dloss)
        return value, grad[self.free]

    def uniform(self) -> np.ndarray:
        return np.full(self.y.size, 1.0 / self.y.size)

    def identifiability(self, theta: np.ndarray, tol: float = 1e-7) -> list[str]:
        """Free parameters caught in a (near) flat direction of the residuals.

        The Jacobian's columns are scaled to unit length, so the smallest
        singular value measures how well the data separate the parameters,
        whatever their units; the matching singular vector names who trades
        off against whom.
        """
        _, jac = self.law.predict_jac(theta, self.design.u, self.design.w)
        j = jac[:, self.free]
        norms = np.linalg.norm(j, axis=0)
        dead = [n for n, ok in zip(np.array(self.law.names)[self.free], norms > 1e-12) if not ok]
        if dead:
            return dead
        sv, vt = np.linalg.svd(j / norms, full_matrices=False)[1:]
        if sv[-1] >= tol * sv[0]:
            return []
        direction = np.abs(vt[-1])
        return [n for n, c in zip(np.array(self.law.names)[self.free], direction) if c > 0.3]


@dataclass
class FitResult:
    """The best of the starts, and how much the as-good optima disagree."""

    theta: np.ndarray
    value: float
    converged: bool
    message: str
    n_starts: int
    spread: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per internal parameter, over near-tied optima


def refit(problem: Problem, x0: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float, bool, str]:
    """One bounded L-BFGS run from ``x0`` (free parameters); returns the full theta."""
    res = minimize(
        problem.objective,
        np.clip(x0, problem.law.lower[problem.free], problem.law.upper[problem.free]),
        args=(weights,),
        jac=True,
        method="L-BFGS-B",
        bounds=problem.bounds,
        options=_LBFGS_OPTIONS,
    )
    # ABNORMAL line-search ends happen at the optimum when the loss is flat to
    # machine precision; they are not failures if the gradient is tiny.
    ok = bool(res.success) or float(np.max(np.abs(_projected(problem, res.x, res.jac)))) < 1e-6
    return problem.full(res.x), float(res.fun), ok, str(res.message)


def fit(problem: Problem, weights: np.ndarray | None = None, extra_starts: list[np.ndarray] | None = None) -> FitResult:
    """Multi-start fit: every start from ``law.starts`` (plus any given), best kept."""
    weights = problem.uniform() if weights is None else weights
    starts = problem.law.starts(problem.design.u, problem.design.w, problem.y) + list(extra_starts or [])
    results = []
    for start in starts:
        x0 = np.where(problem.free, start, problem.fixed)[problem.free]
        results.append(refit(problem, x0, weights))
    results.sort(key=lambda r: r[1])
    theta, value, ok, message = results[0]
    tied = np.array([r[0] for r in results if r[1] <= value * (1 + _NEAR_TIE) + 1e-15])
    spread = tied.max(axis=0) - tied.min(axis=0)
    return FitResult(theta, value, ok, message, len(starts), spread)


def bootstrap(problem: Problem, theta_hat: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Refit ``n_boot`` cell resamples, warm-started at ``theta_hat``.

    Returns the stacked thetas and how many refits did not converge (they are
    kept: dropping them would bias the intervals towards the easy resamples).
    """
    counts = rng.multinomial(problem.n_cells, np.full(problem.n_cells, 1.0 / problem.n_cells), size=n_boot)
    x0 = theta_hat[problem.free]
    out = np.empty((n_boot, theta_hat.size))
    failed = 0
    for b in range(n_boot):
        w = counts[b, problem.cells].astype(float)
        w /= w.sum()
        theta, _, ok, _ = refit(problem, x0, w)
        out[b] = theta
        failed += not ok
    return out, failed


def on_bounds(problem: Problem, theta: np.ndarray, rel: float = 1e-6) -> dict[str, str]:
    """Free parameters sitting on a bound: name -> "lower" or "upper"."""
    law = problem.law
    span = law.upper - law.lower
    out = {}
    for i, name in enumerate(law.names):
        if not problem.free[i]:
            continue
        if theta[i] - law.lower[i] <= rel * span[i]:
            out[name] = "lower"
        elif law.upper[i] - theta[i] <= rel * span[i]:
            out[name] = "upper"
    return out


def bound_fraction(problem: Problem, thetas: np.ndarray, rel: float = 1e-6) -> dict[str, float]:
    """For each free parameter, the fraction of bootstrap fits on either bound."""
    law = problem.law
    span = law.upper - law.lower
    hit = (thetas - law.lower <= rel * span) | (law.upper - thetas <= rel * span)
    return {name: float(hit[:, i].mean()) for i, name in enumerate(law.names) if problem.free[i]}


def _projected(problem: Problem, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """The gradient with components pointing out of the box zeroed (KKT check)."""
    lo, hi = problem.law.lower[problem.free], problem.law.upper[problem.free]
    g = np.array(grad, dtype=float)
    g[(x <= lo) & (g > 0)] = 0.0
    g[(x >= hi) & (g < 0)] = 0.0
    return g
