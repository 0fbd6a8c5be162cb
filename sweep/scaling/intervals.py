"""Bootstrap refits and the intervals read from them: parameters, predictions, new measurements.

::

    boot, failed = bootstrap(problem, theta, noise, "noise", 1000, rng)       # (1000, P) refits
    percentile(draws, 0.95)                                                    # (lo, hi) or None
    band = prediction_band(law, boot, theta, design, n, v, new_var, rng, 0.95)
    band["fit"], band["prediction"]     # intervals of the law's value, and of a new measurement

A bootstrap resample is either a draw of whole cells with replacement (each
cell's weight times how often it was drawn) or, with ``resample="noise"``, a
redraw of every cell's value the way it was measured (``noise.NoiseModel.draw``:
seeds within cells, questions within benchmarks). Every resample is refitted
in one batch, warm-started at the full fit.

A prediction interval adds to each bootstrap prediction one draw of the
noise a new measurement would carry (its binomial question noise and one
seed's spread, or the residual variance where the noise is not modelled), so
it covers a new observation, not only the law's mean.
"""

from __future__ import annotations

import numpy as np

from sweep.scaling.fit import Problem, refit_rows
from sweep.scaling.laws import Design, Law, predict
from sweep.scaling.noise import NoiseModel


def bootstrap(problem: Problem, theta: np.ndarray, noise: NoiseModel, resample: str, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``n_boot`` refits of resampled data; returns the thetas and how many refits did not converge."""
    c = problem.y.size
    if resample == "noise":
        targets = noise.draw(rng, n_boot)
        if problem.space == "log":
            # A redraw can reach 0 errors; keep it half a question (or half the smallest value) above.
            floor = np.where(np.isfinite(noise.n_questions), 0.5 / np.where(np.isfinite(noise.n_questions), noise.n_questions, 1.0), 0.5 * problem.y.min())
            targets = np.maximum(targets, floor)
        weights = np.broadcast_to(problem.weights, targets.shape)
    else:
        counts = rng.multinomial(c, np.full(c, 1.0 / c), size=n_boot)
        targets = np.broadcast_to(problem.y, (n_boot, c))
        weights = counts * problem.weights
    out = refit_rows(problem, targets, weights, theta)
    return out.theta, int((~out.converged).sum())


def percentile(draws: np.ndarray | None, level: float) -> tuple[float, float] | None:
    """The central ``level`` interval of the finite draws (None if there are none)."""
    if draws is None:
        return None
    d = np.asarray(draws, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return None
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(d, [tail, 100.0 - tail])
    return float(lo), float(hi)


def prediction_band(
    law: Law,
    boot: np.ndarray,
    theta: np.ndarray,
    design: Design,
    n_params: np.ndarray,
    v: np.ndarray,
    new_variance: np.ndarray,
    rng: np.random.Generator,
    level: float,
) -> dict[str, np.ndarray]:
    """Per cell: the point prediction, the interval of the law's value and of a new measurement."""
    center = predict(law, theta[None], design, n_params, v)[0]
    draws = predict(law, boot, design, n_params, v)
    noisy = draws + rng.standard_normal(draws.shape) * np.sqrt(np.maximum(new_variance, 0.0))
    tail = 50.0 * (1.0 - level)
    fit_lo, fit_hi = np.nanpercentile(draws, [tail, 100.0 - tail], axis=0)
    pred_lo, pred_hi = np.nanpercentile(noisy, [tail, 100.0 - tail], axis=0)
    return {"center": center, "fit_lo": fit_lo, "fit_hi": fit_hi, "pred_lo": pred_lo, "pred_hi": pred_hi}
