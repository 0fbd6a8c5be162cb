"""The launcher protocol, and the DAG executor shared by the backends that wait for their jobs.

A launcher gets the plan, the ids of the jobs to run (the rest are done) and the
runtime, and either runs them to completion (local, Ray) or submits them and
returns (Slurm, ``LaunchReport.detached``). Backends are picked by config
(``launcher.name``) through lazy ``"module:Class"`` strings, so ``ray`` and
``submitit`` are imported only when chosen.

A backend that submits to a scheduler records the scheduler's id in each job's
``status.json`` (``backend: {"name": ..., ...}``) and may offer a static
``backend_states(records)``: ``status`` shows what the scheduler says, and ``run``
does not submit again what is still queued or running there. Both (and a waiting
Slurm launch) then close with ``close_ended_runs`` the MLflow runs of jobs the
scheduler ended under them (scancel, a dead node, out of memory), which their
job's own code never got to close.

Once the user asks the run to stop (``sweep.interrupt``: Ctrl-C, SIGTERM), the DAG
executor starts nothing more and retries nothing; the jobs it did not start are
reported ``not started``, and it returns when the running ones have ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from launchers.config import LauncherConfig, overrides
from sweep import interrupt
from sweep.errors import SweepError
from sweep.ledger import spent_gpu_hours
from sweep.plan import Job, Plan
from sweep.progress import gpus_of
from sweep.registry import Registry
from sweep.runner import BUSY, JobPayload, Outcome, Runtime
from sweep.store import DONE, FAILED, PREEMPTED, BackendState, Store

BLOCKED = "blocked"  # an upstream job failed
NOT_STARTED = "not started"  # the run was stopped before the job's turn
HELD = "held"  # not submitted: launcher.max_gpu_hours would have been passed

LAUNCHERS: Registry[Any] = Registry("launcher", {
    "local": "launchers.local:LocalLauncher",
    "inline": "launchers.inline:InlineLauncher",
    "ray": "launchers.ray:RayLauncher",
    "slurm": "launchers.slurm:SlurmLauncher",
}, field="launcher")


class Events(Protocol):
    """Progress sink (the CLI's display)."""

    def started(self, job: Job, attempt: int) -> None: ...
    def finished(self, job: Job, outcome: Outcome, final: bool = True) -> None: ...
    def waiting(self, job: Job, holder: str) -> None:
        """The job is running elsewhere (another sweep holds its lease, ``holder`` = host:pid); we wait for it."""


@dataclass
class LaunchReport:
    """What happened to each job this launch touched."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    detached: bool = False  # jobs were submitted and run on after we return


class Launcher(Protocol):
    """One execution backend."""

    def check(self, plan: Plan, todo: Sequence[str]) -> None:
        """Raise ``SweepError`` if these jobs cannot run here (before anything starts)."""

    def launch(self, plan: Plan, todo: Sequence[str], rt: Runtime, events: Events) -> LaunchReport:
        """Run (or submit) the jobs in ``todo`` in DAG order."""


def payload(job: Job, tasks: int = 1, gpus: Sequence[int] = ()) -> JobPayload:
    """What the worker gets; ``tasks`` > 1: the worker spawns the job's other ranks on its node;
    ``gpus``: the node's GPU ids the launcher gave the job (empty: the devices the process sees)."""
    return JobPayload(id=job.id, kind=job.kind, spec=job.spec, upstream=dict(job.upstream),
                      cell=job.cell, tasks=tasks, gpus=tuple(gpus), label=job.label)


def tasks_per_node(job: Job, res: Mapping[str, Any]) -> int:
    """Processes (ranks) of the job on each node: ``tasks_per_node``, by default one per GPU, at least one."""
    gpus = int(res.get("gpus", 0) or 0)
    tasks = int(res.get("tasks_per_node") or max(1, gpus))
    where = f"resources.{job.resource_class}.tasks_per_node"
    if tasks < 1:
        raise SweepError(where, f"is {tasks}", "use 1 or more (leave it out for one process per GPU)")
    if gpus and tasks > gpus:
        raise SweepError(where, f"is {tasks} but the class has {gpus} GPUs per node; a GPU takes one rank",
                         f"set tasks_per_node <= {gpus}, or leave it out for one process per GPU")
    ranks = tasks * int(res.get("nodes", 1) or 1)
    batch = getattr(getattr(job.spec, "stage", None), "global_batch_size", None)
    if batch and int(batch) % ranks:
        raise SweepError(f"train.stages.{job.spec.stage_index}.global_batch_size",  # type: ignore[union-attr]
                         f"is {batch}, which the {ranks} ranks of resource class {job.resource_class!r} cannot share evenly",
                         f"use a multiple of {ranks}, or change resources.{job.resource_class}.tasks_per_node / nodes")
    return tasks


def class_resources(job: Job, classes: Mapping[str, Any] | None) -> dict[str, Any]:
    """The job's resource class (top-level ``resources``) with the launcher's per-class overrides on top."""
    return {**dict(job.resources), **overrides(dict(classes or {}), job.resource_class)}


def backend_states(plan: Plan, store: Store) -> dict[str, BackendState]:
    """What each scheduler says about the not-done jobs the store records as submitted to it."""
    records: dict[str, dict[str, Mapping[str, Any]]] = {}
    for job in plan:
        if store.is_done(job.id):
            continue
        info = store.state(job.id).info or {}
        backend = info.get("backend")
        if isinstance(backend, Mapping) and backend.get("name") in LAUNCHERS:
            records.setdefault(str(backend["name"]), {})[job.id] = backend
    out: dict[str, BackendState] = {}
    for name, recs in records.items():
        query = getattr(LAUNCHERS.load(name), "backend_states", None)
        if query is not None:
            out.update(query(recs))
    return out


def close_ended_runs(store: Store, states: Mapping[str, BackendState], tracking_uri: str, *,
                     experiment_id: str | None = None, experiment_name: str | None = None) -> dict[str, str]:
    """Close the MLflow runs left RUNNING by jobs the scheduler ended; job id -> reason, for those closed.

    A job qualifies when it is not done, nobody holds its lease, and its scheduler job is no
    longer active and ended in one of ``ENDED_RUN_STATUS``'s states (cancelled, failed, node
    failure, out of memory, time limit, preempted without requeue). Its run (found by its
    ``sweep_job_id`` tag) becomes KILLED or FAILED with a ``sweep_error`` saying why, if it is
    still RUNNING; FINISHED, FAILED or KILLED runs stay as they are, so calling this again
    changes nothing. One MLflow search per call, none (and no tracking store opened) when no
    job qualifies. ``experiment_name``: the sweep's experiment, looked up (not created).
    """
    from launchers.slurm_queue import ENDED_RUN_STATUS
    from sweep.tracking import Tracker

    ended: dict[str, tuple[str, str]] = {}
    for jid, st in states.items():
        status = ENDED_RUN_STATUS.get(st.state)
        if status is None or st.active or store.is_done(jid) or store.lease_owner(jid) is not None:
            continue
        ended[jid] = (status, f"Slurm job {st.ref} ended {st.state}")
    if not ended:
        return {}
    tracker = Tracker(tracking_uri)
    if experiment_id is None:
        experiment_id = tracker.find_experiment(str(experiment_name))
        if experiment_id is None:
            return {}
    return tracker.close_job_runs(experiment_id, ended)


def check_budget(plan: Plan, todo: Sequence[str], store: Store, max_gpu_hours: float | None) -> None:
    """For a backend that submits everything at once (Slurm): refuse a launch whose estimate passes the budget.

    Spent (the plan's finished jobs, measured) plus the estimate of every job to submit
    must stay within ``launcher.max_gpu_hours``; nothing is submitted otherwise.
    """
    if max_gpu_hours is None:
        return
    spent = spent_gpu_hours(plan, store)
    estimate = sum(plan.get(j).gpu_hours for j in todo)
    if spent + estimate > max_gpu_hours:
        raise SweepError("launcher.max_gpu_hours",
                         f"is {max_gpu_hours:g}, but the {len(todo)} jobs to submit are estimated at {estimate:,.2f} GPU-hours "
                         f"and {spent:,.2f} are spent already ({spent + estimate:,.2f} in all); this launcher submits "
                         "every job at once, so it cannot stop half-way",
                         "raise launcher.max_gpu_hours, or submit part of the grid (`python -m sweep plan` shows each "
                         "job's estimate)")


def make_launcher(cfg: LauncherConfig) -> Launcher:
    """The backend named by ``launcher.name``, built from its typed config (``launchers.config``)."""
    return LAUNCHERS.load(cfg.name)(cfg)


class DagExecutor:
    """Runs jobs as their upstream jobs finish, with retries; the backend supplies submit/wait.

    ``submit(job)`` starts one attempt and returns a handle; ``wait(handles, timeout)``
    returns the (handle, Outcome) pairs that finished. A job another sweep is
    running (``busy``) is polled in the store until it is done, or retried if its
    owner vanished.

    With ``max_gpu_hours`` it submits nothing more once the GPU-hours spent (the plan's
    jobs done before, then every attempt of this launch: measured seconds x GPUs) plus
    those in flight (each running job's estimate, or its time so far if longer) plus the
    next job's estimate would pass the limit: that job and every job not yet started end
    ``held``, each saying why, and the running ones finish.
    """

    def __init__(self, plan: Plan, todo: Iterable[str], store: Store, max_attempts: int, events: Events,
                 poll_s: float = 1.0, max_in_flight: int | None = None, fits: Callable[[Job], bool] | None = None,
                 max_gpu_hours: float | None = None) -> None:
        self.plan, self.store, self.events = plan, store, events
        self.todo = [j for j in plan if j.id in set(todo)]
        self.max_attempts, self.poll_s = max(1, int(max_attempts)), poll_s
        # A backend with a fixed pool says how many jobs it really runs at once, so that
        # "start" means started and later-ready jobs are not stuck behind a long queue.
        self.max_in_flight = max_in_flight
        # A backend that places jobs itself (the local launcher's GPUs) says whether a job fits now;
        # a ready job that does not waits, and smaller ready jobs go first.
        self.fits = fits or (lambda job: True)
        self.max_gpu_hours = max_gpu_hours

    def run(self, submit: Callable[[Job], Any], wait: Callable[[list[Any], float], list[tuple[Any, Outcome]]]) -> LaunchReport:
        report = LaunchReport()
        todo_ids = {j.id for j in self.todo}
        finished: dict[str, str] = {}  # job id -> DONE / FAILED / BLOCKED
        attempts: dict[str, int] = {}
        running: dict[Any, Job] = {}
        waiting: dict[str, float] = {}  # busy elsewhere: job id -> next poll time
        # A ready eval first, so each cell's results reach the store and MLflow as soon as it is trained
        # (evals are short next to training), not all at the end; then the costliest ready job (by the
        # plan's FLOPs estimate), so the longest jobs do not trail at the end.
        pending = sorted(self.todo, key=lambda j: (j.role != "eval", -j.flops))

        def state_of(dep: str) -> str | None:
            if dep in finished:
                return finished[dep]
            if dep not in todo_ids:
                return DONE if self.store.is_done(dep) else FAILED
            return None

        spent = spent_gpu_hours(self.plan, self.store) if self.max_gpu_hours is not None else 0.0
        started_at: dict[str, float] = {}
        held: list[str] = []  # the reason, once the budget stopped submissions

        def over_budget(job: Job) -> str | None:
            if self.max_gpu_hours is None or held or job.gpu_hours <= 0:
                return held[0] if held else None
            now = time.time()
            flight = sum(max(j.gpu_hours, (now - started_at[j.id]) / 3600.0 * gpus_of(j)) for j in running.values())
            if spent + flight + job.gpu_hours > self.max_gpu_hours:
                held.append(f"not submitted: launcher.max_gpu_hours={self.max_gpu_hours:g} would be passed "
                            f"({spent:.2f} GPU-hours spent + {flight:.2f} in flight + {job.gpu_hours:.2f} for this job)")
            return held[0] if held else None

        def start(job: Job) -> None:
            reason = over_budget(job)
            if reason is not None:
                settle(job, Outcome(job.id, HELD, error=reason))
                return
            holder = self.store.lease_owner(job.id)
            if holder is not None:  # another run is on it: wait, and say so instead of "start"
                waiting[job.id] = time.time() + self.poll_s
                self.events.waiting(job, str(holder.get("owner") or f"{holder.get('host')}:{holder.get('pid')}"))
                return
            attempts[job.id] = attempts.get(job.id, 0) + 1
            started_at[job.id] = time.time()
            self.events.started(job, attempts[job.id])
            running[submit(job)] = job

        def settle(job: Job, outcome: Outcome) -> None:
            finished[job.id] = outcome.state
            report.outcomes[job.id] = outcome
            self.events.finished(job, outcome)

        while pending or running or waiting:
            if interrupt.requested():  # start nothing more; what runs now stops at its next checkpoint
                for jid in [j.id for j in pending] + list(waiting):
                    report.outcomes[jid] = Outcome(jid, NOT_STARTED)
                pending, waiting = [], {}
            for job in list(pending):
                if self.max_in_flight is not None and len(running) >= self.max_in_flight:
                    break
                deps = [state_of(d) for d in job.deps]
                if held:
                    pending.remove(job)
                    settle(job, Outcome(job.id, HELD, error=held[0]))
                elif any(s in (FAILED, BLOCKED, HELD) for s in deps):
                    pending.remove(job)
                    bad = [d for d, s in zip(job.deps, deps) if s in (FAILED, BLOCKED, HELD)]
                    settle(job, Outcome(job.id, BLOCKED, error=f"upstream failed: {', '.join(bad)}"))
                elif all(s == DONE for s in deps) and self.fits(job):
                    pending.remove(job)
                    start(job)
            now = time.time()
            for jid, due in list(waiting.items()):
                if due > now:
                    continue
                job = self.plan.get(jid)
                if self.store.is_done(jid):
                    del waiting[jid]
                    settle(job, Outcome(jid, DONE, metrics=(self.store.result(jid) or {}).get("metrics", {}), skipped=True))
                elif self.store.lease_owner(jid) is None and self.fits(job):
                    del waiting[jid]
                    start(job)  # its other owner is gone: take it over (or it is back in waiting, re-claimed)
                else:
                    waiting[jid] = now + self.poll_s
            if not running:
                if waiting or pending:
                    time.sleep(min(self.poll_s, 0.2))
                continue
            for handle, outcome in wait(list(running), self.poll_s):
                job = running.pop(handle)
                if outcome.state != BUSY:
                    spent += outcome.seconds / 3600.0 * gpus_of(job)
                if outcome.state == BUSY:  # claimed by another run between our look and the worker's claim
                    waiting[job.id] = time.time() + self.poll_s
                    attempts[job.id] -= 1
                    holder = self.store.lease_owner(job.id) or {}
                    self.events.waiting(job, str(holder.get("owner", "another run")))
                elif (outcome.state in (FAILED, PREEMPTED) and attempts[job.id] < self.max_attempts
                      and not interrupt.requested()):
                    self.events.finished(job, outcome, final=False)
                    start(job)
                else:
                    settle(job, outcome)
        return report
