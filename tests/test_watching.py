"""Watching a study as a person does: live progress in a terminal, plain lines in a pipe, the ledger,
the report page and the MLflow dashboard, both looked at in headless Chromium.

One tiny mini study runs under a pseudo-terminal (``pty``), as ``make run`` does in a
terminal; the tests after it use its store. ``mlflow ui`` and Chromium are started on
127.0.0.1 by the test and stopped by their process group (``sweep.dashboard``).

    .venv/bin/pytest tests/test_watching.py -m slow
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from helpers import sweep_cli, sweep_env

pytestmark = pytest.mark.slow

GRID = [
    "grid.llm=[xs,s]", "grid.visual_tokens=[1,4]",
    "vision.pretrain.steps=30", "data.train_images=300", "data.test_images=100",
    # Long enough (seconds per job) for the display to show steps moving.
    "train.stages.0.steps=400", "train.stages.0.checkpoint_every=200", "train.stages.0.log_every=50",
    "eval.max_questions=100", "fit.n_boot=50",
]
LABELS = ["features", *(f"{role} {llm}-v{v}-avgpool-s0" for role in ("train", "eval") for llm in ("xs", "s") for v in (1, 4))]


TERMINAL = {"TERM": "xterm-256color", "COLUMNS": "150"}
NOT_INHERITED = ("CI", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")  # rich reads some of these; the test is about the terminal itself


def run_in_terminal(args: list[str], cwd: Path, timeout_s: float = 900) -> tuple[int, str]:
    """``python -m sweep ARGS`` with a pseudo-terminal of 150 x 50 as stdout and stderr; (exit code, all it wrote)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 150, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "sweep", *args], cwd=cwd, env=sweep_env(cwd, TERMINAL, NOT_INHERITED), stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
        if time.monotonic() > deadline:
            proc.kill()
            break
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def sweep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return sweep_cli(*args, cwd=cwd, env=TERMINAL, drop=NOT_INHERITED, timeout=900)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny study, run in a terminal: (its folder, what the terminal showed)."""
    root = tmp_path_factory.mktemp("watched")
    rc, screen = run_in_terminal(GRID, root)
    assert rc == 0, screen[-4000:]
    return root, screen


def test_terminal_shows_live_progress_with_eta(study: tuple[Path, str]) -> None:
    _, screen = study
    assert "\x1b[2K" in screen and ("\x1b[1A" in screen or "\x1b[A" in screen)  # lines redrawn in place
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    moving = re.findall(r"train (xs|s)-v[14]-avgpool-s0 .*?train (\d+)/400\s+loss (\d+\.\d+)\s+[\d.]+ (?:steps/s|s/step)\s+ETA (\d+:\d\d:\d\d)", plain)
    assert moving, plain[-4000:]
    assert any(0 < int(step) < 400 for _, step, _, _ in moving)  # seen part-way, not only at the end
    assert re.search(r"sweep mini .*?\d+/9 jobs ended, \d running, elapsed \d:\d\d:\d\d, ETA \d:\d\d:\d\d", plain), plain[-3000:]
    assert "9 done, 0 not done" in plain and "study report:" in plain


def test_a_pipe_gets_plain_lines(study: tuple[Path, str]) -> None:
    root, _ = study
    # A new cell as a sweep of its own in the same store (the features job is reused), stdout a pipe, a line a second.
    out = sweep("grid.llm=[xs]", "grid.visual_tokens=[16]", *GRID[2:], "sweep.name=piped", "launcher.progress_s=1", cwd=root)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "\x1b[" not in out.stdout
    lines = re.findall(r"^\[\s*\d+/2\] progress train xs-v16-avgpool-s0: train (\d+)/400  loss [\d.]+ .*ETA", out.stdout, re.M)
    assert lines and any(0 < int(s) < 400 for s in lines), out.stdout[-3000:]
    assert re.search(r"^\[\s*\d+/2\] sweep piped: \d/2 jobs ended, 1 running, elapsed .* ETA", out.stdout, re.M)


def test_status_prints_the_ledger(study: tuple[Path, str]) -> None:
    root, _ = study
    text = sweep("status", *GRID, cwd=root)
    assert text.returncode == 0, text.stderr
    assert re.search(r"^cpu\s+0\s+9/9\s+-\s+-\s+-\s+-\s+-\s+[\d.]+$", text.stdout, re.M), text.stdout  # the class row
    doc = json.loads(sweep("status", "--json", *GRID, cwd=root).stdout)
    total = doc["ledger"]["total"]
    assert total["done"] == total["jobs"] == 9 and total["hours"] > 0
    measured = sum(json.loads((root / "outputs" / "jobs" / r["id"] / "done.json").read_text())["metrics"]["job/seconds"]
                   for r in doc["jobs"]) / 3600
    assert total["hours"] == pytest.approx(measured)
    t0 = time.monotonic()
    watch = sweep("status", "--watch=1", *GRID, cwd=root)  # every job is done: one refresh, then it returns
    assert watch.returncode == 0 and "budget (GPU-hours)" in watch.stdout and time.monotonic() - t0 < 60


def _chromium() -> None:
    from sweep.dashboard import chromium_path

    if not chromium_path():
        pytest.skip("chromium is not installed: `make chromium-install` (make test does it)")


def test_report_renders_with_its_figures(study: tuple[Path, str], tmp_path: Path) -> None:
    _chromium()
    from sweep.dashboard import Chromium

    root, _ = study
    page = root / "outputs" / "sweeps" / "mini" / "report.html"
    with Chromium(width=1200, height=1600) as browser:
        text = browser.open(page.as_uri(), until=["Study report", "Headline", "Commands"])
        images = browser.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        browser.screenshot(tmp_path / "report.png")
    assert len(images) >= 2 and all(done and w > 100 and h > 100 for done, w, h in images), images
    for label in ("xs V=1 avgpool s0", "reasoning, compressor avgpool", "alpha", "python -m sweep fit"):
        assert label in text, label
    assert (tmp_path / "report.png").stat().st_size > 10_000
    # make dashboard-shot's second picture: the same page through the command line
    from sweep.dashboard import main as dashboard

    assert dashboard(["report", "--page", str(page), "--out", str(tmp_path / "shot.png")]) == 0
    assert (tmp_path / "shot.png").stat().st_size > 10_000
    assert dashboard(["report", "--page", str(tmp_path / "none.html"), "--out", str(tmp_path / "x.png")]) == 2


def test_dashboard_opens_on_the_training_runs(study: tuple[Path, str], tmp_path: Path) -> None:
    _chromium()
    from mlflow import MlflowClient

    from sweep.dashboard import Chromium, MlflowUI, runs_url, show_runs

    root, _ = study
    store = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("mini")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "Headline" in exp.tags["mlflow.note.content"]
    with MlflowUI(store, log=tmp_path / "ui.log") as ui, Chromium() as browser:
        text = show_runs(browser, runs_url(ui.url, exp.experiment_id), ["sweep-mini", *LABELS, "synthetic-vqa"])
        page = browser.evaluate("document.body.innerText")
        browser.screenshot(tmp_path / "dashboard.png")
        pid = ui.proc.pid if ui.proc else None
    assert "Scaling-law sweep mini" in page and "Runs" in page  # the description, on the runs page
    assert "python -m sweep" in text and "sweep.jobs.train:run" in text  # the Source column
    assert text.count("synthetic-vqa") >= 9  # every job's dataset input
    assert (tmp_path / "dashboard.png").stat().st_size > 20_000
    assert pid is not None and not Path(f"/proc/{pid}").exists()  # the UI it started is gone
