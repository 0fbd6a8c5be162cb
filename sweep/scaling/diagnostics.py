"""Plain-language warnings about a fit: bounds, identifiability, convergence.

A number printed with a confidence interval looks trustworthy; these checks
say when it is not, in words a reader can act on::

    warnings = form_warnings(problem, best, boot_thetas, failed, label)

and ``goodness`` gives R^2, RMSE, the information criteria and, where the
cells' noise is known, the reduced chi-square (how many times their sampling
noise the law misses them by).
"""

from __future__ import annotations

import numpy as np

from sweep.scaling.fit import FitResult, Problem, bound_fraction, on_bounds

PUBLIC = {"log_a": "A", "log_b": "B", "alpha": "alpha", "beta": "beta", "D": "D", "gamma": "gamma", "w_t": "V_t"}

# What a parameter stuck on a bound means for the study, per (name, side).
_BOUND_MEANING = {
    ("alpha", "lower"): "error does not fall with LLM size in these data",
    ("beta", "lower"): "error does not fall with the visual-token count in these data",
    ("alpha", "upper"): "the N-dependence is steeper than any plausible law; check the data",
    ("beta", "upper"): "the V-dependence is steeper than any plausible law; check the data",
    ("D", "lower"): "the data do not resolve an irreducible error above 0",
    ("D", "upper"): "the fit puts the irreducible error at 1; check the data",
    ("log_a", "lower"): "the N-dependent term vanishes",
    ("log_b", "lower"): "the V-dependent term vanishes",
    ("log_a", "upper"): "the power term is implausibly large",
    ("log_b", "upper"): "the power term is implausibly large",
    ("gamma", "lower"): "the step in V is too gradual to place",
    ("gamma", "upper"): "the step in V is a jump between two measured token counts",
}

# Spread among equally good optima above which a parameter is called poorly
# determined: exponents and D are compared directly, scales on the log scale.
_SPREAD_LIMIT = {"alpha": 0.01, "beta": 0.01, "D": 0.005, "log_a": 0.05, "log_b": 0.05, "gamma": 0.05, "w_t": 0.05}


def form_warnings(problem: Problem, best: FitResult, boot: np.ndarray | None, failed: int, label: str) -> list[str]:
    """Everything a reader should know before trusting ``best``; ``label`` names the form."""
    out = []
    if not best.converged:
        out.append(f"{label}: the optimiser stopped without converging ({best.message}); the estimates may be off.")
    # Where the threshold sits is the verdict's subject (below the data: a power law), not a defect.
    for name, side in on_bounds(problem, best.theta).items():
        if name == "w_t":
            continue
        value = best.theta[problem.law.names.index(name)]
        shown = f"{np.exp(value):.3g}" if name.startswith("log_") else f"{value:.3g}"
        out.append(f"{label}: {PUBLIC[name]} sits on its {side} bound ({shown}): {_BOUND_MEANING[(name, side)]}.")
    flat = problem.identifiability(best.theta)
    if flat:
        names = ", ".join(PUBLIC[n] for n in flat)
        out.append(
            f"{label}: {names} are not identifiable from these data (they trade off along a flat direction "
            "of the fit); their values and intervals are not meaningful."
        )
    for i, name in enumerate(problem.law.names):
        if problem.free[i] and best.spread.size and best.spread[i] > _SPREAD_LIMIT[name]:
            out.append(f"{label}: starts that reach the same loss disagree on {PUBLIC[name]} by {best.spread[i]:.3g}; it is poorly determined.")
    if boot is not None:
        for name, frac in bound_fraction(problem, boot).items():
            if name == "w_t":
                continue
            # More than the 2.5% tail on a bound: the 95% interval ends at the
            # bound, so its end there is the box, not the data.
            if frac > 0.025:
                out.append(f"{label}: {PUBLIC[name]} sits on a bound in {100 * frac:.0f}% of bootstrap fits, so its interval is cut off at that bound.")
        if failed > 0.05 * len(boot):
            out.append(f"{label}: {failed} of {len(boot)} bootstrap refits did not converge; intervals are approximate.")
    return out


def d_near_floor(d: float, y: np.ndarray, rmse: float) -> str | None:
    """A warning when D is within noise of the smallest error: the floor is barely seen."""
    gap = float(np.min(y)) - d
    if gap < 2.0 * rmse:
        return (
            f"D = {d:.3g} is within two RMSEs ({rmse:.2g}) of the smallest observed error ({np.min(y):.3g}): "
            "the data barely show the error levelling off, so D is weakly determined."
        )
    return None


def goodness(y: np.ndarray, pred: np.ndarray, k: int, objective: float, variance: np.ndarray | None = None) -> dict[str, float | None]:
    """R^2 and RMSE (metric units), AIC / AICc / BIC for ``k`` free parameters, reduced chi-square.

    The criteria use the Gaussian likelihood ``n log(mean loss)`` with the
    fit's own objective (``objective``: weighted mean of the squared or Huber
    residuals in the fit's space), so that one outlier a Huber fit chose to
    discount does not decide which form "fits better". ``variance`` (each
    cell mean's sampling variance) gives ``chi2_red``: about 1 when the law
    misses the cells by their noise only, well above 1 when it misfits.
    """
    n = y.size
    r = y - pred
    rss = float(np.sum(r**2))
    tss = float(np.sum((y - y.mean()) ** 2))
    # A perfect fit would send the log to -inf; floor it at machine precision.
    ll_term = n * np.log(max(objective, 1e-300))
    aic = float(ll_term + 2 * k)
    return {
        "r2": 1.0 - rss / tss if tss > 0 else None,
        "rmse": float(np.sqrt(rss / n)),
        "rss": rss,
        "aic": aic,
        "aicc": aic + 2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else None,
        "bic": float(ll_term + k * np.log(n)),
        "n": n,
        "k": k,
        "chi2_red": float(np.sum(r**2 / variance) / (n - k)) if variance is not None and n > k and np.all(variance > 0) else None,
    }
