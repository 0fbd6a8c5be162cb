"""A real single-node Slurm cluster (slurmctld, slurmd, slurmdbd + MariaDB) for tests.

    @pytest.mark.slurm
    def test_submit(slurm_env):                 # function scope, SLURM_CONF set
        executor = submitit.AutoExecutor(folder=slurm_env.fresh_folder("submit"))
        ...

``slurm_cluster`` (session) yields a started :class:`SlurmCluster`: ``env``
holds what a client needs (``SLURM_CONF``), ``sacct_state(job_id)`` reads a
job's accounting state, ``fresh_folder(name)`` gives a new submitit folder.
``slurm_env`` (function) is the same cluster with ``env`` applied to
``os.environ`` through monkeypatch, which is what submitit (it runs sbatch,
squeue, sacct as subprocesses) needs. Build fixtures with other scopes or
names with :func:`make_slurm_fixture`.

The daemons are started and stopped by ``scripts/slurm-local.sh`` (see its
header); this module chooses free ports and a temp dir and turns a missing
installation into a loud failure: tests fail unless ``SWEEP_SKIP_SLURM=1``,
which makes them skip. Install with ``scripts/slurm-local.sh install`` (root).

Slurm numbers jobs from 1 again on every fresh cluster, so a submitit folder
reused across clusters holds stale ``%j`` results; ``fresh_folder`` avoids it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from . import REPO_ROOT, free_ports

SCRIPT = REPO_ROOT / "scripts" / "slurm-local.sh"
SKIP_ENV = "SWEEP_SKIP_SLURM"
REQUIRED_PROGRAMS = ("sbatch", "squeue", "sacct", "scancel", "slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd")
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 120.0


def missing_requirements() -> list[str]:
    """What keeps a local cluster from starting here (empty when nothing)."""
    missing = [f"program {name!r}" for name in REQUIRED_PROGRAMS if shutil.which(name) is None]
    if os.geteuid() != 0:
        missing.append("root (the local cluster runs with SlurmUser=root)")
    return missing


def require_slurm() -> None:
    """Fail the test loudly if Slurm cannot run here; skip instead if SWEEP_SKIP_SLURM=1."""
    missing = missing_requirements()
    if not missing:
        return
    message = (
        f"local Slurm unavailable, missing: {', '.join(missing)}. "
        f"Install it with `{SCRIPT.relative_to(REPO_ROOT)} install` (as root), "
        f"or set {SKIP_ENV}=1 to skip the Slurm tests."
    )
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


@dataclass
class SlurmCluster:
    """A cluster whose state lives in ``root``; ``start()``, use ``env``, ``stop()``."""

    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    _folders: Iterator[int] = field(init=False, default_factory=itertools.count)

    @property
    def conf(self) -> Path:
        """The cluster's slurm.conf."""
        return self.root / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment a Slurm client (sbatch, sacct, submitit) needs."""
        return {"SLURM_CONF": str(self.conf)}

    def _script(self, command: str, timeout_s: float, extra_env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [str(SCRIPT), command, str(self.root)],
            env={**os.environ, **(extra_env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"`{SCRIPT.name} {command} {self.root}` exited with {result.returncode}:\n{result.stdout}")
        return result.stdout

    def start(self) -> None:
        """Start all daemons on free ports; on failure stop what started and raise."""
        if not self.ports:
            ctld, slurmd, dbd, db = free_ports(4)
            self.ports = {"CTLD": ctld, "SLURMD": slurmd, "DBD": dbd, "DB": db}
        port_env = {f"SLURM_LOCAL_{name}_PORT": str(port) for name, port in self.ports.items()}
        try:
            self._script("start", START_TIMEOUT_S, port_env)
        except (RuntimeError, subprocess.TimeoutExpired):
            self.stop()
            raise

    def stop(self) -> None:
        """Cancel all jobs and stop the daemons (each by its pid file)."""
        self._script("stop", STOP_TIMEOUT_S)

    def daemon_pids(self) -> dict[str, int]:
        """PID of each daemon, read from the pid files under ``root/run``."""
        pids = {}
        for pidfile in sorted((self.root / "run").glob("*.pid")):
            text = pidfile.read_text().strip()
            if text.isdigit():
                pids[pidfile.stem] = int(text)
        return pids

    def run(self, *args: str, timeout_s: float = 30.0) -> str:
        """Run a Slurm client command against this cluster; return its stdout."""
        result = subprocess.run(
            list(args),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        )
        return result.stdout

    def sacct_state(self, job_id: str) -> str:
        """The accounting state of a job's allocation (e.g. "COMPLETED", "CANCELLED by 0"); "" while unknown."""
        out = self.run("sacct", "--noheader", "--parsable2", "--allocations", "--jobs", str(job_id), "--format=State")
        return out.strip().splitlines()[0] if out.strip() else ""

    def fresh_folder(self, name: str = "submitit") -> Path:
        """A new, empty folder for submitit logs and pickles (never reused)."""
        folder = self.root / "jobs" / f"{name}-{next(self._folders)}"
        folder.mkdir(parents=True)
        return folder


Scope = Literal["session", "package", "module", "class", "function"]


def make_slurm_fixture(scope: Scope = "session", name: str = "slurm_cluster") -> Callable[..., Any]:
    """A pytest fixture that starts a :class:`SlurmCluster` for ``scope`` and stops it after."""

    @pytest.fixture(scope=scope, name=name)
    def _fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
        require_slurm()
        cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
            # ~100 MB; pytest keeps the last temp roots. Logs stay in root/log.
            shutil.rmtree(cluster.root / "mariadb", ignore_errors=True)

    return _fixture


slurm_cluster = make_slurm_fixture()


@pytest.fixture
def slurm_env(slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """The session cluster with its client environment set in ``os.environ``."""
    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    return slurm_cluster
