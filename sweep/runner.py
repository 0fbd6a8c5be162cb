"""Run one job inside a worker: claim it, track it, call its body, record the result.

Every launcher ends up calling ``run_job`` (in a local worker process, a Ray task
or a Slurm job). The job arrives as a ``JobPayload``: the frozen spec plus the
runtime settings that are not part of its id (store root, tracking URI, parent
run). ``done.json`` is written last: if anything before it fails, the job is not
done and a re-run picks it up, resuming from its checkpoints.

How an attempt ends is recorded everywhere it can be, each place on its own: the
job's ``status.json`` (failed / interrupted / preempted), ``error.json`` with the
traceback, and its MLflow run (FAILED / KILLED, with a ``sweep_error`` tag), so a
full disk or a lost tracking server costs one record, not all of them, and the
outcome names the records it could not write. ``record_lost`` does the same from
the launcher's side for a job whose worker process died or was killed.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.distributed import Crew, World, follow, join_all, start_local_ranks
from sweep.jobs import JOB_BODIES, role
from sweep.jobs.context import JobContext, Preempted
from sweep.progress import PROGRESS_FILE, ProgressFile
from sweep.specs.jobs import Cell, JobSpec
from sweep.store import DONE, FAILED, INTERRUPTED, PREEMPTED, RUNNING, Store, read_json, write_json_atomic

BUSY = "busy"  # another worker holds the job's lease
FOLLOWED = "followed"  # a follower rank's outcome: the leader's outcome is the job's


@dataclass(frozen=True)
class Runtime:
    """Settings of this sweep invocation that do not change any result."""

    store_root: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    sweep_name: str
    git_commit: str = "unknown"
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    lease_s: float = 120.0
    # torch threads for the job (the launcher also caps OMP_NUM_THREADS); 0 = default. Like the CPU model, it can
    # change floating-point sums in their last bits, so a rerun elsewhere matches to rounding, not bit for bit.
    threads: int = 0
    tracking_retry_s: float = 120.0  # tracking.retry_s
    tracking_timeout_s: float = 30.0  # tracking.timeout_s

    def tracker(self) -> Any:
        """A ``Tracker`` of this run's store, with its retry budget."""
        from sweep.tracking import Tracker

        return Tracker(self.tracking_uri, retry_s=self.tracking_retry_s, timeout_s=self.tracking_timeout_s)


@dataclass(frozen=True)
class JobPayload:
    """What a worker needs to run one job (picklable): the job's typed spec, never re-composed on the node."""

    id: str
    kind: str
    spec: JobSpec
    upstream: Mapping[str, str]
    cell: Cell | None = None
    tasks: int = 1  # processes the job runs on this node; the leader spawns the others (``sweep.distributed``)
    gpus: tuple[int, ...] = ()  # GPU ids the launcher gave the job on this node; () = the devices the process sees
    label: str = ""  # readable name (``Job.label``: "train xs-v4-avgpool-s0"), the MLflow run's name


@dataclass
class Outcome:
    """How one attempt of a job ended."""

    job_id: str
    state: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    skipped: bool = False


def _plot_series(series: Mapping[str, Mapping[int, float]], path: Path) -> Path | None:
    """A small PNG of each logged series (the training loss curve), every attempt's steps together."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3), squeeze=False)
    for ax, (key, points) in zip(axes[0], sorted(series.items())):
        steps = sorted(points)
        ax.plot(steps, [points[s] for s in steps])
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def offline_hub() -> None:
    """Jobs never download: models come from the cache `python -m sweep prefetch` filled."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def cap_threads(threads: int) -> None:
    """Cap the math libraries' threads; call before torch is imported (it reads these at import)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def run_job(job: JobPayload, rt: Runtime, stop_requested: Callable[[], bool] | None = None,
            crew: Crew | None = None, stop_state: str = PREEMPTED) -> Outcome:
    """Run ``job`` once if nobody else is running it; never raises for the job's own failures.

    A multi-process job (``job.tasks > 1``) spawns its follower ranks once it holds
    the lease and ends them before returning; under Slurm the followers are the
    job's other tasks and arrive as ``crew``. A job that stops because
    ``stop_requested()`` turned true ends in ``stop_state``: ``preempted`` for a
    scheduler's signal, ``interrupted`` for the user's (Ctrl-C, SIGTERM).
    """
    spawned: Crew | None = None

    def start_ranks() -> World:
        nonlocal spawned
        if crew is not None:
            return crew.run()
        if job.tasks > 1:
            spawned = Crew.on_this_node(job.tasks, _spawned_follower, (job, rt), gpus=job.gpus)
            return spawned.run()
        return World(gpus=job.gpus)

    try:
        return _lead(job, rt, stop_requested, start_ranks, stop_state)
    finally:
        if spawned is not None:
            spawned.end()


class _Records:
    """Where an attempt's end is written: each record on its own, so one that fails (a full disk, a lost
    tracking server) neither stops the others nor hides the job's own error; ``missed`` says which failed."""

    def __init__(self, store: Store, job_id: str) -> None:
        self.store, self.job_id, self.missed = store, job_id, []
        self.tracker: Any = None
        self.run_id: str | None = None

    def attempt(self, what: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as e:
            self.missed.append(f"could not {what}: {type(e).__name__}: {e}")

    def ended(self, state: str, mlflow_status: str, message: str, tb: str | None = None) -> None:
        """Write ``state`` to status.json (with ``message``), error.json when it failed, and close the run."""
        info = {"error": message, "traceback": tb} if state == FAILED else {"reason": message}
        self.attempt(f"write {state} to status.json", lambda: self.store.set_status(self.job_id, state, **info))
        if state == FAILED:
            self.attempt("write error.json", lambda: write_json_atomic(self.store.job_dir(self.job_id) / "error.json",
                                                                       {"error": message, "traceback": tb}))
        if self.tracker is not None and self.run_id is not None:
            self.attempt(f"mark the MLflow run {mlflow_status}", lambda: (
                self.tracker.set_tags(self.run_id, {"sweep_error" if state == FAILED else "sweep_stop": message[:5000],
                                                    "sweep_state": state}),
                self.tracker.finish(self.run_id, mlflow_status)))

    def note(self, text: str) -> str:
        return text + "".join(f"\n  ({m})" for m in self.missed)


def _lead(job: JobPayload, rt: Runtime, stop_requested: Callable[[], bool] | None,
          start_ranks: Callable[[], World], stop_state: str) -> Outcome:
    from sweep.inputs import job_datasets
    from sweep.jobs import KINDS
    from sweep.tracking import flatten, redact, source_tags

    t0 = time.time()
    offline_hub()
    store = Store(rt.store_root, lease_s=rt.lease_s)
    if store.is_done(job.id):
        return Outcome(job.id, DONE, metrics=(store.result(job.id) or {}).get("metrics", {}), skipped=True)
    try:
        lease = store.claim(job.id, rt.owner)
    except OSError as e:  # a full disk, a root that went read-only: nothing of the job's can be written
        return Outcome(job.id, FAILED, error=f"could not take the job's lease in {store.job_dir(job.id)}: {e}")
    if lease is None:
        return Outcome(job.id, BUSY)
    rec = _Records(store, job.id)
    try:
        if store.is_done(job.id):  # finished between our check and our claim
            return Outcome(job.id, DONE, metrics=(store.result(job.id) or {}).get("metrics", {}), skipped=True)
        missing = [u for u in job.upstream.values() if not store.is_done(u)]
        if missing:
            raise RuntimeError(f"upstream jobs are not done: {missing}")
        workdir = store.job_dir(job.id)
        (workdir / PROGRESS_FILE).unlink(missing_ok=True)  # an earlier attempt's: the driver reads this one's
        note = store.write_spec(job.id, redact({"kind": job.kind, **job.spec.to_dict()}))
        if note:
            print(f"warning: {note}", file=sys.stderr, flush=True)
        store.set_status(job.id, RUNNING, owner=rt.owner, pid=os.getpid())
        tracker = rec.tracker = rt.tracker()
        tags = {"sweep_kind": role(job.kind), "sweep_job_kind": job.kind, "sweep_name": rt.sweep_name,
                "sweep_git_commit": rt.git_commit, "sweep_cell": job.cell.name if job.cell else "", "sweep_state": RUNNING,
                **source_tags(KINDS[job.kind].body, rt.git_commit)}
        run_id = rec.run_id = tracker.job_run(rt.experiment_id, rt.parent_run_id, job.id, tags, name=job.label or None)
        # Params are what the job computes (its identity: fixed for the job id); where and how it runs
        # (paths, cadence, batching) may differ between attempts, so those go to tags, which may change.
        semantic = flatten(redact(job.spec.identity()))
        tracker.log_params(run_id, {"job.id": job.id, "job.kind": job.kind, **semantic})
        tracker.set_tags(run_id, {f"spec.{k}": v for k, v in flatten(redact(job.spec.to_dict())).items() if k not in semantic})
        tracker.log_artifact(run_id, workdir / "spec.json")
        upstream_dirs = {kind: store.job_dir(uid) for kind, uid in job.upstream.items()}
        tracker.log_datasets(run_id, job_datasets(job.spec, upstream_dirs))

        series: dict[str, dict[int, float]] = {}

        def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
            # A resumed attempt recomputes the steps between its checkpoint and the stop; MLflow already
            # has them (the same values: the resume is exact), so they are not logged a second time.
            fresh = dict(metrics)
            if step is not None:
                for k, v in metrics.items():
                    if k not in series:
                        series[k] = tracker.metric_steps(run_id, k)
                    if int(step) in series[k]:
                        del fresh[k]
                    series[k][int(step)] = float(v)
            if fresh:
                tracker.log_metrics(run_id, fresh, step)

        if rt.threads > 0:  # the launcher may give a job more threads than its worker started with
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(rt.threads)
            else:
                cap_threads(rt.threads)  # torch reads them when the job imports it
        world = start_ranks()
        ctx = JobContext(
            job_id=job.id, kind=job.kind, spec=job.spec, workdir=workdir,
            upstream=upstream_dirs, log_metrics=log_metrics,
            log_artifact=lambda path: tracker.log_artifact(run_id, Path(path)),
            stop_requested=stop_requested or (lambda: False), progress=ProgressFile(workdir / PROGRESS_FILE),
            world=world, device=world.device(),
        )
        metrics = dict(JOB_BODIES.load(job.kind)(ctx))
        metrics["job/seconds"] = time.time() - t0
        tracker.log_metrics(run_id, metrics)
        plot = _plot_series(series, workdir / "series.png")
        if plot is not None:
            tracker.log_artifact(run_id, plot)
        tracker.set_tags(run_id, {"sweep_state": DONE})
        tracker.finish(run_id, "FINISHED")
        store.mark_done(job.id, metrics)
        return Outcome(job.id, DONE, metrics=metrics, seconds=time.time() - t0)
    except (Preempted, KeyboardInterrupt) as e:
        state = INTERRUPTED if isinstance(e, KeyboardInterrupt) else stop_state
        rec.ended(state, "KILLED", str(e) or "stopped by the user (KeyboardInterrupt)")
        if isinstance(e, KeyboardInterrupt):
            raise
        return Outcome(job.id, state, error=rec.note(str(e)), seconds=time.time() - t0)
    except Exception as e:
        text = describe(e)
        rec.ended(FAILED, "FAILED", text, traceback.format_exc())
        return Outcome(job.id, FAILED, error=rec.note(text), seconds=time.time() - t0)
    finally:
        try:
            lease.release()
        except OSError:
            pass  # a lease we cannot remove goes stale with our process


def describe(error: BaseException) -> str:
    """``Type: message``; its first line also names the innermost cause, which often says more
    (``MlflowException: ... (from OperationalError: database or disk is full)``)."""
    root, seen = error, {id(error)}
    while True:
        nxt = root.__cause__ if root.__cause__ is not None else None if root.__suppress_context__ else root.__context__
        if nxt is None or id(nxt) in seen:
            break
        root = nxt
        seen.add(id(root))
    first, *rest = f"{type(error).__name__}: {error}".splitlines() or [""]
    cause = (str(root).splitlines() or [""])[0]
    if root is not error and cause not in first:  # a message that quotes its cause already says it
        first += f" (from {type(root).__name__}: {cause})"
    return "\n".join([first, *rest])


def record_lost(job: JobPayload, rt: Runtime, state: str, reason: str, pid: int | None = None) -> str:
    """Record, from the launcher, a job whose worker process died or was killed while running it.

    The job's ``status.json`` (and ``error.json`` when it failed) say ``state`` (failed /
    interrupted) and ``reason``; its MLflow run ends FAILED or KILLED with the reason as a
    tag, opened here if the worker died before opening it; the dead worker's lease is removed.
    Nothing is written when the job is done or another live process holds its lease (the
    worker died before it claimed the job). Returns ``reason`` with what could not be written.
    """
    store = Store(rt.store_root, lease_s=rt.lease_s)
    if store.is_done(job.id) or store.lease_owner(job.id) is not None:
        return reason
    lease = store.job_dir(job.id) / "lease"
    owner = read_json(lease) or {}
    if owner.get("host") == socket.gethostname() and owner.get("pid") == pid:
        lease.unlink(missing_ok=True)
    rec = _Records(store, job.id)

    def open_run() -> None:
        rec.tracker = rt.tracker()
        rec.run_id = rec.tracker.job_run(rt.experiment_id, rt.parent_run_id, job.id, {
            "sweep_kind": role(job.kind), "sweep_job_kind": job.kind, "sweep_name": rt.sweep_name,
            "sweep_cell": job.cell.name if job.cell else ""})

    rec.attempt("open the MLflow run", open_run)
    rec.ended(state, "FAILED" if state == FAILED else "KILLED", reason)
    return rec.note(reason)


def follow_job(job: JobPayload, rt: Runtime, world: World, stop_requested: Callable[[], bool] | None = None) -> Outcome:
    """A follower rank: run the job body each time the leader does; it logs and writes nothing itself."""
    t0 = time.time()
    store = Store(rt.store_root, lease_s=rt.lease_s)
    offline_hub()
    if rt.threads > 0:
        import torch

        torch.set_num_threads(rt.threads)

    def body(w: World) -> None:
        ctx = JobContext(job_id=job.id, kind=job.kind, spec=job.spec, workdir=store.job_dir(job.id),
                         upstream={kind: store.job_dir(uid) for kind, uid in job.upstream.items()},
                         stop_requested=stop_requested or (lambda: False), world=w, device=w.device())
        try:
            JOB_BODIES.load(job.kind)(ctx)
        except Preempted:
            pass  # the leader saved the checkpoint; it decides what comes next

    follow(world, body)
    return Outcome(job.id, FOLLOWED, seconds=time.time() - t0)


def run_node(job: JobPayload, rt: Runtime, world: World) -> Outcome:
    """One node of a multi-node job whose nodes were started by someone else (Ray's placement group).

    ``world`` is this node's first rank (``node * job.tasks``); it spawns the node's
    other ``job.tasks - 1`` ranks. Node 0 leads the job (``run_job``), the others follow.
    """
    if world.leader:
        crew = Crew.spawn(world, job.tasks, _spawned_follower, (job, rt))
        try:
            return run_job(job, rt, crew=crew)
        finally:
            crew.end()
    procs = start_local_ranks(world, job.tasks, _spawned_follower, (job, rt))
    try:
        return follow_job(job, rt, world)
    finally:
        join_all(procs)


def _spawned_follower(world: World, job: JobPayload, rt: Runtime) -> None:
    """Entry point of a follower process the leader spawned (local and Ray launchers)."""
    if rt.threads > 0:
        cap_threads(rt.threads)
    follow_job(job, rt, world)
