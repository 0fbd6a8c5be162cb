"""The fitter's edges: eval runs in MLflow (or a CSV) -> ``sweep.scaling`` -> report, MLflow, stdout.

Observations are read from the finished eval runs' params and metrics
(``cell.*`` params; ``N``, ``V``, ``Q``, ``error/<family>`` metrics), never from
run names or logs. Seeds of the same cell are averaged. With several
compressors in a sweep, each (family, compressor) is fitted on its own, as the
law is per compressor.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sweep.errors import SweepError


def observations_from_runs(runs: Iterable[Any], heldout_llms: Iterable[str] = ()) -> list[Any]:
    """One Observation per (family, compressor, LLM, V), seeds averaged."""
    from sweep.scaling import Observation

    held = set(heldout_llms)
    cells: dict[tuple[str, str, str, float], list[tuple[float, float, float | None]]] = defaultdict(list)
    for run in runs:
        params, metrics = run.data.params, run.data.metrics
        llm, comp = params.get("cell.llm"), params.get("cell.compressor")
        if llm is None or "N" not in metrics or "V" not in metrics:
            continue
        for key, value in metrics.items():
            if key.startswith("error/"):
                cells[(key[len("error/"):], comp, llm, metrics["V"])].append((metrics["N"], value, metrics.get("Q")))
    compressors = {k[1] for k in cells}
    out = []
    for (family, comp, llm, v), rows in sorted(cells.items()):
        qs = [q for _, _, q in rows if q is not None]
        out.append(Observation(
            family=family if len(compressors) == 1 else f"{family}@{comp}",
            N=rows[0][0], V=float(v), error=sum(e for _, e, _ in rows) / len(rows),
            Q=sum(qs) / len(qs) if qs else None, llm=llm, heldout=llm in held,
        ))
    return out


def numeric_leaves(obj: Any, prefix: str = "") -> Iterable[tuple[str, float]]:
    """``{"ocr": {"alpha_ci": [0.1, 0.3]}}`` -> ``("ocr/alpha_ci/0", 0.1), ...``: the fit's numbers as metrics."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from numeric_leaves(v, f"{prefix}{k}/")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from numeric_leaves(v, f"{prefix}{i}/")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and obj == obj:
        yield prefix.rstrip("/").replace("@", "_at_"), float(obj)


def _settings(f: Any) -> dict[str, Any]:
    """The fitter's keyword settings from the config's ``fit`` section (``sweep.specs.config.Fit``)."""
    return {"n_boot": f.n_boot, "seed": f.seed, "loss": f.loss, "q_values": tuple(f.q_values), "heldout": f.heldout}


def _print(study: Any, as_json: bool) -> None:
    from sweep.scaling import summary_text

    print(json.dumps(study.to_json(), indent=1, default=float) if as_json else summary_text(study))


def fit_csv(path: Path, n_unit: str, as_json: bool, settings: Mapping[str, Any] | None = None) -> int:
    """``python -m sweep fit --csv PATH``: fit a results table from anywhere; prints text or JSON."""
    from sweep.scaling import fit_study, load_csv

    table = load_csv(path, n_unit=n_unit)
    from sweep.specs.config import Fit

    study = fit_study(table.observations, **(settings or _settings(Fit())))
    if not as_json and table.note:
        print(table.note)
    _print(study, as_json)
    return 0


def fit_sweep(cfg: Any, plan: Any, as_json: bool) -> Any:
    """Fit the sweep's finished eval runs, write the report, log it to MLflow, print it."""
    from sweep.scaling import fit_study, write_report
    from sweep.tracking import Tracker

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
    settings = _settings(cfg.fit)
    study = fit_study(obs, **settings)
    outdir = Path(cfg.sweep.root).resolve() / "sweeps" / plan.name / "fit"
    files = write_report(study, obs, outdir)

    parent = tracker._find(exp.experiment_id, sweep_role="parent")
    parent_id = parent.info.run_id if parent else tracker.parent_run(exp.experiment_id, plan.name, {})
    run_id = tracker.fit_run(exp.experiment_id, parent_id, {"sweep_name": plan.name, "sweep_fit_runs": str(len(runs))})
    tracker.log_params(run_id, {f"fit.{k}": v for k, v in settings.items()})
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
