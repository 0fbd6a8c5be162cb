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
from sweep.lifecycle import (check_before_start, close_ended, launch_watched, outcomes_of, print_summary, report,
                             resume_command, run_fit_after, setup_tracking, store_of)

COMMANDS = ("run", "plan", "status", "fit", "suggest", "prefetch")
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
    from sweep import interrupt
    from sweep.display import error_tables, plan_rows, render_plan

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
    t0 = time.time()
    report = launch_watched(cfg, plan, launcher, todo, rt, store)
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
