"""Real services on 127.0.0.1 for tests: Slurm, an MLflow server, a Ray head.

Each module starts one service in a temporary directory, waits until it
answers, and stops exactly the processes it started (by PID, process group or
session, never by name):

- ``harness.slurm``: fixtures ``slurm_cluster`` (session) and ``slurm_env``
  (function; sets ``SLURM_CONF``), built on ``scripts/slurm-local.sh``.
- ``harness.mlflow_server``: fixture ``mlflow_server`` (session) yields the
  tracking URI of a real ``mlflow server``.
- ``harness.ray_head``: fixtures ``ray_head`` (session) and ``ray_address``
  (function; sets the client environment) around ``ray start --head``.

A test module (or ``tests/conftest.py``) loads the fixtures it needs with
``pytest_plugins = ["harness.slurm", "harness.mlflow_server", "harness.ray_head"]``
(``pythonpath = ["tests"]`` in pyproject.toml makes ``harness`` importable);
loaded as plugins, session fixtures are shared by all modules. This module
holds the small process helpers they share.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# Test modules import these before naming them in pytest_plugins; registering
# them here, before that import, lets pytest rewrite their asserts (no warning).
pytest.register_assert_rewrite(*(f"{__name__}.{name}" for name in ("slurm", "mlflow_server", "ray_head")))

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports (all sockets held until chosen)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    """Poll ``check`` until it returns true; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def session_members(sid: int) -> list[int]:
    """PIDs of the live processes in session ``sid`` (read from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def terminate_session(sid: int, grace_s: float = 10.0) -> list[int]:
    """TERM every process of session ``sid``, KILL what is left after ``grace_s``.

    A harness starts its service with ``start_new_session=True``, so the
    session holds exactly the service's processes, including daemons that
    were re-parented to init. Returns the PIDs that needed KILL.
    """
    for pid in session_members(sid):
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    stubborn = session_members(sid)
    for pid in stubborn:
        _signal(pid, signal.SIGKILL)
    wait_until(lambda: not session_members(sid), 10.0, f"the processes of session {sid} to exit")
    return stubborn


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def listening_addresses(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by ``pids``.

    Read from /proc: a process's ``socket:[inode]`` fds matched against
    /proc/net/tcp and /proc/net/tcp6. IPv4-mapped IPv6 addresses are given
    in their IPv4 form.
    """
    listening: dict[str, tuple[str, int]] = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            rows = Path("/proc/net", table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            addr_hex, port_hex = fields[1].split(":")
            # /proc prints the address as 32-bit words in host (little-endian) order.
            raw = b"".join(bytes.fromhex(addr_hex[i : i + 8])[::-1] for i in range(0, len(addr_hex), 8))
            addr = socket.inet_ntop(family, raw)
            listening[fields[9]] = (addr.removeprefix("::ffff:"), int(port_hex, 16))
    found = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = target[len("socket:[") : -1]
                if inode in listening:
                    found.add(listening[inode])
    return found


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"
