"""The Slurm backend against a real single-node Slurm (slurmctld, slurmd, slurmdbd + MariaDB on 127.0.0.1).

The harness (``tests/harness/slurm.py``) starts the cluster once per session
and stops it by PID. These tests show: a tiny grid completes through
``python -m sweep launcher=slurm`` (then a fire-and-forget re-run with a new
eval submits eval-only jobs, ``status`` follows them, and a third ``run``
submits nothing); a job preempted mid-training by a job in the ``high``
partition resumes from its checkpoint; a cancelled job reads as cancelled and
its MLflow run, left RUNNING by the killed job, is closed as KILLED (by the
waiting launch, or by ``status`` after a fire-and-forget run), once;
a failing job's error, and a node-side failure's log, reach the user.

    .venv/bin/pytest tests/test_slurm.py -m ""
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from helpers import Recorder, make_runtime, probe_plan, sweep_cli
from launchers.base import backend_states
from launchers.slurm import SlurmLauncher
from sweep.display import plan_rows
from sweep.progress import read_progress
from sweep.store import Store

pytest_plugins = ["harness.slurm"]
pytestmark = pytest.mark.slurm

TINY = ["grid.llm=[xs]", "grid.visual_tokens=[1,4]", "vision.pretrain.steps=30", "data.train_images=300",
        "data.test_images=100", "train.stages.0.steps=20", "train.stages.0.checkpoint_every=10",
        "eval.max_questions=100", "fit.n_boot=50"]
SLURM = ["launcher=slurm", "launcher.partition=debug", "launcher.poll_s=1"]


def wait_for(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not check():
        assert time.time() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.5)


def launcher(**cfg: Any) -> SlurmLauncher:
    return SlurmLauncher({"name": "slurm", "partition": "debug", "poll_s": 0.5, **cfg})


def mlflow_run(uri: str, experiment_id: str, job_id: str) -> Any | None:
    """The job's MLflow run (found as the sweep finds it: by its sweep_job_id tag), or None before it exists."""
    from sweep.tracking import Tracker

    runs = Tracker(uri).client.search_runs([experiment_id], f"tags.sweep_job_id = '{job_id}'")
    assert len(runs) <= 1
    return runs[0] if runs else None


@pytest.mark.slow
def test_tiny_grid_through_slurm_then_eval_only_rerun_fire_and_forget(slurm_env: Any, tmp_path: Path) -> None:
    first = sweep_cli(*SLURM, "launcher.wait=true", *TINY, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "5 done, 0 not done" in first.stdout

    # New eval settings: new eval jobs on the trained cells; `run` submits them and returns at once.
    rerun = [*SLURM, *TINY, "eval.max_questions=50"]
    second = sweep_cli(*rerun, cwd=tmp_path, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "submitted 2 jobs" in second.stdout
    third = sweep_cli(*rerun, cwd=tmp_path, timeout=600)  # they are queued or running: nothing new is submitted
    assert third.returncode == 0 and "nothing to submit: 2 jobs" in third.stdout, third.stdout[-2000:]

    def rows() -> list[dict[str, Any]]:
        out = sweep_cli("status", "--json", *rerun, cwd=tmp_path, timeout=600)
        return json.loads(out.stdout)["jobs"]

    evals = [r for r in rows() if r["kind"] == "eval"]
    assert {r["status"] for r in evals} <= {"submitted", "running", "done"}
    assert all(r["scheduler"] for r in evals if r["status"] != "done")  # Slurm's own word, from squeue/sacct
    scripts = sorted((tmp_path / "outputs" / "slurm").glob("*/*/*_submission.sh"), key=lambda p: p.stat().st_mtime)
    assert "--dependency" not in scripts[-1].read_text()  # the trains are done: the evals wait for nothing
    wait_for(lambda: all(r["status"] == "done" for r in rows()), 180, "the eval-only jobs")


@pytest.mark.slow
def test_preempted_training_resumes_from_its_checkpoint(slurm_env: Any, tmp_path: Path, mlflow_uri: str) -> None:
    steps = 40
    plan = probe_plan({"train": ((), {"steps": steps, "sleep_s": 16.0})}, name="preempt")
    job = plan.jobs[0]
    rt = make_runtime(tmp_path / "store", mlflow_uri, "slurm-preempt")
    store = Store(rt.store_root)
    launcher(max_requeues=2).launch(plan, [job.id], rt, Recorder())
    def steps_done() -> int:
        progress = read_progress(store.job_dir(job.id))
        return progress.step if progress else 0

    # A few steps in (not a fixed sleep: on a loaded machine the job may take seconds to reach its first step).
    wait_for(lambda: steps_done() >= 3, 90, "the job to make its first steps")
    # Real preemption: a job in the higher-priority partition needs both cores.
    slurm_env.run("sbatch", "--partition=high", "--cpus-per-task=2", "--time=1", "--output=/dev/null", "--wrap=sleep 1")
    wait_for(lambda: store.is_done(job.id), 150, "the preempted job to be requeued and finish")
    metrics = store.result(job.id)["metrics"]
    resumed = int(metrics["probe/resumed_from_step"])
    assert 0 < resumed < steps  # redid steps - resumed steps, not all of them
    assert metrics["probe/attempt"] == 2
    ref = json.loads((store.job_dir(job.id) / "status.json").read_text())["backend"]["job_id"]
    wait_for(lambda: slurm_env.sacct_state(ref) == "COMPLETED", 60, "the Slurm job to end")
    history = slurm_env.run("sacct", "--noheader", "--allocations", "--duplicates", "--parsable2", "--format=State", f"--jobs={ref}")
    states = [line.split()[0] for line in history.splitlines() if line.strip()]
    assert states[-1] == "COMPLETED" and {"PREEMPTED", "REQUEUED"} & set(states[:-1]), states  # one Slurm job, requeued


def test_cancelled_job_is_reported_cancelled(slurm_env: Any, tmp_path: Path, mlflow_uri: str) -> None:
    plan = probe_plan({"long": ((), {"steps": 100, "sleep_s": 100.0}), "after": (("long",), {})}, name="cancel")
    long, after = plan.jobs
    rt = make_runtime(tmp_path / "store", mlflow_uri, "slurm-cancel")
    store = Store(rt.store_root)
    reports: list[Any] = []
    waiter = threading.Thread(target=lambda: reports.append(launcher(wait=True).launch(plan, [long.id, after.id], rt, Recorder())))
    waiter.start()
    wait_for(lambda: store.state(long.id).state == "running", 60, "the job to start")
    wait_for(lambda: mlflow_run(mlflow_uri, rt.experiment_id, long.id) is not None, 60, "the job's MLflow run")
    ref = backend_states(plan, store)[long.id].ref
    slurm_env.run("scancel", ref)
    waiter.join(timeout=120)
    assert reports, "the waiting launch did not return"
    outcomes = reports[0].outcomes
    assert outcomes[long.id].state == "cancelled" and ref in outcomes[long.id].error
    assert outcomes[after.id].state == "blocked"
    status = {r["id"]: r for r in plan_rows(plan, store, backend_states(plan, store))}  # what `status` prints
    assert status[long.id]["status"] == "cancelled" and status[long.id]["scheduler"] == f"CANCELLED {ref}"
    # The killed job never closed its run; the waiting launch did.
    run = mlflow_run(mlflow_uri, rt.experiment_id, long.id)
    assert run.info.status == "KILLED" and run.data.tags["sweep_error"] == f"Slurm job {ref} ended CANCELLED"
    assert mlflow_run(mlflow_uri, rt.experiment_id, after.id) is None  # never started


def test_status_closes_the_run_of_a_job_cancelled_after_a_fire_and_forget_run(
        slurm_env: Any, tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from sweep import cli

    plan = probe_plan({"long": ((), {"steps": 100, "sleep_s": 100.0})}, name="cancel-detached")
    job = plan.jobs[0]
    rt = make_runtime(tmp_path / "store", mlflow_uri, plan.name)  # the experiment is the sweep's name, as in `run`
    store = Store(rt.store_root, lease_s=rt.lease_s)
    assert launcher().launch(plan, [job.id], rt, Recorder()).detached
    wait_for(lambda: mlflow_run(mlflow_uri, rt.experiment_id, job.id) is not None, 90, "the job's MLflow run")
    ref = backend_states(plan, store)[job.id].ref
    slurm_env.run("scancel", ref)
    wait_for(lambda: not backend_states(plan, store)[job.id].active, 60, "Slurm to end the job")
    assert mlflow_run(mlflow_uri, rt.experiment_id, job.id).info.status == "RUNNING"  # what the dashboard showed

    # `python -m sweep status` on this plan and store.
    from launchers.config import SlurmConfig
    from sweep.specs.config import SweepSection, Tracking

    cfg = SimpleNamespace(sweep=SweepSection(name=plan.name, root=rt.store_root, lease_s=rt.lease_s),
                          tracking=Tracking(uri=mlflow_uri), launcher=SlurmConfig.parse({"name": "slurm"}, "launcher"))
    monkeypatch.setattr(cli, "load", lambda overrides: (cfg, plan))
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"closed the MLflow run of {job.id}: Slurm job {ref} ended CANCELLED" in out
    assert "cancelled" in out
    run = mlflow_run(mlflow_uri, rt.experiment_id, job.id)
    assert run.info.status == "KILLED" and run.data.tags["sweep_error"] == f"Slurm job {ref} ended CANCELLED"

    assert cli.main(["status"]) == 0  # again: nothing more to close, the run is as it was
    assert "closed the MLflow run" not in capsys.readouterr().out
    again = mlflow_run(mlflow_uri, rt.experiment_id, job.id)
    assert (again.info.status, again.info.end_time, again.data.tags) == (run.info.status, run.info.end_time, run.data.tags)


def test_failing_jobs_error_reaches_the_user(slurm_env: Any, tmp_path: Path, mlflow_uri: str) -> None:
    plan = probe_plan({"broken": ((), {"fail_attempts": 99})}, name="fail")
    rt = make_runtime(tmp_path / "store", mlflow_uri, "slurm-fail")
    report = launcher(wait=True).launch(plan, [plan.jobs[0].id], rt, Recorder())
    outcome = report.outcomes[plan.jobs[0].id]
    assert outcome.state == "failed" and "RuntimeError: probe failure on attempt 1" in outcome.error
    row = plan_rows(plan, Store(rt.store_root), backend_states(plan, Store(rt.store_root)))[0]
    assert row["status"] == "failed before" and "probe failure on attempt 1" in row["error"]

    # A failure before the job body runs (here: no Python on the "node"): Slurm's state and the job's log.
    other = probe_plan({"never": ((), {})}, name="fail-node")
    no_python = ["/bin/sh", "-c", "echo 'python: not found on this node' >&2; exit 3", "sh"]
    report = launcher(wait=True, python=no_python).launch(other, [other.jobs[0].id], rt, Recorder())
    outcome = report.outcomes[other.jobs[0].id]
    assert outcome.state == "failed"
    assert "ended FAILED before the job reported" in outcome.error and "python: not found on this node" in outcome.error
