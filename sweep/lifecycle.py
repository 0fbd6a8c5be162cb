"""A run's steps around the launcher, shared by ``run`` and ``run --adaptive``.

Before anything starts: the launcher's, the HF models' and the places' checks, reported
together (``check_before_start``); then the MLflow experiment and parent run once, under a
lock (``setup_tracking``); the launch itself under the signal handling, with live progress
(``launch_watched``). After it: each job's outcome (``outcomes_of``), the
summary (``print_summary``), the command that resumes (``resume_command``), and the fit
and study report (``run_fit_after``). ``sweep.cli`` parses and dispatches the commands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from sweep.errors import SweepError

MAX_LISTED = 20  # the summary lists at most this many jobs that did not finish


def store_of(cfg: Any) -> Any:
    """The job store under ``sweep.root``."""
    from sweep.store import Store

    return Store(cfg.sweep.root, lease_s=cfg.sweep.lease_s)


def close_ended(cfg: Any, plan: Any, store: Any, backend: Any, out: Any = None) -> None:
    """Close the MLflow runs Slurm left RUNNING (cancelled, dead node, ...); a tracking error is only a note."""
    from launchers.base import close_ended_runs

    try:
        closed = close_ended_runs(store, backend, cfg.tracking.uri, experiment_name=plan.name)
    except Exception as e:  # the store still says what happened; `status` must show it
        print(f"note: could not close the MLflow runs of jobs Slurm ended: {type(e).__name__}: {e}", file=sys.stderr)
        return
    for jid, reason in closed.items():
        print(f"closed the MLflow run of {jid}: {reason}", file=out or sys.stdout)


def setup_tracking(cfg: Any, plan: Any) -> Any:
    """Experiment and parent run (created once, under a lock), as a ``Runtime`` for the workers."""
    from omegaconf import OmegaConf

    from sweep.runner import Runtime
    from sweep.study_report import study_note
    from sweep.tracking import NOTE, Tracker, file_lock, git_commit, redact, source_tags

    store = store_of(cfg)
    tracker = Tracker(cfg.tracking.uri, retry_s=cfg.tracking.retry_s, timeout_s=cfg.tracking.timeout_s)
    commit = git_commit()
    grid_tags = {f"grid.{k}": json.dumps(v) for k, v in redact(cfg.grid.to_dict()).items()}
    note = study_note(cfg, plan)  # the grid and families; `fit` adds the headline
    with file_lock(store.root / ".tracking.lock"):
        exp = tracker.experiment(plan.name)
        tracker.describe_experiment(exp, note)
        parent = tracker.parent_run(exp, plan.name, {"sweep_git_commit": commit, NOTE: note, **grid_tags,
                                                     **source_tags("python -m sweep", commit)})
    config_file = store.root / "sweeps" / plan.name / "config.yaml"
    try:
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(OmegaConf.to_yaml(OmegaConf.create(redact(cfg.to_dict()))))
        tracker.log_artifact(parent, config_file)
    except Exception as e:  # a copy for the reader; the jobs do not need it
        print(f"note: could not save {config_file} ({type(e).__name__}: {e})", file=sys.stderr)
    return tracker, Runtime(store_root=str(store.root), tracking_uri=tracker.uri, experiment_id=exp,
                            parent_run_id=parent, sweep_name=plan.name, git_commit=commit,
                            lease_s=store.lease_s, tracking_retry_s=cfg.tracking.retry_s,
                            tracking_timeout_s=cfg.tracking.timeout_s)


def check_before_start(cfg: Any, plan: Any, launcher: Any, todo: list[str]) -> None:
    """The launcher's check and the HF model check; every problem found is reported in one error."""
    from sweep.prefetch import missing_error, missing_for

    from sweep.preflight import check_places

    problems: list[SweepError] = []
    try:
        launcher.check(plan, todo)
    except SweepError as e:
        problems.append(e)
    absent = missing_for(cfg, plan) if todo else []
    if absent:
        problems.append(missing_error(absent))
    if todo:  # the places the run writes to, before anything is created there
        problems += check_places(cfg, plan, todo)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise SweepError(" + ".join(p.field for p in problems),
                         f"{len(problems)} problems" + "".join(f"\n  ({i}) {p.field}: {p.problem}" for i, p in enumerate(problems, 1)),
                         "".join(f"\n  ({i}) {p.fix}" for i, p in enumerate(problems, 1)))


def launch_watched(cfg: Any, plan: Any, launcher: Any, todo: list[str], rt: Any, store: Any) -> Any:
    """Launch ``todo`` under the signal handling, with live progress; the launcher's report, or None when stopped at once.

    A Slurm launch that does not wait (``launcher.wait=false``) submits and returns: it prints a
    line per job instead, as there is nothing to watch.
    """
    from launchers.config import SlurmConfig
    from sweep import interrupt
    from sweep.display import Progress
    from sweep.live import Watch

    try:
        with interrupt.graceful():
            if isinstance(cfg.launcher, SlurmConfig) and not cfg.launcher.wait:
                return launcher.launch(plan, todo, rt, Progress(len(todo)))
            with Watch(plan, todo, store, interval_s=cfg.launcher.progress_s, slots=slots(cfg.launcher, len(todo))) as watch:
                return launcher.launch(plan, todo, rt, watch)
    except KeyboardInterrupt:  # stopped at once (inline launcher, or a further signal): the store says what happened
        return None


def outcomes_of(report: Any, todo: Sequence[str], store: Any, since: float) -> dict[str, Any]:
    """Each job's outcome: the launcher's, or for a launch cut short, what the store recorded since ``since``."""
    from launchers.base import NOT_STARTED
    from sweep.runner import Outcome

    outcomes = dict(report.outcomes) if report is not None else {}
    for jid in todo:
        if jid not in outcomes:
            st = store.state(jid)
            recent = float((st.info or {}).get("time", 0)) >= since
            outcomes[jid] = Outcome(jid, st.state if st.state == "done" or recent else NOT_STARTED, error=st.error)
    return outcomes


def print_summary(plan: Any, store: Any, outcomes: dict[str, Any]) -> None:
    """Counts by state, then each job that did not finish with its first error line and where the rest is."""
    from collections import Counter

    counts = Counter(o.state for o in outcomes.values())
    done = counts.pop("done", 0)
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    print(f"\n{done} done, {len(outcomes) - done} not done{f' ({parts})' if parts else ''}; results under {store.root}")
    listed = [o for o in outcomes.values() if o.state not in ("done", "not started", "held")]  # held: one line after
    for o in listed[:MAX_LISTED]:
        lines = (o.error or "").splitlines() or [""]
        print(f"  {o.state}: {o.job_id}: {lines[0]}".rstrip())
        for line in lines[1:]:
            if line.lstrip().startswith("(could not"):  # a record of this failure that could not be written
                print(f"    {line.strip()}")
        folder = store.job_dir(o.job_id)
        if o.state == "failed":
            where = folder / "error.json" if (folder / "error.json").exists() else folder / "status.json"
            print(f"    details: {where}" if where.exists() else "    details: none could be written (see the message above)")
    if len(listed) > MAX_LISTED:
        print(f"  ... and {len(listed) - MAX_LISTED} more: `python -m sweep status` lists them all")


def resume_command(words: Sequence[str]) -> str:
    """The command line ``python -m sweep <words>`` that resumes this run (secrets masked)."""
    import shlex

    from sweep.tracking import redact_text

    return redact_text(" ".join(["python -m sweep", *(shlex.quote(w) for w in words)]))


def slots(launcher: Any, jobs: int) -> int | None:
    """How many jobs the launcher runs at once, for the ETA; None: unknown (Ray, Slurm), the display counts them."""
    from launchers.config import InlineConfig, LocalConfig

    if isinstance(launcher, LocalConfig):
        return max(1, min(launcher.workers, jobs))
    return 1 if isinstance(launcher, InlineConfig) else None


def run_fit_after(cfg: Any, plan: Any, overrides: list[str]) -> None:
    """Fit at the end of a run, then the study report; a study too small to fit is a note, not a failure."""
    try:
        from sweep.fitting import fit_sweep
    except ImportError:
        return
    try:
        study = fit_sweep(cfg, plan, as_json=False)
    except SweepError as e:
        print(f"\nfit skipped: {e}")
        report(cfg, plan, None, overrides, note=f"fit skipped: {e}")
        return
    except Exception as e:  # the jobs' results are safe; the fit can be redone with `python -m sweep fit`
        from sweep.tracking import redact_text

        print(f"\nfit failed: {redact_text(f'{type(e).__name__}: {e}')}; rerun it with `python -m sweep fit`")
        return
    report(cfg, plan, study, overrides)


def report(cfg: Any, plan: Any, study: Any, overrides: list[str], note: str | None = None, out: Any = None) -> None:
    """Write the study report page (and the MLflow descriptions); a failure here is a note, the results stand."""
    from sweep.study_report import publish

    try:
        path = publish(cfg, plan, study, overrides, note)
    except Exception as e:  # the fit and the runs are in place; the page can be made again by `fit`
        print(f"note: could not write the study report: {type(e).__name__}: {e}", file=sys.stderr)
        return
    print(f"study report: {path}", file=out or sys.stdout)
