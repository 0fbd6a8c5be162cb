"""Local backend: worker processes of our own on this machine, one per slot, reused across jobs.

Each worker imports torch once (on its first job) and then runs job after job, so
the per-job start-up cost is paid ``workers`` times, not once per job. The
launcher owns its workers (not a process pool): each runs one job at a time and
the launcher knows which, so a worker that dies (out of memory, a segfault, a
``kill -9``) fails or retries only the job it held. That job's ``status.json``,
``error.json`` and MLflow run say how it died; the other jobs run on, and the slot
gets a fresh worker.

Stopping (``sweep.interrupt``): the workers sit in process groups of their own, so a
Ctrl-C in the terminal reaches only the driver, which decides. The first signal
sends each busy worker SIGTERM: its job saves a checkpoint at its next step and
ends ``interrupted``. A second one kills the workers' groups (job and ranks) at
once; their jobs are recorded ``interrupted`` too. A worker whose driver is gone
(``kill -9`` of the driver) stops its job the same way and exits.

Threads: each job gets ``threads_per_worker``, except one started while nothing else
runs and that every job still to run waits on (the features job of the mini study):
it gets every slot's threads, since no other job can start before it ends.

On a GPU machine each job gets whole GPUs of its own (``GpuPool``): a job that needs
more than are free waits while smaller ready jobs go first, and its ranks run on the
ids it was given.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_ready
from typing import Any

from launchers.base import DagExecutor, Events, LaunchReport, payload, tasks_per_node
from launchers.config import LocalConfig, as_config
from sweep import interrupt
from sweep.errors import SweepError
from sweep.plan import Job, Plan
from sweep.runner import JobPayload, Outcome, Runtime, cap_threads, record_lost, run_job
from sweep.store import FAILED, INTERRUPTED, Store


class GpuPool:
    """This machine's GPUs, handed to jobs whole: a job starts when its GPUs are free, and gets their ids."""

    def __init__(self, count: int) -> None:
        self.free = list(range(count))
        self.held: dict[Any, tuple[int, ...]] = {}  # a running job's handle -> its GPU ids

    @classmethod
    def for_jobs(cls, jobs: Sequence[Job]) -> GpuPool:
        if not any(int(j.resources.get("gpus", 0) or 0) > 0 for j in jobs):
            return cls(0)
        import torch

        return cls(torch.cuda.device_count())

    @staticmethod
    def need(job: Job) -> int:
        return int(job.resources.get("gpus", 0) or 0)

    def fits(self, job: Job) -> bool:
        return self.need(job) <= len(self.free)

    def take(self, job: Job) -> tuple[int, ...]:
        ids, self.free = tuple(self.free[: self.need(job)]), self.free[self.need(job) :]
        return ids

    def give_back(self, handle: Any) -> None:
        self.free = sorted(self.free + list(self.held.pop(handle, ())))


def _serve(conn: Connection, threads: int) -> None:
    """A worker's life: run each job the launcher sends, send back its outcome; exit on None or a lost launcher."""
    os.setpgid(0, 0)  # its own group: the terminal's Ctrl-C goes to the driver, which tells us what to do
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cap_threads(threads)  # before torch is imported (it reads these at import)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    driver = os.getppid()

    def watch_driver() -> None:  # a driver killed with -9 cannot tell us: checkpoint, stop, exit
        while os.getppid() == driver:
            time.sleep(1.0)
        stop.set()

    threading.Thread(target=watch_driver, daemon=True).start()
    while not stop.is_set():
        try:
            work = conn.recv()
        except (EOFError, OSError):
            return
        if work is None:
            return
        job, rt = work
        try:
            outcome = run_job(job, rt, stop_requested=stop.is_set, stop_state=INTERRUPTED)
        except Exception as e:  # outside the job's own handling (run_job records those): report it, serve on
            outcome = Outcome(job.id, FAILED, error=f"{type(e).__name__}: {e}")
        try:
            conn.send(outcome)
        except OSError:
            return


class Worker:
    """One slot: a spawned process of our own and a pipe to it; ``job`` is what it runs now."""

    def __init__(self, mp: Any, threads: int) -> None:
        self.conn, theirs = mp.Pipe()
        self.proc = mp.Process(target=_serve, args=(theirs, threads), name="sweep-worker", daemon=False)
        self.proc.start()
        theirs.close()
        self.job: JobPayload | None = None
        self.killed = False  # by us (a second Ctrl-C), not by the job's own death

    def send(self, job: JobPayload, rt: Runtime) -> None:
        self.job = job
        self.conn.send((job, rt))

    def ready(self) -> list[Any]:
        return [self.conn, self.proc.sentinel]

    def result(self) -> Outcome | None:
        """The job's outcome if the worker sent one, None if it died first."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def signal(self, sig: int, group: bool = False) -> None:
        try:
            os.killpg(self.proc.pid, sig) if group else os.kill(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask it to exit, then make sure it did (with its ranks); nothing is left behind."""
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(timeout_s)
        if self.proc.is_alive():
            self.signal(signal.SIGKILL, group=True)
            self.proc.join()
        self.conn.close()


def death(proc: Any) -> str:
    """How a worker process ended, in words."""
    code = proc.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory? see `dmesg`)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with code {code}"


def check_this_machine(plan: Plan, todo: Sequence[str], launcher: str = "local") -> None:
    """The jobs must fit this machine: one node each, and no more GPUs than it has."""
    for j in todo:
        tasks_per_node(plan.get(j), plan.get(j).resources)
        if int(plan.get(j).resources.get("nodes", 1) or 1) > 1:
            raise SweepError(f"resources.{plan.get(j).resource_class}.nodes", f"the {launcher} launcher runs a job on this machine only",
                             "use launcher=slurm for multi-node jobs, or nodes: 1")
    need = {plan.get(j).resource_class: plan.get(j).resources.get("gpus", 0) for j in todo}
    gpu_classes = {c: g for c, g in need.items() if g > 0}
    if not gpu_classes:
        return
    import torch

    have = torch.cuda.device_count()
    most = max(gpu_classes.values())
    if have < most:
        raise SweepError(
            "launcher",
            f"the {launcher} launcher cannot run this plan: its jobs need up to {most} GPUs "
            f"(resource classes {gpu_classes}) and this machine has {have}",
            "see the plan with `python -m sweep plan ...`, then submit it to a GPU cluster with "
            "launcher=slurm (launcher.partition=...) or launcher=ray (launcher.address=...); "
            "on a laptop run the mini grid: `python -m sweep`",
        )


class LocalLauncher:
    """Runs the jobs on this machine and waits for them."""

    def __init__(self, cfg: LocalConfig | Mapping[str, Any]) -> None:
        self.cfg = as_config(cfg, LocalConfig)

    def check(self, plan: Plan, todo: Sequence[str]) -> None:
        check_this_machine(plan, todo)

    def launch(self, plan: Plan, todo: Sequence[str], rt: Runtime, events: Events) -> LaunchReport:
        slots = min(self.cfg.workers, max(1, len(todo)))
        rt = replace(rt, threads=self.cfg.threads_per_worker)
        mp = multiprocessing.get_context("spawn")
        idle: list[Worker] = []
        busy: dict[int, Worker] = {}  # handle -> worker
        handles = itertools.count()
        gpus = GpuPool.for_jobs([plan.get(j) for j in todo])
        submitted: set[str] = set()

        def threads_for(job: Job) -> int:
            """A job started alone, with every job still to run downstream of it (the mini study's
            features job, a run's last job), gets the idle slots' threads too; the others one slot's."""
            if busy or slots == 1:
                return self.cfg.threads_per_worker
            rest = set(todo) - submitted - {job.id}
            alone = rest <= {j.id for j in plan.dependents(job.id)}
            return self.cfg.threads_per_worker * (slots if alone else 1)

        def submit(job: Job) -> int:
            work = payload(job, tasks_per_node(job, job.resources), gpus.take(job))
            while idle and not idle[-1].proc.is_alive():  # it exited while idle (a stray SIGTERM): replace it
                idle.pop().close(timeout_s=0)
            threads = threads_for(job)
            worker = idle.pop() if idle else Worker(mp, self.cfg.threads_per_worker)
            handle = next(handles)
            busy[handle] = worker
            gpus.held[handle] = work.gpus
            worker.send(work, replace(rt, threads=threads))
            submitted.add(job.id)
            return handle

        def wait(running: list[int], timeout: float) -> list[tuple[int, Outcome]]:
            ready = set(wait_ready([c for h in running for c in busy[h].ready()], timeout))
            out = []
            for handle in running:
                worker = busy[handle]
                if not ready.intersection(worker.ready()):
                    continue
                outcome = worker.result()
                if outcome is None:  # the worker died with the job: record it against that job only
                    worker.proc.join(5.0)
                    outcome = self._lost(worker, rt)
                    worker.close(timeout_s=0)
                else:
                    idle.append(worker)
                del busy[handle]
                gpus.give_back(handle)
                worker.job = None
                out.append((handle, outcome))
            return out

        def on_signal(at_once: bool) -> bool:
            for worker in busy.values():
                worker.killed |= at_once
                worker.signal(signal.SIGKILL if at_once else signal.SIGTERM, group=at_once)
            return True

        remove = interrupt.on_signal(on_signal)
        store = Store(rt.store_root, lease_s=rt.lease_s)
        try:
            return DagExecutor(plan, todo, store, self.cfg.max_attempts, events, max_in_flight=slots,
                               fits=gpus.fits, max_gpu_hours=self.cfg.max_gpu_hours).run(submit, wait)
        finally:
            remove()
            for worker in [*idle, *busy.values()]:
                worker.close()

    @staticmethod
    def _lost(worker: Worker, rt: Runtime) -> Outcome:
        job = worker.job
        assert job is not None
        how = death(worker.proc)
        if worker.killed:
            state, reason = INTERRUPTED, f"stopped at once by a second interrupt (worker pid {worker.proc.pid} killed)"
        else:
            state, reason = FAILED, f"worker process (pid {worker.proc.pid}) running {job.id} {how}"
        return Outcome(job.id, state, error=record_lost(job, rt, state, reason, pid=worker.proc.pid))
