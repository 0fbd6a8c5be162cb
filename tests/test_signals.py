"""Ctrl-C and SIGTERM stop a run cleanly: running jobs checkpoint and end ``interrupted``, their MLflow
runs and the sweep's end KILLED, nothing is started after, no process is left, the exit code is 130 /
143 without a traceback, and running the same command again resumes. A second Ctrl-C stops at once.

Real signals: to this test process (the driver, in-process launches) or to a ``python -m sweep``
started in a session of its own (what a terminal's Ctrl-C reaches: the driver's process group).

    .venv/bin/pytest tests/test_signals.py -m ""
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import session_members, wait_until
from helpers import Recorder, features_dir, make_runtime, probe_plan, runs_by_role, start_sweep, wait_for_features_checkpoint


@pytest.fixture
def driver_signals() -> Iterator[None]:
    """This process as a driver: SIGINT/SIGTERM through ``sweep.interrupt``; pytest's handlers restored after."""
    from sweep import interrupt

    saved = {sig: signal.getsignal(sig) for sig in interrupt.SIGNALS}
    interrupt.install()
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        interrupt.reset()


def _children() -> set[int]:
    """Live child processes of this test process (read from /proc), but multiprocessing's resource tracker,
    which serves this process for its whole life."""
    kids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                tracker = b"resource_tracker" in (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z" and not tracker:
                kids.add(int(entry.name))
    return kids


def _signal_when(check: Any, signals: list[tuple[float, int]]) -> list[float]:
    """Once ``check()`` holds, send each (delay, signal) to this process; the times they were sent."""
    sent: list[float] = []

    def go() -> None:
        wait_until(check, 120, "the jobs to start")
        for delay, sig in signals:
            time.sleep(delay)
            sent.append(time.time())
            os.kill(os.getpid(), sig)

    threading.Thread(target=go, daemon=True).start()
    return sent


def _started(trace: Path, count: int) -> Any:
    return lambda: trace.exists() and trace.read_text().count('"start"') >= count


def _launch(launcher: Any, plan: Any, rt: Any) -> tuple[Any, float]:
    from sweep import interrupt

    with interrupt.graceful():
        report = launcher.launch(plan, [j.id for j in plan], rt, Recorder())
    return report, time.time()


def _job_runs(uri: str, experiment_id: str) -> dict[str, Any]:
    from sweep.tracking import Tracker

    runs = Tracker(uri).client.search_runs([experiment_id], max_results=1000)
    return {r.data.tags["sweep_job_id"]: r for r in runs if r.data.tags.get("sweep_role") == "job"}


@pytest.mark.parametrize("name", ["inline", "local"])
def test_first_signal_checkpoints_running_jobs_and_starts_nothing_more(name: str, tmp_path: Path, mlflow_uri: str,
                                                                      driver_signals: None) -> None:
    from launchers.inline import InlineLauncher
    from launchers.local import LocalLauncher
    from sweep import interrupt
    from sweep.store import Store

    trace = tmp_path / "trace.jsonl"
    nodes = {"a": ((), {"sleep_s": 30.0, "steps": 300, "trace": str(trace)}),
             "b": ((), {"sleep_s": 30.0, "steps": 300, "trace": str(trace)}),
             "c": (("a",), {"trace": str(trace)})}
    if name == "inline":
        del nodes["b"]
    plan = probe_plan(nodes)
    ids = {j.spec.name: j.id for j in plan}
    rt = make_runtime(tmp_path / "store", mlflow_uri, f"signal-first-{name}")
    launcher = (InlineLauncher({"name": "inline"}) if name == "inline"
                else LocalLauncher({"name": "local", "workers": 2, "threads_per_worker": 1}))
    before = _children()
    _signal_when(_started(trace, len(nodes) - 1), [(0.5, signal.SIGINT)])
    report, _ = _launch(launcher, plan, rt)

    assert interrupt.requested() and interrupt.exit_code() == 130
    store = Store(rt.store_root)
    runs = _job_runs(mlflow_uri, rt.experiment_id)
    for key in set(nodes) - {"c"}:
        jid = ids[key]
        assert report.outcomes[jid].state == "interrupted", report.outcomes[jid].error
        status = json.loads((store.job_dir(jid) / "status.json").read_text())
        assert status["state"] == "interrupted" and "stopped at step" in status["reason"]
        assert int((store.job_dir(jid) / "ckpt" / "step").read_text()) > 0  # its checkpoint
        assert runs[jid].info.status == "KILLED" and runs[jid].data.tags["sweep_state"] == "interrupted"
        assert not (store.job_dir(jid) / "error.json").exists()  # a stop is not a failure
    assert report.outcomes[ids["c"]].state == "not started" and ids["c"] not in runs
    assert _starts(trace).count(ids["a"]) == 1  # nothing was retried
    wait_until(lambda: not (_children() - before), 30, "the workers to exit")


def _starts(trace: Path) -> list[str]:
    return [json.loads(line)["job"] for line in trace.read_text().splitlines() if '"start"' in line]


def test_a_second_signal_stops_the_running_jobs_at_once(tmp_path: Path, mlflow_uri: str, driver_signals: None) -> None:
    from launchers.local import LocalLauncher
    from sweep.store import Store

    trace = tmp_path / "trace.jsonl"
    # 20 s per step: the first signal alone would take that long to be heard.
    plan = probe_plan({"slow1": ((), {"sleep_s": 60.0, "steps": 3, "trace": str(trace)}),
                       "slow2": ((), {"sleep_s": 60.0, "steps": 3, "trace": str(trace)})})
    rt = make_runtime(tmp_path / "store", mlflow_uri, "signal-second")
    before = _children()
    sent = _signal_when(_started(trace, 2), [(1.0, signal.SIGINT), (0.5, signal.SIGINT)])
    report, t_end = _launch(LocalLauncher({"name": "local", "workers": 2, "threads_per_worker": 1}), plan, rt)
    assert len(sent) == 2 and t_end - sent[1] < 15  # not the 20 s a step takes
    store = Store(rt.store_root)
    runs = _job_runs(mlflow_uri, rt.experiment_id)
    for job in plan:
        outcome = report.outcomes[job.id]
        assert outcome.state == "interrupted" and "stopped at once" in outcome.error
        assert json.loads((store.job_dir(job.id) / "status.json").read_text())["state"] == "interrupted"
        assert runs[job.id].info.status == "KILLED"
        assert store.lease_owner(job.id) is None
    wait_until(lambda: not (_children() - before), 30, "the killed workers to be gone")


# ---- through the CLI: what a user at a terminal sees --------------------------------------------

# The features job pretrains the mini tower with a checkpoint every 10 steps: long enough to be
# interrupted, short enough for the rerun to finish.
ARGS = ["grid.llm=[xs]", "grid.visual_tokens=[1]", "vision.pretrain.steps=60", "vision.pretrain.checkpoint_every=10",
        "vision.pretrain.log_every=5", "data.train_images=300", "data.test_images=100", "train.stages.0.steps=10",
        "train.stages.0.log_every=5", "eval.max_questions=50", "fit.n_boot=10"]


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    return start_sweep(*ARGS, *args, cwd=cwd)




@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    wait_for_features_checkpoint(proc, tmp_path / "outputs")
    os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C: the driver's whole process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "1 interrupted, 2 not started" in out
    resume = next(line for line in out.splitlines() if "to resume" in line)
    assert "python -m sweep" in resume and "vision.pretrain.steps=60" in resume
    wait_until(lambda: not session_members(proc.pid), 30, "every process of the run to exit")
    features = features_dir(tmp_path / "outputs")
    assert json.loads((features / "status.json").read_text())["state"] == "interrupted"
    runs = runs_by_role(f"sqlite:///{tmp_path}/mlflow.db")
    assert [r.info.status for r in runs["parent"]] == ["KILLED"]
    assert [r.info.status for r in runs["job"]] == ["KILLED"]  # the features job; the others never started
    stopped_at = int(sorted((features / "ckpt").glob("step_*.pt"))[-1].stem.split("_")[1])

    again = _start(tmp_path)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, out[-3000:] + err[-3000:]
    runs = runs_by_role(f"sqlite:///{tmp_path}/mlflow.db")
    assert [r.info.status for r in runs["parent"]] == ["FINISHED"]
    jobs = runs["job"]
    assert len(jobs) == 3 and {r.info.status for r in jobs} == {"FINISHED"}  # the same runs, reopened
    feat = next(r for r in jobs if r.data.tags["sweep_kind"] == "features")
    from mlflow import MlflowClient

    history = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(feat.info.run_id, "vision/pretrain/loss")
    assert sorted(m.step for m in history) == list(range(5, 61, 5))  # the whole curve, each step once
    assert 0 < stopped_at < 60


@pytest.mark.slow
def test_sigterm_to_the_driver_alone_leaves_no_worker_behind(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    wait_for_features_checkpoint(proc, tmp_path / "outputs")
    proc.send_signal(signal.SIGTERM)  # `kill PID`: the workers get nothing from the system, only from the driver
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err and "stopped by SIGTERM" in out
    wait_until(lambda: not session_members(proc.pid), 30, "every process of the run to exit")
    assert json.loads((features_dir(tmp_path / "outputs") / "status.json").read_text())["state"] == "interrupted"
    runs = runs_by_role(f"sqlite:///{tmp_path}/mlflow.db")
    assert [r.info.status for r in runs["parent"]] == ["KILLED"] and [r.info.status for r in runs["job"]] == ["KILLED"]


@pytest.mark.slow
def test_workers_of_a_driver_killed_with_9_checkpoint_and_exit(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    wait_for_features_checkpoint(proc, tmp_path / "outputs")
    proc.kill()
    proc.communicate(timeout=60)
    wait_until(lambda: not session_members(proc.pid), 60, "the orphaned workers to exit")
    status = json.loads((features_dir(tmp_path / "outputs") / "status.json").read_text())
    assert status["state"] == "interrupted"  # the worker saw its driver go, checkpointed and said so
