"""Scaling-law fitting for VLM sweeps: the paper's law, an additive rival, the optimal frontier.

Pure numpy/scipy at the core; matplotlib only when a report is written::

    from sweep.scaling import fit_study, read_csv, write_report
    obs = read_csv("results.csv")                  # or Observations built from MLflow runs
    study = fit_study(obs, n_boot=1000, seed=0)    # per family: both forms, CIs, held-out, frontier
    study.to_json()["vqa"]["alpha_ci"]
    write_report(study, obs, "out/")               # fit.json, frontier tables, figure1.png, heatmap.png

Modules: ``table`` (Observation, CSV, validation), ``laws`` (the two forms),
``fit`` (multi-start L-BFGS, bootstrap), ``diagnostics`` (warnings, goodness),
``frontier`` (closed form and numeric), ``study`` (the per-family driver),
``tojson`` (the JSON shape), ``plots`` and ``report`` (files).
"""

from sweep.scaling.frontier import VStar, flops, frontier_rows, optimum_numeric, v_star
from sweep.scaling.laws import paper_error
from sweep.scaling.report import summary_text, write_report
from sweep.scaling.study import FamilyFit, FormFit, HeldoutCheck, StudyFit, fit_study
from sweep.scaling.table import CsvTable, Observation, group_by_family, load_csv, read_csv, validate

__all__ = [
    "CsvTable",
    "FamilyFit",
    "FormFit",
    "HeldoutCheck",
    "Observation",
    "StudyFit",
    "VStar",
    "fit_study",
    "flops",
    "frontier_rows",
    "group_by_family",
    "load_csv",
    "optimum_numeric",
    "paper_error",
    "read_csv",
    "summary_text",
    "v_star",
    "validate",
    "write_report",
]
