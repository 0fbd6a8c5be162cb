"""The JSON shape of a fitted family: flat keys for the paper's form, the rest nested.

``family_json(fam)`` is what ``StudyFit.to_json()`` returns per family and what
``python -m sweep fit --json`` prints. Keys:

- ``alpha``, ``beta``, ``A``, ``D`` and ``alpha_ci`` ... ``D_ci`` ([lo, hi],
  bootstrap percentile interval at ``ci_level``): the paper's form; ``A``
  refers to N in billions of parameters (``A_units``). A parameter the data
  cannot identify is ``null``, with the reason in ``warnings``.
  ``alpha_minus_beta`` and its ``_ci`` come from the same resamples.
- ``forms``: every fitted form (``multiplicative``, ``additive``,
  ``threshold``): parameters, intervals, goodness (``r2``, ``rmse``, ``aicc``,
  ``chi2_red``: misfit in units of the cells' noise), ``cv`` (cross-validated
  prediction error: ``score``, ``leave_one_v``, ``expanding_n``, folds),
  ``huber_delta``, warnings. ``additive`` repeats that form at the top level.
- ``model_choice``: ``best`` (the form the frontier uses), ``reason``, ``cv``
  ({form: score on ``folds_compared``, the folds every compared form ran}),
  ``lowest_cv`` and ``kept_simpler`` (the paper form kept because the lowest
  form's advantage, ``advantage_and_se``, is within one standard error),
  ``power_law_in_v`` (false: error is a threshold in V) and ``verdict`` in
  words. ``better_form`` is the same as ``best``.
- ``v_star``: {Q: V*} against FLOPs ``2N(Q+V)`` from the chosen form (Q as a
  string, "0", "50"); ``v_star_detail`` per Q: how it was found (closed form
  or numeric), ``case`` (``corner`` = V >= 1 binds), ``ci``, whether it is the
  same at every budget, its range over the budgets, and the paper form's
  closed form beside it (``paper_form``). ``frontier``: {Q: rows}, one per
  budget (``flops``; ``N``, ``V``, ``error``; ``*_numeric``; ``grid``: the
  best measured cell in budget).
- ``latency``: the same against measured prefill latency (``cost: "latency"``,
  budgets in ms at the eval's own prompt) with the latency ``model``; null
  when not asked for or not measured.
- ``heldout_error``: mean |predicted - observed| of the paper form on the
  held-out cells; ``heldout`` holds each cell with every form's prediction and
  the chosen form's prediction ``interval`` (a new measurement), ``coverage``.
- ``cells``: per fitted cell, observed, fitted, ``noise_sd``, ``fit_ci`` and
  ``prediction_interval``.
- ``settings`` (as given) and ``resolved`` (what "auto" became, Huber
  thresholds per form); ``warnings``.

Non-finite numbers become ``null`` so the output is strict JSON.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sweep.scaling.study import FamilyFit, FormFit, Frontier

A_UNITS = "N in billions of parameters, V in tokens"


def family_json(fam: FamilyFit) -> dict[str, Any]:
    p = fam.paper
    out: dict[str, Any] = {name: p.params[name] for name in ("alpha", "beta", "A", "D")}
    out.update({f"{name}_ci": p.ci[name] for name in ("alpha", "beta", "A", "D")})
    out["A_units"] = A_UNITS
    out["ci_level"] = fam.settings.ci_level
    out["alpha_minus_beta"], out["alpha_minus_beta_ci"] = fam.alpha_minus_beta
    out["v_star"] = {_qkey(q): f.v_star.value for q, f in fam.frontiers.items()}
    out["v_star_detail"] = {_qkey(q): _detail(f, fam, q) for q, f in fam.frontiers.items()}
    out["frontier"] = {_qkey(q): f.rows for q, f in fam.frontiers.items()}
    out["frontier_form"] = fam.best_form
    out["latency"] = _latency(fam)
    h = fam.heldout
    out["heldout_error"] = h.mae if h else None
    out["heldout"] = (
        {
            "mode": h.mode,
            "N": h.n_values,
            "mae": h.mae,
            "max_abs_error": h.max_abs_error,
            "mean_rel_error": h.mean_rel_error,
            "additive_mae": h.additive_mae,
            "by_form": h.by_form,
            "interval_form": h.interval_form,
            "coverage": h.coverage,
            "reduced_fit": h.reduced_fit,
            "cells": h.cells,
        }
        if h
        else None
    )
    out.update(_quality(p))
    out["forms"] = {name: _form(f) for name, f in fam.forms.items()}
    out["additive"] = _form(fam.additive) if fam.additive else None
    c = fam.choice
    out["model_choice"] = {
        "best": fam.best_form,
        "reason": fam.best_reason,
        "cv": {name: c.scores.get(name) for name in fam.forms},
        "folds_compared": c.common,
        "not_compared": c.excluded,
        "lowest_cv": c.lowest,
        "kept_simpler": c.kept_simpler,
        "advantage_and_se": c.margin,
        "power_law_in_v": fam.power_law_in_v,
        "verdict": fam.verdict,
    }
    out["better_form"] = fam.best_form
    out["better_form_reason"] = fam.best_reason
    out["n_points"] = fam.n_points
    out["n_observations"] = fam.n_observations
    out["N_values"] = fam.n_values
    out["V_values"] = fam.v_values
    out["loss"] = fam.settings.loss
    out["huber_delta"] = p.huber_delta
    out["n_boot"] = fam.settings.n_boot
    out["settings"] = fam.settings.to_json()
    out["resolved"] = fam.resolved
    out["cells"] = fam.cell_table
    out["warnings"] = list(fam.warnings)
    return clean(out)


def _detail(f: Frontier, fam: FamilyFit, q: float) -> dict[str, Any]:
    vs = f.v_star
    paper, paper_ci = fam.paper_v_star.get(q, (None, None))
    return {
        "v_star": vs.value,
        "form": f.form,
        "method": "closed form" if f.form == "multiplicative" else "numeric",
        "case": vs.case,
        "unconstrained": vs.unconstrained,
        "numeric": f.numeric,
        "ci": f.ci,
        "budget_free": f.budget_free,
        "reference_flops": f.reference_budget,
        "v_range": f.v_range,
        "v_bounds": [1.0, fam.v_max],
        "note": vs.note,
        "paper_form": {"v_star": paper.value, "case": paper.case, "ci": paper_ci} if paper is not None else None,
    }


def _latency(fam: FamilyFit) -> dict[str, Any] | None:
    f, model = fam.latency, fam.latency_model
    if f is None or model is None:
        return None
    q = [x for x in fam.cells.q if np.isfinite(x)]
    return {
        "cost": "latency",
        "unit": "ms",
        "measured_Q": float(np.mean(q)) if q else None,
        "model": model.to_json(),
        "form": f.form,
        "v_star": f.v_star.value,
        "case": f.v_star.case,
        "note": f.v_star.note,
        "ci": f.ci,
        "budget_free": f.budget_free,
        "reference_ms": f.reference_budget,
        "v_range": f.v_range,
        "frontier": f.rows,
    }


def _form(f: FormFit) -> dict[str, Any]:
    out: dict[str, Any] = dict(f.params)
    out.update({f"{k}_ci": v for k, v in f.ci.items()})
    out.update(_quality(f))
    out["huber_delta"] = f.huber_delta
    out["cv"] = f.cv.to_json() if f.cv else None
    out["warnings"] = list(f.warnings)
    return out


def _quality(f: FormFit) -> dict[str, Any]:
    q = f.quality
    return {k: q.get(k) for k in ("r2", "rmse", "aic", "aicc", "bic", "chi2_red", "noise_inflation", "converged")}


def _qkey(q: float) -> str:
    """JSON object keys for Q: "0", "50", "12.5"."""
    return f"{q:g}"


def clean(x: Any) -> Any:
    """Recursively turn numpy values into Python ones and non-finite floats into None."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return [clean(v) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x
