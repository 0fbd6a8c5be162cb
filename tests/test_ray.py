"""The Ray backend beyond the shared contract: resource classes, and a real Ray head on 127.0.0.1.

The head (``tests/harness/ray_head.py``) is a separate ``ray start --head`` the
test starts and stops by its session; the launcher reaches it through
``launcher.address``. Embedded Ray is covered by ``test_launcher_contract.py``.

    .venv/bin/pytest tests/test_ray.py -m ""
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from helpers import Recorder, make_runtime, probe_plan
from launchers.ray import GIB, RayConfig, RayLauncher, session
from sweep.cli import load
from sweep.errors import SweepError

pytest_plugins = ["harness.ray_head"]


def test_resource_classes_map_to_ray_requests() -> None:
    plan = load(["+grid=paper"])[1]
    launcher = RayLauncher({"name": "ray", "classes": {"gpu4": {"mem_gb": 100}}})
    by_class = {j.resource_class: launcher.resources(j) for j in plan}
    assert by_class["gpu8"] == {"CPU": 64.0, "GPU": 8.0, "memory": 512 * GIB}
    assert by_class["gpu4"] == {"CPU": 32.0, "GPU": 4.0, "memory": 100 * GIB}  # the launcher's override wins
    mini = load([])[1]
    assert {launcher.resources(j)["GPU"] for j in mini} == {0.0}


def test_embedded_ray_refuses_gpu_jobs_on_a_cpu_machine_before_starting() -> None:
    plan = load(["+grid=paper"])[1]
    with pytest.raises(SweepError, match="GPU"):
        RayLauncher({"name": "ray", "num_gpus": 0}).check(plan, [j.id for j in plan])


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError):
            continue
    out, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - out
        out |= frontier
    return out


def _listening(pids: set[int]) -> set[str]:
    """Addresses the processes ``pids`` accept TCP connections on (from /proc, no tools needed)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                raw = bytes.fromhex(fields[1].split(":")[0])
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # per-word little endian
                out.add(socket.inet_ntop(family, words))
    return out


def test_embedded_ray_listens_on_loopback_only() -> None:
    import ray

    with session(RayConfig(num_cpus=1, log_to_driver=False)):
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        addresses = _listening(_descendants(os.getpid()) | {os.getpid()})
    assert addresses and addresses <= {"127.0.0.1", "::ffff:127.0.0.1"}, addresses


class HeadRecorder(Recorder):
    """Remembers which Ray cluster this process was connected to when jobs started."""

    def __init__(self) -> None:
        super().__init__()
        self.gcs: set[str] = set()

    def started(self, job: Any, attempt: int) -> None:
        import ray

        self.gcs.add(ray.get_runtime_context().gcs_address)
        super().started(job, attempt)


@pytest.mark.slow
def test_probe_plan_runs_on_a_real_ray_head(ray_address: str, tmp_path: Path, mlflow_uri: str) -> None:
    plan = probe_plan({"a": ((), {"sleep_s": 0.2}), "b": (("a",), {}), "flaky": ((), {"fail_attempts": 1})})
    rt = make_runtime(tmp_path / "store", mlflow_uri, "ray-head")
    rec = HeadRecorder()
    report = RayLauncher({"name": "ray", "address": ray_address, "max_attempts": 2, "log_to_driver": False}).launch(
        plan, [j.id for j in plan], rt, rec)
    assert {o.state for o in report.outcomes.values()} == {"done"}
    assert rec.gcs == {ray_address}  # the head's own GCS, not an embedded Ray
    from sweep.tracking import Tracker

    runs = Tracker(mlflow_uri).job_runs(rt.experiment_id, "probe")
    assert sorted(r.data.tags["sweep_job_id"] for r in runs) == sorted(j.id for j in plan)

    # A class bigger than any node of the head (2 CPUs) is refused before any task is submitted.
    big = RayLauncher({"name": "ray", "address": ray_address, "classes": {"cpu": {"cpus": 3}}})
    other = probe_plan({"x": ((), {})}, name="ray-head-too-big")
    with pytest.raises(SweepError, match="3 CPU"):
        big.launch(other, [other.jobs[0].id], rt, Recorder())
    assert not (tmp_path / "store" / "jobs" / other.jobs[0].id).exists()


@pytest.mark.parametrize("where", ["embedded", "head"])
def test_a_two_node_job_runs_one_task_per_node_in_a_placement_group(where: str, request: pytest.FixtureRequest,
                                                                     tmp_path: Path, mlflow_uri: str) -> None:
    """nodes: 2 -> a placement group of two bundles (PACK: this one machine holds both "nodes"); node 0 leads."""
    cfg: dict[str, Any] = {"name": "ray", "placement": "PACK", "max_attempts": 1, "log_to_driver": False}
    if where == "head":
        cfg["address"] = request.getfixturevalue("ray_address")
    else:
        cfg["num_cpus"] = 2
    trace = tmp_path / "trace.jsonl"
    plan = probe_plan({"pair": ((), {"trace": str(trace)})}, resources={"gpus": 0, "cpus": 1, "nodes": 2, "tasks_per_node": 1})
    launcher = RayLauncher(cfg)
    launcher.check(plan, [j.id for j in plan])
    report = launcher.launch(plan, [j.id for j in plan], make_runtime(tmp_path / "store", mlflow_uri, f"ray-nodes-{where}"), Recorder())
    outcome = next(iter(report.outcomes.values()))
    assert outcome.state == "done", outcome.error
    assert outcome.metrics["probe/world_size"] == 2 and outcome.metrics["probe/rank_sum"] == 1
    import json

    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert sorted(e["event"] for e in events if e["event"].startswith("rank")) == ["rank0", "rank1"]


def test_embedded_ray_refuses_spreading_a_job_over_nodes_it_does_not_have() -> None:
    plan = probe_plan({"x": ((), {})}, resources={"gpus": 0, "cpus": 1, "nodes": 2})
    with pytest.raises(SweepError) as err:
        RayLauncher({"name": "ray"}).check(plan, [j.id for j in plan])
    assert err.value.field == "resources.cpu.nodes" and "launcher.placement=PACK" in err.value.fix


def test_a_cluster_without_enough_nodes_for_a_spread_job_is_refused() -> None:
    plan = probe_plan({"x": ((), {})}, resources={"gpus": 8, "cpus": 8, "nodes": 2})
    node = {"Alive": True, "Resources": {"CPU": 64.0, "GPU": 8.0}}
    launcher = RayLauncher({"name": "ray", "address": "ray://head:10001"})
    small = {"Alive": True, "Resources": {"CPU": 64.0, "GPU": 4.0}}
    with pytest.raises(SweepError) as err:  # one node fits; the dead one and the 4-GPU one do not count
        launcher._check_spread(list(plan), [node, {**node, "Alive": False}, small])
    assert err.value.field == "resources.cpu.nodes" and "1 node(s)" in err.value.problem
    launcher._check_spread(list(plan), [node, small, dict(node)])  # two that fit: fine
