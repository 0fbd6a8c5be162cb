"""Smoke tests for the service harnesses in tests/harness: each one starts the
real service and uses it the way the sweep does (submitit on Slurm, an MLflow
client, a Ray driver).

    .venv/bin/pytest tests/test_harness.py                 # Slurm, MLflow, Ray
    .venv/bin/pytest tests/test_harness.py -m "not slow"   # without preemption
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import listening_addresses, wait_until
from harness.ray_head import RayHead
from harness.slurm import SKIP_ENV, SlurmCluster, missing_requirements, require_slurm

pytest_plugins = ["harness.slurm", "harness.mlflow_server", "harness.ray_head"]

def _all_loopback(addresses: set[tuple[str, int]]) -> bool:
    return all(ipaddress.ip_address(host).is_loopback for host, _ in addresses)


def _eventually(read: Callable[[], str], accept: Callable[[str], bool], timeout_s: float, what: str) -> str:
    """Poll ``read`` until ``accept`` takes its value; return that value."""
    seen: list[str] = []

    def check() -> bool:
        seen.append(read())
        return accept(seen[-1])

    try:
        wait_until(check, timeout_s, what, interval_s=0.5)
    except TimeoutError as err:
        raise AssertionError(f"{err}; last value {seen[-1:]!r}") from err
    return seen[-1]


# ------------------------------------------------------------------ Slurm ---


def test_require_slurm_fails_loudly_without_slurm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(SKIP_ENV, raising=False)
    assert any("sbatch" in item for item in missing_requirements())
    with pytest.raises(pytest.fail.Exception, match="slurm-local.sh install"):
        require_slurm()


def test_require_slurm_skips_when_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(SKIP_ENV, "1")
    with pytest.raises(pytest.skip.Exception, match=SKIP_ENV):
        require_slurm()


@pytest.mark.slurm
def test_slurm_daemons_listen_on_loopback_only(slurm_cluster: SlurmCluster) -> None:
    pids = slurm_cluster.daemon_pids()
    assert set(pids) == {"munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"}
    addresses = listening_addresses(list(pids.values()))
    ports = {port for _, port in addresses}
    assert set(slurm_cluster.ports.values()) <= ports
    assert _all_loopback(addresses), addresses


@pytest.mark.slurm
def test_slurm_partitions_are_set_up_for_preemption(slurm_cluster: SlurmCluster) -> None:
    partitions = slurm_cluster.run("scontrol", "show", "partition", "--oneliner").splitlines()
    by_name = {line.split()[0].removeprefix("PartitionName="): line for line in partitions}
    assert set(by_name) == {"debug", "high"}
    assert "Default=YES" in by_name["debug"] and "PriorityTier=1 " in by_name["debug"]
    assert "PriorityTier=10 " in by_name["high"]
    config = slurm_cluster.run("scontrol", "show", "config")
    assert "preempt/partition_prio" in config and "preempt_send_user_signal" in config


@pytest.mark.slurm
@pytest.mark.timeout(120, method="signal")
def test_submitit_round_trip(slurm_env: SlurmCluster) -> None:
    import submitit

    executor = submitit.AutoExecutor(folder=slurm_env.fresh_folder("round-trip"))
    executor.update_parameters(timeout_min=2, slurm_partition="debug")
    job = executor.submit(pow, 2, 10)
    assert job.result() == 1024
    state = _eventually(lambda: slurm_env.sacct_state(job.job_id), lambda s: s == "COMPLETED", 60, "sacct COMPLETED")
    assert state == "COMPLETED"


@pytest.mark.slurm
@pytest.mark.timeout(120, method="signal")
def test_cancelled_job_is_cancelled_in_sacct(slurm_env: SlurmCluster) -> None:
    import submitit

    executor = submitit.AutoExecutor(folder=slurm_env.fresh_folder("cancel"))
    executor.update_parameters(timeout_min=5, slurm_partition="debug")
    job = executor.submit(time.sleep, 300)
    _eventually(lambda: slurm_env.sacct_state(job.job_id), lambda s: s == "RUNNING", 60, "sacct RUNNING")
    job.cancel()
    _eventually(lambda: slurm_env.sacct_state(job.job_id), _is_cancelled, 60, "sacct CANCELLED")
    _eventually(lambda: job.state, _is_cancelled, 60, "submitit's job.state CANCELLED")


def _is_cancelled(state: str) -> bool:
    return state.startswith("CANCELLED")  # sacct says "CANCELLED by <uid>"


class _WaitForPreemption:
    """Runs until preempted on its first attempt; the requeued attempt returns
    how many times it was checkpointed (submitit calls ``checkpoint`` on the
    USR2 that ``preempt_send_user_signal`` delivers)."""

    def __init__(self, started_dir: str) -> None:
        self.started_dir = started_dir
        self.checkpoints = 0

    def __call__(self) -> int:
        Path(self.started_dir, f"attempt-{self.checkpoints}").touch()
        if self.checkpoints == 0:
            time.sleep(600)
        return self.checkpoints

    def checkpoint(self) -> object:
        import submitit

        self.checkpoints += 1
        return submitit.helpers.DelayedSubmission(self)


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(240, method="signal")
def test_high_partition_preempts_debug_and_job_resumes(slurm_env: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    import submitit

    # Jobs unpickle _WaitForPreemption by reference to this module.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])))
    started = slurm_env.fresh_folder("preempt-marks")
    low = submitit.AutoExecutor(folder=slurm_env.fresh_folder("preempt-low"))
    low.update_parameters(timeout_min=10, slurm_partition="debug", cpus_per_task=2)
    high = submitit.AutoExecutor(folder=slurm_env.fresh_folder("preempt-high"))
    high.update_parameters(timeout_min=2, slurm_partition="high", cpus_per_task=2)

    victim = low.submit(_WaitForPreemption(str(started)))
    wait_until(lambda: (started / "attempt-0").exists(), 90, "the debug job to start")
    assert high.submit(pow, 3, 3).result() == 27
    assert victim.result() == 1
    assert (started / "attempt-1").exists()


# ----------------------------------------------------------------- MLflow ---


@pytest.mark.timeout(180, method="signal")
def test_mlflow_server_stores_and_returns_a_run(mlflow_server: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    assert mlflow_server.startswith("http://127.0.0.1:")
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment_id = client.create_experiment(f"harness-{time.time_ns()}")
    run = client.create_run(experiment_id, tags={"harness": "smoke"})
    client.log_param(run.info.run_id, "width", "64")
    client.log_metric(run.info.run_id, "loss", 0.25, step=3)
    note = tmp_path / "note.txt"
    note.write_text("artifact through the server")
    client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)

    fetched = MlflowClient(tracking_uri=mlflow_server).get_run(run.info.run_id)
    assert fetched.info.status == "FINISHED"
    assert fetched.data.params == {"width": "64"}
    assert fetched.data.metrics == {"loss": 0.25}
    assert fetched.data.tags["harness"] == "smoke"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["note.txt"]
    downloaded = client.download_artifacts(run.info.run_id, "note.txt", str(tmp_path / "down"))
    assert Path(downloaded).read_text() == "artifact through the server"


# -------------------------------------------------------------------- Ray ---


@pytest.mark.timeout(180, method="signal")
def test_ray_head_runs_a_remote_function(ray_head: RayHead, ray_address: str) -> None:
    import ray

    ray.init(address=ray_address, log_to_driver=False)

    @ray.remote
    def square_and_pid(x: int) -> tuple[int, int]:
        return x * x, os.getpid()

    value, worker_pid = ray.get(square_and_pid.remote(7), timeout=60)
    assert value == 49
    assert worker_pid != os.getpid()
    assert worker_pid in ray_head.pids()
    assert ray.cluster_resources()["CPU"] == 2
    assert [node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]] == ["127.0.0.1"]
    addresses = listening_addresses(ray_head.pids())
    assert addresses and _all_loopback(addresses), addresses
