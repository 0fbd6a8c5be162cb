"""The contract every launcher backend passes, run with real workers and a real MLflow store.

DAG order, done jobs skipped, failed jobs retried, a failing job's error reaching
the user, and two concurrent launches of the same plan running each job once.
Backends: local, inline (the debug launcher: jobs in the test's own process), ray
(embedded, one Ray for the module) and slurm (``wait: true`` against the
single-node Slurm the harness starts; marked ``slurm``).

    .venv/bin/pytest tests/test_launcher_contract.py -m ""
"""

from __future__ import annotations

import io
import json
import re
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from helpers import Recorder, make_runtime, probe_plan

pytest_plugins = ["harness.slurm"]
LAUNCHERS: dict[str, Callable[[], Any]] = {}


def _local() -> Any:
    from launchers.local import LocalLauncher

    return LocalLauncher({"name": "local", "workers": 2, "threads_per_worker": 1, "max_attempts": 2})


def _inline() -> Any:
    from launchers.inline import InlineLauncher

    return InlineLauncher({"name": "inline", "max_attempts": 2})


def _ray() -> Any:
    from launchers.ray import RayLauncher

    return RayLauncher(RAY_CONFIG)


def _slurm() -> Any:
    from launchers.slurm import SlurmLauncher

    return SlurmLauncher({"name": "slurm", "partition": "debug", "wait": True, "poll_s": 0.5, "max_attempts": 2})


RAY_CONFIG = {"name": "ray", "num_cpus": 2, "max_attempts": 2, "log_to_driver": False}
LAUNCHERS["local"] = _local
LAUNCHERS["inline"] = _inline
LAUNCHERS["ray"] = _ray
LAUNCHERS["slurm"] = _slurm
# The fixtures each backend needs besides the MLflow store, and its markers.
NEEDS = {"ray": ("ray_session",), "slurm": ("slurm_env",)}
MARKS = {"slurm": (pytest.mark.slurm,)}


@pytest.fixture(scope="module")
def ray_session() -> Any:
    """One embedded Ray for the module's tests (starting one takes seconds); launches join it."""
    from launchers.ray import RayConfig, session

    with session(RayConfig(**RAY_CONFIG)):
        yield


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, ())) for name in sorted(LAUNCHERS)])
def launcher(request: pytest.FixtureRequest) -> Any:
    for fixture in NEEDS.get(request.param, ()):
        request.getfixturevalue(fixture)
    return LAUNCHERS[request.param]()


def _trace(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _launch(launcher: Any, plan: Any, rt: Any, todo: list[str] | None = None) -> tuple[Any, Recorder]:
    rec = Recorder()
    report = launcher.launch(plan, todo if todo is not None else [j.id for j in plan], rt, rec)
    return report, rec


def test_dag_order_and_results(launcher: Any, tmp_path: Path, mlflow_uri: str) -> None:
    trace = tmp_path / "trace.jsonl"
    plan = probe_plan({
        "a": ((), {"sleep_s": 0.3, "trace": str(trace)}),
        "b": (("a",), {"sleep_s": 0.1, "trace": str(trace)}),
        "c": (("a",), {"sleep_s": 0.1, "trace": str(trace)}),
        "d": (("b", "c"), {"trace": str(trace)}),
    })
    rt = make_runtime(tmp_path / "store", mlflow_uri, "contract-dag")
    report, _ = _launch(launcher, plan, rt)
    assert {o.state for o in report.outcomes.values()} == {"done"}, [o.error for o in report.outcomes.values()]
    events = _trace(trace)
    when = {(e["job"], e["event"]): e["t"] for e in events}
    ids = {j.spec.name: j.id for j in plan}
    assert when[(ids["a"], "end")] <= when[(ids["b"], "start")]
    assert when[(ids["a"], "end")] <= when[(ids["c"], "start")]
    assert max(when[(ids["b"], "end")], when[(ids["c"], "end")]) <= when[(ids["d"], "start")]
    from sweep.tracking import Tracker

    runs = Tracker(mlflow_uri).job_runs(rt.experiment_id, "probe", ids.values())  # other backends share the experiment
    assert sorted(r.data.tags["sweep_job_id"] for r in runs) == sorted(ids.values())
    assert all(r.data.tags["mlflow.parentRunId"] == rt.parent_run_id for r in runs)


def test_local_job_that_runs_alone_gets_the_idle_threads(tmp_path: Path, mlflow_uri: str) -> None:
    """Two workers x one thread: a job every other job waits on (the features job, the last one)
    runs with both threads; jobs that can run side by side get one each."""
    trace = tmp_path / "trace.jsonl"
    t = {"trace": str(trace)}
    chain = probe_plan({"a": ((), t), "b": (("a",), {**t, "sleep_s": 0.5}), "c": (("a",), {**t, "sleep_s": 0.5}),
                        "d": (("b", "c"), t)}, name="chain")
    side = probe_plan({"x": ((), {**t, "sleep_s": 0.5}), "y": ((), {**t, "sleep_s": 0.5})}, name="side")
    for plan, want in ((chain, {"a": 2, "b": 1, "c": 1, "d": 2}), (side, {"x": 1, "y": 1})):
        rt = make_runtime(tmp_path / plan.name, mlflow_uri, f"contract-threads-{plan.name}")
        report, _ = _launch(_local(), plan, rt)
        assert {o.state for o in report.outcomes.values()} == {"done"}, [o.error for o in report.outcomes.values()]
        names = {j.id: j.spec.name for j in plan}
        got = {names[e["job"]]: e["threads"] for e in _trace(trace) if e["event"] == "start" and e["job"] in names}
        assert got == want


def test_progress_reaches_the_driver(launcher: Any, tmp_path: Path, mlflow_uri: str) -> None:
    """The job's leader writes its steps into its folder; the driver's display reads them, on every backend."""
    from sweep.live import Watch
    from sweep.store import Store

    plan = probe_plan({"slow": ((), {"steps": 10, "sleep_s": 4.0})})
    rt = make_runtime(tmp_path / "store", mlflow_uri, "contract-progress")
    out = io.StringIO()
    todo = [j.id for j in plan]
    with Watch(plan, todo, Store(rt.store_root), out=out, interval_s=0.3) as watch:
        report = launcher.launch(plan, todo, rt, watch)
    assert {o.state for o in report.outcomes.values()} == {"done"}
    seen = [int(step) for step in re.findall(r"progress probe: probe (\d+)/10", out.getvalue())]
    assert any(0 < step < 10 for step in seen), out.getvalue()  # read while it ran


def test_done_jobs_are_skipped(launcher: Any, tmp_path: Path, mlflow_uri: str) -> None:
    trace = tmp_path / "trace.jsonl"
    plan = probe_plan({"a": ((), {"trace": str(trace)}), "b": (("a",), {"trace": str(trace)})})
    rt = make_runtime(tmp_path / "store", mlflow_uri, "contract-skip")
    _launch(launcher, plan, rt)
    first = len(_trace(trace))
    report, _ = _launch(launcher, plan, rt)
    assert len(_trace(trace)) == first == 4  # nothing ran a second time
    assert all(o.skipped for o in report.outcomes.values())


def test_failed_job_is_retried_and_error_reaches_user(launcher: Any, tmp_path: Path, mlflow_uri: str) -> None:
    plan = probe_plan({
        "flaky": ((), {"fail_attempts": 1}),
        "broken": ((), {"fail_attempts": 99}),
        "after_broken": (("broken",), {}),
    })
    rt = make_runtime(tmp_path / "store", mlflow_uri, "contract-fail")
    report, rec = _launch(launcher, plan, rt)
    ids = {j.spec.name: j.id for j in plan}
    assert report.outcomes[ids["flaky"]].state == "done"
    assert report.outcomes[ids["flaky"]].metrics["probe/attempt"] == 2
    assert report.outcomes[ids["broken"]].state == "failed"
    assert "probe failure on attempt 2" in report.outcomes[ids["broken"]].error
    assert report.outcomes[ids["after_broken"]].state == "blocked"
    assert (ids["broken"], 2) in rec.starts and (ids["broken"], 3) not in rec.starts


def test_concurrent_launches_run_each_job_once(launcher: Any, tmp_path: Path, mlflow_uri: str) -> None:
    trace = tmp_path / "trace.jsonl"
    plan = probe_plan({f"j{i}": ((), {"sleep_s": 0.4, "trace": str(trace)}) for i in range(4)}
                      | {"last": (tuple(f"j{i}" for i in range(4)), {"trace": str(trace)})})
    rt = make_runtime(tmp_path / "store", mlflow_uri, "contract-concurrent")
    other = LAUNCHERS[type(launcher).__name__.replace("Launcher", "").lower()]()
    reports: list[Any] = []
    threads = [threading.Thread(target=lambda ln=ln: reports.append(_launch(ln, plan, rt)[0])) for ln in (launcher, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    starts = [e["job"] for e in _trace(trace) if e["event"] == "start"]
    assert sorted(starts) == sorted(j.id for j in plan)  # each job started exactly once
    for report in reports:
        assert {o.state for o in report.outcomes.values()} == {"done"}, [o.error for o in report.outcomes.values()]


def test_multi_rank_job_starts_its_ranks(launcher: Any, tmp_path: Path, mlflow_uri: str) -> None:
    """A job of two ranks (tasks_per_node: 2): both start, form a gloo group and sum their ranks; one MLflow run."""
    trace = tmp_path / "trace.jsonl"
    plan = probe_plan({"pair": ((), {"trace": str(trace)})}, resources={"gpus": 0, "cpus": 2, "tasks_per_node": 2})
    rt = make_runtime(tmp_path / "store", mlflow_uri, "contract-ranks")
    launcher.check(plan, [j.id for j in plan])
    report, _ = _launch(launcher, plan, rt)
    job = next(iter(plan))
    outcome = report.outcomes[job.id]
    assert outcome.state == "done", outcome.error
    assert outcome.metrics["probe/world_size"] == 2 and outcome.metrics["probe/rank_sum"] == 1
    events = _trace(trace)
    ranks = {e["event"]: e["pid"] for e in events if e["event"].startswith("rank")}
    assert set(ranks) == {"rank0", "rank1"} and ranks["rank0"] != ranks["rank1"]
    assert [e["event"] for e in events].count("end") == 1  # the body's work happened once, on the leader
    from sweep.tracking import Tracker

    runs = Tracker(mlflow_uri).job_runs(rt.experiment_id, "probe", [job.id])
    assert len(runs) == 1 and runs[0].data.metrics["probe/world_size"] == 2
    # Run again: done, so no rank starts at all.
    again, _ = _launch(launcher, plan, rt)
    assert again.outcomes[job.id].skipped and len(_trace(trace)) == len(events)


def test_bad_tasks_per_node_is_refused_before_anything_runs(launcher: Any, tmp_path: Path) -> None:
    from sweep.errors import SweepError

    plan = probe_plan({"x": ((), {})}, resources={"gpus": 2, "cpus": 2, "tasks_per_node": 3})
    with pytest.raises(SweepError) as err:
        launcher.check(plan, [j.id for j in plan])
    assert err.value.field == "resources.cpu.tasks_per_node" and "<= 2" in err.value.fix
