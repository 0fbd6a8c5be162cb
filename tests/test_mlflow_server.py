"""Jobs logging concurrently to a real MLflow tracking server: no lost runs, no duplicated runs.

The server (``tests/harness/mlflow_server.py``) is a real ``mlflow server`` on
127.0.0.1. Two launches of the same probe plan run at once, one with the local
launcher (two worker processes) and one with embedded Ray, as two users might
on a cluster; a flaky job fails once and is retried, reopening its run. Secrets
in the environment must not appear in any param or tag.

    .venv/bin/pytest tests/test_mlflow_server.py -m ""
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from helpers import Recorder, make_runtime, probe_plan

pytest_plugins = ["harness.mlflow_server"]

STEPS = 5
SECRETS = {"HF_TOKEN": "hf_Secret1234567890", "SWEEP_DB_PASSWORD": "pw-Secret-0987654321"}


@pytest.mark.slow
def test_concurrent_launches_log_each_job_once_to_a_server(mlflow_server: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from launchers.local import LocalLauncher
    from launchers.ray import RayConfig, RayLauncher, session
    from sweep.tracking import Tracker

    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)  # the workers inherit them
    nodes: dict[str, Any] = {f"j{i}": ((), {"steps": STEPS, "sleep_s": 1.0}) for i in range(16)}
    nodes["flaky"] = ((), {"fail_attempts": 1, "steps": STEPS})
    nodes["last"] = (tuple(nodes), {})
    plan = probe_plan(nodes, name="server-concurrent")
    rt = make_runtime(tmp_path / "store", mlflow_server, "server-concurrent")
    ray_cfg = {"name": "ray", "num_cpus": 2, "max_attempts": 2, "log_to_driver": False}
    launchers = [LocalLauncher({"name": "local", "workers": 2, "max_attempts": 2}), RayLauncher(ray_cfg)]
    reports: list[Any] = []
    threads = [threading.Thread(target=lambda ln=ln: reports.append(ln.launch(plan, [j.id for j in plan], rt, Recorder())))
               for ln in launchers]
    with session(RayConfig(**ray_cfg)):  # Ray up before both start, so that both run jobs
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    assert len(reports) == 2
    for report in reports:
        assert {o.state for o in report.outcomes.values()} == {"done"}
        assert any(not o.skipped for o in report.outcomes.values())  # each launch ran some of the jobs

    tracker = Tracker(mlflow_server)
    runs = tracker.client.search_runs([rt.experiment_id], max_results=1000)
    jobs = [r for r in runs if r.data.tags.get("sweep_role") == "job"]
    ids = [r.data.tags["sweep_job_id"] for r in jobs]
    assert sorted(ids) == sorted(j.id for j in plan)  # none lost, none duplicated
    assert all(r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == rt.parent_run_id for r in jobs)
    for run in jobs:
        if run.data.tags["sweep_job_id"] != plan.jobs[-1].id:
            steps = [m.step for m in tracker.client.get_metric_history(run.info.run_id, "probe/step")]
            assert sorted(steps) == list(range(STEPS))  # every step logged once
    flaky_id = next(j.id for j in plan if j.spec.name == "flaky")
    flaky = next(r for r in jobs if r.data.tags["sweep_job_id"] == flaky_id)
    assert flaky.data.metrics["probe/attempt"] == 2.0  # the retry reopened the same run
    for run in runs:
        logged = " ".join([*run.data.params.values(), *run.data.tags.values(), *run.data.params, *run.data.tags])
        assert not any(secret in logged for secret in SECRETS.values())
