"""Scaling-law fitting for VLM sweeps: three forms, noise-aware intervals, model choice, frontiers.

Pure numpy/scipy at the core; matplotlib only when a report is written::

    from sweep.scaling import FitSettings, fit_study, read_csv, write_report
    obs = read_csv("results.csv")                          # or Observations built from MLflow runs
    study = fit_study(obs, FitSettings(n_boot=1000))      # per family: forms, CIs, CV, held-out, frontiers
    study.to_json()["vqa"]["model_choice"]["best"]
    write_report(study, obs, "out/")                       # fit.json, summary, frontier tables, figures

Modules: ``settings`` (FitSettings: every knob, checked; the config's ``fit``
section), ``table`` (Observation, CSV, validation), ``laws`` (the forms,
batched, linear and log space), ``solver`` (batched Levenberg-Marquardt),
``fit`` (one form on one family), ``noise`` (cells and their sampling noise),
``intervals`` (bootstrap and prediction intervals), ``crossval`` (prediction
error, model choice), ``frontier`` and ``latency`` (cost models and optima),
``family`` and ``optimal`` (the per-family driver), ``study`` (result types,
``fit_study``), ``tojson``, ``plots`` and ``report`` (output).

The names below are loaded on first use, so importing ``sweep.scaling.settings``
(as the typed config does for every command) does not import scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CostModel": "frontier",
    "VStar": "frontier",
    "flops": "frontier",
    "frontier_rows": "frontier",
    "optimum": "frontier",
    "optimum_numeric": "frontier",
    "v_star": "frontier",
    "LAWS": "laws",
    "paper_error": "laws",
    "predict_public": "laws",
    "summary_text": "report",
    "write_report": "report",
    "FitBounds": "settings",
    "FitSettings": "settings",
    "FamilyFit": "study",
    "FormFit": "study",
    "Frontier": "study",
    "HeldoutCheck": "study",
    "StudyFit": "study",
    "fit_study": "study",
    "CsvTable": "table",
    "Observation": "table",
    "group_by_family": "table",
    "load_csv": "table",
    "read_csv": "table",
    "validate": "table",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sweep.scaling' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sweep.scaling.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
