"""One family's fit: every form, noise-aware intervals, cross-validation, model choice, held-out check.

``fit_family`` is what ``study.fit_study`` runs per family::

    fam = fit_family("ocr", observations, FitSettings(), resolve(settings, observations, "ocr"), seed_sequence)

Steps, each using the one before:

1. cells (seed means) and their noise model (``noise``); cell weights
   ``1 / variance`` when ``weights=noise``, the variance taken at a pilot
   fit's values so a cell that happened to score well is not trusted more;
2. per form: multi-start fit (least squares, then Huber from there when asked,
   its threshold from that form's own residuals), bootstrap refits,
   cross-validation folds, warnings;
3. the form that predicts best (``select=cv``; ``aicc`` for in-sample), and
   a plain verdict on whether error is a power law in V;
4. the held-out check, with prediction intervals from the chosen form;
5. frontiers and per-cell intervals (``optimal``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sweep.scaling.crossval import SCHEMES, Choice, compare, cross_validate, make_folds
from sweep.scaling.diagnostics import d_near_floor, form_warnings, goodness
from sweep.scaling.fit import Problem, fit
from sweep.scaling.intervals import bootstrap, percentile, prediction_band
from sweep.scaling.laws import LAWS, MULTIPLICATIVE, Design, Law, predict
from sweep.scaling.noise import Cells, NoiseModel
from sweep.scaling.optimal import cell_table, flops_frontiers, latency_frontier, paper_v_star
from sweep.scaling.settings import FitSettings
from sweep.scaling.study import FamilyFit, FormFit, HeldoutCheck
from sweep.scaling.table import Observation


def fit_family(family: str, members: Sequence[Observation], settings: FitSettings, resolved: dict[str, Any], seq: np.random.SeedSequence) -> FamilyFit:
    train = [o for o in members if not o.heldout]
    flagged = [o for o in members if o.heldout]
    cells = Cells.from_observations(train)
    noise = NoiseModel.build(cells, binomial=settings.metric_range == "unit")
    design = Design.from_cells(cells.n, cells.v)
    rngs = [np.random.default_rng(s) for s in seq.spawn(8)]
    d_box = settings.bounds.D or ((0.0, 1.0) if settings.metric_range == "unit" else (0.0, float(cells.y.max())))
    fixed_paper, warnings = _structural(cells.n, cells.v)
    weights = _noise_weights(cells, noise, design, settings, d_box, fixed_paper) if resolved["weights"] == "noise" else None

    forms: dict[str, FormFit] = {}
    resolved = {**resolved, "huber_delta": {}}
    for i, name in enumerate(settings.forms):
        law = LAWS[name]
        skip = _skip(law, cells, fixed_paper)
        if skip:
            warnings.append(skip)
            continue
        fixed = fixed_paper if law is MULTIPLICATIVE else {}
        form = _fit_form(law, design, cells, noise, weights, settings, resolved["resample"], d_box, fixed, rngs[i])
        forms[name] = form
        resolved["huber_delta"][name] = form.huber_delta
        warnings += form.warnings
    floor = d_near_floor(forms["multiplicative"].params["D"], cells.y, forms["multiplicative"].quality["rmse"])
    if floor:
        warnings.append(floor)
    best, reason, choice = choose(forms, settings.select)
    power_law, verdict = _verdict(forms, best, choice, cells)
    check = _heldout(flagged, settings, forms, best, cells, noise, resolved["resample"], rngs[4], warnings)

    everything = Cells.from_observations(members)
    v_max = float(everything.v.max())
    qs = sorted({float(q) for q in settings.q_values} | {float(q) for q in everything.q if np.isfinite(q)})
    frontiers = flops_frontiers(forms[best], everything, qs, v_max, settings.ci_level, bool(fixed_paper))
    latency, model = (None, None)
    if resolved["cost"] in ("latency", "both"):
        latency, model = latency_frontier(forms[best], everything, v_max, settings.ci_level)
    paper = forms["multiplicative"]
    diff = paper.samples["alpha"] - paper.samples["beta"] if "alpha" in paper.samples and "beta" in paper.samples else None
    a, b = paper.params["alpha"], paper.params["beta"]
    return FamilyFit(
        family=family,
        n_points=len(cells),
        n_observations=len(train),
        n_values=sorted({float(x) for x in cells.n}),
        v_values=sorted({float(x) for x in cells.v}),
        v_max=v_max,
        settings=settings,
        resolved=resolved,
        forms=forms,
        best_form=best,
        best_reason=reason,
        choice=choice,
        power_law_in_v=power_law,
        verdict=verdict,
        heldout=check,
        frontiers=frontiers,
        latency=latency,
        latency_model=model,
        paper_v_star=paper_v_star(paper, qs, v_max, settings.ci_level),
        alpha_minus_beta=(a - b if a is not None and b is not None else None, percentile(diff, settings.ci_level)),
        cell_table=cell_table(forms[best], cells, noise, rngs[5], settings.ci_level),
        cells=cells,
        noise=noise,
        warnings=warnings,
    )


def _fit_form(
    law: Law,
    design: Design,
    cells: Cells,
    noise: NoiseModel,
    weights: np.ndarray | None,
    settings: FitSettings,
    resample: str,
    d_box: tuple[float, float],
    fixed: dict[str, float],
    rng: np.random.Generator,
) -> FormFit:
    lower, upper = law.box(design, float(cells.y.max()), settings.bounds, d_box)
    problem = Problem.build(law, design, cells.y, lower=lower, upper=upper, weights=weights, space=settings.space, fixed=fixed)
    best = fit(problem, settings.starts)
    delta = None
    if settings.loss == "huber":
        delta = settings.huber_delta if settings.huber_delta is not None else _robust_delta(problem, best.theta)
        problem = problem.with_loss("huber", delta)
        best = fit(problem, settings.starts, extra=best.optima)
    pred = problem.predict(best.theta)
    k = int(problem.free.sum())
    variance = noise.variance(pred) if noise.complete else None
    quality: dict[str, Any] = goodness(cells.y, pred, k, problem.value(best.theta), variance)
    quality.update(converged=best.converged, huber=delta is not None)
    # Where the law misses the cells by more than their noise, the noise alone
    # would give intervals too narrow for this law: scale it by the misfit.
    inflation = float(np.sqrt(max(1.0, quality["chi2_red"]))) if quality["chi2_red"] is not None else 1.0
    quality["noise_inflation"] = inflation
    boot, failed = (None, 0)
    if settings.n_boot > 0:
        boot, failed = bootstrap(problem, best.theta, noise.with_inflation(inflation), resample, settings.n_boot, rng)
    params = {key: float(val) for key, val in law.to_public(best.theta, design).items()}
    samples = law.to_public(boot, design) if boot is not None else {}
    ci = {name: percentile(samples.get(name), settings.ci_level) for name in params}
    for name in fixed:
        params[name], ci[name] = None, None
        samples.pop(name, None)
    # Every fold starts from the full fit's optima and the whole lattice: a fold stuck in a
    # poor local optimum would charge its form a prediction error that is not the form's.
    starts = np.vstack([best.optima, law.starts(settings.starts, design, cells.y, lower, upper)])
    cv = cross_validate(problem, starts, make_folds(cells.n, cells.v, law), cells.n, cells.v)
    warns = form_warnings(problem, best, boot, failed, law.label)
    return FormFit(law.name, law.label, params, ci, quality, warns, problem, best.theta, delta, cv, boot, samples)


def choose(forms: dict[str, FormFit], select: str) -> tuple[str, str, Choice]:
    """The form the frontier uses, why in words, and the cross-validated comparison behind it."""
    choice = compare({name: f.cv for name, f in forms.items() if f.cv is not None})
    if select == "cv" and choice.best is not None:
        counts = ", ".join(f"{sum(1 for c in choice.common if c.startswith('V=') == (s == 'leave_one_v'))} {s.replace('_', '-')}" for s in SCHEMES)
        shown = ", ".join(f"{n} {v:.4g}" for n, v in choice.scores.items())
        why = f"cross-validated prediction error (RMSE of held-out cells on the folds all forms ran: {counts}): {shown}; lower is better"
        if choice.kept_simpler and choice.margin is not None and choice.lowest is not None:
            why += (
                f"; the {forms[choice.lowest].label}'s advantage ({choice.margin[0]:.2g} in mean squared error) is within one "
                f"standard error ({choice.margin[1]:.2g}), so the simpler paper form is kept"
            )
        if choice.excluded:
            why += f"; not compared, for want of a fold that identifies them: {', '.join(choice.excluded)}"
        return choice.best, why, choice
    key = "aicc" if all(f.quality["aicc"] is not None for f in forms.values()) else "aic"
    crit = {name: f.quality[key] for name, f in forms.items()}
    best = min(crit, key=lambda n: crit[n])
    robust = " (Huber loss in place of squares)" if forms["multiplicative"].quality.get("huber") else ""
    why = "" if select == "aicc" else "no cross-validation fold could run, so "
    shown = ", ".join(f"{v:.2f} ({n})" for n, v in crit.items())
    return best, f"{why}{key.upper()}{robust} {shown}; lower is better, a difference under 2 is weak evidence", choice


def _verdict(forms: dict[str, FormFit], best: str, choice: Choice, cells: Cells) -> tuple[bool | None, str]:
    th = forms.get("threshold")
    if th is None or "threshold" not in choice.scores:
        return None, "not tested: the threshold form needs three distinct V, five cells and a cross-validation fold it shares with the paper form."
    score = choice.scores["threshold"]
    power = {n: v for n, v in choice.scores.items() if n != "threshold"}
    rival = min(power, key=lambda n: power[n]) if power else None
    against = f" against {rival} {power[rival]:.4g}" if rival else ""
    vt, lo, hi = th.params["V_t"], float(cells.v.min()), float(cells.v.max())
    if best == "threshold" and vt is not None and lo < vt < hi:
        return False, (
            f"not a power law in V: error falls as a threshold near V_t = {vt:.3g} (steepness gamma {th.params['gamma']:.2g}); "
            f"the threshold form predicts held-out cells best (CV error {score:.4g}{against})."
        )
    if best == "threshold" and vt is not None and vt >= hi:
        return False, (
            f"not a power law in V over the measured range: the threshold form predicts held-out cells best (CV error {score:.4g}{against}) "
            f"with its step above the largest V measured (V_t = {vt:.3g}), so error falls faster with V than a power law allows there; "
            "token counts beyond those measured are an extrapolation."
        )
    if best == "threshold":
        return True, f"the threshold form predicts best, with its threshold below the measured V (V_t = {vt:.3g}), where it is the power law V^-gamma."
    if choice.lowest == "threshold":
        return True, (
            f"consistent with a power law in V: the threshold form predicts a little better (CV error {score:.4g}{against}), "
            "but within one standard error, so the paper's power law is kept."
        )
    return True, f"consistent with a power law in V: the {forms[best].label} predicts held-out cells best (CV error {choice.scores.get(best, float('nan')):.4g}); the threshold form does not predict better ({score:.4g})."


def _heldout(
    flagged: list[Observation],
    settings: FitSettings,
    forms: dict[str, FormFit],
    best: str,
    cells: Cells,
    noise: NoiseModel,
    resample: str,
    rng: np.random.Generator,
    warnings: list[str],
) -> HeldoutCheck | None:
    """Predict the flagged cells, or refit without the largest N (the last expanding-N fold) and predict it."""
    chosen = forms[best]
    law, design = chosen.problem.law, chosen.problem.design
    inflated = noise.with_inflation(chosen.quality["noise_inflation"])
    if flagged:
        fc = Cells.from_observations(flagged)
        preds = {name: predict(f.problem.law, f.theta[None], design, fc.n, fc.v)[0] for name, f in forms.items()}
        band = None
        if chosen.boot is not None:
            var = _new_variance(inflated, chosen, fc.y, fc.n, fc.n_questions, fc.n_seeds)
            band = prediction_band(law, chosen.boot, chosen.theta, design, fc.n, fc.v, var, rng, settings.ci_level)
        return _check("flagged", fc, preds, band, None, best)
    if settings.heldout == "none":
        return None
    top = float(cells.n.max())
    key = ("expanding_n", top)
    paper = forms["multiplicative"]
    if paper.cv is None or key not in paper.cv.fold_pred:
        warnings.append("held-out check skipped: without the largest N fewer than two LLM sizes or too few cells remain.")
        return None
    test = cells.n == top
    hc = cells.subset(test)
    preds = {name: f.cv.fold_pred[key] for name, f in forms.items() if f.cv is not None and key in f.cv.fold_pred}
    band, interval_form = None, None
    donor = chosen if chosen.cv is not None and key in chosen.cv.fold_theta else paper
    if donor.boot is not None:
        # The intervals of the reduced fit need its own bootstrap: same resampling, the largest N left out.
        reduced = donor.problem.subset(~test)
        theta = donor.cv.fold_theta[key]  # type: ignore[union-attr]
        boot, _ = bootstrap(reduced, theta, inflated.subset(~test), resample, settings.n_boot, rng)
        var = _new_variance(inflated, donor, hc.y, hc.n, hc.n_questions, hc.n_seeds)
        band = prediction_band(donor.problem.law, boot, theta, design, hc.n, hc.v, var, rng, settings.ci_level)
        interval_form = donor.form
    reduced_params: dict[str, float | None] = {k: float(x) for k, x in MULTIPLICATIVE.to_public(paper.cv.fold_theta[key], design).items()}
    for name in ("alpha", "beta"):
        if paper.params[name] is None:
            reduced_params[name] = None
    return _check("largest", hc, preds, band, reduced_params, interval_form)


def _new_variance(noise: NoiseModel, form: FormFit, y: np.ndarray, n: np.ndarray, n_questions: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    var = noise.new_variance(np.clip(y, 1e-12, None), n, n_questions, seeds)
    q = form.quality
    resid = q["rss"] / max(q["n"] - q["k"], 1)  # no noise model: the residual variance
    return np.where(np.isfinite(var), var, resid)


def _check(mode: str, hc: Cells, preds: dict[str, np.ndarray], band: dict | None, reduced: dict | None, interval_form: str | None) -> HeldoutCheck:
    paper = preds["multiplicative"]
    rows, inside = [], []
    for i in range(len(hc)):
        o, p = float(hc.y[i]), float(paper[i])
        row = {
            "N": float(hc.n[i]),
            "V": float(hc.v[i]),
            "llm": hc.llm[i],
            "observed": o,
            "predicted": p,
            "abs_error": abs(p - o),
            "rel_error": abs(p - o) / o if o > 0 else None,
            "predicted_by": {name: float(x[i]) for name, x in preds.items()},
        }
        if band is not None:
            lo, hi = float(band["pred_lo"][i]), float(band["pred_hi"][i])
            row.update(interval=[lo, hi], interval_form=interval_form, inside=lo <= o <= hi)
            inside.append(lo <= o <= hi)
        rows.append(row)
    err = paper - hc.y
    rel = np.abs(err) / np.where(hc.y > 0, hc.y, np.nan)
    return HeldoutCheck(
        mode=mode,
        n_values=sorted({float(x) for x in hc.n}),
        cells=rows,
        mae=float(np.mean(np.abs(err))),
        max_abs_error=float(np.max(np.abs(err))),
        mean_rel_error=float(np.nanmean(rel)) if np.isfinite(rel).any() else float("nan"),
        reduced_fit=reduced,
        by_form={name: float(np.mean(np.abs(x - hc.y))) for name, x in preds.items()},
        interval_form=interval_form,
        coverage=float(np.mean(inside)) if inside else None,
    )


def _noise_weights(cells: Cells, noise: NoiseModel, design: Design, settings: FitSettings, d_box: tuple[float, float], fixed: dict[str, float]) -> np.ndarray:
    """``1 / variance`` of each cell mean, the binomial part at a pilot paper-form fit's values."""
    lower, upper = MULTIPLICATIVE.box(design, float(cells.y.max()), settings.bounds, d_box)
    pilot = Problem.build(MULTIPLICATIVE, design, cells.y, lower=lower, upper=upper, space=settings.space, fixed=fixed)
    p = np.clip(pilot.predict(fit(pilot, settings.starts).theta), 1e-12, None)
    var = noise.variance(p)
    if settings.space == "log":
        var = var / p**2  # the variance of log y, to first order
    # Seeds that agree exactly (and no question count) would claim zero noise and take all the weight.
    return 1.0 / np.maximum(var, 1e-2 * float(np.median(var[var > 0])) if np.any(var > 0) else 1.0)


def _skip(law: Law, cells: Cells, fixed_paper: dict[str, float]) -> str | None:
    if law is MULTIPLICATIVE:
        return None
    label, k = law.label, len(law.names)
    if fixed_paper:
        return f"{label} skipped: it needs at least two distinct N and two distinct V."
    if law.name == "threshold" and np.unique(cells.v).size < 3:
        return f"{label} skipped: a threshold in V needs at least three distinct V."
    if len(cells) < k:
        return f"{label} skipped: {len(cells)} cells, fewer than its {k} parameters."
    return None


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


def _robust_delta(problem: Problem, theta: np.ndarray) -> float:
    """Huber's threshold: 1.345 robust SDs (MAD) of this form's least-squares residuals, in the fit's space."""
    r = problem.residuals(theta)
    sigma = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    return max(1.345 * sigma, 1e-9)
