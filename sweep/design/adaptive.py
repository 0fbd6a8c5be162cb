"""``python -m sweep run --adaptive``: the start design, then refit -> propose -> run the batch, in rounds.

::

    python -m sweep run --adaptive --budget 60%            # of the grid's estimated cost
    python -m sweep run --adaptive +grid=paper launcher=slurm launcher.wait=true --budget 40 --until-ci 2

Each round proposes up to ``k`` cells (``design.k``; by default the launcher's
slots, ``cells_per_round``), runs the jobs they still need through the configured
launcher (a plan restricted to them: every done job, of this study or another
with the same content ids, is reused) and refits. The loop stops when every
target's interval is narrower than ``design.until_ci``, when the next cell would
pass the budget, when the grid is measured, or when no cell narrows anything.
A rerun resumes: finished cells are results, and the budget counts them.

MLflow (the sweep's experiment, under its parent run): an ``adaptive`` run
whose metrics have one step per round (each target's interval after the round,
the cost spent) so its charts show the study converging, and under it one run
per round (``round-3``): the cells chosen as params, why as tags and in
``round.json``, the intervals after the round as metrics.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from sweep import interrupt
from sweep.design.pool import Pool
from sweep.design.propose import Proposal, propose
from sweep.design.sources import results_from_mlflow
from sweep.design.state import StudyState, assess
from sweep.errors import SweepError

ADAPTIVE, ROUND = "adaptive", "design_round"
DEFAULT_REMOTE_SLOTS = 4  # Ray on a cluster and Slurm do not say how many of our jobs they would start now


def cells_per_round(launcher: Any, gpus_per_cell: int) -> int:
    """Cells one round runs at once: the launcher's capacity."""
    name = launcher.name
    if name == "local":
        return int(launcher.workers)
    if name == "inline":
        return 1
    if name == "ray" and launcher.address is None:
        if gpus_per_cell and launcher.num_gpus:
            return max(1, int(launcher.num_gpus) // gpus_per_cell)
        if not gpus_per_cell and launcher.num_cpus:
            return int(launcher.num_cpus)
    return DEFAULT_REMOTE_SLOTS


def metric_key(family: str, target: str) -> str:
    """An MLflow-safe key for one target of one family: ``reasoning/V*(Q=50)`` -> ``reasoning/vstar_q50``."""
    t = target.replace("V*", "vstar").replace("alpha-beta", "alpha_minus_beta")
    t = re.sub(r"[^\w.]+", "_", t.replace("=", "").replace("+", "")).strip("_").lower()
    return f"{family.replace('@', '_at_')}/{t}"


class RoundLog:
    """The adaptive study in MLflow: one ``adaptive`` run with a step per round, one child run per round."""

    def __init__(self, tracker: Any, experiment_id: str, parent_run_id: str, tags: dict[str, str]) -> None:
        self.tracker, self.exp = tracker, experiment_id
        found = tracker._find(experiment_id, sweep_role=ADAPTIVE)
        if found is None:
            run = tracker.client.create_run(experiment_id, run_name="adaptive", tags={
                "sweep_role": ADAPTIVE, "mlflow.parentRunId": parent_run_id})
            self.run_id = run.info.run_id
        else:
            self.run_id = found.info.run_id
            tracker.client.update_run(self.run_id, status="RUNNING")
        tracker.set_tags(self.run_id, tags)

    def next_round(self) -> int:
        """Rounds already logged (a rerun continues the numbering)."""
        runs = self.tracker._search_all(self.exp, f"tags.sweep_role = '{ROUND}'")
        return 1 + max((int(r.data.tags.get("design_round", "0")) for r in runs), default=-1)

    def start(self, number: int, proposal: Proposal) -> str:
        """The round's run, with the cells chosen and why."""
        run = self.tracker.client.create_run(self.exp, run_name=f"round-{number}", tags={
            "sweep_role": ROUND, "design_round": str(number), "mlflow.parentRunId": self.run_id,
            "design_phase": proposal.phase, "mlflow.note.content": _markdown(number, proposal)})
        run_id = run.info.run_id
        pool = proposal.state.pool
        self.tracker.log_params(run_id, {"round": number, "phase": proposal.phase, "cells": ",".join(p.cell.name for p in proposal.picks),
                                         "cost": f"{proposal.cost:.6g}", "unit": pool.unit})
        self.tracker.set_tags(run_id, {f"why.{p.cell.name}": p.why[:4000] for p in proposal.picks})
        self.tracker.log_metrics(run_id, {"cost/round": proposal.cost, "cost/spent_before": pool.spent, "cells/round": len(proposal.picks)})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "round.json"
            path.write_text(json.dumps(_round_json(number, proposal), indent=1, default=float))
            self.tracker.log_artifact(run_id, path, "design")
        return run_id

    def after(self, number: int, run_id: str | None, state: StudyState) -> dict[str, float]:
        """The targets' intervals once the round's cells are in: on the round's run and as step ``number`` of the study's."""
        metrics: dict[str, float] = {"cost/spent": state.pool.spent, "cells/measured": float(len(state.measured))}
        for key, (value, lo, hi) in state.intervals().items():
            family, _, target = key.partition(" ")
            base = f"interval/{metric_key(family, target)}"
            metrics.update({f"{base}/value": value, f"{base}/low": lo, f"{base}/high": hi, f"{base}/width": hi - lo})
        self.tracker.log_metrics(self.run_id, metrics, step=number)
        if run_id is not None:
            self.tracker.log_metrics(run_id, metrics)
            self.tracker.finish(run_id, "FINISHED")
        return metrics

    def fail(self, run_id: str, why: str, status: str = "FAILED") -> None:
        """The round and the study end ``status`` (FAILED: a job failed; KILLED: the user stopped the run)."""
        self.tracker.set_tags(run_id, {"sweep_error": why[:4000]})
        self.tracker.finish(run_id, status)
        stop = why if status == "KILLED" else f"a job failed: {why}"
        self.tracker.set_tags(self.run_id, {"design_stop": stop[:4000]})
        self.tracker.finish(self.run_id, status)

    def finish(self, reason: str) -> None:
        self.tracker.set_tags(self.run_id, {"design_stop": reason[:4000]})
        self.tracker.finish(self.run_id, "FINISHED")


def _round_json(number: int, p: Proposal) -> dict[str, Any]:
    from sweep.design.propose import to_json

    data = to_json(p)
    data["round"] = number
    return data


def _markdown(number: int, p: Proposal) -> str:
    unit = p.state.pool.unit
    rows = "\n".join(f"| {pk.cell.name} | {pk.cost:.3g} | {pk.why} |" for pk in p.picks)  # type: ignore[attr-defined]
    return (f"Round {number} ({p.phase}): {len(p.picks)} cells, {p.cost:.3g} {unit}.\n\n"
            f"| cell | cost ({unit}) | why |\n| --- | --- | --- |\n{rows}\n")


def run_adaptive(cfg: Any, plan: Any, overrides: list[str]) -> int:
    """The adaptive loop (see the module docstring); 0 when it stopped by its rules, 1 when a job failed."""
    from launchers.base import make_launcher
    from sweep.lifecycle import check_before_start, resume_command, run_fit_after, setup_tracking, store_of
    from sweep.design.propose import render

    settings = cfg.design
    if cfg.launcher.name == "slurm" and not cfg.launcher.wait:
        raise SweepError("launcher.wait", "is false, but run --adaptive must wait for each round's results before it chooses the next",
                         "add launcher.wait=true (the command then stays until the study ends; run it in tmux or a batch job)")
    store = store_of(cfg)
    launcher = make_launcher(cfg.launcher)
    pool = Pool.build(plan, store.is_done, settings)
    check_before_start(cfg, plan, launcher, pool.todo(pool.cells))
    tracker, rt = setup_tracking(cfg, plan)
    tags = {f"design.{k}": json.dumps(v) for k, v in settings.to_dict().items()}
    log = RoundLog(tracker, rt.experiment_id, rt.parent_run_id, tags)
    gpus = max((int(j.resources.get("gpus", 0) or 0) * int(j.resources.get("nodes", 1) or 1) for j in plan if j.cell), default=0)
    k = settings.k or cells_per_round(cfg.launcher, gpus)
    number, open_run, history = log.next_round(), None, []
    first = number
    reason = ""
    while True:
        pool = Pool.build(plan, store.is_done, settings)
        state = assess(pool, results_from_mlflow(cfg, plan), cfg.fit, settings)
        if open_run is not None:
            log.after(number - 1, open_run, state)
            history[-1]["after"] = state.intervals()
            history[-1]["spent"] = pool.spent
            print(_after_line(number - 1, state), flush=True)
        proposal = propose(state, settings, k)
        if proposal.stop or not proposal.picks:
            reason = proposal.stop or "nothing to propose"
            break
        if number - first >= settings.max_rounds:
            reason = f"design.max_rounds ({settings.max_rounds}) rounds run"
            break
        print(f"\nround {number} ({proposal.phase})\n{render(proposal)}", flush=True)
        open_run = log.start(number, proposal)
        history.append({"round": number, "phase": proposal.phase, "cells": [p.cell.name for p in proposal.picks], "cost": proposal.cost})
        failed = _launch(cfg, plan, launcher, pool.todo([p.cell for p in proposal.picks]), rt, store)
        if interrupt.requested():  # the round's running jobs saved a checkpoint; no further round starts
            why, again = f"stopped by {interrupt.signal_name()}", resume_command(["run", "--adaptive", *overrides])
            log.fail(open_run, why, status="KILLED")
            tracker.finish(rt.parent_run_id, "KILLED")
            print(f"\nround {number} {why}: its running jobs resume from their newest checkpoint\n"
                  f"  to resume, run the same command again: {again}")
            return interrupt.exit_code()
        if failed:
            log.fail(open_run, failed)
            tracker.finish(rt.parent_run_id, "FAILED")
            print(f"\nround {number} failed: {failed}\n  rerun the same command to resume (finished cells are kept)")
            return 1
        number += 1
    log.finish(reason)
    tracker.finish(rt.parent_run_id, "FINISHED")
    print(f"\nadaptive study stopped: {reason}")
    print(summary(history, pool))
    if history:
        run_fit_after(cfg, plan, overrides)
    return 0


def _launch(cfg: Any, plan: Any, launcher: Any, todo: list[str], rt: Any, store: Any) -> str:
    """Run one round's jobs through the launcher, with live progress; '' when all are done, else what went wrong."""
    from launchers.base import HELD
    from sweep.lifecycle import launch_watched

    report = launch_watched(cfg, plan, launcher, todo, rt, store)
    if report is None:  # stopped at once (a second signal): the store says what happened
        return "stopped"
    held = [o for o in report.outcomes.values() if o.state == HELD]
    if held:
        return f"{len(held)} jobs held by launcher.max_gpu_hours ({held[0].error}); raise it, or lower --budget"
    bad = [o for o in report.outcomes.values() if o.state != "done"]
    return "; ".join(f"{o.job_id} {o.state} (details: {store.job_dir(o.job_id) / 'error.json'})" for o in bad)


def _after_line(number: int, state: StudyState) -> str:
    units = state.units()
    shown = "; ".join(f"{key} {v:.3g} [{lo:.3g}, {hi:.3g}]{' ' + units[key] if units[key] else ''}"
                      for key, (v, lo, hi) in state.intervals().items())
    return f"after round {number}: {shown or state.note}; spent {state.pool.spent:.3g} of {state.pool.total:.3g} {state.pool.unit}"


def summary(history: list[dict[str, Any]], pool: Pool) -> str:
    """The rounds of this run as a table: cells, cost, spent, the widths after each."""
    from sweep.display import table

    if not history:
        return "no round was run"
    keys = list(history[-1].get("after", {}))
    rows = []
    for h in history:
        after = h.get("after", {})
        rows.append([h["round"], h["phase"], " ".join(h["cells"]), f"{h['cost']:.3g}", f"{h.get('spent', float('nan')):.3g}"]
                    + [f"{after[k][2] - after[k][1]:.3g}" if k in after else "-" for k in keys])
    head = ["round", "phase", "cells", f"cost ({pool.unit})", "spent"] + [f"width {k}" for k in keys]
    return table(rows, head) + f"\nthe whole grid: {pool.total:.3g} {pool.unit}; spent {pool.spent:.3g} ({pool.spent / pool.total:.0%})"
