"""Faults lose nothing and say what happened: a fresh store opened by several processes at once, a
worker killed with -9, a truncated checkpoint, state files that do not parse, file modes, a job that
another run holds. Real stores, real worker processes, faults injected at the OS boundary.

    .venv/bin/pytest tests/test_faults.py -m ""
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from harness import wait_until
from helpers import Recorder, make_runtime, probe_plan


@pytest.fixture(autouse=True)
def _no_stop_request() -> None:
    from sweep import interrupt

    interrupt.reset()


def _launch_in_thread(launcher: Any, plan: Any, rt: Any) -> tuple[threading.Thread, list[Any], Recorder]:
    rec, reports = Recorder(), []
    thread = threading.Thread(target=lambda: reports.append(launcher.launch(plan, [j.id for j in plan], rt, rec)))
    thread.start()
    return thread, reports, rec


def _runs_by_job(uri: str, experiment_id: str) -> dict[str, list[Any]]:
    from sweep.tracking import Tracker

    out: dict[str, list[Any]] = {}
    for run in Tracker(uri).client.search_runs([experiment_id], max_results=1000):
        if run.data.tags.get("sweep_role") == "job":
            out.setdefault(run.data.tags["sweep_job_id"], []).append(run)
    return out


# ---- 1. two first runs at once on a fresh SQLite store ------------------------------------------

def test_concurrent_first_use_of_a_fresh_store_creates_it_once(tmp_path: Path) -> None:
    """Four processes open a store that does not exist yet, as four `python -m sweep` would."""
    db = tmp_path / "mlflow.db"
    code = ("import sys; from sweep.tracking import Tracker; t = Tracker(sys.argv[1]); "
            "e = t.experiment('mini'); print(e, t.parent_run(e, 'mini', {}))")
    procs = [subprocess.Popen([sys.executable, "-c", code, f"sqlite:///{db}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert [rc for rc, _, _ in results] == [0, 0, 0, 0], [err[-2000:] for _, _, err in results]
    experiments = {out.split()[0] for _, out, _ in results}
    assert len(experiments) == 1  # one experiment, whoever created it
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        versions = con.execute("select version_num from alembic_version").fetchall()
    assert not any(t.startswith("_alembic_tmp") for t in tables) and len(versions) == 1
    from sweep.tracking import Tracker

    assert Tracker(f"sqlite:///{db}").find_experiment("mini") == experiments.pop()  # the store still works


# ---- 2. a worker that dies fails only its own job -----------------------------------------------

def _lease_pid(store: Any, job_id: str) -> int | None:
    owner = store.lease_owner(job_id)
    return int(owner["pid"]) if owner else None


def test_a_killed_worker_fails_only_the_job_it_held(tmp_path: Path, mlflow_uri: str) -> None:
    from launchers.local import LocalLauncher
    from sweep.store import Store

    plan = probe_plan({"victim": ((), {"sleep_s": 20.0, "steps": 200}), "bystander": ((), {"sleep_s": 4.0, "steps": 20})})
    ids = {j.spec.name: j.id for j in plan}
    rt = make_runtime(tmp_path / "store", mlflow_uri, "fault-dead-worker")
    store = Store(rt.store_root)
    launcher = LocalLauncher({"name": "local", "workers": 2, "threads_per_worker": 1, "max_attempts": 1})
    thread, reports, rec = _launch_in_thread(launcher, plan, rt)
    wait_until(lambda: all(_lease_pid(store, j) for j in ids.values()), 120, "both jobs to hold their leases")
    victim_pid = _lease_pid(store, ids["victim"])
    assert victim_pid != _lease_pid(store, ids["bystander"])  # one worker process per job
    os.kill(victim_pid, signal.SIGKILL)
    thread.join(timeout=120)
    outcomes = reports[0].outcomes

    victim, bystander = outcomes[ids["victim"]], outcomes[ids["bystander"]]
    assert bystander.state == "done", bystander.error
    assert victim.state == "failed" and "killed by SIGKILL" in victim.error and str(victim_pid) in victim.error
    status = json.loads((store.job_dir(ids["victim"]) / "status.json").read_text())
    assert status["state"] == "failed" and "SIGKILL" in status["error"]
    error = json.loads((store.job_dir(ids["victim"]) / "error.json").read_text())
    assert "SIGKILL" in error["error"]
    assert not (store.job_dir(ids["victim"]) / "lease").exists()
    runs = _runs_by_job(mlflow_uri, rt.experiment_id)
    assert [r.info.status for r in runs[ids["victim"]]] == ["FAILED"]
    assert "SIGKILL" in runs[ids["victim"]][0].data.tags["sweep_error"]
    assert [r.info.status for r in runs[ids["bystander"]]] == ["FINISHED"]


def test_a_killed_worker_is_retried_and_the_job_completes(tmp_path: Path, mlflow_uri: str) -> None:
    from launchers.local import LocalLauncher
    from sweep.store import Store

    plan = probe_plan({"victim": ((), {"sleep_s": 6.0, "steps": 60})})
    job = plan.jobs[0]
    rt = make_runtime(tmp_path / "store", mlflow_uri, "fault-dead-worker-retry")
    store = Store(rt.store_root)
    launcher = LocalLauncher({"name": "local", "workers": 1, "threads_per_worker": 1, "max_attempts": 2})
    thread, reports, rec = _launch_in_thread(launcher, plan, rt)
    wait_until(lambda: _lease_pid(store, job.id), 120, "the job to hold its lease")
    os.kill(_lease_pid(store, job.id), signal.SIGKILL)
    thread.join(timeout=120)
    outcome = reports[0].outcomes[job.id]
    assert outcome.state == "done" and rec.starts == [(job.id, 1), (job.id, 2)]
    assert rec.ends[0] == (job.id, "failed", False)  # the death was reported, then the job retried
    runs = _runs_by_job(mlflow_uri, rt.experiment_id)[job.id]
    assert [r.info.status for r in runs] == ["FINISHED"]  # the retry reopened the same run


# ---- 3. a truncated newest checkpoint --------------------------------------------------------------

def _tiny_loop(workdir: Path, steps: int, stop_after: int | None = None) -> Any:
    """A real TrainLoop on a small regression: (the loop, its result, the final weights)."""
    import torch

    from sweep.jobs.context import JobContext
    from sweep.jobs.loop import Single, TrainLoop
    from sweep.specs.train import Optim

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    x = torch.randn(256, 8)
    y = x @ torch.arange(8.0).unsqueeze(1)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return stop_after is not None and calls["n"] == stop_after

    ctx = JobContext("j", "train", None, workdir, stop_requested=stop)
    loop = TrainLoop(ctx, Optim(lr=0.05, checkpoint_every=3, log_every=1), steps, list(model.parameters()), Single(model))

    def step(i: int) -> float:
        idx = torch.randint(0, 256, (32,))
        loss = ((model(x[idx]) - y[idx]) ** 2).mean()
        loss.backward()
        return float(loss.detach())

    return loop, loop.run(step), {k: v.clone() for k, v in model.state_dict().items()}


def test_a_truncated_newest_checkpoint_falls_back_to_the_one_before(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch

    from sweep.jobs.context import Preempted

    _, _, whole = _tiny_loop(tmp_path / "whole", 10)
    with pytest.raises(Preempted):
        _tiny_loop(tmp_path / "split", 10, stop_after=7)
    ckpt = tmp_path / "split" / "ckpt"
    newest = ckpt / "step_00000007.pt"
    assert sorted(p.name for p in ckpt.glob("step_*.pt")) == ["step_00000006.pt", newest.name]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a crash mid-write, on a non-atomic filesystem

    capsys.readouterr()
    loop, result, resumed = _tiny_loop(tmp_path / "split", 10)
    assert result.start == 6  # from the intact checkpoint, not from scratch, not failing
    said = capsys.readouterr().err
    assert f"checkpoint {newest} does not load" in said and "resuming from the one before" in said
    assert (ckpt / "step_00000007.pt.corrupt").exists() and not newest.exists()
    assert all(torch.allclose(whole[k], resumed[k], atol=1e-6) for k in whole)  # the same weights as without the fault


def test_a_checkpoint_from_other_model_code_fails_the_job_clearly_and_is_kept(tmp_path: Path) -> None:
    """The same job id after a change to the model's code: the job says which checkpoint and what to do, and keeps it."""
    import torch

    from sweep.jobs.context import JobContext, Preempted
    from sweep.jobs.loop import CheckpointMismatch, Single, TrainLoop
    from sweep.specs.train import Optim

    with pytest.raises(Preempted):
        _tiny_loop(tmp_path, 10, stop_after=4)
    ckpt = tmp_path / "ckpt"
    before = {p.name: p.read_bytes() for p in ckpt.glob("step_*.pt")}
    assert before

    changed = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Linear(4, 1))  # the model's code changed
    ctx = JobContext("j", "train", None, tmp_path)
    with pytest.raises(CheckpointMismatch) as raised:
        TrainLoop(ctx, Optim(lr=0.05, checkpoint_every=3, log_every=1), 10, list(changed.parameters()), Single(changed))
    said = str(raised.value)
    newest = ckpt / max(before)
    assert f"checkpoint {newest} does not fit this job's model" in said
    assert "Missing key(s)" in said and f"move {ckpt} away" in said
    assert {p.name: p.read_bytes() for p in ckpt.glob("step_*.pt")} == before  # nothing set aside, nothing lost

    ckpt.rename(tmp_path / "ckpt.old")  # the fix the message gives
    loop = TrainLoop(ctx, Optim(lr=0.05, checkpoint_every=3, log_every=1), 10, list(changed.parameters()), Single(changed))
    assert loop.start == 0


@pytest.mark.parametrize("failure", ["out of memory", "collective"])
def test_running_out_of_memory_or_a_failed_collective_while_restoring_is_not_called_a_mismatch(
        tmp_path: Path, failure: str) -> None:
    """Restoring can fail although the checkpoint fits: the job then says what failed, not "other model code"."""
    import torch
    import torch.distributed

    from sweep.jobs.context import JobContext, Preempted
    from sweep.jobs.loop import Single, TrainLoop
    from sweep.specs.train import Optim

    with pytest.raises(Preempted):
        _tiny_loop(tmp_path, 10, stop_after=4)
    before = {p.name: p.read_bytes() for p in (tmp_path / "ckpt").glob("step_*.pt")}
    error = (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB") if failure == "out of memory"
             else torch.distributed.DistBackendError("NCCL error: unhandled system error"))

    class FailingRestore(Single):
        def restore(self, state: dict[str, Any], opt: torch.optim.Optimizer) -> None:
            raise error

    model = torch.nn.Linear(8, 1)  # the job's own model: the checkpoint fits it
    with pytest.raises(type(error)) as raised:
        TrainLoop(JobContext("j", "train", None, tmp_path), Optim(lr=0.05, checkpoint_every=3, log_every=1), 10,
                  list(model.parameters()), FailingRestore(model))
    assert raised.value is error and "does not fit" not in str(raised.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "ckpt").glob("step_*.pt")} == before


def _save_under_a_file_size_limit(folder: str, limit: int, queue: Any) -> None:
    """In a child: a checkpoint write that hits RLIMIT_FSIZE (the disk-full boundary) part way through."""
    import resource

    import torch

    from sweep.jobs.loop import save_checkpoint

    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: the write fails with EFBIG
    try:
        save_checkpoint(Path(folder), 5, {"model": {"w": torch.zeros(1 << 20)}})
        queue.put("saved")
    except Exception as e:  # torch reports the short write as a RuntimeError
        queue.put(f"failed: {type(e).__name__}: {e}")


def test_a_checkpoint_write_that_fails_leaves_no_file_under_a_checkpoints_name(tmp_path: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_save_under_a_file_size_limit, args=(str(tmp_path), 100_000, queue))
    proc.start()
    proc.join(120)
    said = queue.get(timeout=5)
    assert said.startswith("failed") and ("File too large" in said or "unexpected pos" in said), said
    assert list(tmp_path.iterdir()) == []  # neither a truncated step_*.pt nor the temp file


# ---- 9. state files that do not parse ---------------------------------------------------------

def _inline() -> Any:
    from launchers.inline import InlineLauncher

    return InlineLauncher({"name": "inline", "max_attempts": 1})


def _starts(trace: Path) -> list[str]:
    return [json.loads(line)["job"] for line in trace.read_text().splitlines() if '"start"' in line]


def test_an_empty_or_garbage_done_json_is_not_done(tmp_path: Path, mlflow_uri: str) -> None:
    from sweep.display import plan_rows
    from sweep.store import Store

    trace = tmp_path / "trace.jsonl"
    plan = probe_plan({"a": ((), {"trace": str(trace)}), "b": ((), {"trace": str(trace)})})
    a, b = (j.id for j in plan)
    rt = make_runtime(tmp_path / "store", mlflow_uri, "fault-done-json")
    _inline().launch(plan, [a, b], rt, Recorder())
    store = Store(rt.store_root)
    (store.job_dir(a) / "done.json").write_text("")
    (store.job_dir(b) / "done.json").write_bytes(b"\x00\xff garbage")
    for jid in (a, b):
        assert not store.is_done(jid) and store.result(jid) is None
        state = store.state(jid)
        assert state.state == "failed" and "done.json does not parse" in state.error
    assert {r["status"] for r in plan_rows(plan, store)} == {"failed before"}

    report = _inline().launch(plan, [a, b], rt, Recorder())
    assert {o.state for o in report.outcomes.values()} == {"done"} and not any(o.skipped for o in report.outcomes.values())
    assert sorted(_starts(trace)) == sorted([a, a, b, b])  # each ran again, once
    assert all(store.is_done(j) for j in (a, b))


def test_a_broken_status_json_is_kept_aside_and_said_so(tmp_path: Path) -> None:
    from sweep.store import Store

    store = Store(tmp_path)
    for _ in range(3):
        store.set_status("j", "running")
    (store.job_dir("j") / "status.json").write_text('{"state": "runn')
    assert store.state("j").state == "failed" and "status.json does not parse" in store.state("j").error
    store.set_status("j", "running")
    record = json.loads((store.job_dir("j") / "status.json").read_text())
    assert record["attempts"] == 1 and "did not parse" in record["note"]  # not silent: the count restarts, and says so
    assert (store.job_dir("j") / "status.json.corrupt").read_text() == '{"state": "runn'


def test_a_garbage_spec_json_is_replaced_by_the_plans_and_never_uploaded(tmp_path: Path, mlflow_uri: str) -> None:
    from sweep.store import Store
    from sweep.tracking import Tracker

    plan = probe_plan({"a": ((), {"value": 3.0})})
    job = plan.jobs[0]
    rt = make_runtime(tmp_path / "store", mlflow_uri, "fault-spec-json")
    store = Store(rt.store_root)
    store.job_dir(job.id).mkdir(parents=True)
    (store.job_dir(job.id) / "spec.json").write_text('{"kind": "probe", "name": "tampered", "value": 99}')
    report = _inline().launch(plan, [job.id], rt, Recorder())
    assert report.outcomes[job.id].state == "done"
    written = json.loads((store.job_dir(job.id) / "spec.json").read_text())
    assert written == {"kind": "probe", **job.spec.to_dict()}
    assert "tampered" in (store.job_dir(job.id) / "spec.json.corrupt").read_text()
    run = _runs_by_job(mlflow_uri, rt.experiment_id)[job.id][0]
    uploaded = Tracker(mlflow_uri).client.download_artifacts(run.info.run_id, "spec.json", str(tmp_path))
    assert json.loads(Path(uploaded).read_text()) == written


# ---- 10. the smaller things -------------------------------------------------------------------------

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_state_files_follow_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    from sweep.store import Store

    old = os.umask(mask)
    try:
        store = Store(tmp_path)
        store.set_status("j", "running")
        lease = store.claim("j", "me")
        store.mark_done("j", {"x": 1.0})
        lease.release()
        store.write_spec("k", {"kind": "probe"})
    finally:
        os.umask(old)
    for name in ("j/status.json", "j/done.json", "k/spec.json"):
        assert stat.S_IMODE((tmp_path / "jobs" / name).stat().st_mode) == mode, name


def test_a_job_held_by_another_run_is_waited_for_not_started(tmp_path: Path, mlflow_uri: str) -> None:
    from sweep.store import Store

    trace = tmp_path / "trace.jsonl"
    plan = probe_plan({"held": ((), {"trace": str(trace)}), "after": (("held",), {"trace": str(trace)})})
    held, after = (j.id for j in plan)
    rt = make_runtime(tmp_path / "store", mlflow_uri, "fault-waiting")
    store = Store(rt.store_root, lease_s=rt.lease_s)
    other = subprocess.Popen(["sleep", "60"])  # the other run's worker: alive, on this host
    try:
        store.job_dir(held).mkdir(parents=True)
        (store.job_dir(held) / "lease").write_text(json.dumps(
            {"owner": f"{socket.gethostname()}:{other.pid}", "host": socket.gethostname(), "pid": other.pid, "token": "x"}))
        rec, reports = Recorder(), []
        thread = threading.Thread(target=lambda: reports.append(_inline().launch(plan, [held, after], rt, rec)))
        thread.start()
        wait_until(lambda: rec.waits, 60, "the wait to be reported")
        assert rec.waits == [(held, f"{socket.gethostname()}:{other.pid}")] and rec.starts == []
        store.mark_done(held, {"probe/value": 1.0})  # the other run finishes it
        (store.job_dir(held) / "lease").unlink()
        thread.join(timeout=60)
    finally:
        other.kill()
        other.wait()
    assert reports[0].outcomes[held].skipped and reports[0].outcomes[after].state == "done"
    assert [s for s, _ in rec.starts] == [after] and _starts(trace) == [after]


@pytest.mark.slow
def test_a_killed_training_job_resumes_with_each_step_logged_once(tmp_path: Path, mlflow_uri: str) -> None:
    """kill -9 of a real training job's worker after it logged past its checkpoint, then the rerun."""
    import yaml

    from launchers.local import LocalLauncher
    from sweep.plan import Job, Plan, make_id
    from sweep.specs.data import SyntheticData
    from sweep.specs.jobs import FeaturesSpec
    from sweep.specs.models import MiniVision
    from sweep.store import Store
    from sweep.tracking import Tracker

    conf = Path(__file__).resolve().parents[1] / "conf"
    vision = MiniVision.parse({**yaml.safe_load((conf / "vision/mini.yaml").read_text()),
                               "pretrain": {"steps": 120, "batch_size": 64, "lr": 3e-3, "log_every": 2, "checkpoint_every": 20}},
                              "vision")
    data = SyntheticData.parse({**yaml.safe_load((conf / "data/synthetic.yaml").read_text()),
                                "train_images": 300, "test_images": 50}, "data")
    spec = FeaturesSpec(vision=vision, data=data)
    features = Job(id=make_id("features", "", spec, {}), kind="features", spec=spec, resources={"gpus": 0, "cpus": 1})
    plan = Plan(name="fault-resume", jobs=(features,), cells=())
    rt = make_runtime(tmp_path / "store", mlflow_uri, "fault-resume")
    store = Store(rt.store_root)
    tracker = Tracker(mlflow_uri)
    launcher = LocalLauncher({"name": "local", "workers": 1, "threads_per_worker": 1, "max_attempts": 1})

    def logged_past_checkpoint() -> bool:
        ckpts = sorted((store.job_dir(features.id) / "ckpt").glob("step_*.pt"))
        runs = _runs_by_job(mlflow_uri, rt.experiment_id).get(features.id, [])
        if not ckpts or not runs:
            return False
        steps = [m.step for m in tracker.client.get_metric_history(runs[0].info.run_id, "vision/pretrain/loss")]
        return max(steps, default=0) > int(ckpts[-1].stem.split("_")[1]) + 4

    thread, reports, _ = _launch_in_thread(launcher, plan, rt)
    wait_until(logged_past_checkpoint, 300, "steps logged past a checkpoint")
    os.kill(_lease_pid(store, features.id), signal.SIGKILL)
    thread.join(timeout=120)
    assert reports[0].outcomes[features.id].state == "failed"

    report = launcher.launch(plan, [features.id], rt, Recorder())
    assert report.outcomes[features.id].state == "done", report.outcomes[features.id].error
    runs = _runs_by_job(mlflow_uri, rt.experiment_id)[features.id]
    assert [r.info.status for r in runs] == ["FINISHED"]
    steps = [m.step for m in tracker.client.get_metric_history(runs[0].info.run_id, "vision/pretrain/loss")]
    assert sorted(steps) == list(range(2, 121, 2))  # the whole curve, each step once
    assert (store.job_dir(features.id) / "series.png").exists()


def test_a_non_finite_loss_fails_the_loop_before_anything_is_saved(tmp_path: Path) -> None:
    import torch

    from sweep.jobs.context import JobContext
    from sweep.jobs.loop import Single, TrainLoop
    from sweep.specs.train import Optim

    model = torch.nn.Linear(2, 1)
    loop = TrainLoop(JobContext("j", "train", None, tmp_path), Optim(lr=0.1, checkpoint_every=1, log_every=1), 5,
                     list(model.parameters()), Single(model))

    def step(i: int) -> float:
        loss = model(torch.ones(1, 2)).sum() * (float("nan") if i == 2 else 1.0)
        loss.backward()
        return float(loss.detach())

    with pytest.raises(FloatingPointError, match="loss is nan at step 3/5"):
        loop.run(step)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step_*.pt")) == ["step_00000001.pt", "step_00000002.pt"]
