"""Local backend: a pool of worker processes on this machine, reused across jobs.

Each worker imports torch once (on its first job) and then runs job after job,
so the per-job start-up cost is paid ``workers`` times, not once per job. A worker that dies
(out of memory, a segfault) fails only its job; the pool is rebuilt.

On a GPU machine each job gets whole GPUs of its own (``GpuPool``): a job that needs
more than are free waits while smaller ready jobs go first, and its ranks run on the
ids it was given.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from launchers.base import DagExecutor, Events, LaunchReport, payload, tasks_per_node
from launchers.config import LocalConfig, as_config
from sweep.errors import SweepError
from sweep.plan import Job, Plan
from sweep.runner import Outcome, Runtime, cap_threads, run_job
from sweep.store import FAILED, Store


class GpuPool:
    """This machine's GPUs, handed to jobs whole: a job starts when its GPUs are free, and gets their ids."""

    def __init__(self, count: int) -> None:
        self.free = list(range(count))
        self.held: dict[Future, tuple[int, ...]] = {}

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

    def give_back(self, fut: Future) -> None:
        self.free = sorted(self.free + list(self.held.pop(fut, ())))


def _init_worker(threads: int) -> None:
    """Cap the math libraries' threads before anything imports them (torch reads these at import)."""
    cap_threads(threads)


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
        workers = min(self.cfg.workers, max(1, len(todo)))
        rt = Runtime(**{**rt.__dict__, "threads": self.cfg.threads_per_worker})
        pool = self._pool(workers)
        job_of: dict[Future, str] = {}
        gpus = GpuPool.for_jobs([plan.get(j) for j in todo])

        def submit(job: Job) -> Future:
            nonlocal pool
            work = payload(job, tasks_per_node(job, job.resources), gpus.take(job))
            try:
                fut = pool.submit(run_job, work, rt)
            except BrokenProcessPool:  # a worker died earlier: start a fresh pool
                pool = self._pool(workers)
                fut = pool.submit(run_job, work, rt)
            job_of[fut] = job.id
            gpus.held[fut] = work.gpus
            return fut

        def wait(futures: list[Future], timeout: float) -> list[tuple[Future, Outcome]]:
            done, _ = wait_futures(futures, timeout=timeout, return_when=FIRST_COMPLETED)
            out = []
            for fut in done:
                gpus.give_back(fut)
                try:
                    out.append((fut, fut.result()))
                except BrokenProcessPool as e:
                    out.append((fut, Outcome(job_of[fut], FAILED, error=f"worker process died (out of memory?): {e}")))
                except Exception as e:  # raised outside run_job's own handling, e.g. pickling
                    out.append((fut, Outcome(job_of[fut], FAILED, error=f"{type(e).__name__}: {e}")))
            return out

        store = Store(rt.store_root, lease_s=rt.lease_s)
        try:
            return DagExecutor(plan, todo, store, self.cfg.max_attempts, events, max_in_flight=workers,
                               fits=gpus.fits, max_gpu_hours=self.cfg.max_gpu_hours).run(submit, wait)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self.cfg.threads_per_worker,))
