"""The results so far: the sweep's finished eval runs in MLflow, or a CSV in the ``fit --csv`` format.

::

    obs = results_from_mlflow(cfg, plan)                   # [] when the sweep has no experiment yet
    obs = results_from_csv("table.csv", "auto", pool, cfg.fit)

MLflow rows carry their LLM's name (``cell.llm``). A CSV row may name it in an
``llm`` column; otherwise each distinct N of the file is matched to the grid's
LLM of nearest N, in order (the file's smallest N to the smallest matching LLM,
and so on), within a factor of 3: published tables give nominal sizes (0.5B)
where the plan counts non-embedding parameters (0.31B). The rows keep the
file's N, so the fit is in the file's unit, and an LLM without rows is placed
at its plan N times the matched LLMs' median ratio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sweep.design.pool import Pool
from sweep.errors import SweepError
from sweep.scaling.table import Observation

_MATCH_FACTOR = 3.0


def results_from_mlflow(cfg: Any, plan: Any) -> list[Observation]:
    """One Observation per (family, cell) of the plan's finished eval runs; [] when there are none."""
    from sweep.fitting import observations_from_runs
    from sweep.tracking import Tracker, absolute_uri

    uri = absolute_uri(cfg.tracking.uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        return []  # no store yet: nothing has run, and asking would create one
    tracker = Tracker(uri)
    exp = tracker.find_experiment(plan.name)
    if exp is None:
        return []
    runs = tracker.job_runs(exp, "eval", [j.id for j in plan if j.role == "eval"])
    return observations_from_runs(runs, cfg.grid.heldout_llm) if runs else []


def results_from_csv(path: Path, n_unit: str, pool: Pool, fit: Any) -> list[Observation]:
    """The CSV's rows, each tagged with the grid LLM it belongs to (see the module docstring)."""
    from sweep.scaling.table import load_csv

    comps = sorted({c.compressor for c in pool.cells})
    if len(comps) > 1:
        raise SweepError("--csv", f"the grid has several compressors ({', '.join(comps)}) and a CSV names none",
                         "restrict the grid to the CSV's compressor, e.g. grid.compressor=[avgpool]")
    rows = load_csv(path, n_unit=n_unit, metric_range=fit.metric_range).observations
    names = pool.n_plan
    unnamed = sorted({o.N for o in rows if o.llm not in names})
    match = align(unnamed, names, str(path))
    return [o if o.llm in names else replace(o, llm=match[o.N]) for o in rows]


def align(values: Sequence[float], llms: dict[str, float], where: str) -> dict[float, str]:
    """Each N of ``values`` (sorted) -> an LLM of ``llms``, in order, minimising the total log distance."""
    if not values:
        return {}
    order = sorted(llms, key=lambda m: llms[m])
    xs = [math.log(v) for v in values]
    ys = [math.log(llms[m]) for m in order]
    m, n = len(xs), len(ys)
    if m > n:
        raise SweepError(f"{where}: column N", f"has {m} distinct N ({', '.join(f'{v:g}' for v in values)}) and the grid "
                         f"{n} LLMs ({', '.join(order)})", "add an llm column naming each row's grid LLM, or list the LLMs in grid.llm")
    inf = float("inf")
    # cost[i][j]: best total distance matching the first i values within the first j LLMs.
    cost = [[inf] * (n + 1) for _ in range(m + 1)]
    take = [[False] * (n + 1) for _ in range(m + 1)]
    for j in range(n + 1):
        cost[0][j] = 0.0
    for i in range(1, m + 1):
        for j in range(i, n + 1):
            skip = cost[i][j - 1]
            use = cost[i - 1][j - 1] + abs(xs[i - 1] - ys[j - 1])
            cost[i][j], take[i][j] = (use, True) if use <= skip else (skip, False)
    out, i, j = {}, m, n
    while i > 0:
        if take[i][j]:
            out[values[i - 1]] = order[j - 1]
            i -= 1
        j -= 1
    far = [(v, out[v]) for v in values if abs(math.log(v / llms[out[v]])) > math.log(_MATCH_FACTOR)]
    if far:
        v, name = far[0]
        raise SweepError(f"{where}: column N", f"N={v:g} has no LLM of the grid within a factor of {_MATCH_FACTOR:g} "
                         f"(nearest in order: {name}, N={llms[name]:g})",
                         "add an llm column naming each row's grid LLM, or fix the grid's LLMs")
    return out
