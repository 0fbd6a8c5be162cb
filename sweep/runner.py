"""Run one job inside a worker: claim it, track it, call its body, record the result.

Every launcher ends up calling ``run_job`` (in a local worker process, a Ray task
or a Slurm job). The job arrives as a ``JobPayload``: the frozen spec plus the
runtime settings that are not part of its id (store root, tracking URI, parent
run). ``done.json`` is written last: if anything before it fails, the job is not
done and a re-run picks it up, resuming from its checkpoints.
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

from sweep.distributed import Crew, World, follow, join_all, start_local_ranks
from sweep.jobs import JOB_BODIES, role
from sweep.jobs.context import JobContext, Preempted
from sweep.progress import PROGRESS_FILE, ProgressFile
from sweep.specs.jobs import Cell, JobSpec
from sweep.store import DONE, FAILED, PREEMPTED, RUNNING, Store, write_json_atomic

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
    threads: int = 0  # torch threads in the worker (the launcher also caps OMP_NUM_THREADS); 0 = default


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


def _plot_series(series: Mapping[str, list[tuple[int, float]]], path: Path) -> Path | None:
    """A small PNG of each logged series (the training loss curve)."""
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3), squeeze=False)
    for ax, (key, points) in zip(axes[0], sorted(series.items())):
        steps, values = zip(*points)
        ax.plot(steps, values)
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
            crew: Crew | None = None) -> Outcome:
    """Run ``job`` once if nobody else is running it; never raises for the job's own failures.

    A multi-process job (``job.tasks > 1``) spawns its follower ranks once it holds
    the lease and ends them before returning; under Slurm the followers are the
    job's other tasks and arrive as ``crew``.
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
        return _lead(job, rt, stop_requested, start_ranks)
    finally:
        if spawned is not None:
            spawned.end()


def _lead(job: JobPayload, rt: Runtime, stop_requested: Callable[[], bool] | None,
          start_ranks: Callable[[], World]) -> Outcome:
    from sweep.inputs import job_datasets
    from sweep.jobs import KINDS
    from sweep.tracking import Tracker, flatten, redact, source_tags

    t0 = time.time()
    offline_hub()
    store = Store(rt.store_root, lease_s=rt.lease_s)
    if store.is_done(job.id):
        return Outcome(job.id, DONE, metrics=(store.result(job.id) or {}).get("metrics", {}), skipped=True)
    lease = store.claim(job.id, rt.owner)
    if lease is None:
        return Outcome(job.id, BUSY)
    tracker: Tracker | None = None
    run_id: str | None = None
    try:
        if store.is_done(job.id):  # finished between our check and our claim
            return Outcome(job.id, DONE, metrics=(store.result(job.id) or {}).get("metrics", {}), skipped=True)
        missing = [u for u in job.upstream.values() if not store.is_done(u)]
        if missing:
            raise RuntimeError(f"upstream jobs are not done: {missing}")
        workdir = store.job_dir(job.id)
        (workdir / PROGRESS_FILE).unlink(missing_ok=True)  # an earlier attempt's: the driver reads this one's
        store.write_spec(job.id, {"kind": job.kind, **job.spec.to_dict()})
        store.set_status(job.id, RUNNING, owner=rt.owner, pid=os.getpid())
        tracker = Tracker(rt.tracking_uri)
        tags = {"sweep_kind": role(job.kind), "sweep_job_kind": job.kind, "sweep_name": rt.sweep_name,
                "sweep_git_commit": rt.git_commit, "sweep_cell": job.cell.name if job.cell else "",
                **source_tags(KINDS[job.kind].body, rt.git_commit)}
        run_id = tracker.job_run(rt.experiment_id, rt.parent_run_id, job.id, tags, name=job.label or None)
        # Params are what the job computes (its identity: fixed for the job id); where and how it runs
        # (paths, cadence, batching) may differ between attempts, so those go to tags, which may change.
        semantic = flatten(redact(job.spec.identity()))
        tracker.log_params(run_id, {"job.id": job.id, "job.kind": job.kind, **semantic})
        tracker.set_tags(run_id, {f"spec.{k}": v for k, v in flatten(redact(job.spec.to_dict())).items() if k not in semantic})
        tracker.log_artifact(run_id, workdir / "spec.json")
        upstream_dirs = {kind: store.job_dir(uid) for kind, uid in job.upstream.items()}
        tracker.log_datasets(run_id, job_datasets(job.spec, upstream_dirs))

        series: dict[str, list[tuple[int, float]]] = {}

        def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
            for k, v in metrics.items():
                series.setdefault(k, []).append((int(step or 0), float(v)))
            tracker.log_metrics(run_id, metrics, step)  # type: ignore[union-attr]

        if rt.threads > 0 and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(rt.threads)
        world = start_ranks()
        ctx = JobContext(
            job_id=job.id, kind=job.kind, spec=job.spec, workdir=workdir,
            upstream=upstream_dirs, log_metrics=log_metrics,
            log_artifact=lambda path: tracker.log_artifact(run_id, Path(path)),  # type: ignore[union-attr]
            stop_requested=stop_requested or (lambda: False), progress=ProgressFile(workdir / PROGRESS_FILE),
            world=world, device=world.device(),
        )
        metrics = dict(JOB_BODIES.load(job.kind)(ctx))
        metrics["job/seconds"] = time.time() - t0
        tracker.log_metrics(run_id, metrics)
        plot = _plot_series(series, workdir / "series.png")
        if plot is not None:
            tracker.log_artifact(run_id, plot)
        tracker.finish(run_id, "FINISHED")
        store.mark_done(job.id, metrics)
        return Outcome(job.id, DONE, metrics=metrics, seconds=time.time() - t0)
    except (Preempted, KeyboardInterrupt) as e:
        store.set_status(job.id, PREEMPTED, reason=type(e).__name__)
        if tracker is not None and run_id is not None:
            tracker.finish(run_id, "KILLED")
        if isinstance(e, KeyboardInterrupt):
            raise
        return Outcome(job.id, PREEMPTED, seconds=time.time() - t0)
    except Exception as e:
        text = f"{type(e).__name__}: {e}"
        store.set_status(job.id, FAILED, error=text, traceback=traceback.format_exc())
        write_json_atomic(store.job_dir(job.id) / "error.json", {"error": text, "traceback": traceback.format_exc()})
        if tracker is not None and run_id is not None:
            try:
                tracker.set_tags(run_id, {"sweep_error": text[:5000]})
                tracker.finish(run_id, "FAILED")
            except Exception:
                pass  # the store already holds the error; tracking must not hide it
        return Outcome(job.id, FAILED, error=text, seconds=time.time() - t0)
    finally:
        lease.release()


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
