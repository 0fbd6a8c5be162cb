"""The fitter's edges: eval runs in MLflow (or a CSV) -> ``sweep.scaling`` -> report, MLflow, stdout.

Observations are read from the finished eval runs' params and metrics
(``cell.*`` params; ``N``, ``V``, ``Q``, ``error/<family>``,
``questions/<family>``, ``latency/prefill_ms`` metrics), never from run names
or logs. Each seed stays its own observation: the fitter averages a cell's
seeds and uses their spread as its noise. With several compressors in a
sweep, each (family, compressor) is fitted on its own, as the law is per
compressor.

The fit settings come from the config's ``fit:`` section for both paths
(``fit_settings``), so ``python -m sweep fit --csv FILE fit.loss=huber``
fits exactly as a sweep's fit with that override would.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sweep.errors import SweepError, close_names

# Per-cell tables and fold lists stay in fit.json; as MLflow metrics they would be noise.
_NOT_METRICS = ("cells", "folds", "settings")


def fit_settings(cfg: Mapping[str, Any]) -> Any:
    """The ``fit:`` section of a plain (resolved) config as a checked ``FitSettings`` (SweepError naming ``fit.<key>``)."""
    from sweep.scaling.settings import FitSettings

    return FitSettings.from_mapping(cfg.get("fit") or {})


def csv_settings(overrides: Sequence[str]) -> Any:
    """Settings for ``fit --csv``: the config's ``fit:`` section with the ``fit.*`` overrides applied."""
    from sweep.config import compose, resolved

    check_fit_overrides(overrides)
    others = [o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] != "fit"]
    if others:
        raise SweepError(others[0], "is not a fit setting: with --csv only fit.* overrides apply", "drop it, or fit the sweep's own runs (without --csv).")
    return fit_settings(resolved(compose(overrides)))


def check_fit_overrides(overrides: Sequence[str]) -> None:
    """Refuse ``fit.<key>=...`` for a key FitSettings does not have, with the close names."""
    from dataclasses import fields

    from sweep.scaling.settings import FitBounds, FitSettings

    for item in overrides:
        path = item.lstrip("+~").split("=", 1)[0].split(".")
        if path[0] != "fit" or len(path) < 2:
            continue
        known = [f.name for f in fields(FitSettings)]
        if path[1] not in known:
            raise SweepError(f"fit.{path[1]}", f"is not a fit setting.{close_names(path[1], known)}", f"use one of {', '.join(known)}.")
        inner = [f.name for f in fields(FitBounds)]
        if path[1] == "bounds" and len(path) > 2 and path[2] not in inner:
            raise SweepError(f"fit.bounds.{path[2]}", f"is not a bounded parameter.{close_names(path[2], inner)}", f"use one of {', '.join(inner)}.")


def observations_from_runs(runs: Iterable[Any], heldout_llms: Iterable[str] = ()) -> list[Any]:
    """One Observation per (family, compressor, LLM, V, seed), with its question count and latency."""
    from sweep.scaling import Observation

    held = set(heldout_llms)
    rows = []
    for run in runs:
        params, m = run.data.params, run.data.metrics
        llm, comp, seed = params.get("cell.llm"), params.get("cell.compressor"), params.get("cell.seed")
        if llm is None or "N" not in m or "V" not in m:
            continue
        for key, value in m.items():
            if key.startswith("error/"):
                rows.append(((key[len("error/"):], str(comp), llm, float(m["V"]), str(seed)), seed, m, value))
    compressors = {r[0][1] for r in rows}
    out = []
    for (family, comp, llm, v, _), seed, m, value in sorted(rows, key=lambda r: r[0]):
        out.append(Observation(
            family=family if len(compressors) == 1 else f"{family}@{comp}",
            N=m["N"], V=v, error=value, Q=m.get("Q"), llm=llm, heldout=llm in held,
            n_questions=m.get(f"questions/{family}"),
            seed=int(seed) if seed is not None and str(seed).lstrip("-").isdigit() else None,
            latency_ms=m.get("latency/prefill_ms") or None,
        ))
    return out


def numeric_leaves(obj: Any, prefix: str = "") -> Iterable[tuple[str, float]]:
    """``{"ocr": {"alpha_ci": [0.1, 0.3]}}`` -> ``("ocr/alpha_ci/0", 0.1), ...``: the fit's numbers as metrics."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if k in _NOT_METRICS:
                continue
            yield from numeric_leaves(v, f"{prefix}{k}/")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from numeric_leaves(v, f"{prefix}{i}/")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and obj == obj:
        yield prefix.rstrip("/").replace("@", "_at_"), float(obj)


def setting_params(settings: Any) -> dict[str, str]:
    """``fit.<key>`` params for MLflow, nested keys dotted (``fit.bounds.alpha``)."""
    out = {}
    for key, value in settings.to_json().items():
        if isinstance(value, Mapping):
            out.update({f"fit.{key}.{k}": str(v) for k, v in value.items()})
        else:
            out[f"fit.{key}"] = str(value)
    return out


def _print(study: Any, as_json: bool) -> None:
    from sweep.scaling import summary_text

    print(json.dumps(study.to_json(), indent=1, default=float) if as_json else summary_text(study))


def fit_csv(path: Path, n_unit: str, as_json: bool, settings: Any = None) -> int:
    """``python -m sweep fit --csv PATH``: fit a results table from anywhere; prints text or JSON."""
    from sweep.scaling import FitSettings, fit_study, load_csv

    settings = settings or FitSettings()
    table = load_csv(path, n_unit=n_unit, metric_range=settings.metric_range)
    study = fit_study(table.observations, settings)
    if not as_json and table.note:
        print(table.note)
    _print(study, as_json)
    return 0


def fit_sweep(cfg: Any, plan: Any, as_json: bool) -> Any:
    """Fit the sweep's finished eval runs, write the report, log it to MLflow, print it.

    ``cfg`` is the typed config (``sweep.specs.config.Config``); ``cfg.fit`` is a ``FitSettings``.
    """
    from sweep.scaling import fit_study, write_report
    from sweep.tracking import Tracker

    settings = cfg.fit
    tracker = Tracker(cfg.tracking.uri)
    exp = tracker.client.get_experiment_by_name(plan.name)
    if exp is None:
        raise SweepError("sweep.name", f"MLflow at {tracker.uri} has no experiment {plan.name!r}",
                         "run the sweep first (`python -m sweep ...`), or point tracking.uri at its store")
    eval_ids = [j.id for j in plan if j.role == "eval"]
    runs = tracker.job_runs(exp.experiment_id, "eval", eval_ids)
    if not runs:
        raise SweepError("fit", f"none of the sweep's {len(eval_ids)} eval jobs has a finished run in MLflow",
                         "run the sweep until its eval jobs finish, then fit")
    held = cfg.grid.heldout_llm
    obs = observations_from_runs(runs, held)
    study = fit_study(obs, settings)
    outdir = Path(cfg.sweep.root).resolve() / "sweeps" / plan.name / "fit"
    files = write_report(study, obs, outdir)

    parent = tracker._find(exp.experiment_id, sweep_role="parent")
    parent_id = parent.info.run_id if parent else tracker.parent_run(exp.experiment_id, plan.name, {})
    run_id = tracker.fit_run(exp.experiment_id, parent_id, {"sweep_name": plan.name, "sweep_fit_runs": str(len(runs))})
    tracker.log_params(run_id, setting_params(settings))
    tracker.log_metrics(run_id, dict(numeric_leaves(study.to_json())))
    for f in files:
        tracker.log_artifact(run_id, f, "fit")
        if f.suffix == ".png":
            tracker.log_artifact(parent_id, f, "fit")
    tracker.finish(run_id, "FINISHED")
    _print(study, as_json)
    if not as_json:
        print(f"\nfit report: {outdir} (also in MLflow: run 'fit' of experiment {plan.name!r})")
    return study
