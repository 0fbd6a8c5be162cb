"""Many small bounded least-squares fits at once: projected Levenberg-Marquardt in numpy.

The fitter solves the same law on the same cells hundreds of times: every
start of a multi-start fit, every bootstrap resample, every cross-validation
fold. Each is a 4-6 parameter problem on a few dozen cells, so one scipy call
per problem is dominated by Python overhead (about 0.7 ms a refit). Here each
problem is a row of a batch, and every step of Levenberg-Marquardt is a few
numpy operations on (rows, cells, parameters) arrays::

    out = solve_batch(problem, targets, weights, theta0)   # (B, n), (B, n), (B, P)
    out.theta, out.value, out.converged

The objective of row b is ``sum_i W[b, i] * rho(f_i - Y[b, i])`` with ``rho``
the square or Huber's function (threshold ``delta``); Huber is handled by
iteratively reweighted least squares inside the damped Gauss-Newton step,
and every step is accepted only if the true objective falls. Bounds are kept
by projection: a parameter on its bound whose gradient points outwards is
held there for the step (the KKT condition), the others move and are clipped.
Rows that have converged leave the batch, so the cost follows the slowest rows
only while they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sweep.scaling.laws import evaluate

if TYPE_CHECKING:
    from sweep.scaling.fit import Problem

_LAMBDA0 = 1e-3
_LAMBDA_MAX = 1e12
_FTOL = 1e-13  # relative fall of the objective below which a Gauss-Newton-like step has converged
_XTOL = 1e-9  # a step this small (parameters are O(1)) moves nothing that matters
_WINDOW, _WINDOW_FTOL = 10, 1e-7  # progress check: relative fall of the objective over 10 steps


@dataclass
class BatchResult:
    """One row per problem: its parameters, objective value and whether it converged."""

    theta: np.ndarray  # (B, P)
    value: np.ndarray  # (B,)
    converged: np.ndarray  # (B,) bool
    iterations: int  # steps taken by the slowest row


def rho(r: np.ndarray, loss: str, delta: float) -> np.ndarray:
    """The loss of each residual: ``r^2``, or Huber's ``r^2`` inside ``delta`` and ``2 delta |r| - delta^2`` outside."""
    if loss == "l2":
        return r * r
    a = np.abs(r)
    return np.where(a <= delta, r * r, 2.0 * delta * a - delta * delta)


def irls_weight(r: np.ndarray, loss: str, delta: float) -> np.ndarray:
    """``rho'(r) / (2 r)``: 1 for squares, ``min(1, delta / |r|)`` for Huber."""
    if loss == "l2":
        return np.ones_like(r)
    a = np.abs(r)
    return np.where(a <= delta, 1.0, delta / np.maximum(a, 1e-300))


def solve_batch(problem: Problem, targets: np.ndarray, weights: np.ndarray, theta0: np.ndarray, max_iter: int = 200) -> BatchResult:
    """Fit every row: ``targets`` (B, n) in the problem's space, ``weights`` (B, n), starts ``theta0`` (B, P)."""
    law, u, w = problem.law, problem.design.u, problem.design.w
    lo, hi, free = problem.lower, problem.upper, problem.free
    loss, delta, space = problem.loss, problem.delta, problem.space
    n_rows, n_par = theta0.shape
    theta = np.clip(np.where(free, theta0, problem.fixed), lo, hi)
    value = np.full(n_rows, np.inf)
    converged = np.zeros(n_rows, dtype=bool)
    targets = np.broadcast_to(targets, (n_rows, targets.shape[-1]))
    weights = np.broadcast_to(weights, (n_rows, weights.shape[-1]))

    def state(rows: np.ndarray, th: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f, j = evaluate(law, th, u, w, space)
        r = f - targets[rows]
        val = np.einsum("bn,bn->b", weights[rows], rho(r, loss, delta))
        val[~np.isfinite(val)] = np.inf
        return r, j, val

    active = np.arange(n_rows)
    r, jac, value_a = state(active, theta)
    lam = np.full(n_rows, _LAMBDA0)
    checkpoint = value_a.copy()
    it = 0
    for it in range(1, max_iter + 1):
        th = theta[active]
        omega = weights[active] * irls_weight(r, loss, delta)
        jt = np.swapaxes(jac, 1, 2)  # batched matmul beats einsum here by several times
        grad = (jt @ (omega * r)[..., None])[..., 0]
        hess = (jt * omega[:, None, :]) @ jac
        held = ~free | ((th <= lo) & (grad > 0)) | ((th >= hi) & (grad < 0))
        grad = np.where(held, 0.0, grad)
        keep = ~held[:, :, None] & ~held[:, None, :]
        diag = np.einsum("bpp->bp", hess)
        scale = np.where(held, 1.0, diag + 1e-12 * (diag.max(-1, keepdims=True) + 1e-300))
        hess = np.where(keep, hess, 0.0)
        idx = np.arange(n_par)
        hess[:, idx, idx] = np.where(held, 1.0, diag + lam[active][:, None] * scale)
        step = -np.linalg.solve(hess, grad[..., None])[..., 0]
        trial = np.clip(th + step, lo, hi)
        r_t, jac_t, value_t = state(active, trial)
        accept = value_t <= value_a
        fell = value_a - value_t
        flat = np.abs(fell) <= _FTOL * value_a + 1e-300
        # Converged: a near-Gauss-Newton step that no longer lowers the objective, or a step
        # so small that the objective changes at rounding level only (the row sits on its optimum).
        done = (accept & flat & (lam[active] < 1.0)) | (flat & (np.max(np.abs(trial - th), axis=1) < _XTOL))
        stuck = ~accept & (lam[active] * 4.0 > _LAMBDA_MAX)
        if it % _WINDOW == 0:
            # A row whose objective fell by less than this over the last steps has converged
            # in what matters, even if a parameter still drifts along a flat valley (the
            # warnings say when one is not identifiable).
            stuck |= checkpoint[active] - value_a <= _WINDOW_FTOL * checkpoint[active]
            checkpoint[active] = value_a
        theta[active[accept]] = trial[accept]
        value_a = np.where(accept, value_t, value_a)
        r = np.where(accept[:, None], r_t, r)
        jac = np.where(accept[:, None, None], jac_t, jac)
        lam[active] = np.where(accept, np.maximum(lam[active] / 3.0, 1e-9), lam[active] * 4.0)
        finished = done | stuck
        converged[active[finished]] = True
        value[active] = value_a
        if finished.all():
            active, value_a = active[:0], value_a[:0]
            break
        keep_rows = ~finished
        active, r, jac, value_a = active[keep_rows], r[keep_rows], jac[keep_rows], value_a[keep_rows]
    value[active] = value_a
    return BatchResult(theta, value, converged, it)
