"""A trivial job for checking a backend end to end before spending GPU hours on it.

Its spec (``ProbeSpec``) says what to do: ``sleep_s`` (seconds to run),
``fail_attempts`` (fail on the first N attempts, then succeed), ``trace`` (a file to
append start/end lines to, for ordering checks), ``steps`` (checkpointed steps;
honours ``ctx.stop_requested`` like a training job). The launcher contract tests run it
on every backend.

As a multi-process job (``ctx.world``) every rank appends a ``rank`` line to the
trace, the ranks sum their rank numbers over the process group, and the leader
reports ``probe/world_size`` and ``probe/rank_sum``: proof that the ranks started
and can talk, without a model.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.jobs.context import JobContext, Preempted

if TYPE_CHECKING:
    from sweep.specs.jobs import ProbeSpec


def _threads() -> int:
    """The math threads this job got: torch's if a job imported it here, else what torch would start with."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else int(os.environ.get("OMP_NUM_THREADS", "0"))


def _trace(path: str | None, event: str, job_id: str) -> None:
    if path:
        with open(path, "a") as f:  # O_APPEND: whole lines, even from several processes
            f.write(json.dumps({"event": event, "job": job_id, "t": time.time(), "pid": os.getpid(),
                                "threads": _threads()}) + "\n")


def run(ctx: JobContext) -> dict[str, float]:
    from sweep import distributed

    spec: ProbeSpec = ctx.spec
    if ctx.world.distributed:
        _trace(spec.trace, f"rank{ctx.world.rank}", ctx.job_id)
        rank_sum = distributed.total(float(ctx.world.rank))
        if not ctx.world.leader:
            return {}
    else:
        rank_sum = 0.0
    attempts_file = ctx.workdir / "probe_attempts"
    attempt = int(attempts_file.read_text()) + 1 if attempts_file.exists() else 1
    attempts_file.write_text(str(attempt))
    _trace(spec.trace, "start", ctx.job_id)
    if attempt <= spec.fail_attempts:
        raise RuntimeError(f"probe failure on attempt {attempt} (host {socket.gethostname()})")
    ckpt = Path(ctx.checkpoint_dir) / "step"
    start = int(ckpt.read_text()) if ckpt.exists() else 0
    steps = spec.steps
    per_step = spec.sleep_s / steps
    for step in range(start, steps):
        if ctx.stop_requested():
            ckpt.write_text(str(step))
            raise Preempted(f"stopped at step {step}")
        time.sleep(per_step)
        ctx.log_metrics({"probe/step": float(step)}, step)
        ctx.progress(step + 1, steps, phase="probe")
    ckpt.write_text(str(steps))
    _trace(spec.trace, "end", ctx.job_id)
    for kind, folder in ctx.upstream.items():
        if not (folder / "done.json").exists():
            raise RuntimeError(f"upstream {kind} at {folder} is not done")
    return {"probe/attempt": float(attempt), "probe/resumed_from_step": float(start), "probe/value": spec.value,
            "probe/world_size": float(ctx.world.world_size), "probe/rank_sum": rank_sum}
