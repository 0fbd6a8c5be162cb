"""``python -m sweep [plan|run|status|fit|suggest|prefetch] [--json] [hydra overrides]``: compose -> plan -> launch -> summarise.

    python -m sweep                         run the mini grid (the default) locally, with live progress and ETA
    python -m sweep plan +grid=paper        show the paper grid's jobs, status and cost
    python -m sweep +grid=paper launcher=slurm launcher.partition=gpu
    python -m sweep status                  each job's state and the GPU-hour ledger (--json: one JSON document)
    python -m sweep status --watch[=S]      the same, refreshed every S seconds (10) until every job is done
    python -m sweep fit                     fit the scaling law to the sweep's eval runs; writes the study report
    python -m sweep fit --csv results.csv --n-unit billions --json
    python -m sweep suggest [--k K] [--budget GPU_HOURS|P%] [--target vstar|frontier|alpha-beta] [--csv FILE] [--json]
    python -m sweep run --adaptive [--budget GPU_HOURS|P%] [--until-ci WIDTH] [--k K]
    python -m sweep prefetch +grid=paper    download the grid's HF models (on a machine with internet)

Exit codes: 0 ok, 1 a job failed, 2 bad input (nothing was started), 130 / 143 stopped by
Ctrl-C / SIGTERM (running jobs saved a checkpoint; the same command resumes).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.errors import SweepError, close_names

COMMANDS = ("run", "plan", "status", "fit", "suggest", "prefetch")
MAX_LISTED = 20  # the summary lists at most this many jobs that did not finish
FLAGS_WITH_VALUE = ("--csv", "--n-unit", "--k", "--budget", "--target", "--until-ci")
DESIGN_FLAGS = ("k", "budget", "target", "until_ci")  # suggest and run --adaptive (sweep.design.settings)


@dataclass
class Args:
    command: str = "run"
    json: bool = False
    show_config: bool = False
    csv: str | None = None
    n_unit: str = "auto"
    watch: float | None = None  # status --watch: seconds between refreshes
    adaptive: bool = False
    k: str | None = None
    budget: str | None = None
    target: str | None = None
    until_ci: str | None = None
    overrides: list[str] = field(default_factory=list)


def parse_args(argv: Sequence[str]) -> Args:
    """Subcommand first (optional), then flags and Hydra overrides in any order."""
    args = Args()
    rest = list(argv)
    if rest and not rest[0].startswith("-") and "=" not in rest[0] and not rest[0].startswith(("+", "~")):
        word = rest.pop(0)
        if word not in COMMANDS:
            raise SweepError("command", f"unknown subcommand {word!r}.{close_names(word, COMMANDS)}", f"use one of {', '.join(COMMANDS)}")
        args.command = word
    while rest:
        item = rest.pop(0)
        if item == "--json":
            args.json = True
        elif item == "--cfg":
            args.show_config = True
        elif item.split("=", 1)[0] == "--watch":
            seconds = item.partition("=")[2] or "10"
            try:
                args.watch = float(seconds)
            except ValueError:
                raise SweepError("--watch", f"{seconds!r} is not a number of seconds", "write --watch or --watch=5") from None
            if not args.watch > 0:
                raise SweepError("--watch", f"must be > 0 seconds, got {seconds}", "write --watch or --watch=5")
        elif item == "--adaptive":
            args.adaptive = True
        elif item.split("=", 1)[0] in FLAGS_WITH_VALUE:
            key, _, value = item.partition("=")
            if not value:
                if not rest:
                    raise SweepError(key, "needs a value", f"write {key} VALUE")
                value = rest.pop(0)
            setattr(args, key[2:].replace("-", "_"), value)
        elif item.startswith("-"):
            raise SweepError(item, "unknown option", "options are --json, --cfg, --watch[=S], --csv PATH, --n-unit params|billions, -h; "
                             "suggest and run --adaptive: --k K, --budget GPU_HOURS|P%, --target T, --until-ci WIDTH")
        elif "=" in item or item.startswith("~"):
            args.overrides.append(item)
        else:
            raise SweepError(item, f"{item!r} is not a Hydra override (key=value) nor a subcommand", f"subcommands go first: {', '.join(COMMANDS)}")
    design = [f"--{name.replace('_', '-')}" for name in DESIGN_FLAGS if getattr(args, name) is not None]
    if args.adaptive and args.command != "run":
        raise SweepError("--adaptive", f"is a flag of run, not of {args.command}", "write python -m sweep run --adaptive ...")
    if design and not (args.command == "suggest" or args.adaptive):
        raise SweepError(design[0], f"applies to suggest and run --adaptive, not to {args.command}" + (" without --adaptive" if args.command == "run" else ""),
                         f"write python -m sweep suggest {design[0]} ... or python -m sweep run --adaptive {design[0]} ...")
    if args.csv and args.command not in ("fit", "suggest"):
        raise SweepError("--csv", f"applies to fit and suggest, not to {args.command}", "write python -m sweep suggest --csv FILE ...")
    return args


def design_overrides(args: Args) -> list[str]:
    """The Hydra overrides with the design flags as ``design.*`` overrides (``--k 3`` -> ``design.k=3``)."""
    from sweep.design.settings import flag_overrides

    return [*args.overrides, *flag_overrides(args.k, args.budget, args.target, args.until_ci)]


def load(overrides: Sequence[str]) -> tuple[Any, Any]:
    """(typed config, plan) for these overrides; every input error surfaces here, before anything starts."""
    from sweep.config import compose, resolved
    from sweep.plan import build_plan
    from sweep.specs.config import Config

    cfg = Config.parse(resolved(compose(overrides)), "")
    return cfg, build_plan(cfg)


def store_of(cfg: Any) -> Any:
    from sweep.store import Store

    return Store(cfg.sweep.root, lease_s=cfg.sweep.lease_s)


def cmd_plan(args: Args) -> int:
    from launchers.base import make_launcher
    from sweep.display import plan_rows, render_plan
    from sweep.prefetch import missing_error, missing_for

    cfg, plan = load(args.overrides)
    rows = plan_rows(plan, store_of(cfg))
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
        return 0
    print(render_plan(plan.name, rows))
    todo = [r["id"] for r in rows if r["status"] != "done"]
    try:
        make_launcher(cfg.launcher).check(plan, todo)
    except SweepError as e:
        print(f"\nnote: {e}")
    if todo:
        from sweep.preflight import check_places

        for problem in check_places(cfg, plan, todo):
            print(f"\nnote: `run` would stop here: {problem}")
    absent = missing_for(cfg, plan)
    if absent:
        print(f"\nnote: {missing_error(absent)}")
    return 0


def cmd_status(args: Args) -> int:
    try:
        return _status(args)
    except KeyboardInterrupt:  # how `status --watch` ends
        return 0


def _status(args: Args) -> int:
    from launchers.base import backend_states
    from sweep.ledger import status_document, status_text

    cfg, plan = load(args.overrides)
    store = store_of(cfg)
    limit = cfg.launcher.max_gpu_hours
    while True:
        backend = backend_states(plan, store)  # Slurm's word on submitted jobs
        close_ended(cfg, plan, store, backend, out=sys.stderr if args.json else sys.stdout)
        if args.json:
            print(json.dumps(status_document(plan, store, backend, limit), sort_keys=True), flush=True)
        elif args.watch is not None and sys.stdout.isatty():
            from rich.console import Console

            console = Console(highlight=False)
            console.clear()  # a terminal shows the table in place; a log gets one after the other
            console.print(status_text(plan, store, backend, limit), markup=False, soft_wrap=True)
            console.print(f"{time.strftime('%H:%M:%S')}, refreshed every {args.watch:g}s; Ctrl-C stops", style="dim")
        else:
            print(status_text(plan, store, backend, limit), flush=True)
        if not args.json:
            from sweep.preflight import root_problem

            problem = root_problem(store.root)
            if problem:
                print(f"\nnote: sweep.root: {store.root}: {problem}; `run` would stop there")
        if args.watch is None or all(store.is_done(j.id) for j in plan):
            return 0
        time.sleep(args.watch)
        if not args.json and not sys.stdout.isatty():
            print(f"\n--- {time.strftime('%H:%M:%S')} (refreshed every {args.watch:g}s; Ctrl-C stops) ---", flush=True)


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


def cmd_prefetch(args: Args) -> int:
    from sweep.prefetch import prefetch

    cfg, plan = load(args.overrides)
    return prefetch(cfg, plan)


def cmd_suggest(args: Args) -> int:
    from sweep.design.suggest import suggest

    cfg, plan = load(design_overrides(args))
    return suggest(cfg, plan, csv=Path(args.csv) if args.csv else None, n_unit=args.n_unit, as_json=args.json)


def cmd_run(args: Args) -> int:
    from launchers.base import HELD, backend_states, make_launcher
    from launchers.config import SlurmConfig
    from sweep import interrupt
    from sweep.display import Progress, error_tables, plan_rows, render_plan
    from sweep.live import Watch

    if args.adaptive:
        from sweep.design.adaptive import run_adaptive

        overrides = design_overrides(args)
        return run_adaptive(*load(overrides), overrides)
    cfg, plan = load(args.overrides)
    store = store_of(cfg)
    backend = backend_states(plan, store)
    rows = plan_rows(plan, store, backend)
    # Jobs still queued or running in Slurm from an earlier run are not submitted again.
    todo = [r["id"] for r in rows if r["status"] != "done" and not (r["id"] in backend and backend[r["id"]].active)]
    launcher = make_launcher(cfg.launcher)
    check_before_start(cfg, plan, launcher, todo)
    close_ended(cfg, plan, store, backend)  # before a resubmission reopens them
    print(render_plan(plan.name, rows), flush=True)
    if not todo:
        active = sum(s.active for s in backend.values())
        if active:
            print(f"nothing to submit: {active} jobs are still queued or running; `python -m sweep status` follows them")
            return 0
        print(f"nothing to do: all {len(rows)} jobs are done (results under {store.root})")
        tables = error_tables(plan, store)
        print(f"\n{tables}" if tables else "")
        return 0
    try:
        tracker, rt = setup_tracking(cfg, plan)
    except Exception as e:  # the server went away since the check, the store is locked for too long, ...
        from sweep.tracking import redact_text

        print(f"error: tracking.uri: could not open the sweep's MLflow runs: {redact_text(f'{type(e).__name__}: {e}')}\n"
              "  fix: check the tracking server or store, then run the same command again", file=sys.stderr)
        return 1
    report = None
    t0 = time.time()
    try:
        with interrupt.graceful():
            if isinstance(cfg.launcher, SlurmConfig) and not cfg.launcher.wait:  # submits and returns: nothing to watch
                report = launcher.launch(plan, todo, rt, Progress(len(todo)))
            else:
                with Watch(plan, todo, store, interval_s=cfg.launcher.progress_s,
                           slots=slots(cfg.launcher, len(todo))) as watch:
                    report = launcher.launch(plan, todo, rt, watch)
    except KeyboardInterrupt:  # stopped at once (inline launcher, or a third signal): the store says what happened
        pass
    if report is not None and report.detached:
        sent = [o for o in report.outcomes.values() if o.state == "submitted" and not o.skipped]
        print(f"submitted {len(sent)} jobs; `python -m sweep status` follows them")
        for o in report.outcomes.values():
            if o.error:
                print(f"  {o.state}: {o.job_id}: {o.error.splitlines()[0]}")
        return 1 if any(o.state not in ("submitted", "done") for o in report.outcomes.values()) else 0
    outcomes = outcomes_of(report, todo, store, t0)
    failed = [o for o in outcomes.values() if o.state not in ("done", HELD)]
    held = [o for o in outcomes.values() if o.state == HELD]
    stopped = interrupt.requested()
    print_summary(plan, store, outcomes)  # first: closing the parent may wait out an MLflow outage
    if held:
        print(f"  held: {held[0].error}; raise launcher.max_gpu_hours and run again to go on")
    tables = error_tables(plan, store)
    if tables:
        print(f"\n{tables}", flush=True)
    status = "KILLED" if stopped else "FAILED" if failed else "FINISHED"
    try:
        tracker.finish(rt.parent_run_id, status)
    except Exception as e:  # the next run reopens and closes the parent
        print(f"note: could not mark the sweep's MLflow run {status} ({type(e).__name__}); the next run will", file=sys.stderr)
    if stopped:
        stopped_jobs = sum(o.state == "interrupted" for o in outcomes.values())
        print(f"\nstopped by {interrupt.signal_name()}: {stopped_jobs} running jobs interrupted (they resume from their newest "
              f"checkpoint); to resume, run the same command again: {resume_command(args.overrides)}")
        return interrupt.exit_code()
    if not failed and any(o.state == "done" and not o.skipped for o in outcomes.values()):
        run_fit_after(cfg, plan, args.overrides)
    return 1 if failed else 0


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


def cmd_fit(args: Args) -> int:
    from sweep.fitting import check_fit_overrides, csv_settings, fit_csv, fit_sweep

    if args.csv:
        try:
            return fit_csv(Path(args.csv), args.n_unit, as_json=args.json, settings=csv_settings(args.overrides))
        except (UnicodeDecodeError, csv.Error) as e:
            raise SweepError("--csv", f"{args.csv} is not a readable CSV text file ({type(e).__name__}: {str(e)[:80]})",
                             "give a UTF-8 CSV with columns family,N,V,error[,Q]") from None
    check_fit_overrides(args.overrides)
    cfg, plan = load(args.overrides)
    study = fit_sweep(cfg, plan, as_json=args.json)
    report(cfg, plan, study, args.overrides, out=sys.stderr if args.json else None)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from sweep import interrupt
    from sweep.tracking import redact, redact_text

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        from sweep.help import help_text

        print(help_text(__doc__ or ""))
        return 0
    interrupt.install()
    try:
        args = parse_args(argv)
        if args.show_config:
            from omegaconf import OmegaConf

            from sweep.config import compose

            print(OmegaConf.to_yaml(OmegaConf.create(redact(OmegaConf.to_container(compose(args.overrides))))))
            return 0
        return {"run": cmd_run, "plan": cmd_plan, "status": cmd_status, "fit": cmd_fit, "suggest": cmd_suggest,
                "prefetch": cmd_prefetch}[args.command](args)
    except SweepError as e:
        # The field is a name, never a secret: "llm.xs.api_key: unknown key" keeps its words.
        print(f"error: {e.field}: {redact_text(e.problem)}\n  fix: {redact_text(e.fix)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # before any job started, or after the summary: nothing to save
        print(f"\nstopped by {interrupt.signal_name() or 'SIGINT'}", file=sys.stderr)
        return interrupt.exit_code()
    except BrokenPipeError:  # `python -m sweep plan --json | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
