"""Fit a whole study: per family, both forms, bootstrap intervals, held-out check, frontier.

::

    study = fit_study(observations, n_boot=1000, seed=0, loss="l2", q_values=(0, 50))
    study.to_json()      # {family: {"alpha", "beta", "A", "D", "*_ci", "v_star", ...}}
    study.families["vqa"].paper.params["alpha"]

Held-out semantics: observations flagged ``heldout=True`` are left out of
every fit and predicted by it. If none are flagged and ``heldout="largest"``,
the law is fitted a second time without the largest N and that fit predicts
the largest-N cells; the reported parameters are still those of the fit to all
the data. ``heldout="none"`` skips the check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sweep.errors import SweepError
from sweep.scaling.diagnostics import d_near_floor, form_warnings, goodness
from sweep.scaling.fit import Problem, bootstrap, fit, single_threaded_blas
from sweep.scaling.frontier import VStar, budgets, frontier_rows, optimum_numeric, v_star
from sweep.scaling.laws import ADDITIVE, MULTIPLICATIVE, Design, Law
from sweep.scaling.table import Observation, group_by_family, validate
from sweep.scaling.tojson import family_json

LOSSES = ("l2", "huber")
HELDOUT_MODES = ("largest", "none")
CI_LEVEL = 0.95


@dataclass
class FormFit:
    """One law fitted to one family."""

    form: str
    params: dict[str, float | None]  # public parameters; None where not identifiable
    ci: dict[str, tuple[float, float] | None]
    quality: dict[str, float | None]  # r2, rmse, rss, aic, aicc, bic, n, k
    warnings: list[str]
    samples: dict[str, np.ndarray] = field(default_factory=dict)  # bootstrap draws of the public parameters


@dataclass
class HeldoutCheck:
    """Predictions for cells the fit did not see."""

    mode: str  # "flagged" or "largest"
    n_values: list[float]
    cells: list[dict]
    mae: float
    max_abs_error: float
    mean_rel_error: float
    reduced_fit: dict[str, float | None] | None  # the paper-form fit without them ("largest" mode)
    additive_mae: float | None


@dataclass
class FamilyFit:
    """Everything fitted for one benchmark family."""

    family: str
    n_points: int
    n_values: list[float]
    v_values: list[float]
    v_max: float
    loss: str
    huber_delta: float | None
    n_boot: int
    paper: FormFit
    additive: FormFit | None
    better_form: str
    better_reason: str
    heldout: HeldoutCheck | None
    v_star: dict[float, VStar]
    v_star_numeric: dict[float, float]
    v_star_ci: dict[float, tuple[float, float] | None]
    frontier: dict[float, list[dict]]
    warnings: list[str]

    def to_json(self) -> dict:
        return family_json(self)


@dataclass
class StudyFit:
    """The fitted study: one :class:`FamilyFit` per benchmark family."""

    families: dict[str, FamilyFit]

    def to_json(self) -> dict:
        """A JSON-able dict, family -> results (see ``tojson.family_json`` for the keys)."""
        return {name: fam.to_json() for name, fam in self.families.items()}


def fit_study(
    observations: Sequence[Observation],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    loss: str = "l2",
    q_values: Sequence[float] = (0, 50),
    heldout: str = "largest",
    huber_delta: float | None = None,
    forms: Sequence[str] = ("multiplicative", "additive"),
) -> StudyFit:
    """Fit every family in ``observations``; see the module docstring for held-out rules.

    ``huber_delta`` (error units) defaults to 1.345 robust standard deviations
    of the least-squares residuals; ``forms`` may drop the additive form.
    Observed ``Q`` values are added to ``q_values`` for their family.
    """
    if loss not in LOSSES:
        raise SweepError("loss", f"{loss!r} is not a loss", f"use one of {', '.join(LOSSES)}.")
    if heldout not in HELDOUT_MODES:
        raise SweepError("heldout", f"{heldout!r} is not a held-out mode", f"use one of {', '.join(HELDOUT_MODES)}.")
    if n_boot < 0:
        raise SweepError("n_boot", f"{n_boot} is negative", "use 0 (no intervals) or more resamples, e.g. 1000.")
    validate(observations)
    out = {}
    with single_threaded_blas():
        for i, (family, members) in enumerate(group_by_family(observations).items()):
            rng_seed = [seed, i]
            out[family] = _fit_family(family, members, n_boot, rng_seed, loss, q_values, heldout, huber_delta, forms)
    return StudyFit(out)


def _fit_family(
    family: str,
    members: list[Observation],
    n_boot: int,
    rng_seed: list[int],
    loss: str,
    q_values: Sequence[float],
    heldout: str,
    huber_delta: float | None,
    forms: Sequence[str],
) -> FamilyFit:
    train = [o for o in members if not o.heldout]
    flagged = [o for o in members if o.heldout]
    n, v, y = (np.array([getattr(o, a) for o in train], dtype=float) for a in ("N", "V", "error"))
    design = Design.from_cells(n, v)
    cells = np.unique(np.column_stack([n, v]), axis=0, return_inverse=True)[1].ravel()
    warnings: list[str] = []

    fixed_paper, fixed_reason = _structural(n, v)
    warnings += fixed_reason
    if loss == "huber" and huber_delta is None:
        huber_delta = _robust_delta(Problem.build(MULTIPLICATIVE, design, y, cells, fixed=fixed_paper))

    def build(law: Law, subset: np.ndarray | None = None) -> Problem:
        fixed = fixed_paper if law is MULTIPLICATIVE else None
        if subset is None:
            return Problem.build(law, design, y, cells, loss=loss, huber_delta=huber_delta, fixed=fixed)
        sub = Design(design.u[subset], design.w[subset], design.log_n0_billions, design.log_v0)
        return Problem.build(law, sub, y[subset], cells[subset], loss=loss, huber_delta=huber_delta, fixed=fixed)

    paper = _fit_form(build(MULTIPLICATIVE), n_boot, np.random.default_rng([*rng_seed, 0]), "paper form", fixed_paper)
    warnings += paper.warnings
    floor = d_near_floor(paper.params["D"], y, paper.quality["rmse"])
    if floor:
        warnings.append(floor)

    additive = None
    if "additive" in forms:
        if fixed_paper:
            warnings.append("additive form skipped: it needs at least two distinct N and two distinct V.")
        elif len(y) < len(ADDITIVE.names):
            warnings.append(f"additive form skipped: {len(y)} points, fewer than its {len(ADDITIVE.names)} parameters.")
        else:
            additive = _fit_form(build(ADDITIVE), n_boot, np.random.default_rng([*rng_seed, 1]), "additive form", {})
            warnings += additive.warnings
    better, reason = _compare(paper, additive)

    check = _heldout(flagged, heldout, n, v, y, design, build, paper, additive, fixed_paper, warnings)

    v_max = float(max(o.V for o in members))
    vs, numeric, vs_ci, frontier = _frontiers(paper, members, q_values, v_max)
    return FamilyFit(
        family=family,
        n_points=len(y),
        n_values=sorted({float(x) for x in n}),
        v_values=sorted({float(x) for x in v}),
        v_max=v_max,
        loss=loss,
        huber_delta=huber_delta,
        n_boot=n_boot,
        paper=paper,
        additive=additive,
        better_form=better,
        better_reason=reason,
        heldout=check,
        v_star=vs,
        v_star_numeric=numeric,
        v_star_ci=vs_ci,
        frontier=frontier,
        warnings=warnings,
    )


def _frontiers(paper: FormFit, members: list[Observation], q_values: Sequence[float], v_max: float) -> tuple[dict, dict, dict, dict]:
    """V* (closed form, numeric check, bootstrap interval) and the frontier rows, per Q."""
    qs = sorted({float(q) for q in q_values} | {float(o.Q) for o in members if o.Q is not None})
    known = {k: val for k, val in paper.params.items() if val is not None}
    vs = {q: v_star(paper.params["alpha"], paper.params["beta"], q, v_max) for q in qs}
    cells = _cell_means(members)
    frontier: dict[float, list[dict]] = {}
    numeric: dict[float, float | None] = {}
    vs_ci: dict[float, tuple[float, float] | None] = {}
    for q in qs:
        if len(known) < 4:
            frontier[q], numeric[q], vs_ci[q] = [], None, None
            continue
        c_list = budgets([c[0] for c in cells], [c[1] for c in cells], q)
        frontier[q] = frontier_rows(known, q, c_list, cells, v_max)
        numeric[q] = optimum_numeric(known, float(np.sqrt(c_list[0] * c_list[-1])), q, v_max)[1]
        vs_ci[q] = _v_star_ci(paper, q, v_max)
    return vs, numeric, vs_ci, frontier


def _structural(n: np.ndarray, v: np.ndarray) -> tuple[dict[str, float], list[str]]:
    """Exponents that the design cannot identify at all: fixed at 0, said so."""
    fixed, why = {}, []
    if np.unique(n).size < 2:
        fixed["alpha"] = 0.0
        why.append(f"alpha is not identifiable: every fitted point has N = {n[0]:.3g}; it is fixed at 0 and reported as null. Fit several LLM sizes.")
    if np.unique(v).size < 2:
        fixed["beta"] = 0.0
        why.append(f"beta is not identifiable: every fitted point has V = {v[0]:g}; it is fixed at 0 and reported as null. Fit several token counts.")
    return fixed, why


def _robust_delta(problem: Problem) -> float:
    """Huber's threshold: 1.345 robust SDs (MAD) of the least-squares residuals."""
    best = fit(problem)
    r = problem.law.predict(best.theta, problem.design.u, problem.design.w) - problem.y
    sigma = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    return max(1.345 * sigma, 1e-6)


def _fit_form(problem: Problem, n_boot: int, rng: np.random.Generator, label: str, fixed: dict[str, float]) -> FormFit:
    law = problem.law
    best = fit(problem)
    boot, failed = bootstrap(problem, best.theta, n_boot, rng) if n_boot > 0 else (None, 0)
    params = {k: float(val) for k, val in law.to_public(best.theta, problem.design).items()}
    samples = law.to_public(boot, problem.design) if boot is not None else {}
    ci: dict[str, tuple[float, float] | None] = {}
    lo_q, hi_q = 50 * (1 - CI_LEVEL), 50 * (1 + CI_LEVEL)
    for name in params:
        ci[name] = tuple(float(x) for x in np.percentile(samples[name], [lo_q, hi_q])) if samples else None
    for name in fixed:
        params[name], ci[name] = None, None
        samples.pop(name, None)
    pred = law.predict(best.theta, problem.design.u, problem.design.w)
    delta = problem.delta * problem.scale if problem.loss == "huber" else None
    quality = goodness(problem.y, pred, int(problem.free.sum()), delta)
    quality["converged"] = best.converged
    quality["huber"] = delta is not None
    return FormFit(law.name, params, ci, quality, form_warnings(problem, best, boot, failed, label), samples)


def _compare(paper: FormFit, additive: FormFit | None) -> tuple[str, str]:
    if additive is None:
        return "multiplicative", "only the paper form was fitted"
    key = "aicc" if paper.quality["aicc"] is not None and additive.quality["aicc"] is not None else "aic"
    a, b = paper.quality[key], additive.quality[key]
    better = "multiplicative" if a <= b else "additive"
    robust = " (Huber loss in place of squares)" if paper.quality.get("huber") else ""
    return better, f"{key.upper()}{robust} {a:.2f} (multiplicative) vs {b:.2f} (additive); lower is better, a difference under 2 is weak evidence"


def _heldout(
    flagged: list[Observation],
    mode: str,
    n: np.ndarray,
    v: np.ndarray,
    y: np.ndarray,
    design: Design,
    build: Callable[..., Problem],
    paper: FormFit,
    additive: FormFit | None,
    fixed_paper: dict[str, float],
    warnings: list[str],
) -> HeldoutCheck | None:
    """Predict the flagged cells, or refit without the largest N and predict it."""
    if flagged:
        hn = np.array([o.N for o in flagged])
        hv = np.array([o.V for o in flagged])
        hy = np.array([o.error for o in flagged])
        u, w = design.coords(hn, hv)
        pred = _predict_public(MULTIPLICATIVE, paper.params, design, u, w)
        add_pred = _predict_public(ADDITIVE, additive.params, design, u, w) if additive else None
        return _check("flagged", hn, hv, hy, pred, add_pred, None, [o.llm for o in flagged])
    if mode == "none":
        return None
    largest = n.max()
    keep = n < largest
    if np.unique(n[keep]).size < 2 or keep.sum() < len(MULTIPLICATIVE.names):
        warnings.append("held-out check skipped: without the largest N fewer than two LLM sizes or four points remain.")
        return None
    reduced = fit(build(MULTIPLICATIVE, keep))
    u, w = design.u[~keep], design.w[~keep]
    pred = MULTIPLICATIVE.predict(reduced.theta, u, w)
    add_pred = None
    if additive is not None and keep.sum() >= len(ADDITIVE.names):
        add_pred = ADDITIVE.predict(fit(build(ADDITIVE, keep)).theta, u, w)
    params = {k: float(x) for k, x in MULTIPLICATIVE.to_public(reduced.theta, design).items()}
    for name in fixed_paper:
        params[name] = None
    return _check("largest", n[~keep], v[~keep], y[~keep], pred, add_pred, params, [None] * int((~keep).sum()))


def _check(
    mode: str,
    hn: np.ndarray,
    hv: np.ndarray,
    hy: np.ndarray,
    pred: np.ndarray,
    add_pred: np.ndarray | None,
    reduced: dict[str, float | None] | None,
    llms: list[str | None],
) -> HeldoutCheck:
    err = pred - hy
    cells = [
        {
            "N": float(a),
            "V": float(b),
            "llm": name,
            "observed": float(o),
            "predicted": float(p),
            "abs_error": float(abs(p - o)),
            "rel_error": float(abs(p - o) / o) if o > 0 else None,
        }
        for a, b, o, p, name in zip(hn, hv, hy, pred, llms)
    ]
    rel = np.abs(err) / np.where(hy > 0, hy, np.nan)
    return HeldoutCheck(
        mode=mode,
        n_values=sorted({float(x) for x in hn}),
        cells=cells,
        mae=float(np.mean(np.abs(err))),
        max_abs_error=float(np.max(np.abs(err))),
        mean_rel_error=float(np.nanmean(rel)) if np.isfinite(rel).any() else float("nan"),
        reduced_fit=reduced,
        additive_mae=float(np.mean(np.abs(add_pred - hy))) if add_pred is not None else None,
    )


def _predict_public(law: Law, params: dict[str, float | None], design: Design, u: np.ndarray, w: np.ndarray) -> np.ndarray:
    # Unidentified exponents were fixed at 0 in the fit; predict with the same.
    p = {k: (0.0 if val is None else val) for k, val in params.items()}
    return law.predict(law.from_public(p, design), u, w)


def _cell_means(members: list[Observation]) -> list[tuple[float, float, float]]:
    """(N, V, mean observed error) per cell, held-out cells included."""
    acc: dict[tuple[float, float], list[float]] = {}
    for o in members:
        acc.setdefault((o.N, o.V), []).append(o.error)
    return [(k[0], k[1], float(np.mean(e))) for k, e in sorted(acc.items())]


def _v_star_ci(paper: FormFit, q: float, v_max: float) -> tuple[float, float] | None:
    a, b = paper.samples.get("alpha"), paper.samples.get("beta")
    if a is None or b is None or len(a) == 0:
        return None
    draws = np.array([v_star(float(x), float(z), q, v_max).value for x, z in zip(a, b)])
    lo_q, hi_q = 50 * (1 - CI_LEVEL), 50 * (1 + CI_LEVEL)
    return float(np.percentile(draws, lo_q)), float(np.percentile(draws, hi_q))
