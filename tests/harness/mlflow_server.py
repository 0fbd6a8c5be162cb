"""A real ``mlflow server`` on 127.0.0.1 for tests.

    def test_tracking(mlflow_server):         # session scope
        client = mlflow.MlflowClient(tracking_uri=mlflow_server)
        ...

``mlflow_server`` yields the tracking URI (``http://127.0.0.1:<port>``) of a
server with a SQLite backend store and proxied artifacts
(``mlflow-artifacts:/``, stored under its temp dir), started from this venv's
``mlflow`` with one worker. It is stopped by its session: the server runs in a
new session (``start_new_session=True``), so TERM/KILL of that session ends the
CLI process and the uvicorn/gunicorn workers it forks, and nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import free_port, tail, terminate_session, wait_until

MLFLOW_BIN = Path(sys.executable).with_name("mlflow")
# The first start creates and migrates the SQLite schema: seconds, more on a busy machine.
START_TIMEOUT_S = 120.0


@dataclass
class MlflowServer:
    """One ``mlflow server`` rooted at ``root``; ``start()``, use ``uri``, ``stop()``."""

    root: Path
    port: int = field(default_factory=free_port)
    _proc: subprocess.Popen[bytes] | None = field(init=False, default=None)

    @property
    def uri(self) -> str:
        """The tracking URI clients use."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        """The server's combined stdout/stderr."""
        return self.root / "mlflow-server.log"

    def start(self) -> None:
        """Start the server; raise RuntimeError with its log if /health never answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(MLFLOW_BIN), "server",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
        # The job runner (GenAI evaluation jobs; unused here) adds eight
        # processes and ~15 s to the start.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        with self.log.open("wb") as out:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(self._healthy, START_TIMEOUT_S, f"{self.uri}/health")
        except TimeoutError as err:
            self.stop()
            raise RuntimeError(f"mlflow server did not start: {err}\n--- {self.log}:\n{tail(self.log)}") from err

    def _healthy(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with {self._proc.returncode}\n--- {self.log}:\n{tail(self.log)}"
            )
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """End the server's session (CLI and workers) and reap the CLI process."""
        if self._proc is None:
            return
        terminate_session(self._proc.pid, grace_s=10.0)
        self._proc.wait(timeout=10)
        self._proc = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Tracking URI of an MLflow server shared by the test session."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()
