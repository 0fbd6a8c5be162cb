"""How far each running job is, and how long the study has left: the worker's side and the arithmetic.

A worker never touches the terminal. The job's leader writes a small
``progress.json`` into its job folder (atomically, at most once a second) from
the training loop and the eval loops::

    ctx.progress(step, total, loss=0.41, phase="train")     # sweep.jobs.loop.StepBook does this

The driver, whatever the backend (local processes, this process, Ray tasks,
Slurm jobs on a shared filesystem), reads those files while the jobs run
(``read_progress``) and shows them (``sweep.live``). ``Estimator`` turns the
plan's cost estimates into seconds, corrected by the speed measured so far: a
finished job's seconds per FLOP (per role), and a running job's own step rate.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.store import read_json, write_json_atomic

PROGRESS_FILE = "progress.json"


class ProgressFile:
    """A job leader's progress reports, written to ``path`` at most every ``every_s`` seconds.

    The rate is steps per second since this attempt's first report of the phase, so a
    job resumed from a checkpoint is not credited with the steps it skipped.
    """

    def __init__(self, path: Path, every_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.path, self.every_s, self.clock = Path(path), every_s, clock
        self.phase: str | None = None
        self.t0 = self.last_write = 0.0
        self.step0 = 0

    def __call__(self, step: int, total: int, loss: float | None = None, phase: str = "train") -> None:
        now = self.clock()
        if phase != self.phase:
            self.phase, self.t0, self.step0, self.last_write = phase, now, step, 0.0
        if now - self.last_write < self.every_s and step < total:
            return
        elapsed = now - self.t0
        rate = (step - self.step0) / elapsed if elapsed > 0 and step > self.step0 else None
        write_json_atomic(self.path, {"step": int(step), "total": int(total), "phase": phase, "time": now,
                                      "loss": None if loss is None or loss != loss else float(loss), "rate": rate})
        self.last_write = now


def no_progress(step: int, total: int, loss: float | None = None, phase: str = "train") -> None:
    """The progress sink of a job nobody watches (follower ranks, tests calling a body directly)."""


@dataclass(frozen=True)
class JobProgress:
    """One ``progress.json`` as read by the driver."""

    step: int
    total: int
    phase: str
    time: float
    loss: float | None = None
    rate: float | None = None  # steps per second

    @property
    def remaining_s(self) -> float | None:
        """Seconds to the end of this phase at the measured rate."""
        if not self.rate:
            return None
        return max(0, self.total - self.step) / self.rate


def read_progress(job_dir: Path) -> JobProgress | None:
    """The job's last progress report, or None (not started, no loop, or written by an older version)."""
    data = read_json(Path(job_dir) / PROGRESS_FILE)
    try:
        return JobProgress(step=int(data["step"]), total=int(data["total"]), phase=str(data.get("phase", "")),
                           time=float(data["time"]), loss=data.get("loss"), rate=data.get("rate"))
    except (TypeError, KeyError, ValueError):
        return None


def format_seconds(seconds: float | None) -> str:
    """``3725`` -> ``1:02:05``; None -> ``--``."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--"
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Estimator:
    """Seconds each job of a plan takes: the plan's estimate, corrected by what was measured so far.

    ``observe(job, seconds)`` records a finished job. A job's estimate is, in this order:
    its role's measured seconds per FLOP x its FLOPs (the mean seconds of its role when it
    has no FLOP estimate, as the features job); the measured seconds per FLOP of any role;
    the plan's GPU-hour estimate as wall time (GPU jobs); else unknown (None).
    """

    def __init__(self, jobs: Iterable[Any]) -> None:
        self.per_role: dict[str, list[tuple[float, float]]] = {}  # role -> [(flops, seconds)]
        self.jobs = {j.id: j for j in jobs}

    def observe(self, job: Any, seconds: float) -> None:
        if seconds > 0:
            self.per_role.setdefault(job.role, []).append((float(job.flops), float(seconds)))

    def observe_store(self, store: Any) -> None:
        """Calibrate from the plan's jobs done before (their measured ``job/seconds``)."""
        for job in self.jobs.values():
            record = store.result(job.id)
            if record:
                self.observe(job, float(record.get("metrics", {}).get("job/seconds", 0.0)))

    def _ratio(self, rows: list[tuple[float, float]]) -> float | None:
        rows = [(f, s) for f, s in rows if f > 0]
        return sum(s for _, s in rows) / sum(f for f, _ in rows) if rows else None

    def seconds(self, job: Any, provisional: Mapping[str, list[tuple[float, float]]] | None = None) -> float | None:
        """Estimated wall seconds of one whole attempt of ``job``.

        ``provisional``: role -> (FLOPs, projected seconds) of running jobs, used for a role
        none of whose jobs has finished yet.
        """
        table = {**(provisional or {}), **self.per_role}
        rows = table.get(job.role, [])
        if job.flops > 0:
            ratio = self._ratio(rows) or self._ratio([r for rs in table.values() for r in rs])
            if ratio is not None:
                return ratio * job.flops
        elif rows:
            return statistics.mean(s for _, s in rows)
        gpus = gpus_of(job)
        if gpus and job.gpu_hours > 0:
            return job.gpu_hours * 3600.0 / gpus
        return None

    def remaining(self, job: Any, elapsed: float, progress: JobProgress | None,
                  provisional: Mapping[str, list[tuple[float, float]]] | None = None) -> float | None:
        """Seconds left for a running job: its own rate if it reports one, else the estimate less the time spent."""
        if progress is not None and progress.remaining_s is not None:
            return progress.remaining_s
        est = self.seconds(job, provisional)
        return None if est is None else max(0.0, est - elapsed)

    def study_remaining(self, pending: Iterable[Any], running: Mapping[str, tuple[float, JobProgress | None]],
                        slots: int) -> float | None:
        """Seconds until every job has ended: the work left spread over ``slots`` concurrent jobs.

        ``running``: job id -> (seconds since it started, its progress). Unknown when any
        job's estimate is unknown, so the figure is never a silent under-estimate.
        """
        provisional: dict[str, list[tuple[float, float]]] = {}
        for jid, (elapsed, prog) in running.items():
            job = self.jobs[jid]
            if prog is not None and prog.remaining_s is not None and job.flops > 0:
                provisional.setdefault(job.role, []).append((float(job.flops), elapsed + prog.remaining_s))
        lefts = [self.remaining(self.jobs[jid], elapsed, prog, provisional) for jid, (elapsed, prog) in running.items()]
        work = 0.0
        for left in lefts:
            if left is None:
                return None
            work += left
        for job in pending:
            est = self.seconds(job, provisional)
            if est is None:
                return None
            work += est
        return work / max(1, slots)


def gpus_of(job: Any) -> int:
    """GPUs one job holds: GPUs per node x nodes of its resource class."""
    res = job.resources
    return int(res.get("gpus", 0) or 0) * int(res.get("nodes", 1) or 1)
