"""A real, local-only Ray head (``ray start --head``) for tests.

    def test_remote(ray_address):            # function scope, env applied
        import ray
        ray.init(address=ray_address)
        ...

``ray_head`` (session) yields a :class:`RayHead` (``.address``, ``.env``);
``ray_address`` (function) applies ``RayHead.env`` to this process (see
:func:`client_env`) and yields the address string that ``ray.init(address=...)``
takes; it calls ``ray.shutdown()`` afterwards. A driver in a subprocess needs
``RayHead.env`` in its environment.

Three things keep the head on 127.0.0.1 and separate from other Ray users:

- ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: on Linux Ray otherwise replaces
  ``127.0.0.1`` by the machine's outward address (in ``ray start`` and in every
  ``ray.init(address=...)``) and its GCS and raylet then listen on all
  interfaces; with it they bind 127.0.0.1 only. The client needs it too.
- Token authentication (on by default since Ray 2.5x) with a token file of
  our own (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN_PATH``), so nothing is
  read from or written to ``~/.ray``. The client needs it too.
- Every port Ray would otherwise take from a fixed default (client server
  10001, dashboard agent 52365, ...) is a free one, so heads can run side by side.

Stopping: ``ray stop`` ends every Ray process on the machine (other users'
and other test sessions' included), so the head is stopped by session id
instead: ``ray start`` runs in a new session and the daemons it spawns (GCS,
raylet, monitor, agents, workers) stay in it, so TERM/KILL of that session
ends exactly this head. Its temp dir (short, under /tmp: Ray's unix sockets
must fit in 107 bytes) is removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import free_ports, session_members, tail, terminate_session, wait_until

RAY_BIN = Path(sys.executable).with_name("ray")
START_TIMEOUT_S = 120.0
# GCS, raylet and the autoscaler monitor take over 10 s to act on TERM; the head
# is disposable, so they get a short grace and then KILL.
STOP_GRACE_S = 3.0


@dataclass
class RayHead:
    """One Ray head node on 127.0.0.1; ``start()``, use ``address`` and ``env``, ``stop()``."""

    num_cpus: int = 2
    object_store_bytes: int = 200 * 1024 * 1024
    root: Path = field(init=False)
    port: int = field(init=False, default=0)
    _sid: int | None = field(init=False, default=None)

    @property
    def address(self) -> str:
        """The GCS address that ``ray.init(address=...)`` takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment a client (driver) process needs to reach this head."""
        return {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.root / "auth_token"),
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    def start(self) -> None:
        """Start the head; raise RuntimeError with its log if it does not come up."""
        self.root = Path(tempfile.mkdtemp(prefix="sweep-ray-", dir="/tmp"))
        token = self.root / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        (gcs, client, dash, agent_http, agent_grpc, runtime_env, metrics, node_mgr, obj_mgr) = free_ports(9)
        self.port = gcs
        cmd = [
            str(RAY_BIN), "start", "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=0",
            f"--object-store-memory={self.object_store_bytes}",
            "--include-dashboard=false",
            f"--dashboard-port={dash}",
            f"--ray-client-server-port={client}",
            f"--dashboard-agent-listen-port={agent_http}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--metrics-export-port={metrics}",
            f"--node-manager-port={node_mgr}",
            f"--object-manager-port={obj_mgr}",
            f"--temp-dir={self.root}",
            "--disable-usage-stats",
        ]  # fmt: skip
        log = self.root / "ray-start.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._sid = proc.pid
        try:
            rc = proc.wait(timeout=START_TIMEOUT_S)
            if rc != 0:
                raise RuntimeError(f"`ray start --head` exited with {rc}")
            wait_until(self._gcs_answers, 30.0, f"Ray GCS on {self.address}")
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as err:
            log_text = tail(log)
            self.stop()
            raise RuntimeError(f"Ray head did not start: {err}\n--- {log}:\n{log_text}") from err

    def pids(self) -> list[int]:
        """The head's live processes (its session: GCS, raylet, agents, workers)."""
        return session_members(self._sid) if self._sid is not None else []

    def _gcs_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """End every process of the head's session, then remove its temp dir."""
        if self._sid is not None:
            terminate_session(self._sid, grace_s=STOP_GRACE_S)
            self._sid = None
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def client_env(head: RayHead) -> Iterator[None]:
    """Give this process the client environment of ``head`` while in the block.

    Ray reads two of these settings once: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
    into ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` at import, and
    RAY_AUTH_MODE into its C++ config (the token into a cache). Where ray is
    imported they are re-read from the environment on entry and again on exit,
    the way Ray itself does it when it turns token auth on.
    """
    saved = {key: os.environ.get(key) for key in head.env}
    os.environ.update(head.env)
    _reread_ray_settings()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _reread_ray_settings()


def _reread_ray_settings() -> None:
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        # The same expression ray_constants evaluates at import.
        constants.ENABLE_RAY_CLUSTER = constants.env_bool(
            constants.ENABLE_RAY_CLUSTERS_ENV_VAR, not constants.IS_WINDOWS_OR_OSX
        )
    raylet = sys.modules.get("ray._raylet")
    if raylet is not None:
        raylet.Config.initialize("")
        loader = getattr(raylet, "AuthenticationTokenLoader", None)  # Ray >= 2.5x only
        if loader is not None:
            loader.instance().reset_cache()


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """A Ray head for the whole test session (client env not applied)."""
    head = RayHead()
    head.start()
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture
def ray_address(ray_head: RayHead) -> Iterator[str]:
    """The session head's address, with its client environment applied; shuts
    down this process's Ray connection afterwards."""
    with client_env(ray_head):
        yield ray_head.address
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
