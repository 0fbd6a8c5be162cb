"""The JSON shape of a fitted family: flat keys for the paper's form, details nested.

``family_json(fam)`` is what ``StudyFit.to_json()`` returns per family and what
``python -m sweep fit --json`` prints. Keys:

- ``alpha``, ``beta``, ``A``, ``D`` and ``alpha_ci`` ... ``D_ci`` ([lo, hi],
  95% percentile bootstrap over cells): the paper's form; ``A`` refers to N in
  billions of parameters (``A_units``). A parameter the data cannot identify
  is ``null``, with the reason in ``warnings``.
- ``v_star``: {Q: V*} the inference-optimal V (closed form, V in [1, v_max]),
  Q as a string ("0", "50"); ``v_star_detail`` says per Q whether V >= 1
  binds (``"corner"``: the Q = 0, alpha > beta case), the optimum is
  interior, or V <= v_max binds, gives the unclipped beta*Q/(alpha-beta)
  (``null`` when unbounded), the numeric optimum and a bootstrap interval.
- ``heldout_error``: mean |predicted - observed| on the held-out cells
  (error units, so 0.02 = 2 points); ``heldout`` holds the details.
- ``r2``, ``rmse``, ``aic``, ``aicc``, ``bic``: goodness of the paper's form;
  ``additive``: the alternative's parameters, intervals and goodness;
  ``better_form`` and ``better_form_reason``.
- ``frontier``: {Q: [rows]}, one row per budget (``flops``; closed-form ``N``,
  ``V``, ``error``; ``*_numeric``; ``grid``: the best observed cell in budget).
- ``warnings``: bounds, identifiability, convergence, skipped checks.

Non-finite numbers become ``null`` so the output is strict JSON.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sweep.scaling.study import FamilyFit, FormFit

A_UNITS = "N in billions of parameters, V in tokens"


def family_json(fam: FamilyFit) -> dict[str, Any]:
    p = fam.paper
    out: dict[str, Any] = {name: p.params[name] for name in ("alpha", "beta", "A", "D")}
    out.update({f"{name}_ci": p.ci[name] for name in ("alpha", "beta", "A", "D")})
    out["A_units"] = A_UNITS
    out["ci_level"] = 0.95
    out["v_star"] = {_qkey(q): vs.value for q, vs in fam.v_star.items()}
    out["v_star_detail"] = {
        _qkey(q): {
            "v_star": vs.value,
            "case": vs.case,
            "unconstrained": vs.unconstrained,
            "numeric": fam.v_star_numeric.get(q),
            "ci": fam.v_star_ci.get(q),
            "v_bounds": [1.0, fam.v_max],
            "note": vs.note,
        }
        for q, vs in fam.v_star.items()
    }
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
            "reduced_fit": h.reduced_fit,
            "cells": h.cells,
        }
        if h
        else None
    )
    out.update(_quality(p))
    out["additive"] = _form(fam.additive) if fam.additive else None
    out["better_form"] = fam.better_form
    out["better_form_reason"] = fam.better_reason
    out["n_points"] = fam.n_points
    out["N_values"] = fam.n_values
    out["V_values"] = fam.v_values
    out["loss"] = fam.loss
    out["huber_delta"] = fam.huber_delta
    out["n_boot"] = fam.n_boot
    out["frontier"] = {_qkey(q): rows for q, rows in fam.frontier.items()}
    out["warnings"] = list(fam.warnings)
    return clean(out)


def _form(f: FormFit) -> dict[str, Any]:
    out: dict[str, Any] = dict(f.params)
    out.update({f"{k}_ci": v for k, v in f.ci.items()})
    out.update(_quality(f))
    out["warnings"] = list(f.warnings)
    return out


def _quality(f: FormFit) -> dict[str, Any]:
    q = f.quality
    return {k: q[k] for k in ("r2", "rmse", "aic", "aicc", "bic", "converged")}


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
