"""Debug backend: every job runs in the calling process, one after the other.

    python -m sweep launcher=inline grid.llm=[xs] grid.visual_tokens=[1]
    python -m pdb -m sweep launcher=inline ...        # break inside sweep/jobs/train.py:run

As submitit's debug executor does, this runs the very code path a worker runs
(``runner.run_job``: lease, MLflow child run, body, ``done.json``), but in this
process, so a debugger or a profiler steps straight into a job body. It passes
the launcher contract suite. Jobs see this process's environment (the runner
turns the Hugging Face hub offline here too) and its torch threads; a multi-rank
job still spawns its follower ranks as processes. Ctrl-C stops the running job at
its next checkpoint (``interrupted``); a second one stops it at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from launchers.base import DagExecutor, Events, LaunchReport, payload, tasks_per_node
from launchers.config import InlineConfig, as_config
from launchers.local import check_this_machine
from sweep import interrupt
from sweep.plan import Job, Plan
from sweep.runner import Outcome, Runtime, run_job
from sweep.store import INTERRUPTED, Store


class InlineLauncher:
    """Runs the jobs in this process, in DAG order, and returns when all have ended."""

    def __init__(self, cfg: InlineConfig | Mapping[str, Any]) -> None:
        self.cfg = as_config(cfg, InlineConfig)

    def check(self, plan: Plan, todo: Sequence[str]) -> None:
        check_this_machine(plan, todo, launcher="inline")

    def launch(self, plan: Plan, todo: Sequence[str], rt: Runtime, events: Events) -> LaunchReport:
        ended: dict[int, Outcome] = {}

        def submit(job: Job) -> int:
            handle = len(ended)
            ended[handle] = run_job(payload(job, tasks_per_node(job, job.resources)), rt,
                                    stop_requested=interrupt.requested, stop_state=INTERRUPTED)
            return handle

        def wait(handles: list[int], timeout: float) -> list[tuple[int, Outcome]]:
            return [(h, ended[h]) for h in handles]

        store = Store(rt.store_root, lease_s=rt.lease_s)
        # The running job polls interrupt.requested() itself; a second signal must raise into it.
        remove = interrupt.on_signal(lambda at_once: False)
        try:
            return DagExecutor(plan, todo, store, self.cfg.max_attempts, events, max_in_flight=1,
                               max_gpu_hours=self.cfg.max_gpu_hours).run(submit, wait)
        finally:
            remove()
