"""Live progress of a launch in the driver: each running job's step, loss, rate and ETA, and the study's.

    with Watch(plan, todo, store, interval_s=cfg.launcher.progress_s, slots=2) as watch:
        launcher.launch(plan, todo, rt, watch)       # Watch is the launcher's Events sink

On a terminal it draws with ``rich``: one line per running job that updates in
place (job, phase step / total, current loss, rate, ETA) under an overall bar
(jobs ended / to run, elapsed, ETA); start and end lines scroll above it. When
stdout is not a terminal (CI, ``nohup``, a Slurm log) it prints the same figures
as plain lines every ``interval_s`` seconds instead. A thread polls the running
jobs' ``progress.json`` files (``sweep.progress``), which the workers write, so
this works the same for local processes, jobs in this process, Ray tasks and
Slurm jobs (``launcher.wait=true``): workers never write to the terminal.

The study's ETA is the work left (the plan's cost estimates, corrected by the
speed measured so far, see ``Estimator``) spread over ``slots`` concurrent jobs
(the launcher's workers; when unknown, the most jobs seen running at once).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from sweep.display import Progress
from sweep.plan import Job, Plan
from sweep.progress import Estimator, JobProgress, format_seconds, read_progress
from sweep.runner import Outcome
from sweep.store import DONE, Store

POLL_S = 0.5  # how often the files are read (a stat and a small JSON read per running job)


def job_text(progress: JobProgress | None, eta: float | None) -> str:
    """``train 1200/3000  loss 0.412  41.3 steps/s  ETA 0:00:44`` (``starting`` before the first report)."""
    if progress is None:
        return "starting"
    bits = [f"{progress.phase} {progress.step}/{progress.total}"]
    if progress.loss is not None:
        bits.append(f"loss {progress.loss:.3f}")
    if progress.rate:
        bits.append(f"{progress.rate:.1f} steps/s" if progress.rate >= 1 else f"{1 / progress.rate:.1f} s/step")
    bits.append(f"ETA {format_seconds(eta)}")
    return "  ".join(bits)


class Watch:
    """The launcher's ``Events`` sink that also shows the running jobs' progress; a context manager."""

    def __init__(self, plan: Plan, todo: Sequence[str], store: Store, *, out: TextIO | None = None,
                 interval_s: float = 30.0, slots: int | None = None, live: bool | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        from rich.console import Console

        self.plan, self.store, self.clock = plan, store, clock
        self.todo = [j for j in plan if j.id in set(todo)]
        self.interval_s, self.slots = interval_s, slots
        self.console = Console(file=out or sys.stdout, highlight=False)
        self.live = self.console.is_terminal if live is None else live
        self.estimator = Estimator(plan)
        self.estimator.observe_store(store)
        self.running: dict[str, float] = {}  # job id -> when this attempt started
        self.ended: set[str] = set()
        self.most_running = 0
        self.t0 = clock()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="sweep-progress", daemon=True)
        self.bars: Any = None  # rich.progress.Progress, on a terminal
        self.tasks: dict[str, Any] = {}
        self.lines = Progress(len(self.todo), out or sys.stdout,
                              emit=self._print_above if self.live else None)
        self.last_plain = self.t0

    # ---- Events ------------------------------------------------------------------------
    def started(self, job: Job, attempt: int) -> None:
        with self.lock:
            self.running[job.id] = self.clock()
            self.most_running = max(self.most_running, len(self.running))
            self.lines.started(job, attempt)

    def waiting(self, job: Job, holder: str) -> None:
        with self.lock:
            self.lines.waiting(job, holder)

    def finished(self, job: Job, outcome: Outcome, final: bool = True) -> None:
        with self.lock:
            self.running.pop(job.id, None)
            if final:
                self.ended.add(job.id)
            if outcome.state == DONE and not outcome.skipped and outcome.seconds > 0:
                self.estimator.observe(job, outcome.seconds)
            if self.bars is not None and job.id in self.tasks:
                self.bars.remove_task(self.tasks.pop(job.id))
            self.lines.finished(job, outcome, final)

    # ---- what is shown -------------------------------------------------------------------
    def snapshot(self) -> tuple[list[tuple[Job, JobProgress | None, float | None]], str]:
        """(each running job with its progress and ETA, the overall figures), read now."""
        now = self.clock()
        with self.lock:
            running = dict(self.running)
            ended = len(self.ended)
            slots = self.slots or max(1, self.most_running)
        rows, state = [], {}
        for jid, since in running.items():
            job = self.plan.get(jid)
            prog = read_progress(self.store.job_dir(jid))
            state[jid] = (now - since, prog)
            rows.append((job, prog, self.estimator.remaining(job, now - since, prog)))
        pending = [j for j in self.todo if j.id not in self.ended and j.id not in running]
        eta = self.estimator.study_remaining(pending, state, slots)
        overall = (f"{ended}/{len(self.todo)} jobs ended, {len(running)} running, "
                   f"elapsed {format_seconds(now - self.t0)}, ETA {format_seconds(eta)}")
        return rows, overall

    def _print_above(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _draw(self) -> None:
        rows, overall = self.snapshot()
        with self.lock:
            bars = self.bars
            if bars is None:
                return
            bars.update(self.tasks["__all__"], completed=len(self.ended), detail=overall)
            for job, prog, eta in rows:
                if job.id not in self.running:
                    continue  # it ended while we read its file
                if job.id not in self.tasks:
                    self.tasks[job.id] = bars.add_task(job.label, total=None, detail="")
                total = prog.total if prog else None
                bars.update(self.tasks[job.id], total=total, completed=prog.step if prog else 0,
                            detail=job_text(prog, eta))

    def _plain(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.last_plain < self.interval_s:
            return
        self.last_plain = now
        rows, overall = self.snapshot()
        if not rows:
            return
        count = f"[{len(self.ended):>3}/{len(self.todo)}]"
        for job, prog, eta in rows:
            self.lines.emit(f"{count} progress {job.label}: {job_text(prog, eta)}")
        self.lines.emit(f"{count} sweep {self.plan.name}: {overall}")

    def _poll(self) -> None:
        while not self.stop.wait(POLL_S):
            try:
                self._draw() if self.live else self._plain()
            except Exception as e:  # the display must never stop the launch
                self.lines.emit(f"(progress display: {type(e).__name__}: {e})")
                return

    # ---- lifetime ------------------------------------------------------------------------
    def __enter__(self) -> Watch:
        if self.live:
            from rich.progress import BarColumn, Progress as Bars, TextColumn

            self.bars = Bars(TextColumn("{task.description}"), BarColumn(bar_width=24), TextColumn("{task.fields[detail]}"),
                             console=self.console, refresh_per_second=4, redirect_stderr=False)
            self.tasks["__all__"] = self.bars.add_task(f"sweep {self.plan.name}", total=max(1, len(self.todo)), detail="")
            self.bars.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        if self.bars is not None:
            self._draw()
            self.bars.stop()
            self.bars = None
