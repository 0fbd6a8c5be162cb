"""Fit a whole study: per family, every form, intervals, model choice, held-out check, frontiers.

::

    study = fit_study(observations, FitSettings(n_boot=1000, space="log"))
    study = fit_study(observations, n_boot=200, forms=("multiplicative",))   # keyword overrides
    study.to_json()      # {family: {"alpha", "beta", "A", "D", "*_ci", "v_star", "model_choice", ...}}
    fam = study.families["vqa"]
    fam.paper.params["alpha"], fam.best_form, fam.forms["threshold"].cv.score

Every setting is checked before any family is fitted, including the ones
that depend on the data (log space needs positive values, ``weights=noise``
needs every cell's noise, ``cost=latency`` every cell's latency), so a bad
request fails at once with ``fit.<key>`` named.

Held-out semantics: observations flagged ``heldout=True`` are left out of
every fit and predicted by it. If none are flagged and ``heldout="largest"``,
the forms are fitted again without the largest N (the last fold of the
expanding-N cross-validation) and predict the largest-N cells; the reported
parameters are still those of the fit to all the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.errors import SweepError
from sweep.scaling.settings import FitSettings
from sweep.scaling.table import Observation, group_by_family, validate
from sweep.scaling.tojson import family_json

if TYPE_CHECKING:
    from sweep.scaling.crossval import Choice, CrossVal
    from sweep.scaling.fit import Problem
    from sweep.scaling.frontier import VStar
    from sweep.scaling.latency import LatencyModel
    from sweep.scaling.noise import Cells, NoiseModel


@dataclass
class FormFit:
    """One law fitted to one family."""

    form: str
    label: str
    params: dict[str, float | None]  # public parameters; None where not identifiable
    ci: dict[str, tuple[float, float] | None]
    quality: dict[str, Any]  # r2, rmse, rss, aic, aicc, bic, n, k, chi2_red, converged, huber
    warnings: list[str]
    problem: Problem  # the fitted problem: Jacobian, weights, bounds (``problem.jacobian(theta)``)
    theta: np.ndarray  # internal parameters of the fit
    huber_delta: float | None  # the Huber threshold used, in residual units of the fit's space
    cv: CrossVal | None = None
    boot: np.ndarray | None = None  # (n_boot, P) internal parameters of the bootstrap refits
    samples: dict[str, np.ndarray] = field(default_factory=dict)  # bootstrap draws of the public parameters


@dataclass
class HeldoutCheck:
    """Predictions for cells the fit did not see."""

    mode: str  # "flagged" or "largest"
    n_values: list[float]
    cells: list[dict]
    mae: float  # the paper form's mean |predicted - observed|
    max_abs_error: float
    mean_rel_error: float
    reduced_fit: dict[str, float | None] | None  # the paper-form fit without them ("largest" mode)
    by_form: dict[str, float]  # mean |error| per form
    interval_form: str | None = None  # the form whose prediction intervals the cells carry
    coverage: float | None = None  # fraction of held-out cells inside their prediction interval

    @property
    def additive_mae(self) -> float | None:
        return self.by_form.get("additive")


@dataclass
class Frontier:
    """The compute-optimal choice against one cost (FLOPs at one Q, or measured latency)."""

    cost: str  # "flops" or "latency"
    q: float | None
    unit: str
    form: str  # the law it is drawn from
    v_star: VStar  # at the reference budget (at every budget when ``budget_free``)
    budget_free: bool
    reference_budget: float
    numeric: float | None  # the numeric search's V* (a check of the closed form)
    ci: tuple[float, float] | None
    v_range: tuple[float, float] | None  # V* over the budgets of ``rows``
    rows: list[dict]


@dataclass
class FamilyFit:
    """Everything fitted for one benchmark family."""

    family: str
    n_points: int  # fitted cells
    n_observations: int
    n_values: list[float]
    v_values: list[float]
    v_max: float
    settings: FitSettings
    resolved: dict[str, Any]  # what "auto" settings became, Huber thresholds per form
    forms: dict[str, FormFit]
    best_form: str
    best_reason: str
    choice: Choice  # the cross-validated comparison (scores on the folds all forms ran)
    power_law_in_v: bool | None
    verdict: str
    heldout: HeldoutCheck | None
    frontiers: dict[float, Frontier]  # FLOPs, per Q
    latency: Frontier | None
    latency_model: LatencyModel | None
    paper_v_star: dict[float, tuple[VStar, tuple[float, float] | None]]  # closed form of the paper's law, with its interval
    alpha_minus_beta: tuple[float | None, tuple[float, float] | None]
    cell_table: list[dict]  # per cell: observed, fitted (best form), fit and prediction intervals
    cells: Cells
    noise: NoiseModel
    warnings: list[str]

    @property
    def paper(self) -> FormFit:
        return self.forms["multiplicative"]

    @property
    def additive(self) -> FormFit | None:
        return self.forms.get("additive")

    @property
    def best(self) -> FormFit:
        return self.forms[self.best_form]

    def predict(self, n_params: np.ndarray, v: np.ndarray, form: str | None = None) -> np.ndarray:
        """The fitted law (the best form unless named) at any cells, metric units."""
        from sweep.scaling.laws import predict

        f = self.forms[form or self.best_form]
        return predict(f.problem.law, f.theta[None], f.problem.design, np.asarray(n_params, float), np.asarray(v, float))[0]

    def to_json(self) -> dict:
        return family_json(self)


@dataclass
class StudyFit:
    """The fitted study: one :class:`FamilyFit` per benchmark family."""

    families: dict[str, FamilyFit]
    settings: FitSettings

    def to_json(self) -> dict:
        """A JSON-able dict, family -> results (see ``tojson.family_json`` for the keys)."""
        return {name: fam.to_json() for name, fam in self.families.items()}


def fit_study(observations: Sequence[Observation], settings: FitSettings | None = None, **overrides: Any) -> StudyFit:
    """Fit every family in ``observations``; ``overrides`` are :class:`FitSettings` fields."""
    from sweep.scaling.family import fit_family
    from sweep.scaling.fit import single_threaded_blas

    settings = settings or FitSettings()
    if overrides:
        settings = FitSettings.from_mapping({**settings.to_json(), **overrides})
    validate(observations, metric_range=settings.metric_range)
    groups = group_by_family(observations)
    plans = {family: resolve(settings, members, family) for family, members in groups.items()}
    out = {}
    with single_threaded_blas():
        for i, (family, members) in enumerate(groups.items()):
            out[family] = fit_family(family, members, settings, plans[family], np.random.SeedSequence([settings.seed, i]))
    return StudyFit(out, settings)


def resolve(settings: FitSettings, members: Sequence[Observation], family: str) -> dict[str, Any]:
    """What the "auto" settings become for this family; a request the data cannot meet is refused."""
    from sweep.scaling.noise import Cells, NoiseModel

    train = [o for o in members if not o.heldout]
    cells = Cells.from_observations(train)
    noise = NoiseModel.build(cells, binomial=settings.metric_range == "unit")
    where = f"family {family}"
    if settings.space == "log" and np.any(cells.y <= 0):
        i = int(np.argmin(cells.y))
        raise SweepError(
            "fit.space",
            f"log space needs positive values, but {where} has {cells.y[i]:g} at N={cells.n[i]:g}, V={cells.v[i]:g}",
            "use fit.space=linear, or drop the cells with a zero error.",
        )
    missing_noise = _missing(noise.known, cells)
    for key in ("weights", "resample"):
        if getattr(settings, key) == "noise" and missing_noise:
            raise SweepError(
                f"fit.{key}",
                f"{where} has cells without a noise model ({missing_noise}): no question count and a single seed",
                f"log the eval's question counts (CSV column n_questions) or run several seeds, or use fit.{key}={'equal' if key == 'weights' else 'cells'}.",
            )
    has_latency = bool(np.isfinite(cells.latency_ms).all())
    if settings.cost in ("latency", "both") and not has_latency:
        raise SweepError(
            "fit.cost",
            f"{where} has cells without a measured latency ({_missing(np.isfinite(cells.latency_ms), cells)})",
            "re-run their evals (they log latency/prefill_ms), add a latency_ms column to the CSV, or use fit.cost=flops.",
        )
    complete = noise.complete
    return {
        "weights": settings.weights if settings.weights != "auto" else ("noise" if complete else "equal"),
        "resample": settings.resample if settings.resample != "auto" else ("noise" if complete else "cells"),
        "cost": settings.cost if settings.cost != "auto" else ("both" if has_latency else "flops"),
    }


def _missing(ok: np.ndarray, cells: Cells) -> str:
    bad = np.flatnonzero(~ok)
    shown = ", ".join(f"N={cells.n[i]:g} V={cells.v[i]:g}" for i in bad[:3])
    return shown + (f" and {bad.size - 3} more" if bad.size > 3 else "")
