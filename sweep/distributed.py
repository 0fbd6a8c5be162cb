"""One job on several processes: ranks, how they start, and the collectives job bodies use.

A job whose resource class asks for more than one process (``tasks_per_node``,
which defaults to one per GPU, times ``nodes``) runs as ``world_size`` ranks that
train one model with ``torch.distributed`` (DDP). Rank 0 is the *leader*: it is
the job as the rest of the sweep sees it (it holds the lease, owns the MLflow run,
writes checkpoints, ``model.pt`` and ``done.json``). The other ranks, the
*followers*, compute and write nothing.

How the ranks start:

* local and Ray: the launcher starts one process per job (a pool worker, a Ray
  task holding all of the job's GPUs). Once that process holds the job's lease it
  spawns the followers on the same node (``Crew.on_this_node``); they meet through a file
  store in a temp folder and talk over the loopback interface, so nothing listens
  on the network.
* Slurm: sbatch asks for ``ntasks_per_node`` tasks on each of ``nodes`` nodes and
  submitit starts the entry in every task; ``World.from_slurm`` reads the ranks.
  The rendezvous is the job's first node (``Crew.attach``); a one-node job uses a
  file store in the node's temp folder and the loopback interface instead.

Either way the ranks first form a process group, then the leader sends a word per
attempt: ``run`` (all ranks run the job body once) or ``end`` (the job is done,
busy elsewhere or given up; the followers return). So followers never start a
body the leader does not run, and never outlive the leader's decision. While the
leader waits between attempts (a Slurm job whose lease another sweep holds), it
sends ``wait`` every few seconds, so no follower's collective runs into the
group's timeout however long the wait.

Job bodies see the ranks as ``ctx.world`` and use ``mean``/``total``/``any_true``;
with one process these are identities, so a body is written once.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

RUN, END, WAIT = "run", "end", "wait"
TIMEOUT_S = float(os.environ.get("SWEEP_DIST_TIMEOUT_S", "1800"))  # a collective that waits longer fails the job


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 0
    gpus: tuple[int, ...] = ()  # the job's GPU ids on this node (local launcher); () = all the process sees
    store_file: str = ""  # ranks on one node meet through this file (nothing listens); else master_addr:master_port

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self) -> str:
        """``cuda:<the job's local_rank-th GPU>`` when this node has GPUs, else ``cpu``."""
        import torch

        if not torch.cuda.is_available():
            return "cpu"
        if self.gpus:
            return f"cuda:{self.gpus[self.local_rank % len(self.gpus)]}"
        return f"cuda:{self.local_rank % max(1, torch.cuda.device_count())}"

    @staticmethod
    def from_slurm() -> World:
        """The ranks of this Slurm job's tasks (submitit's environment); a single World outside a multi-task job."""
        from submitit import JobEnvironment
        from submitit.helpers import TorchDistributedEnvironment

        try:
            env = JobEnvironment()
            if env.num_tasks <= 1:
                return World()
            dist = TorchDistributedEnvironment()
        except RuntimeError:  # not inside a Slurm job
            return World()
        store = ""
        if env.num_nodes == 1:  # all tasks on this node: meet through a file, one per start of the job
            import tempfile

            start = f"{env.job_id}-{os.environ.get('SLURM_RESTART_COUNT', '0')}"
            store = os.path.join(tempfile.gettempdir(), f"sweep-ranks-{start}", "store")
        return World(rank=dist.rank, world_size=dist.world_size, local_rank=dist.local_rank,
                     master_addr=dist.master_addr, master_port=int(dist.master_port), store_file=store)


_SAVED_ENV: dict[str, str | None] = {}  # what init_group changed in os.environ, restored by close_group


def init_group(world: World) -> None:
    """Join the job's process group (NCCL on GPUs, else gloo); every rank calls it."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(torch.device(world.device()))
    if world.store_file:  # one node: keep every socket on loopback (a TCP store would listen on all interfaces)
        os.makedirs(os.path.dirname(world.store_file), exist_ok=True)
        for var in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):  # for this group only: a worker is reused
            _SAVED_ENV[var] = os.environ.get(var)
            os.environ[var] = _loopback_name()
    if world.store_file and not world.leader:  # the leader waits for this before its own rendezvous
        _say_ready(world)
    dist.init_process_group(
        backend="nccl" if torch.cuda.is_available() else "gloo",
        init_method=f"file://{world.store_file}" if world.store_file else f"tcp://{world.master_addr}:{world.master_port}",
        rank=world.rank, world_size=world.world_size, timeout=datetime.timedelta(seconds=TIMEOUT_S))


def _ready_file(store_file: str, rank: int) -> str:
    """The file a follower rank writes next to a one-node group's rendezvous file when it gets there."""
    return f"{store_file}.ready{rank}"


def _say_ready(world: World) -> None:
    try:
        open(_ready_file(world.store_file, world.rank), "w").close()
    except OSError:  # the leader has ended the job and removed the folder: the rendezvous fails on its own
        pass


def _loopback_name() -> str:
    """The loopback interface's name (``lo`` on Linux, ``lo0`` on macOS)."""
    names = [name for _, name in socket.if_nameindex()]
    return next((n for n in names if n in ("lo", "lo0")), "lo")


def close_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    for var, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value
    _SAVED_ENV.clear()


def _active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _reduce(value: float, op: str) -> float:
    if not _active():
        return value
    import torch
    import torch.distributed as dist

    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return float(t.item())


def total(value: float) -> float:
    """The sum over ranks (identity with one process)."""
    return _reduce(value, "sum")


def mean(value: float) -> float:
    """The mean over ranks (identity with one process)."""
    if not _active():
        return value
    import torch.distributed as dist

    return _reduce(value, "sum") / dist.get_world_size()


def any_true(flag: bool) -> bool:
    """True on every rank if it is true on any (a stop request reaches all ranks at the same step)."""
    return _reduce(1.0 if flag else 0.0, "max") > 0.5


def merged(part: dict[str, Any]) -> dict[str, Any]:
    """The union of every rank's dict, on every rank (identity with one process)."""
    if not _active():
        return part
    import torch.distributed as dist

    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, part)
    return {k: v for p in parts for k, v in p.items()}


def _word(word: str | None = None) -> str:
    """The leader broadcasts ``word``; the followers receive it."""
    import torch.distributed as dist

    box = [word]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def _leave_together() -> None:
    """A barrier after the ``end`` word, so no rank tears the group down while another is still in its last
    collective: a gloo rank whose peer tore down first can abort ("terminate called without an active
    exception"; ``bench/gpu_check.py``'s CPU runs saw it in 4 of 12 without such a barrier, 0 of 12 with it)."""
    import torch.distributed as dist

    dist.barrier()


# ---- the leader's side -------------------------------------------------------------------------

class Crew:
    """The followers of one job, as its leader sees them: started, told to run each attempt, ended."""

    def __init__(self, world: World, processes: list[Any] | None = None) -> None:
        self.world, self.processes = world, processes or []
        self._open = False

    @classmethod
    def attach(cls, world: World) -> Crew:
        """Followers someone else started (Slurm's tasks): they are already waiting to join the group."""
        return cls(world)

    @classmethod
    def spawn(cls, world: World, local: int, follower: Callable[..., Any], args: tuple[Any, ...]) -> Crew:
        """Start this node's other ``local - 1`` ranks after ``world`` (this process, local rank 0 of the node)."""
        return cls(world, start_local_ranks(world, local, follower, args))

    @classmethod
    def on_this_node(cls, tasks: int, follower: Callable[..., Any], args: tuple[Any, ...], gpus: tuple[int, ...] = ()) -> Crew:
        """A one-node job of ``tasks`` ranks: this process leads, the others are spawned; they meet through a file."""
        return cls.spawn(World(rank=0, world_size=tasks, local_rank=0, gpus=gpus, store_file=new_store_file()),
                         tasks, follower, args)

    def run(self) -> World:
        """Tell the followers to run the body once (joining the group first if needed); the leader's World."""
        self._join_group()
        _word(RUN)
        return self.world

    def hold(self) -> None:
        """Keep the followers waiting, joining the group first if needed (call more often than ``TIMEOUT_S``)."""
        self._join_group()
        _word(WAIT)

    def end(self, join_timeout_s: float = 60.0) -> None:
        """Tell the followers there is nothing more; wait for spawned ones to exit (kill them after the timeout)."""
        try:
            # A spawned follower that exited before the group formed would never join it: nothing to wait
            # for (init_group would block for TIMEOUT_S).
            if self._open or all(p.exitcode is None for p in self.processes):
                self._join_group()
                _word(END)
                _leave_together()
        except Exception:  # a follower died; what matters now is that none is left behind
            pass
        finally:
            close_group()
            join_all(self.processes, join_timeout_s)
            if self.world.store_file:
                shutil.rmtree(os.path.dirname(self.world.store_file), ignore_errors=True)

    def failed(self) -> list[str]:
        """Spawned followers that exited with an error (checked after a failed body)."""
        return self._exited(with_error=True)

    def _exited(self, with_error: bool = False) -> list[str]:
        return [f"{p.name} exited with {p.exitcode}" for p in self.processes
                if p.exitcode is not None and not (with_error and p.exitcode == 0)]

    def _join_group(self) -> None:
        if not self._open:
            self._await_spawned()
            init_group(self.world)
            self._open = True

    def _await_spawned(self, poll_s: float = 0.05) -> None:
        """Wait until every follower this process spawned has reached the rendezvous; fail at once if one
        ended before it, which would otherwise leave the leader in ``init_group`` for ``TIMEOUT_S``."""
        if not self.processes or not self.world.store_file:
            return
        marks = [_ready_file(self.world.store_file, self.world.rank + i) for i in range(1, len(self.processes) + 1)]
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            if ended := self._exited():
                raise RuntimeError(
                    f"{', '.join(ended)} before joining the job's process group (its own error, if it printed one, "
                    "is in this job's output above); nothing ran on any rank")
            if all(os.path.exists(m) for m in marks):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the job's spawned ranks did not reach the process group within {TIMEOUT_S:.0f} s "
                                   "(SWEEP_DIST_TIMEOUT_S)")
            time.sleep(poll_s)


def new_store_file() -> str:
    """A fresh rendezvous file in a new temp folder (the leader removes the folder when the job ends)."""
    import tempfile

    return os.path.join(tempfile.mkdtemp(prefix="sweep-ranks-"), "store")


def start_local_ranks(world: World, local: int, follower: Callable[..., Any], args: tuple[Any, ...]) -> list[Any]:
    """Spawn local ranks 1 .. local-1 after ``world``; ``follower(their world, *args)`` runs in each."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = []
    for i in range(1, local):
        mine = replace(world, rank=world.rank + i, local_rank=world.local_rank + i)
        p = ctx.Process(target=follower, args=(mine, *args), name=f"sweep-rank{mine.rank}", daemon=False)
        p.start()
        procs.append(p)
    return procs


def join_all(processes: list[Any], timeout_s: float = 60.0) -> None:
    """Wait for spawned ranks to exit; kill what is left after ``timeout_s``."""
    deadline = time.time() + timeout_s
    for p in processes:
        p.join(max(0.0, deadline - time.time()))
        if p.is_alive():
            p.kill()
            p.join()


# ---- the followers' side ---------------------------------------------------------------------

def follow(world: World, body: Callable[[World], Any]) -> int:
    """A follower's life: join the group, run ``body(world)`` each time the leader says ``run``; the number of runs."""
    init_group(world)
    runs = 0
    try:
        while (word := _word()) != END:
            if word == RUN:
                body(world)
                runs += 1
        _leave_together()
    finally:
        close_group()
    return runs
