"""The budget ledger and launcher.max_gpu_hours: GPU-hours estimated, spent, still to run; where a launch stops.

Jobs here carry GPU estimates as the paper grid's do; "spent" comes from the
``job/seconds`` their ``done.json`` records, as the runner writes it. The DAG
executor runs real probe jobs in this process (the inline launcher's way).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import Recorder, sweep_cli

HOUR = 3600.0


def _plan(n: int = 4, gpus: int = 4, gpu_hours: float = 1.0, cls: str = "gpu4") -> Any:
    """A chain-free plan of ``n`` probe jobs, each estimated at ``gpu_hours`` on ``gpus`` GPUs."""
    from sweep.plan import Job, Plan, make_id
    from sweep.specs.jobs import ProbeSpec

    jobs = []
    for i in range(n):
        spec = ProbeSpec(name=f"{cls}-j{i}", value=float(i))
        jobs.append(Job(id=make_id("probe", spec.name, spec, {}), kind="probe", spec=spec, resource_class=cls,
                        resources={"gpus": gpus, "nodes": 1, "cpus": 1}, flops=1e15 * (n - i), gpu_hours=gpu_hours))
    return Plan(name="budget", jobs=tuple(jobs), cells=())


def test_ledger_per_class_and_total(tmp_path: Path) -> None:
    from sweep.ledger import ledger, render_ledger
    from sweep.plan import Plan
    from sweep.store import Store

    gpu, cpu = _plan(3, gpus=4, gpu_hours=2.0), _plan(2, gpus=0, gpu_hours=0.0, cls="cpu")
    plan = Plan(name="mixed", jobs=gpu.jobs + cpu.jobs, cells=())
    store = Store(tmp_path)
    store.mark_done(gpu.jobs[0].id, {"job/seconds": 0.75 * HOUR})  # 3 GPU-hours spent where 2 were planned
    store.mark_done(cpu.jobs[0].id, {"job/seconds": 360.0})
    g, c, total = ledger(plan, store)
    assert (g.resource_class, g.jobs, g.done, g.gpus) == ("gpu4", 3, 1, 4)
    assert (g.estimated, g.spent, g.to_run) == pytest.approx((6.0, 3.0, 4.0))
    assert g.error == pytest.approx(0.5) and g.to_run_corrected == pytest.approx(6.0)
    assert (c.estimated, c.spent, c.error, c.hours) == (0.0, 0.0, None, pytest.approx(0.1))
    assert (total.resource_class, total.jobs, total.done, total.spent, total.hours) == ("total", 5, 2, 3.0, pytest.approx(0.85))
    text = render_ledger([g, c, total], limit=10.0)
    assert "+50%" in text and "launcher.max_gpu_hours = 10: 3.00 spent, 7.00 left for 6.00 still to run" in text
    assert json.dumps(total.to_json())  # the --json form


def _executor_run(plan: Any, store: Any, limit: float | None, seconds: float, todo: list[str] | None = None,
                  max_in_flight: int | None = None) -> tuple[Any, Recorder]:
    """The DAG executor over ``plan``; each job "runs" for ``seconds`` as measured (its done record says so)."""
    from launchers.base import DagExecutor
    from sweep.runner import Outcome
    from sweep.store import DONE

    ended: dict[int, Any] = {}
    events = Recorder()

    def submit(job: Any) -> int:
        store.mark_done(job.id, {"job/seconds": seconds})
        ended[len(ended)] = Outcome(job.id, DONE, seconds=seconds)
        return len(ended) - 1

    def wait(handles: list[int], timeout: float) -> list[tuple[int, Any]]:
        return [(h, ended[h]) for h in handles]

    report = DagExecutor(plan, todo or [j.id for j in plan], store, 1, events, poll_s=0.01, max_in_flight=max_in_flight,
                         max_gpu_hours=limit).run(submit, wait)
    return report, events


def test_executor_holds_jobs_once_the_budget_would_pass(tmp_path: Path) -> None:
    from launchers.base import HELD
    from sweep.store import Store

    plan = _plan(4, gpus=4, gpu_hours=1.0)
    # All four are ready at once: 1 + 1 fit in 2.5 GPU-hours in flight, the third would pass it.
    report, events = _executor_run(plan, Store(tmp_path / "a"), 2.5, seconds=0.25 * HOUR)
    states = [report.outcomes[j.id].state for j in plan]
    assert states.count("done") == 2 and states.count(HELD) == 2
    held = [o for o in report.outcomes.values() if o.state == HELD]
    assert all("launcher.max_gpu_hours=2.5 would be passed" in o.error for o in held)
    assert "0.00 GPU-hours spent + 2.00 in flight + 1.00 for this job" in held[0].error
    assert len(events.starts) == 2 and len(events.ends) == 4  # held jobs are reported, never started

    # What earlier launches spent counts: 2 jobs done at 1 GPU-hour each leave room for 1 more.
    store = Store(tmp_path / "b")
    more = _plan(5, gpus=4, gpu_hours=1.0)
    for job in more.jobs[:2]:
        store.mark_done(job.id, {"job/seconds": 0.25 * HOUR})
    todo = [j.id for j in more.jobs[2:]]
    report, _ = _executor_run(more, store, 3.0, seconds=0.25 * HOUR, todo=todo, max_in_flight=1)
    assert [report.outcomes[j].state for j in todo] == ["done", HELD, HELD]

    unlimited, _ = _executor_run(_plan(3), Store(tmp_path / "c"), None, seconds=10 * HOUR)
    assert {o.state for o in unlimited.outcomes.values()} == {"done"}


def test_cpu_jobs_never_trip_the_budget(tmp_path: Path) -> None:
    from sweep.store import Store

    report, _ = _executor_run(_plan(3, gpus=0, gpu_hours=0.0, cls="cpu"), Store(tmp_path), 0.001, seconds=HOUR)
    assert {o.state for o in report.outcomes.values()} == {"done"}


def test_submit_all_at_once_backends_refuse_a_plan_over_budget(tmp_path: Path) -> None:
    from launchers.base import check_budget
    from sweep.errors import SweepError
    from sweep.store import Store

    plan, store = _plan(4, gpu_hours=1.5), Store(tmp_path)
    store.mark_done(plan.jobs[0].id, {"job/seconds": 0.5 * HOUR})  # 2 GPU-hours spent
    todo = [j.id for j in plan.jobs[1:]]
    check_budget(plan, todo, store, None)
    check_budget(plan, todo, store, 6.5)  # 2 + 3 x 1.5 fits
    with pytest.raises(SweepError, match=r"launcher.max_gpu_hours.*estimated at 4.50 GPU-hours and 2.00 are spent"):
        check_budget(plan, todo, store, 6.0)


def test_max_gpu_hours_is_a_checked_launcher_field() -> None:
    from launchers.config import LocalConfig, SlurmConfig
    from sweep.errors import SweepError

    assert LocalConfig.parse({"name": "local", "max_gpu_hours": 12}, "launcher").max_gpu_hours == 12
    assert SlurmConfig.parse({"name": "slurm"}, "launcher").max_gpu_hours is None
    with pytest.raises(SweepError, match="launcher.max_gpu_hours"):
        LocalConfig.parse({"name": "local", "max_gpu_hours": -1}, "launcher")


def test_status_prints_the_ledger_and_a_json_document(tmp_path: Path) -> None:
    env = {"SWEEP_ROOT": str(tmp_path / "out")}
    args = ["+grid=paper", "launcher.max_gpu_hours=500"]
    text = sweep_cli("status", *args, cwd=tmp_path, env=env)
    assert text.returncode == 0, text.stderr
    assert "budget (GPU-hours)" in text.stdout and "launcher.max_gpu_hours = 500" in text.stdout
    assert "gpu4" in text.stdout and "gpu8" in text.stdout
    doc = sweep_cli("status", "--json", *args, cwd=tmp_path, env=env)
    data = json.loads(doc.stdout)
    assert len(data["jobs"]) == 105 and data["sweep"] == "paper"
    total = data["ledger"]["total"]
    assert total["jobs"] == 105 and total["done"] == 0 and total["spent"] == 0
    assert total["estimated"] == pytest.approx(sum(r["gpu_hours"] for r in data["jobs"]), rel=1e-3)
    assert total["to_run"] == pytest.approx(total["estimated"]) and data["ledger"]["max_gpu_hours"] == 500
    # the 14B held-out LLM needs GPUs of 141 GB (sweep/memory.py), so it has a class of its own
    assert {c["resource_class"] for c in data["ledger"]["classes"]} == {"gpu4", "gpu8", "gpu8-141gb"}
