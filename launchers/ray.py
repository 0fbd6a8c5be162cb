"""Ray backend: each job is a Ray task sized by its resource class; the DAG executor waits.

    python -m sweep launcher=ray                                   Ray started inside this process
    python -m sweep launcher=ray launcher.address=auto             the cluster started on this machine
    python -m sweep launcher=ray launcher.address=ray://head:10001 a remote cluster (Ray Client)

Embedded Ray (``address: null``) binds to 127.0.0.1 only. On a cluster the
sweep's store (``sweep.root``) and the tracking store must be reachable from
every node (a shared filesystem, an MLflow server), and the nodes need this
project installed (or ``launcher.runtime_env``).

A multi-GPU job's task holds all of the job's GPUs on its node and spawns its
other ranks there. A multi-node job (``nodes > 1``) reserves a placement group of
one bundle per node (``launcher.placement``); a task on each bundle runs that
node's ranks (``runner.run_node``), node 0 leads. On a cluster they meet at node
0's address; on embedded Ray (one machine) through a file, over loopback.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from launchers.base import DagExecutor, Events, LaunchReport, class_resources, payload, tasks_per_node
from launchers.config import RayConfig, as_config
from sweep.errors import SweepError
from sweep.plan import Job, Plan
from sweep.runner import Outcome, Runtime, run_job
from sweep.store import FAILED, Store

LOOPBACK = "127.0.0.1"
GIB = 1024**3


# One embedded Ray per process, shared by the launches running in it (two concurrent
# launches in one process must not shut down each other's Ray).
_LOCK = threading.Lock()
_users = 0
_owned = False


def _is_loopback(address: str | None) -> bool:
    host = (address or "").split("://")[-1].rsplit(":", 1)[0]
    return host in (LOOPBACK, "localhost")


def _init(cfg: RayConfig) -> None:
    import ray
    import ray._private.ray_constants as ray_constants

    common: dict[str, Any] = {"include_dashboard": False, "log_to_driver": cfg.log_to_driver,
                              "runtime_env": dict(cfg.runtime_env) if cfg.runtime_env else None,
                              "logging_level": "warning"}
    # ray.init replaces 127.0.0.1 by this machine's routable address, and its servers bind
    # to the node address; this switch (Ray's own, meant for laptops) keeps loopback as is.
    loopback = cfg.address is None or _is_loopback(cfg.address)
    saved = ray_constants.ENABLE_RAY_CLUSTER
    if loopback:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        if cfg.address is None:
            ray.init(address="local", num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, _node_ip_address=LOOPBACK,
                     object_store_memory=cfg.object_store_mb * 1024**2, **common)
        else:
            ray.init(address=cfg.address, **common)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _acquire(cfg: RayConfig) -> None:
    """Start (or join) this process's Ray; a Ray someone else started here is used as is."""
    global _users, _owned
    import ray

    with _LOCK:
        if _users == 0 and not ray.is_initialized():
            try:
                _init(cfg)
            except (ConnectionError, ValueError, RuntimeError) as e:
                where = "start Ray in this process" if cfg.address is None else f"connect to Ray at {cfg.address!r}"
                raise SweepError("launcher.address", f"cannot {where}: {e}",
                                 "check the address (`ray status` on the head node), or leave it null for embedded Ray") from None
            _owned = True
        _users += 1


def _release() -> None:
    global _users, _owned
    import ray

    with _LOCK:
        _users -= 1
        if _users == 0 and _owned:
            ray.shutdown()
            _owned = False


@contextmanager
def session(cfg: RayConfig) -> Iterator[None]:
    """This process's Ray for the block: started or joined on entry, stopped when its last user leaves."""
    _acquire(cfg)
    try:
        yield
    finally:
        _release()


def _demand(res: Mapping[str, Any]) -> dict[str, float]:
    """A job's Ray resource request (Ray's names and units)."""
    out = {"CPU": float(res.get("cpus", 1) or 0), "GPU": float(res.get("gpus", 0) or 0)}
    if res.get("mem_gb"):
        out["memory"] = float(res["mem_gb"]) * GIB
    return out


def _largest_node(nodes: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Per resource, the most any one alive node offers (a task runs on one node)."""
    most: dict[str, float] = {}
    for node in nodes:
        if node.get("Alive", True):
            for key, value in (node.get("Resources") or {}).items():
                most[key] = max(most.get(key, 0.0), float(value))
    return most


def _show(res: Mapping[str, float], keys: Sequence[str]) -> str:
    return ", ".join(f"{res.get(k, 0.0) / GIB:.1f} GiB memory" if k == "memory" else f"{res.get(k, 0.0):g} {k}" for k in keys)


class RayLauncher:
    """Runs each job as a Ray task (resources from its class) and waits for them in DAG order."""

    def __init__(self, cfg: RayConfig | Mapping[str, Any]) -> None:
        self.cfg = as_config(cfg, RayConfig)

    def resources(self, job: Job) -> dict[str, float]:
        return _demand(class_resources(job, self.cfg.classes))

    def check(self, plan: Plan, todo: Sequence[str]) -> None:
        for jid in todo:
            job = plan.get(jid)
            res = class_resources(job, self.cfg.classes)
            tasks_per_node(job, res)
            nodes = int(res.get("nodes", 1) or 1)
            if nodes > 1 and self.cfg.address is None and self.cfg.placement == "STRICT_SPREAD":
                raise SweepError(f"resources.{job.resource_class}.nodes", f"resource class {job.resource_class!r} asks for "
                                 f"{nodes} nodes and embedded Ray is one machine",
                                 "connect to a cluster (launcher.address=...), set nodes: 1, or launcher.placement=PACK "
                                 "to run the nodes' ranks on this machine")
        demands = {plan.get(j).resource_class: self.resources(plan.get(j)) for j in todo}
        for cls, need in demands.items():
            if need["CPU"] < 0 or need["GPU"] < 0 or need.get("memory", 0) < 0:
                raise SweepError(f"resources.{cls}", f"negative resources {need}", "use cpus/gpus/mem_gb >= 0")
        if self.cfg.address is not None:
            return  # the cluster is checked when we connect (launch)
        have = {"CPU": float(self.cfg.num_cpus or os.cpu_count() or 1)}
        if any(n["GPU"] for n in demands.values()):
            import torch

            have["GPU"] = float(self.cfg.num_gpus if self.cfg.num_gpus is not None else torch.cuda.device_count())
        self._check_fits(demands, have, "this machine (embedded Ray)")

    def _check_fits(self, demands: Mapping[str, Mapping[str, float]], have: Mapping[str, float], where: str) -> None:
        for cls, need in demands.items():
            short = [k for k, v in need.items() if k in have and v > have[k]]
            if short:
                raise SweepError(
                    f"resources.{cls}",
                    f"jobs of resource class {cls!r} need {_show(need, short)} but the largest node of {where} "
                    f"offers {_show(have, short)}; Ray would wait for such a node forever",
                    f"lower them with launcher.classes.{cls}.cpus=/gpus=/mem_gb=..., or use a cluster with such nodes "
                    "(launcher.address=...)",
                )

    def _check_spread(self, jobs: Sequence[Job], cluster: Sequence[Mapping[str, Any]]) -> None:
        """A multi-node job needs that many distinct nodes that each hold one of its bundles."""
        for job in jobs:
            nodes = int(class_resources(job, self.cfg.classes).get("nodes", 1) or 1)
            if nodes < 2:
                continue
            need = self.resources(job)
            fit = sum(1 for n in cluster if n.get("Alive", True)
                      and all(float((n.get("Resources") or {}).get(k, 0.0)) >= v for k, v in need.items()))
            if fit < nodes:
                raise SweepError(f"resources.{job.resource_class}.nodes",
                                 f"jobs of resource class {job.resource_class!r} span {nodes} nodes of {_show(need, list(need))} "
                                 f"each, and {fit} node(s) of the Ray cluster can hold that; the placement group would wait forever",
                                 "lower nodes, add nodes to the cluster, or use launcher=slurm")

    def launch(self, plan: Plan, todo: Sequence[str], rt: Runtime, events: Events) -> LaunchReport:
        import ray
        from ray.util.placement_group import remove_placement_group

        with session(self.cfg):
            demands = {plan.get(j).resource_class: self.resources(plan.get(j)) for j in todo}
            self._check_fits(demands, {"CPU": 0.0, "GPU": 0.0, "memory": 0.0, **_largest_node(ray.nodes())}, "the Ray cluster")
            if self.cfg.placement == "STRICT_SPREAD":
                self._check_spread([plan.get(j) for j in todo], ray.nodes())
            remote = ray.remote(run_job)
            job_of: dict[Any, str] = {}

            groups: dict[Any, Any] = {}  # a multi-node job's leader task -> its placement group

            def submit(job: Job) -> Any:
                need = self.resources(job)
                nodes = int(class_resources(job, self.cfg.classes).get("nodes", 1) or 1)
                options: dict[str, Any] = {"num_cpus": need["CPU"], "num_gpus": need["GPU"], "max_retries": 0,
                                           "name": f"sweep:{job.role}:{job.id}"}
                if "memory" in need:
                    options["memory"] = int(need["memory"])
                # The task holds all of the job's GPUs and CPUs; a multi-rank job spawns its followers inside it.
                tasks = tasks_per_node(job, class_resources(job, self.cfg.classes))
                job_rt = replace(rt, threads=max(1, int(need["CPU"]) // tasks))
                if nodes > 1:
                    ref, groups[ref] = self._submit_nodes(job, payload(job, tasks), job_rt, need, options, nodes)
                else:
                    ref = remote.options(**options).remote(payload(job, tasks), job_rt)
                job_of[ref] = job.id
                return ref

            def wait(refs: list[Any], timeout: float) -> list[tuple[Any, Outcome]]:
                ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
                if ready and rest:  # collect whatever else finished meanwhile
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    ready += more
                out = []
                for ref in ready:
                    if ref in groups:  # frees the bundles and stops the other nodes' tasks, if any are left
                        remove_placement_group(groups.pop(ref))
                    try:
                        out.append((ref, ray.get(ref)))
                    except Exception as e:  # the task died outside run_job: worker crash, OOM kill, lost node
                        out.append((ref, Outcome(job_of[ref], FAILED, error=f"Ray task failed: {type(e).__name__}: {e}")))
                return out

            store = Store(rt.store_root, lease_s=rt.lease_s)
            try:
                return DagExecutor(plan, todo, store, self.cfg.max_attempts, events,
                                   max_gpu_hours=self.cfg.max_gpu_hours).run(submit, wait)
            finally:
                for group in groups.values():
                    remove_placement_group(group)

    def _submit_nodes(self, job: Job, work: Any, rt: Runtime, need: Mapping[str, float], options: Mapping[str, Any],
                      nodes: int) -> tuple[Any, Any]:
        """One task per node in a placement group; returns (node 0's ref, the group)."""
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from sweep.distributed import World

        bundle = {k: v for k, v in need.items() if v}
        group = placement_group([dict(bundle) for _ in range(nodes)], strategy=self.cfg.placement,
                                name=f"sweep:{job.id}")

        def on(node: int) -> dict[str, Any]:
            return {**options, "name": f"sweep:{job.role}:{job.id}:node{node}",
                    "scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=node)}

        # All on one machine (embedded Ray, or a cluster on loopback): the ranks meet through this file and
        # nothing listens; otherwise at node 0's address and a port free there, found before the node tasks start.
        store = os.path.join(tempfile.gettempdir(), f"sweep-ranks-{uuid.uuid4().hex}", "store")
        base = World(world_size=nodes * work.tasks, gpus=work.gpus, store_file=store)
        master = None
        if self.cfg.address is not None:
            master = ray.remote(_rendezvous).options(num_cpus=0, scheduling_strategy=on(0)["scheduling_strategy"]).remote()
        refs = [ray.remote(_node).options(**on(k)).remote(work, rt, base, k, master) for k in range(nodes)]
        return refs[0], group


def _rendezvous() -> tuple[str, int]:
    """Runs on node 0: its address and a port free there for the job's process group."""
    import socket

    import ray

    with socket.socket() as sock:
        sock.bind(("", 0))
        port = int(sock.getsockname()[1])
    return ray.util.get_node_ip_address(), port


def _node(work: Any, rt: Runtime, base: Any, node: int, master: tuple[str, int] | None) -> Outcome:
    """The task on one node of a multi-node job: that node's ranks (``runner.run_node``)."""
    from dataclasses import replace as with_

    from sweep.runner import run_node

    world = with_(base, rank=node * work.tasks, local_rank=0)
    if master is not None and not _is_loopback(master[0]):
        world = with_(world, master_addr=master[0], master_port=int(master[1]), store_file="")
    return run_node(work, rt, world)
