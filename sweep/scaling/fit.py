"""Fitting one law to one family's cells: the problem, multi-start, bootstrap refits, checks.

This is the numerical core, free of I/O and of the study's bookkeeping::

    problem = Problem.build(MULTIPLICATIVE, design, y, weights=w, space="log", loss="huber", huber_delta=1e-3)
    best = fit(problem, starts=(0.02, 0.1, 0.3, 1.0))      # lattice of starts, batched, then polished
    thetas = refit_rows(problem, targets, weights, best.theta)   # bootstrap / CV rows, warm-started
    problem.jacobian(best.theta)                            # d prediction / d theta, (cells, P)
    problem.identifiability(best.theta)                     # rank-deficient directions

The objective is ``sum_i W_i * rho(r_i)`` with ``W`` the cells' weights
(summing to 1), ``r`` the residuals in the problem's space (``y - f`` or
``log y - log f``) and ``rho`` the square or Huber's function. Every batch of
refits goes through ``solver.solve_batch``; the best start of a full fit is
polished by scipy's L-BFGS-B on the same objective, so a single fit is as
exact as a dedicated optimiser makes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import minimize

from sweep.scaling.laws import Design, Law, evaluate
from sweep.scaling.solver import BatchResult, irls_weight, rho, solve_batch

# Two optima whose objectives differ by less than this (relative) are "as good".
_NEAR_TIE = 1e-6
_POLISH = {"maxiter": 3000, "ftol": 1e-15, "gtol": 1e-12}
# Distinct local optima of a full fit kept as warm starts for its cross-validation folds.
_OPTIMA_KEPT = 3


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with one BLAS thread.

    Every call here works on tiny matrices; on a shared machine a
    multi-threaded OpenBLAS spends far longer waking its threads than
    computing. Without threadpoolctl the block runs as it is.
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
    """One law on one family's cells, in one space, with one loss; some parameters may be held fixed."""

    law: Law
    design: Design
    y: np.ndarray  # cell values in the metric's units
    weights: np.ndarray  # per cell, summing to 1
    space: str
    loss: str
    delta: float  # Huber threshold in residual units; inf for l2
    lower: np.ndarray
    upper: np.ndarray
    free: np.ndarray  # bool over law.names
    fixed: np.ndarray  # full-length vector supplying the held values

    @classmethod
    def build(
        cls,
        law: Law,
        design: Design,
        y: np.ndarray,
        *,
        lower: np.ndarray,
        upper: np.ndarray,
        weights: np.ndarray | None = None,
        space: str = "linear",
        loss: str = "l2",
        huber_delta: float | None = None,
        fixed: dict[str, float] | None = None,
    ) -> Problem:
        """``huber_delta`` is in residual units of ``space``; ``fixed`` maps internal names to values."""
        y = np.asarray(y, dtype=float)
        w = np.full(y.size, 1.0 / y.size) if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
        free = np.ones(len(law.names), dtype=bool)
        base = np.zeros(len(law.names))
        for name, value in (fixed or {}).items():
            i = law.names.index(name)
            free[i], base[i] = False, value
        delta = np.inf if loss == "l2" else float(huber_delta if huber_delta is not None else np.inf)
        return cls(law, design, y, w, space, loss, delta, np.asarray(lower, float), np.asarray(upper, float), free, base)

    @property
    def target(self) -> np.ndarray:
        return to_space(self.y, self.space)

    def with_loss(self, loss: str, delta: float) -> Problem:
        return replace(self, loss=loss, delta=delta if loss == "huber" else np.inf)

    def subset(self, keep: np.ndarray) -> Problem:
        """The same problem on some cells only (same frame, weights renormalised)."""
        w = self.weights[keep]
        return replace(self, design=self.design.subset(keep), y=self.y[keep], weights=w / w.sum())

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        return evaluate(self.law, theta, self.design.u, self.design.w, self.space, jac=False)[0][0] - self.target

    def value(self, theta: np.ndarray) -> float:
        return float(self.weights @ rho(self.residuals(theta), self.loss, self.delta))

    def predict(self, theta: np.ndarray) -> np.ndarray:
        """Fitted values at the problem's cells, in the metric's units."""
        return evaluate(self.law, theta, self.design.u, self.design.w, "linear", jac=False)[0][0]

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        """d prediction / d theta at the cells, in the metric's units (cells, P): for design and delta-method use."""
        return evaluate(self.law, theta, self.design.u, self.design.w, "linear")[1][0]

    def objective(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Objective and gradient over the free parameters (for scipy)."""
        theta = self.full(x)
        f, j = evaluate(self.law, theta, self.design.u, self.design.w, self.space)
        r = f[0] - self.target
        value = float(self.weights @ rho(r, self.loss, self.delta))
        grad = 2.0 * (self.weights * irls_weight(r, self.loss, self.delta) * r) @ j[0]
        return value, grad[self.free]

    def full(self, x: np.ndarray) -> np.ndarray:
        theta = self.fixed.copy()
        theta[self.free] = x
        return theta

    def identifiability(self, theta: np.ndarray, tol: float = 1e-7) -> list[str]:
        """Free parameters caught in a (near) flat direction of the fit.

        The Jacobian's columns are scaled to unit length, so the smallest
        singular value measures how well the data separate the parameters,
        whatever their units; the matching singular vector names who trades
        off against whom.
        """
        j = self.jacobian(theta)[:, self.free]
        names = np.array(self.law.names)[self.free]
        norms = np.linalg.norm(j, axis=0)
        dead = [n for n, ok in zip(names, norms > 1e-12) if not ok]
        if dead:
            return dead
        sv, vt = np.linalg.svd(j / norms, full_matrices=False)[1:]
        if sv[-1] >= tol * sv[0]:
            return []
        return [n for n, c in zip(names, np.abs(vt[-1])) if c > 0.3]


def to_space(y: np.ndarray, space: str) -> np.ndarray:
    """Values in the fit's space: themselves, or their logs (values must be positive)."""
    if space == "linear":
        return np.asarray(y, dtype=float)
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(y, dtype=float))


@dataclass
class FitResult:
    """The best of the starts, and how much the as-good optima disagree."""

    theta: np.ndarray
    value: float
    converged: bool
    message: str
    n_starts: int
    spread: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per internal parameter, over near-tied optima
    optima: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # distinct local optima, best first (warm starts)


def fit(problem: Problem, starts: tuple[float, ...], extra: np.ndarray | None = None) -> FitResult:
    """Multi-start fit: the law's lattice of starts (plus ``extra`` rows) in one batch, the best polished."""
    rows = problem.law.starts(starts, problem.design, problem.y, problem.lower, problem.upper)
    if extra is not None:
        rows = np.vstack([rows, np.atleast_2d(extra)])
    out = solve_batch(problem, problem.target[None], problem.weights[None], rows)
    order = np.argsort(out.value)
    best = order[0]
    theta, ok, message = _polish(problem, out.theta[best])
    value = problem.value(theta)
    tied = out.theta[out.value <= out.value[best] * (1 + _NEAR_TIE) + 1e-300]
    spread = tied.max(axis=0) - tied.min(axis=0)
    optima = [theta]
    for i in order[1:]:
        if len(optima) >= _OPTIMA_KEPT:
            break
        if all(np.max(np.abs(out.theta[i] - o)) > 1e-3 for o in optima):
            optima.append(out.theta[i])
    return FitResult(theta, value, bool(ok or out.converged[best]), message, len(rows), spread, np.array(optima))


def refit_rows(problem: Problem, targets: np.ndarray, weights: np.ndarray, theta0: np.ndarray, max_iter: int = 300) -> BatchResult:
    """Refit many variants of the problem (bootstrap resamples, CV folds) from ``theta0``.

    ``targets`` (B, n) are in the metric's units, ``weights`` (B, n) need not
    be normalised. A row that did not converge is kept (``converged`` says
    which): dropping it would bias intervals towards the easy resamples.
    """
    w = weights / weights.sum(axis=1, keepdims=True)
    theta0 = np.broadcast_to(theta0, (targets.shape[0], len(problem.law.names)))
    return solve_batch(problem, to_space(targets, problem.space), w, np.array(theta0), max_iter=max_iter)


def _polish(problem: Problem, theta: np.ndarray) -> tuple[np.ndarray, bool, str]:
    """L-BFGS-B from the batch's best row, on the objective scaled to O(1) (its ftol is absolute below 1)."""
    x0 = theta[problem.free]
    scale = max(problem.value(theta), 1e-300)

    def scaled(x: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = problem.objective(x)
        return v / scale, g / scale

    bounds = list(zip(problem.lower[problem.free], problem.upper[problem.free]))
    res = minimize(scaled, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=_POLISH)
    if not np.isfinite(res.fun) or res.fun > 1.0:
        return theta, False, str(res.message)
    # ABNORMAL line-search ends happen at the optimum when the loss is flat to
    # machine precision; they are not failures if the projected gradient is tiny.
    ok = bool(res.success) or float(np.max(np.abs(_projected(problem, res.x, res.jac)), initial=0.0)) < 1e-6
    return problem.full(res.x), ok, str(res.message)


def on_bounds(problem: Problem, theta: np.ndarray, rel: float = 1e-6) -> dict[str, str]:
    """Free parameters sitting on a bound: name -> "lower" or "upper"."""
    span = problem.upper - problem.lower
    out = {}
    for i, name in enumerate(problem.law.names):
        if not problem.free[i]:
            continue
        if theta[i] - problem.lower[i] <= rel * span[i]:
            out[name] = "lower"
        elif problem.upper[i] - theta[i] <= rel * span[i]:
            out[name] = "upper"
    return out


def bound_fraction(problem: Problem, thetas: np.ndarray, rel: float = 1e-6) -> dict[str, float]:
    """For each free parameter, the fraction of refits on either bound."""
    span = problem.upper - problem.lower
    hit = (thetas - problem.lower <= rel * span) | (problem.upper - thetas <= rel * span)
    return {name: float(hit[:, i].mean()) for i, name in enumerate(problem.law.names) if problem.free[i]}


def _projected(problem: Problem, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """The gradient with components pointing out of the box zeroed (KKT check)."""
    lo, hi = problem.lower[problem.free], problem.upper[problem.free]
    g = np.array(grad, dtype=float)
    g[(x <= lo) & (g > 0)] = 0.0
    g[(x >= hi) & (g < 0)] = 0.0
    return g
