"""Unusable places are found before anything starts: a tracking server nobody answers at, a sweep.root
that cannot be written or is too full, bad fit settings, a --csv that is not text. Each is exit 2
naming the field, in seconds, and nothing (no mlflow.db, no job folder) is created.

    .venv/bin/pytest tests/test_preflight.py
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness import free_port
from helpers import sweep_cli

TINY = ["grid.llm=[xs]", "grid.visual_tokens=[1]"]


def sweep(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.time()
    out = sweep_cli(*args, cwd=cwd)
    return out, time.time() - t0


def _nothing_created(cwd: Path) -> bool:
    return not (cwd / "mlflow.db").exists() and not (cwd / "outputs").exists() and not (cwd / "mlruns").exists()


def test_an_unreachable_tracking_server_is_refused_in_seconds(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    out, took = sweep(*TINY, f"tracking.uri=http://127.0.0.1:{port}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"error: tracking.uri: no MLflow server answers at http://127.0.0.1:{port}" in out.stderr
    assert "fix:" in out.stderr and "Traceback" not in out.stderr
    assert "will run" not in out.stdout  # refused before the plan is shown
    assert took < 120  # start-up included; MLflow's own retries alone took half an hour
    assert _nothing_created(tmp_path)


def test_an_unwritable_root_is_refused_before_a_store_is_created(tmp_path: Path) -> None:
    out, _ = sweep(*TINY, "sweep.root=/proc/nope", cwd=tmp_path)
    assert out.returncode == 2 and "error: sweep.root: /proc/nope: cannot create files in /proc" in out.stderr, out.stderr[-2000:]
    assert _nothing_created(tmp_path)
    plan, _ = sweep("plan", *TINY, "sweep.root=/proc/nope", cwd=tmp_path)  # plan says it too, and still shows the plan
    assert plan.returncode == 0 and "note: `run` would stop here: sweep.root: /proc/nope" in plan.stdout
    status, _ = sweep("status", *TINY, "sweep.root=/proc/nope", cwd=tmp_path)
    assert status.returncode == 0 and "note: sweep.root: /proc/nope" in status.stdout
    assert _nothing_created(tmp_path)


def _mount(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True).returncode == 0


def test_a_read_only_root_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    if not _mount(ro, "ro,size=1m"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root); /proc/nope above covers an unwritable root")
    try:
        out, _ = sweep(*TINY, f"sweep.root={ro}/sweeps", cwd=tmp_path)
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert out.returncode == 2 and "error: sweep.root" in out.stderr and "Read-only file system" in out.stderr, out.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_a_root_without_room_for_a_checkpoint_is_refused(tmp_path: Path) -> None:
    from sweep.preflight import root_problem

    free = shutil.disk_usage(tmp_path).free
    problem = root_problem(tmp_path / "sweeps", need_bytes=free + 2**30)
    assert problem is not None and "free, less than" in problem
    assert root_problem(tmp_path / "sweeps", need_bytes=1) is None
    assert not (tmp_path / "sweeps").exists()  # looking creates nothing


def test_the_first_checkpoint_of_the_largest_model_sets_the_room_needed() -> None:
    from sweep.cli import load
    from sweep.preflight import BYTES_PER_PARAM, first_checkpoint_bytes

    cfg, plan = load(["+grid=paper"])
    need = first_checkpoint_bytes(plan)
    assert need == int(max(cfg.llm[n].params_b for n in cfg.grid.llm) * 1e9 * BYTES_PER_PARAM)


def test_bad_fit_settings_and_an_empty_name_stop_before_any_job(tmp_path: Path) -> None:
    for override, field in (("fit.n_boot=abc", "fit.n_boot"), ("fit.loss=foo", "fit.loss"), ("sweep.name=", "sweep.name")):
        out, _ = sweep(*TINY, override, cwd=tmp_path)
        assert out.returncode == 2 and f"error: {field}:" in out.stderr, (override, out.stderr[-1000:])
    assert _nothing_created(tmp_path)


def test_fit_csv_with_a_binary_file_is_an_input_error(tmp_path: Path) -> None:
    binary = tmp_path / "results.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    out, _ = sweep("fit", "--csv", str(binary), cwd=tmp_path)
    assert out.returncode == 2 and "error: --csv:" in out.stderr and "not a readable CSV text file" in out.stderr
    assert "Traceback" not in out.stderr
