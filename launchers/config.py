"""The launchers' typed configs: the schema of the ``launcher`` config group, written once.

Each dataclass is registered in Hydra's ConfigStore as an option of the ``launcher``
group (``launcher=local|inline|ray|slurm``), so Hydra rejects a wrong type at compose
time (``launcher.workers=two``), and ``Spec.parse`` rejects unknown keys
(``+launcher.wrkers=3``) and values out of range before anything starts. The
comment above each field is its documentation. None of these settings is part of
any job's id. Annotations stay within what OmegaConf reads (no ``Literal``:
closed sets use ``choices=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sweep.errors import SweepError
from sweep.specs.schema import Spec, at_least, incidental, join, positive

NAMES = ("local", "inline", "ray", "slurm")


@dataclass(kw_only=True)
class LauncherConfig(Spec):
    """What every launcher has."""

    TAG = "name"
    # Attempts per job before it is reported failed; a retry resumes from the job's checkpoints.
    max_attempts: int = incidental(1, check=at_least(1))
    # Stop submitting jobs once the GPU-hours spent (finished jobs: measured time x GPUs) plus those in
    # flight and the next job's estimate would pass this; null = no limit. Slurm submits everything at
    # once, so there a plan whose estimate passes it is refused before anything is submitted.
    max_gpu_hours: float | None = incidental(None, check=positive)
    # Seconds between progress lines when stdout is not a terminal (CI, nohup, Slurm logs); a terminal
    # gets a live view instead.
    progress_s: float = incidental(30.0, check=positive)


@dataclass(kw_only=True)
class LocalConfig(LauncherConfig):
    """Worker processes on this machine, reused across jobs (torch is imported once per worker)."""

    name: str = incidental("local")
    # Concurrent jobs.
    workers: int = incidental(2, check=at_least(1))
    # torch threads per worker (workers x threads should not exceed the cores); a job that every
    # remaining job waits on, started alone, gets all workers' threads.
    threads_per_worker: int = incidental(1, check=at_least(1))


@dataclass(kw_only=True)
class InlineConfig(LauncherConfig):
    """Every job in this process, one after the other: step into a job body with a debugger (pdb, IDE)."""

    name: str = incidental("inline")


@dataclass(kw_only=True)
class RayClass(Spec):
    """A resource class's Ray demand, overriding ``resources.<class>``."""

    gpus: int | None = incidental(None, check=at_least(0))
    cpus: int | None = incidental(None, check=at_least(1))
    mem_gb: float | None = incidental(None, check=positive)


@dataclass(kw_only=True)
class RayConfig(LauncherConfig):
    """Each job is a Ray task sized by its resource class (conf/config.yaml `resources`)."""

    name: str = incidental("ray")
    # null: start Ray inside this process, bound to 127.0.0.1; auto: the cluster started with `ray start` on
    # this machine; ray://HOST:10001 (Ray Client) or HOST:6379: a remote cluster. On a cluster, sweep.root
    # and the tracking store must be reachable from every node.
    address: str | None = incidental(None)
    # Embedded Ray only: CPUs it may use (null = all cores).
    num_cpus: int | None = incidental(None, check=at_least(1))
    # Embedded Ray only: GPUs it may use (null = those it finds).
    num_gpus: int | None = incidental(None, check=at_least(0))
    # Embedded Ray only: object store size in MB (jobs pass little data through it; Ray needs >= 75).
    object_store_mb: int = incidental(128, check=at_least(75))
    # Per resource class overrides of gpus / cpus / mem_gb, e.g. +launcher.classes.gpu8.mem_gb=400.
    classes: dict[str, Any] = incidental(factory=dict, item=RayClass)
    # Ray runtime environment for the tasks, e.g. {working_dir: ., env_vars: {HF_HOME: /data/hf}}.
    runtime_env: dict[str, Any] | None = incidental(None)
    # Stream the workers' output to this terminal.
    log_to_driver: bool = incidental(True)
    # A multi-node job reserves a placement group of one bundle per node: STRICT_SPREAD (one node each) or
    # PACK (may share machines; lets embedded Ray run such a job).
    placement: str = incidental("STRICT_SPREAD", choices=("STRICT_SPREAD", "PACK"))


SLURM_NAME_KEYS = ("partition", "account", "qos", "constraint")


@dataclass(kw_only=True)
class SlurmClass(Spec):
    """A resource class's Slurm settings, overriding the launcher's and ``resources.<class>``."""

    partition: str | None = incidental(None)
    account: str | None = incidental(None)
    qos: str | None = incidental(None)
    constraint: str | None = incidental(None)
    time_min: int | None = incidental(None, check=positive)
    gpus: int | None = incidental(None, check=at_least(0))
    cpus: int | None = incidental(None, check=at_least(1))
    mem_gb: float | None = incidental(None, check=positive)
    nodes: int | None = incidental(None, check=at_least(1))
    tasks_per_node: int | None = incidental(None, check=at_least(1))


@dataclass(kw_only=True)
class SlurmConfig(LauncherConfig):
    """Slurm through submitit: the jobs still to run go out as job arrays (one per resource class and stage),
    Slurm dependencies keep the DAG order, and `run` returns once they are queued. sweep.root and `folder`
    must be on a filesystem the nodes share."""

    name: str = incidental("slurm")
    # Partition / account / qos / constraint for every resource class (null = not passed to sbatch; a
    # partition is required, here or per class).
    partition: str | None = incidental(None)
    account: str | None = incidental(None)
    qos: str | None = incidental(None)
    constraint: str | None = incidental(None)
    # Per resource class: partition, account, qos, constraint, time_min, gpus, cpus, mem_gb, nodes,
    # tasks_per_node, e.g. +launcher.classes.gpu8.partition=h100 (the resources default to that class).
    classes: dict[str, Any] = incidental(factory=dict, item=SlurmClass)
    # Shell lines run in every sbatch script before the job, e.g. [module load cuda/12.4]. They are shell:
    # put only your own lines here, never values from elsewhere.
    setup: list[str] = incidental(factory=list)
    # At most this many tasks of one array run at once.
    array_parallelism: int = incidental(64, check=at_least(1))
    # Requeues per job after preemption or time limit; then it stops, and the next `run` resumes it.
    max_requeues: int = incidental(3, check=at_least(0))
    # Seconds between Slurm's warning signal (USR2) and the time limit: the job's time to checkpoint.
    signal_delay_s: int = incidental(120, check=at_least(0))
    # false: submit and return (`python -m sweep status` follows the jobs); true: wait and report.
    wait: bool = incidental(False)
    # Seconds between polls of the store and squeue/sacct while waiting.
    poll_s: float = incidental(5.0, check=positive)
    # Folder for each launch's submitit files (scripts, logs, pickles); null = <sweep.root>/slurm.
    folder: str | None = incidental(None)
    # Command that runs Python on the nodes, as a list of words; null = this interpreter.
    python: list[str] | None = incidental(None)

    def check(self, where: str) -> None:
        for i, line in enumerate(self.setup):
            if "\n" in line or "\0" in line:
                raise SweepError(join(where, f"setup.{i}"), "must be a single shell line", "write one line per list item")
        if self.python is not None and not all(self.python):
            raise SweepError(join(where, "python"), f"must be a list of non-empty words, got {self.python!r}",
                             "write python: [/path/to/python]")


Launcher = LocalConfig | InlineConfig | RayConfig | SlurmConfig


C = TypeVar("C", bound=LauncherConfig)


def as_config(cfg: Any, cls: type[C]) -> C:
    """``cfg`` as a ``cls``: itself, or parsed (and checked) from a mapping such as a test's plain dict."""
    return cfg if isinstance(cfg, cls) else cls.parse(dict(cfg), "launcher")


def overrides(classes: dict[str, Any], cls: str) -> dict[str, Any]:
    """A class's launcher overrides as a dict of the settings given (None = not given)."""
    over = classes.get(cls)
    if over is None:
        return {}
    items = over.to_dict().items() if isinstance(over, Spec) else dict(over).items()
    return {k: v for k, v in items if v is not None}


def register_schemas() -> None:
    """Make the dataclasses the options of Hydra's ``launcher`` group (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, node in zip(NAMES, (LocalConfig, InlineConfig, RayConfig, SlurmConfig)):
        store.store(group="launcher", name=name, node=node)
