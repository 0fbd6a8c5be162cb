"""The Slurm backend without Slurm: array grouping, settings checks, sbatch scripts and quoting.

Slurm is faked at its boundary: small ``sbatch`` / ``srun`` / ``squeue`` /
``scontrol`` programs on PATH record what they were asked (as submitit's own
tests do); submitit and our launcher run unchanged. The real-cluster tests are
in ``test_slurm.py``.

    .venv/bin/pytest tests/test_slurm_unit.py
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import pytest

from helpers import Recorder, make_runtime, probe_plan
from launchers.base import close_ended_runs, payload
from launchers.slurm import SlurmLauncher
from launchers.slurm_arrays import plan_arrays
from launchers.slurm_entry import JobNotDone, SlurmEntry
from launchers.slurm_queue import parse_states
from sweep.display import status_label
from sweep.cli import load
from sweep.errors import SweepError
from sweep.store import BackendState, JobState, Store

FAKE = {
    "sbatch": """
import pathlib, sys, os
d = pathlib.Path(os.environ["FAKE_SLURM_DIR"])
n = int((d / "next").read_text()) if (d / "next").exists() else 1
(d / "next").write_text(str(n + 1))
(d / f"sbatch_{n}.sh").write_text(pathlib.Path(sys.argv[-1]).read_text())
print(f"Submitted batch job {n}")
""",
    "srun": """
import json, os, pathlib, sys
pathlib.Path(os.environ["FAKE_SLURM_DIR"], "srun_argv.json").write_text(json.dumps(sys.argv[1:]))
""",
    "scontrol": 'print("MaxArraySize            = 3")',
    "sinfo": 'print("debug|(null)")\nprint("gpu|gpu:a100:8")',
    # Every submitted job is still pending.
    "squeue": """
import os, pathlib, re
for f in sorted(pathlib.Path(os.environ["FAKE_SLURM_DIR"]).glob("sbatch_*.sh")):
    n = f.stem.split("_")[1]
    m = re.search(r"--array=0-(\\d+)", f.read_text())
    for ref in ([f"{n}_{k}" for k in range(int(m.group(1)) + 1)] if m else [n]):
        print(f"{ref}|PENDING")
""",
}


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir, state = tmp_path / "fakebin", tmp_path / "fakeslurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in FAKE.items():
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
    return state


def _scripts(state: Path) -> list[str]:
    return [p.read_text() for p in sorted(state.glob("sbatch_*.sh"), key=lambda p: int(p.stem.split("_")[1]))]


def _flag(script: str, name: str) -> str | None:
    m = re.search(rf"^#SBATCH --{name}=(.*)$", script, re.MULTILINE)
    return m.group(1) if m else None


def mini(*overrides: str):
    return load(["grid.llm=[xs,s]", "grid.visual_tokens=[1,4,16]", *overrides])[1]


# ---- arrays -------------------------------------------------------------------------------
def test_mini_plan_becomes_features_then_aligned_train_and_eval_arrays() -> None:
    plan = mini()
    arrays = plan_arrays(plan, [j.id for j in plan], (), max_array_size=1000)
    assert [(a.label, len(a.jobs)) for a in arrays] == [("features", 1), ("train", 6), ("eval", 6)]
    feats, train, evals = arrays
    assert train.after_ok == feats.jobs and train.after_corr is None
    assert evals.after_corr == train.key and evals.after_ok == feats.jobs
    for t, e in zip(train.jobs, evals.jobs):  # task k of eval follows task k of train: same cell
        assert plan.get(e).upstream["train"] == t


def test_rerun_with_trained_cells_submits_an_eval_only_array_without_dependencies() -> None:
    plan = mini()
    evals = [j.id for j in plan if j.kind == "eval"]
    arrays = plan_arrays(plan, evals, (), max_array_size=1000)
    assert len(arrays) == 1 and arrays[0].label == "eval"
    assert arrays[0].after_corr is None and arrays[0].after_ok == ()
    # A train still queued from an earlier run: its eval waits for it (afterok), the others do not.
    queued = next(j for j in plan if j.kind == "train").id
    arrays = plan_arrays(plan, evals, [queued], max_array_size=1000)
    assert sorted((len(a.jobs), a.after_ok) for a in arrays) == [(1, (queued,)), (5, ())]


def test_paper_plan_arrays_per_resource_class_split_at_max_array_size() -> None:
    plan = load(["+grid=paper"])[1]
    arrays = plan_arrays(plan, [j.id for j in plan], (), max_array_size=8)
    assert all(len(a.jobs) <= 8 for a in arrays)
    for a in arrays:
        assert {plan.get(j).resource_class for j in a.jobs} == {a.resource_class}
        assert {plan.get(j).role for j in a.jobs} == {a.label.split(":")[0]}
    by_key = {a.key: a for a in arrays}
    order = [a.key for a in arrays]
    for a in arrays:
        if a.after_corr:  # follows an earlier array of the same size, task by task, cell by cell
            prev = by_key[a.after_corr]
            assert order.index(prev.key) < order.index(a.key) and len(prev.jobs) == len(a.jobs)
            assert all(plan.get(j).upstream["train"] == p for j, p in zip(a.jobs, prev.jobs))
    assert sorted(j for a in arrays for j in a.jobs) == sorted(j.id for j in plan)
    assert {a.label for a in arrays} == {"train:stage1", "train:stage2", "eval"}


def test_general_dag_uses_afterok_on_the_arrays_it_needs() -> None:
    plan = probe_plan({"a": ((), {}), "b": (("a",), {}), "c": (("a",), {}), "d": (("b", "c"), {})})
    ids = {j.spec.name: j.id for j in plan}
    arrays = plan_arrays(plan, list(ids.values()), (), max_array_size=10)
    shape = [(sorted(plan.get(j).spec.name for j in a.jobs), sorted(plan.get(d).spec.name for d in a.after_ok)) for a in arrays]
    assert shape == [(["a"], []), (["b", "c"], ["a"]), (["d"], ["b", "c"])]


def test_sacct_and_squeue_lines_are_parsed_with_array_ranges() -> None:
    text = "7_[0-2,5%2]|PENDING\n8|CANCELLED by 0\n8.batch|CANCELLED\n9_1|RUNNING\n"
    assert parse_states(text) == {"7_0": "PENDING", "7_1": "PENDING", "7_2": "PENDING", "7_5": "PENDING",
                                  "8": "CANCELLED", "9_1": "RUNNING"}


def test_status_words_combine_store_and_slurm() -> None:
    submitted = JobState("submitted")
    assert status_label(submitted, BackendState("PENDING", True, "7_0")) == "submitted"
    assert status_label(JobState("preempted", has_checkpoint=True), BackendState("RUNNING", True, "7_0")) == "running"
    assert status_label(submitted, BackendState("CANCELLED", False, "7_0")) == "cancelled"
    assert status_label(submitted, BackendState("TIMEOUT", False, "7_0")) == "failed before"
    assert status_label(submitted, BackendState("UNKNOWN", False, "7_0")) == "submitted"
    assert status_label(JobState("done"), BackendState("CANCELLED", False, "7_0")) == "done"


# ---- closing the MLflow runs of jobs Slurm ended under them -----------------------------------
def test_runs_of_jobs_slurm_ended_are_closed_once_and_nothing_else_is_touched(tmp_path: Path, mlflow_uri: str,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from sweep.tracking import Tracker

    rt = make_runtime(tmp_path / "store", mlflow_uri, "close-ended")
    store, tracker = Store(rt.store_root, lease_s=60), Tracker(mlflow_uri)
    names = ("queued", "running", "finished", "cancelled", "oom", "preempted", "done", "leased", "unknown")
    runs = {n: tracker.job_run(rt.experiment_id, rt.parent_run_id, f"job-{n}", {"sweep_kind": "probe"}) for n in names}
    tracker.finish(runs["finished"])  # its own code closed it (the Slurm job then failed in cleanup)
    store.mark_done("job-done", {})
    lease = store.claim("job-leased", "another-sweep")  # another worker runs it right now
    states = {f"job-{n}": BackendState(word, active, f"7_{i}") for i, (n, word, active) in enumerate([
        ("queued", "PENDING", True), ("running", "RUNNING", True), ("finished", "FAILED", False),
        ("cancelled", "CANCELLED", False), ("oom", "OUT_OF_MEMORY", False), ("preempted", "PREEMPTED", False),
        ("done", "CANCELLED", False), ("leased", "NODE_FAIL", False), ("unknown", "UNKNOWN", False)])}
    searches: list[str] = []
    search = tracker.client.__class__.search_runs
    monkeypatch.setattr(tracker.client.__class__, "search_runs", lambda self, *a, **k: searches.append(a[1]) or search(self, *a, **k))
    try:
        closed = close_ended_runs(store, states, mlflow_uri, experiment_name="close-ended")
        assert closed == {"job-cancelled": "Slurm job 7_3 ended CANCELLED", "job-oom": "Slurm job 7_4 ended OUT_OF_MEMORY",
                          "job-preempted": "Slurm job 7_5 ended PREEMPTED"}
        assert len(searches) == 1  # one search for the sweep, not one per job
        info = {n: tracker.client.get_run(r) for n, r in runs.items()}
        assert {n: i.info.status for n, i in info.items()} == {
            "queued": "RUNNING", "running": "RUNNING", "finished": "FINISHED", "cancelled": "KILLED", "oom": "FAILED",
            "preempted": "KILLED", "done": "RUNNING", "leased": "RUNNING", "unknown": "RUNNING"}
        assert info["cancelled"].data.tags["sweep_error"] == "Slurm job 7_3 ended CANCELLED"
        assert info["oom"].data.tags["sweep_error"] == "Slurm job 7_4 ended OUT_OF_MEMORY"
        assert all("sweep_error" not in info[n].data.tags for n in ("queued", "running", "finished", "done", "leased", "unknown"))

        # Again (`status` runs often): nothing changes; with nothing to close, MLflow is not asked at all.
        assert close_ended_runs(store, states, mlflow_uri, experiment_name="close-ended") == {}
        assert tracker.client.get_run(runs["cancelled"]).info.end_time == info["cancelled"].info.end_time
        searches.clear()
        assert close_ended_runs(store, {k: states[k] for k in ("job-queued", "job-done", "job-unknown")}, mlflow_uri,
                                experiment_name="close-ended") == {}
        assert searches == []
        # A sweep that never made its experiment: nothing is created.
        assert close_ended_runs(store, states, mlflow_uri, experiment_name="no-such-sweep") == {}
        assert tracker.find_experiment("no-such-sweep") is None
    finally:
        lease.release()


# ---- checks before anything is submitted ---------------------------------------------------
@pytest.mark.parametrize("override, field", [
    ({}, "partition"),
    ({"partition": "debug; rm -rf ~"}, "partition"),
    ({"partition": "debgu"}, "launcher.partition: this cluster has no partition 'debgu'. Did you mean debug"),
    ({"partition": "gpu", "classes": {"cpu": {"gpus": 2, "partition": "debug"}}}, "classes.cpu.partition.*offers none"),
    ({"partition": "debug", "account": "$(id)"}, "account"),
    ({"partition": "debug", "constraint": "a100 && reboot"}, "constraint"),
    ({"partition": "debug", "classes": {"cpu": {"time_min": 0}}}, "launcher.classes.cpu.time_min"),
])
def test_check_refuses_missing_or_unsafe_settings(fake_slurm: Path, override: dict, field: str) -> None:
    plan = probe_plan({"a": ((), {})})
    with pytest.raises(SweepError, match=field):
        SlurmLauncher({"name": "slurm", **override}).check(plan, [j.id for j in plan])
    assert not list(fake_slurm.glob("sbatch_*"))


def test_bad_config_shapes_are_refused() -> None:
    with pytest.raises(SweepError, match="setup"):
        SlurmLauncher({"name": "slurm", "setup": "module load cuda"})
    with pytest.raises(SweepError, match="Did you mean partition"):
        SlurmLauncher({"name": "slurm", "classes": {"gpu8": {"partitio": "h100"}}})


# ---- submission through submitit, faked at sbatch --------------------------------------------
def test_fire_and_forget_submits_arrays_records_ids_and_rerun_skips_queued(fake_slurm: Path, tmp_path: Path, mlflow_uri: str) -> None:
    plan = probe_plan({f"t{i}": ((), {}) for i in range(5)} | {f"e{i}": ((f"t{i}",), {}) for i in range(5)})
    cfg = {"name": "slurm", "partition": "gpu", "account": "proj-1", "qos": "normal", "constraint": "a100|h100",
           "classes": {"cpu": {"mem_gb": 2, "time_min": 30, "gpus": 1}}, "setup": ["module load cuda"],
           "array_parallelism": 2, "max_requeues": 5}
    rt = make_runtime(tmp_path / "store", mlflow_uri, "fake-slurm")
    report = SlurmLauncher(cfg).launch(plan, [j.id for j in plan], rt, Recorder())
    assert report.detached and {o.state for o in report.outcomes.values()} == {"submitted"}
    scripts = _scripts(fake_slurm)
    # MaxArraySize = 3 (fake scontrol): 5 chains -> arrays of 3 + 2 per stage; evals follow trains task by task.
    assert [_flag(s, "array") for s in scripts] == ["0-2%2", "0-1%2", "0-2%2", "0-1%2"]
    assert [_flag(s, "dependency") for s in scripts] == [None, None, "aftercorr:1", "aftercorr:2"]
    for s in scripts:
        assert (_flag(s, "partition"), _flag(s, "account"), _flag(s, "qos")) == ("gpu", "proj-1", "normal")
        assert _flag(s, "constraint") == "'a100|h100'"  # quoted by submitit
        assert (_flag(s, "time"), _flag(s, "mem"), _flag(s, "gpus-per-node")) == ("30", "2048MB", "1")
        assert _flag(s, "signal") == "USR2@120" and _flag(s, "kill-on-invalid-dep") == "yes"
        assert "\nmodule load cuda\n" in s
    store = Store(rt.store_root)
    status = json.loads((store.job_dir(plan.jobs[1].id) / "status.json").read_text())
    assert status["state"] == "submitted" and status["backend"]["job_id"] == "1_1"
    # Every job is still pending (fake squeue): a second run submits nothing.
    again = SlurmLauncher(cfg).launch(plan, [j.id for j in plan], rt, Recorder())
    assert len(_scripts(fake_slurm)) == 4 and all(o.skipped for o in again.outcomes.values())


def test_paths_reach_the_sbatch_script_as_single_quoted_words(fake_slurm: Path, tmp_path: Path, mlflow_uri: str) -> None:
    evil = tmp_path / "store $(touch PWNED) `touch PWNED2`; x"
    plan = probe_plan({"a": ((), {})}, name="study; touch PWNED3")
    rt = make_runtime(evil, mlflow_uri, "fake-slurm-quoting")
    SlurmLauncher({"name": "slurm", "partition": "debug"}).launch(plan, [plan.jobs[0].id], rt, Recorder())
    (script,) = _scripts(fake_slurm)
    assert _flag(script, "job-name") == "sweep-study__touch_PWNED3-probe"
    env = {**os.environ, "SLURM_JOB_ID": "1"}
    subprocess.run(["bash", "-c", script.replace("%j", "1")], cwd=tmp_path, env=env, check=True, timeout=60)
    argv = json.loads((fake_slurm / "srun_argv.json").read_text())
    assert argv[-1].startswith(str(evil)) and argv[-1].endswith("/1")  # the folder arrived as one word
    assert not [p for p in tmp_path.rglob("PWNED*")]


# ---- inside the Slurm job: checkpoint, requeue, resume (submitit's handler calls checkpoint()) ----
def test_entry_stops_the_body_requeues_itself_and_the_requeued_run_resumes(tmp_path: Path, mlflow_uri: str) -> None:
    plan = probe_plan({"train": ((), {"steps": 20, "sleep_s": 4.0})})
    job, rt = payload(plan.jobs[0]), make_runtime(tmp_path / "store", mlflow_uri, "entry")
    store = Store(rt.store_root)
    entry = SlurmEntry(max_attempts=1, max_requeues=1, stop_timeout_s=30)
    raised: list[BaseException] = []

    def call() -> None:
        try:
            entry(job, rt)
        except BaseException as e:
            raised.append(e)

    worker = threading.Thread(target=call)
    worker.start()
    deadline = time.time() + 60
    while store.state(job.id).state != "running" and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    nxt = entry.checkpoint(job, rt)  # what submitit's USR2 handler does, then it requeues
    worker.join(timeout=30)
    assert isinstance(raised[0], JobNotDone) and store.state(job.id).state == "preempted"
    nxt = pickle.loads(cloudpickle.dumps(nxt))  # submitit pickles it for the requeued start
    assert nxt.function.requeues == 1
    outcome = nxt.result()
    assert outcome.state == "done" and 0 < outcome.metrics["probe/resumed_from_step"] < 20
    with pytest.raises(JobNotDone, match="max_requeues=1"):  # the cap: no further requeue
        SlurmEntry(max_requeues=1, requeues=1).checkpoint(job, rt)


def test_follower_tasks_wait_out_a_busy_job_longer_than_the_group_timeout(tmp_path: Path, mlflow_uri: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sweeps submitted one two-task job: its leader waits for the other sweep's lease, its follower task waits too.

    The wait outlasts the process group's timeout (3 s here, 30 min by default): without the leader's ``wait``
    words the follower's rendezvous would time out and the job would fail once the lease came free.
    """
    import launchers.slurm_entry as slurm_entry
    from sweep import distributed
    from sweep.distributed import Crew
    from sweep.runner import _spawned_follower

    monkeypatch.setenv("SWEEP_DIST_TIMEOUT_S", "3")  # the spawned follower reads it at import
    monkeypatch.setattr(distributed, "TIMEOUT_S", 3.0)
    monkeypatch.setattr(slurm_entry, "BUSY_POLL_S", 0.5)
    trace = tmp_path / "trace.jsonl"
    plan = probe_plan({"pair": ((), {"trace": str(trace)})}, resources={"gpus": 0, "cpus": 2, "tasks_per_node": 2})
    job, rt = payload(plan.jobs[0]), make_runtime(tmp_path / "store", mlflow_uri, "entry-busy")
    other_sweep = Store(rt.store_root, lease_s=rt.lease_s).claim(job.id, "another sweep")
    assert other_sweep is not None
    crew = Crew.on_this_node(2, _spawned_follower, (job, rt))  # as Slurm does: the follower task starts with the job
    box: dict = {}
    worker = threading.Thread(target=SlurmEntry()._attempts, args=(job, rt, box, crew))
    worker.start()
    time.sleep(8)  # well past the group's timeout
    assert worker.is_alive() and not box and not trace.exists()  # still waiting, nothing ran
    other_sweep.release()  # the other sweep's attempt ended without finishing: this job takes over
    worker.join(60)
    outcome = box["outcome"]
    assert outcome.state == "done", outcome
    assert outcome.metrics["probe/world_size"] == 2 and outcome.metrics["probe/rank_sum"] == 1
    assert not crew.failed() and all(p.exitcode == 0 for p in crew.processes)
