"""Every setting of the scaling-law fit, as one frozen typed spec checked before anything runs.

``FitSettings`` *is* the ``fit:`` section of the typed root config
(``sweep.specs.config.Config.fit``), so a sweep's fit and a CSV's ``fit.*``
overrides are read and checked the same way::

    settings = FitSettings.from_mapping(cfg["fit"])        # SweepError("fit.<key>", ...) on bad input
    settings = FitSettings(loss="huber", space="log", huber_delta=1e-3)
    settings.to_json()                                     # recorded in fit.json

Parsing (``sweep.specs.schema``) refuses unknown keys with close names, wrong
types and values outside a closed set; ``__post_init__`` refuses values out of
range, also when the dataclass is built directly. No field changes a job's id
(all are ``incidental``): the fit reads results, it computes none. The module
imports nothing of the plan or of the fitter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_type_hints

from sweep.errors import SweepError, close_names
from sweep.specs.schema import Spec, incidental

FORMS = ("multiplicative", "additive", "threshold")


@dataclass(frozen=True, kw_only=True)
class FitBounds(Spec):
    """Boxes for the parameters readers care about; each is ``[low, high]``."""

    # Exponent of N. Kept >= 0: a law where error grows with model size is not the law tested.
    alpha: tuple[float, float] = incidental((0.0, 5.0))
    # Exponent of V in the multiplicative and additive forms (the threshold form's
    # steepness gamma has its own box, 0.05 to 10).
    beta: tuple[float, float] = incidental((0.0, 5.0))
    # The irreducible error D. null: [0, 1] for metric_range=unit, [0, largest value] for positive.
    D: tuple[float, float] | None = incidental(None)


@dataclass(frozen=True, kw_only=True)
class FitSettings(Spec):
    """How to fit; every field has a default, so ``FitSettings()`` is the documented behaviour."""

    # Bootstrap resamples behind every interval; 0 = no intervals (fast).
    n_boot: int = incidental(1000)
    # Seed of the resampling; the same seed gives the same intervals.
    seed: int = incidental(0)
    # l2: least squares. huber: squares inside huber_delta, linear outside (robust to a few broken cells).
    loss: Literal["l2", "huber"] = incidental("l2")
    # Huber threshold in residual units of `space` (error points for linear, log units for log).
    # null: 1.345 robust standard deviations of each form's own least-squares residuals.
    huber_delta: float | None = incidental(None)
    # linear: residuals y - f. log: log y - log f, f computed by log-sum-exp (as Epoch AI's
    # Chinchilla replication): relative errors, so small and large values weigh alike.
    space: Literal["linear", "log"] = incidental("linear")
    # unit: the metric is an error rate in [0, 1]. positive: any positive metric (a loss in nats, ...).
    metric_range: Literal["unit", "positive"] = incidental("unit")
    # Forms fitted and compared; the paper's (multiplicative) form is always fitted.
    forms: tuple[str, ...] = incidental(FORMS)
    # Cell weights. equal: every cell counts once. noise: 1 / variance of the cell's mean
    # (questions behind it, spread of its seeds). auto: noise where every cell has a noise model.
    weights: Literal["auto", "equal", "noise"] = incidental("auto")
    # What a bootstrap resample redraws. cells: whole cells with replacement. noise: seeds within
    # cells and questions within benchmarks, the way the data were made. auto: noise where possible.
    resample: Literal["auto", "cells", "noise"] = incidental("auto")
    # How the best form (the one the frontier uses) is chosen: cv = cross-validated prediction
    # error (leave one V out, expanding window over N); aicc = in-sample information criterion.
    select: Literal["cv", "aicc"] = incidental("cv")
    # Text tokens per query for the FLOPs frontier (0: text cached; 50: not). Observed Q are added.
    q_values: tuple[float, ...] = incidental((0.0, 50.0))
    # largest: also predict the largest LLM from a fit without it. none: skip.
    heldout: Literal["largest", "none"] = incidental("largest")
    # Cost the frontier is drawn against. flops: 2N(Q+V). latency: measured prefill latency.
    # both. auto: both where every cell has a measured latency, else flops.
    cost: Literal["auto", "flops", "latency", "both"] = incidental("auto")
    # Exponent values tried, as a lattice, for every exponent of a form (multi-start).
    starts: tuple[float, ...] = incidental((0.02, 0.1, 0.3, 1.0))
    # Level of every bootstrap interval (parameters, V*, predictions).
    ci_level: float = incidental(0.95)
    # Parameter boxes.
    bounds: FitBounds = incidental(factory=FitBounds)

    def __post_init__(self) -> None:
        for name, tp in get_type_hints(FitSettings).items():
            options = get_args(tp) if getattr(tp, "__origin__", None) is Literal else ()
            value = getattr(self, name)
            if options and value not in options:
                raise SweepError(f"fit.{name}", f"{value!r} is not one of the options.{close_names(str(value), options)}", f"use one of {', '.join(options)}.")
        if self.n_boot < 0:
            raise SweepError("fit.n_boot", f"{self.n_boot} is negative", "use 0 (no intervals) or more resamples, e.g. 1000.")
        if self.huber_delta is not None and not (math.isfinite(self.huber_delta) and self.huber_delta > 0):
            raise SweepError("fit.huber_delta", f"{self.huber_delta} is not a positive number", "use e.g. 0.01 (linear space) or 0.001 (log space), or null for automatic.")
        if not 0.5 <= self.ci_level < 1.0:
            raise SweepError("fit.ci_level", f"{self.ci_level} is outside [0.5, 1)", "use a level such as 0.9 or 0.95.")
        unknown = [f for f in self.forms if f not in FORMS]
        if unknown or not self.forms:
            shown = unknown[0] if unknown else "[]"
            raise SweepError("fit.forms", f"{shown!r} is not a form.{close_names(shown, FORMS)}", f"list some of {', '.join(FORMS)}.")
        # The paper's form is always fitted (the flat keys of fit.json are its parameters).
        object.__setattr__(self, "forms", tuple(dict.fromkeys(("multiplicative", *self.forms))))
        if not self.q_values or any(q < 0 or not math.isfinite(q) for q in self.q_values):
            raise SweepError("fit.q_values", f"{list(self.q_values)} is not a list of one or more Q >= 0", "Q counts text tokens: use values >= 0, e.g. [0, 50].")
        if not self.starts or any(s <= 0 or not math.isfinite(s) for s in self.starts):
            raise SweepError("fit.starts", f"{list(self.starts)} needs positive exponents", "use a short list such as [0.02, 0.1, 0.3, 1.0].")
        for name in ("alpha", "beta", "D"):
            box = getattr(self.bounds, name)
            if box is None:
                continue
            lo, hi = box
            if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi):
                raise SweepError(f"fit.bounds.{name}", f"[{lo}, {hi}] is not a box 0 <= low < high", f"write fit.bounds.{name}=[low,high], e.g. [0,5].")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> FitSettings:
        """Settings from a plain mapping (YAML, Hydra, JSON); every problem is a SweepError naming ``fit.<key>``."""
        plain = {k: (v.to_dict() if isinstance(v, Spec) else v) for k, v in dict(values or {}).items()}
        return cls.parse(plain, "fit")

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict of every setting (tuples as lists)."""
        return self.to_dict()
