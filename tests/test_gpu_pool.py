"""The local launcher's GPU placement, the DAG executor's ``fits`` hook and its start order, without GPUs: pure scheduling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import Recorder, probe_plan
from launchers.base import DagExecutor
from launchers.local import GpuPool
from sweep.runner import Outcome
from sweep.store import Store


def test_jobs_get_disjoint_gpus_and_wait_for_free_ones(tmp_path: Path) -> None:
    plan_a = probe_plan({"big": ((), {}), "small1": ((), {}), "small2": ((), {})})
    jobs = {j.spec.name: j for j in plan_a}
    # big needs 3 of the 4 GPUs, the small ones 2 each; the plan's costliest-first order puts big first.
    need = {"big": 3, "small1": 2, "small2": 2}
    for name, job in jobs.items():
        object.__setattr__(job, "resources", {"gpus": need[name], "cpus": 1})
        object.__setattr__(job, "flops", float(need[name]))
    pool = GpuPool(4)
    live: dict[int, tuple[str, tuple[int, ...]]] = {}
    timeline: list[list[tuple[str, tuple[int, ...]]]] = []

    def submit(job: Any) -> int:
        ids = pool.take(job)
        handle = len(timeline)
        pool.held[handle] = ids  # type: ignore[index]
        live[handle] = (job.spec.name, ids)
        timeline.append(sorted(live.values()))
        return handle

    def wait(handles: list[int], timeout: float) -> list[tuple[int, Outcome]]:
        first = min(handles)  # the oldest job ends first
        pool.give_back(first)  # type: ignore[arg-type]
        name, _ = live.pop(first)
        return [(first, Outcome(jobs[name].id, "done"))]

    report = DagExecutor(plan_a, [j.id for j in plan_a], Store(tmp_path), 1, Recorder(), poll_s=0.01,
                         fits=pool.fits).run(submit, wait)
    assert {o.state for o in report.outcomes.values()} == {"done"}
    # big (GPUs 0-2) runs alone: neither small job fits in the one GPU left; then both small ones run side by side.
    assert timeline[0] == [("big", (0, 1, 2))]
    assert timeline[2] == [("small1", (0, 1)), ("small2", (2, 3))]
    assert pool.free == [0, 1, 2, 3]
    for running in timeline:
        ids = [g for _, gs in running for g in gs]
        assert len(ids) == len(set(ids))  # no GPU is given to two jobs at once


def test_cpu_only_plans_get_an_empty_gpu_pool() -> None:
    plan = probe_plan({"a": ((), {})})
    assert GpuPool.for_jobs(list(plan)).free == []


def test_a_cells_eval_runs_as_soon_as_its_training_ends(tmp_path: Path, monkeypatch) -> None:
    """On the mini plan with two slots: trains go costliest first, and the slot a train frees goes to its eval."""
    from sweep.cli import load

    monkeypatch.setenv("SWEEP_ROOT", str(tmp_path / "out"))
    _, plan = load([])
    started: list[Any] = []
    events: list[tuple[str, Any]] = []

    def submit(job: Any) -> int:
        started.append(job)
        events.append(("start", job))
        return len(started) - 1

    def wait(handles: list[int], timeout: float) -> list[tuple[int, Outcome]]:
        first = min(handles)  # the oldest job ends first
        events.append(("end", started[first]))
        return [(first, Outcome(started[first].id, "done"))]

    report = DagExecutor(plan, [j.id for j in plan], Store(tmp_path / "store"), 1, Recorder(), poll_s=0.01,
                         max_in_flight=2).run(submit, wait)
    assert {o.state for o in report.outcomes.values()} == {"done"} and len(started) == len(plan)
    ends = [i for i, (what, job) in enumerate(events) if what == "end" and job.role == "train"]
    assert len(ends) == len(plan.cells)
    for i in ends:
        train = events[i][1]
        what, nxt = events[i + 1]
        assert what == "start" and nxt.role == "eval" and nxt.upstream["train"] == train.id, (train.label, nxt.label)
    trains = [j for j in started if j.role == "train"]
    assert [j.flops for j in trains] == sorted((j.flops for j in trains), reverse=True)
