"""The places a run writes to fail under it: a disk that fills up, a tracking server that stops for
longer than the retry budget. The driver still prints its summary and exits 1 without a traceback,
the failure is recorded wherever it can be, and the next run repairs what was left open. Also: the
dashboard target starts no idle job runners.

A full disk is a real tmpfs of a few MiB (mounting needs root, as `make test` has; elsewhere these
tests skip); the server is a real ``mlflow server`` stopped and started again on the same port.

    .venv/bin/pytest tests/test_outages.py -m slow
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import REPO_ROOT, free_port, session_members, terminate_session, wait_until
from helpers import features_dir, runs_by_role, start_sweep, wait_for_features_checkpoint

ARGS = ["grid.llm=[xs]", "grid.visual_tokens=[1]", "vision.pretrain.checkpoint_every=10",
        "vision.pretrain.log_every=5", "data.train_images=200", "data.test_images=50", "train.stages.0.steps=10",
        "train.stages.0.log_every=5", "eval.max_questions=50", "fit.n_boot=10"]


def _start(cwd: Path, root: Path, *args: str, pretrain_steps: int = 150) -> subprocess.Popen:
    return start_sweep(*ARGS, f"vision.pretrain.steps={pretrain_steps}", *args, cwd=cwd, env={"SWEEP_ROOT": str(root)})




@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 96 MiB tmpfs: room for the run's first checkpoints (the check before a run asks for 64 MiB)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> None:
    """Write until the filesystem says it is full."""
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass


@pytest.mark.slow
@pytest.mark.parametrize("store_on", ["other disk", "same disk"])
def test_a_full_disk_is_reported_and_the_summary_survives(store_on: str, tmp_path: Path, small_disk: Path) -> None:
    root = small_disk / "sweeps"
    db = (small_disk if store_on == "same disk" else tmp_path) / "mlflow.db"
    # tracking.retry_s=5: a store on the full disk fails every write; each would otherwise retry for 2 min.
    proc = _start(tmp_path, root, f"tracking.uri=sqlite:///{db}", "tracking.retry_s=5")
    wait_for_features_checkpoint(proc, root)
    _fill(small_disk)
    out, err = proc.communicate(timeout=300)
    wait_until(lambda: not session_members(proc.pid), 30, "every process of the run to exit")
    assert proc.returncode == 1, out[-3000:] + err[-3000:]
    assert "sweep/cli.py" not in err  # the driver did not crash (MLflow logs its own database errors, with tracebacks)
    assert "0 done, 3 not done (2 blocked, 1 failed)" in out  # the summary, even with the store on the full disk
    failed = next(line for line in out.splitlines() if line.startswith("  failed: features-"))
    assert "No space left on device" in failed or "disk is full" in failed  # the OS's word, or SQLite's
    features = features_dir(root)
    status = json.loads((features / "status.json").read_text())
    # The failed write's temp file is removed, which frees a little room: the failure is recorded there,
    # or the summary says it could not be.
    recorded = status["state"] == "failed" and ("No space left" in status["error"] or "disk is full" in status["error"])
    assert recorded or "(could not write failed to status.json" in out, (status, out[-2000:])
    (small_disk / "filler").unlink()
    if store_on == "other disk":  # the store could take the failure: its run says why
        job = runs_by_role(f"sqlite:///{db}")["job"]
        assert [r.info.status for r in job] == ["FAILED"] and "No space left" in job[0].data.tags["sweep_error"]
    from sweep.store import Store

    assert Store(root).state(features.name).state in ("failed", "preempted")  # never running, never done


class _Server:
    """A real ``mlflow server`` that can be stopped and started again on the same port and store."""

    def __init__(self, root: Path) -> None:
        from harness.mlflow_server import MlflowServer

        self.server = MlflowServer(root)

    def __enter__(self) -> _Server:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop()


@pytest.mark.slow
def test_an_mlflow_outage_longer_than_the_retry_budget(tmp_path: Path) -> None:
    with _Server(tmp_path / "server") as srv:
        uri = srv.server.uri
        # Fewer steps than the full-disk runs: the server stops after the first checkpoint, and the rerun does them all.
        proc = _start(tmp_path, tmp_path / "out", f"tracking.uri={uri}", "tracking.retry_s=3", pretrain_steps=60)
        wait_for_features_checkpoint(proc, tmp_path / "out")
        srv.server.stop()  # down for longer than tracking.retry_s
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, out[-3000:] + err[-3000:]
        assert "Traceback" not in err
        assert "0 done, 3 not done (2 blocked, 1 failed)" in out  # the driver printed its summary
        assert "could not mark the sweep's MLflow run FAILED" in err
        status = json.loads((features_dir(tmp_path / "out") / "status.json").read_text())
        assert status["state"] == "failed" and "Connection refused" in status["error"]
        assert (features_dir(tmp_path / "out") / "error.json").exists()

        srv.server.start()  # the server is back: the next run repairs the runs it left open
        again = _start(tmp_path, tmp_path / "out", f"tracking.uri={uri}", pretrain_steps=60)
        out, err = again.communicate(timeout=600)
        assert again.returncode == 0, out[-3000:] + err[-3000:]
        runs = runs_by_role(uri)
        assert [r.info.status for r in runs["parent"]] == ["FINISHED"]
        jobs = runs["job"]
        assert len(jobs) == 3 and {r.info.status for r in jobs} == {"FINISHED"}  # one run per job, none left RUNNING


@pytest.mark.slow
def test_make_mlflow_ui_starts_no_idle_job_runners(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(["make", "-s", "mlflow-ui", f"MLFLOW_PORT={port}", f"MLFLOW_UI_URI=sqlite:///{tmp_path / 'ui.db'}"],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_until(healthy, 180, "the MLflow UI to answer")
        commands = []
        for pid in session_members(proc.pid):
            try:
                commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
        assert any("mlflow" in c and " ui " in c for c in commands)
        assert not [c for c in commands if "huey" in c or "_job_runner" in c], commands
    finally:
        terminate_session(proc.pid)
