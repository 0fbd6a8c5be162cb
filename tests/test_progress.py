"""Live progress: the worker's progress.json, the ETA arithmetic, and the driver's plain lines.

The time is a fake clock where the arithmetic is checked; the plain-line test runs real
probe jobs in two worker processes (the local launcher) and reads what the driver printed.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from helpers import make_runtime, probe_plan


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_file_is_throttled_atomic_and_measures_the_rate(tmp_path: Path) -> None:
    from sweep.progress import ProgressFile, read_progress

    clock = Clock()
    write = ProgressFile(tmp_path / "progress.json", every_s=1.0, clock=clock)
    write(101, 300, loss=2.5)  # a resumed attempt: its first report is at step 101
    first = read_progress(tmp_path)
    assert (first.step, first.total, first.loss, first.rate, first.phase) == (101, 300, 2.5, None, "train")
    clock.now += 0.5
    write(111, 300, loss=2.0)  # within the second: not written
    assert read_progress(tmp_path).step == 101
    clock.now += 0.5
    write(121, 300, loss=1.5)
    now = read_progress(tmp_path)
    assert now.step == 121 and now.rate == pytest.approx(20.0)  # 20 steps in 1 s, not 121
    assert now.remaining_s == pytest.approx(179 / 20.0)
    clock.now += 0.1
    write(300, 300, loss=1.0)  # the last step is always written
    assert read_progress(tmp_path).step == 300
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]  # no temp files left behind
    write(1, 50, phase="eval")  # a new phase starts its own rate
    assert read_progress(tmp_path).phase == "eval" and read_progress(tmp_path).rate is None


def test_unreadable_progress_is_none(tmp_path: Path) -> None:
    from sweep.progress import read_progress

    assert read_progress(tmp_path) is None
    (tmp_path / "progress.json").write_text('{"step": 3')
    assert read_progress(tmp_path) is None
    (tmp_path / "progress.json").write_text(json.dumps({"step": "x", "total": 3, "time": 0}))
    assert read_progress(tmp_path) is None


def _job(jid: str, kind: str, flops: float = 0.0, gpus: int = 0, gpu_hours: float = 0.0) -> Any:
    from sweep.plan import Job
    from sweep.specs.jobs import ProbeSpec

    return Job(id=jid, kind=kind, spec=ProbeSpec(name=jid), flops=flops, gpu_hours=gpu_hours,
               resources={"gpus": gpus, "nodes": 1})


def test_estimates_follow_the_measured_speed_per_role() -> None:
    from sweep.progress import Estimator, JobProgress

    feats, t1, t2, ev = _job("f", "features"), _job("t1", "train", 1e9), _job("t2", "train", 3e9), _job("e", "eval", 1e8)
    gpu = _job("g", "hf_train", 1e15, gpus=4, gpu_hours=2.0)
    est = Estimator([feats, t1, t2, ev, gpu])
    assert est.seconds(t2) is None and est.seconds(feats) is None  # nothing measured, no GPU estimate
    assert est.seconds(gpu) == pytest.approx(1800.0)  # the plan's 2 GPU-hours on 4 GPUs
    est.observe(t1, 10.0)
    assert est.seconds(t2) == pytest.approx(30.0)  # 10 s per 1e9 FLOPs
    assert est.seconds(ev) == pytest.approx(1.0)  # no eval measured: the other roles' rate
    est.observe(ev, 4.0)
    assert est.seconds(ev) == pytest.approx(4.0)  # its own role's rate wins
    est.observe(feats, 7.0)
    assert est.seconds(feats) == pytest.approx(7.0)  # no FLOP estimate: the role's mean time

    fresh = Estimator([t1, t2, ev])
    running = {"t1": (4.0, JobProgress(step=100, total=300, phase="train", time=0.0, rate=50.0))}
    # t1 has 4 s behind it and 200 steps at 50/s ahead: 8 s per 1e9 FLOPs, so t2 ~ 24 s and the eval 0.8 s.
    assert fresh.study_remaining([t2, ev], running, slots=1) == pytest.approx(4.0 + 24.0 + 0.8)
    assert fresh.study_remaining([t2, ev], running, slots=2) == pytest.approx((4.0 + 24.0 + 0.8) / 2)
    assert fresh.study_remaining([t2], {"t1": (4.0, None)}, slots=1) is None  # unknown, never a guess


def test_format_seconds() -> None:
    from sweep.progress import format_seconds

    assert [format_seconds(s) for s in (0, 59.6, 3725, None, float("nan"))] == ["0:00:00", "0:01:00", "1:02:05", "--", "--"]


def test_plain_progress_lines_from_worker_processes(tmp_path: Path, mlflow_uri: str) -> None:
    """Two probe jobs in the local pool; the driver, not the workers, prints their step, rate and ETA."""
    from launchers.local import LocalLauncher
    from sweep.live import Watch
    from sweep.store import Store

    plan = probe_plan({"a": ((), {"steps": 12, "sleep_s": 3.0}), "b": ((), {"steps": 12, "sleep_s": 3.0})})
    rt = make_runtime(tmp_path, mlflow_uri)
    out = io.StringIO()
    todo = [j.id for j in plan]
    with Watch(plan, todo, Store(tmp_path), out=out, interval_s=0.5, slots=2) as watch:
        assert not watch.live  # a StringIO is no terminal
        report = LocalLauncher({"name": "local", "workers": 2}).launch(plan, todo, rt, watch)
    assert {o.state for o in report.outcomes.values()} == {"done"}
    text = out.getvalue()
    steps = re.findall(r"progress probe: probe (\d+)/12 .*ETA (\d+:\d\d:\d\d|--)", text)
    assert steps, text
    assert any(0 < int(s) < 12 for s, _ in steps)  # seen while running, not only at the end
    assert re.search(r"sweep probe: \d/2 jobs ended, \d running, elapsed \d:\d\d:\d\d, ETA", text), text
    assert "\x1b[" not in text  # plain lines: no terminal codes
    for job in plan:
        final = json.loads((tmp_path / "jobs" / job.id / "progress.json").read_text())
        assert (final["step"], final["total"], final["phase"]) == (12, 12, "probe")
