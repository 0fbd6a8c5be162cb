"""The budget ledger: GPU-hours estimated, spent and still to run, per resource class and in total.

    rows = ledger(plan, store)          # one Entry per resource class, then the total
    print(render_ledger(rows))

*estimated* is the plan's figure for every job (``Job.gpu_hours``: FLOPs at the assumed
or measured MFU); *spent* is what the finished jobs used, their measured run time
(``job/seconds`` in ``done.json``) x the GPUs they held; *to run* is the plan's
estimate of the jobs not done, and *to run, corrected* scales it by how far the
finished jobs were off their estimates (the *error*). CPU-only classes have no
GPU-hours; their measured hours are shown so the mini study's ledger says something.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sweep.progress import gpus_of

TOTAL = "total"


@dataclass
class Entry:
    """One resource class (or the total) of the ledger."""

    resource_class: str
    gpus: int = 0  # GPUs per job (0: a CPU class; the total's is the most any class holds)
    jobs: int = 0
    done: int = 0
    estimated: float = 0.0  # GPU-hours, every job of the plan
    spent: float = 0.0  # GPU-hours, measured, finished jobs
    to_run: float = 0.0  # GPU-hours, estimated, jobs not done
    done_estimated: float = 0.0  # what the plan estimated for the finished jobs
    hours: float = 0.0  # measured run time of the finished jobs, hours (CPU jobs too)

    @property
    def error(self) -> float | None:
        """(spent - estimated) / estimated over the finished jobs: +0.25 = they took 25% longer than planned."""
        if self.done_estimated <= 0 or self.done == 0:
            return None
        return (self.spent - self.done_estimated) / self.done_estimated

    @property
    def to_run_corrected(self) -> float:
        """The estimate still to run, scaled by the error measured so far."""
        err = self.error
        return self.to_run if err is None else self.to_run * (1.0 + err)

    def add(self, other: Entry) -> None:
        for name in ("jobs", "done", "estimated", "spent", "to_run", "done_estimated", "hours"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.gpus = max(self.gpus, other.gpus)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(error=self.error, to_run_corrected=self.to_run_corrected)
        return out


def measured_seconds(store: Any, job_id: str) -> float | None:
    """The finished job's run time (``job/seconds`` in its ``done.json``), or None when not done."""
    record = store.result(job_id)
    if record is None:
        return None
    return float(record.get("metrics", {}).get("job/seconds", 0.0))


def ledger(plan: Iterable[Any], store: Any) -> list[Entry]:
    """One entry per resource class (in the order the plan first uses them), then the total."""
    classes: dict[str, Entry] = {}
    for job in plan:
        gpus = gpus_of(job)
        entry = classes.setdefault(job.resource_class, Entry(job.resource_class, gpus=gpus))
        entry.gpus = max(entry.gpus, gpus)
        entry.jobs += 1
        entry.estimated += job.gpu_hours
        seconds = measured_seconds(store, job.id)
        if seconds is None:
            entry.to_run += job.gpu_hours
            continue
        entry.done += 1
        entry.done_estimated += job.gpu_hours
        entry.hours += seconds / 3600.0
        entry.spent += seconds / 3600.0 * gpus
    total = Entry(TOTAL)
    for entry in classes.values():
        total.add(entry)
    return [*classes.values(), total]


def spent_gpu_hours(plan: Iterable[Any], store: Any) -> float:
    """GPU-hours the plan's finished jobs used."""
    return sum((measured_seconds(store, j.id) or 0.0) / 3600.0 * gpus_of(j) for j in plan)


def _hours(x: float) -> str:
    return f"{x:,.2f}" if x < 100 else f"{x:,.0f}"


def render_ledger(entries: Sequence[Entry], limit: float | None = None) -> str:
    """The ledger as a text table (``python -m sweep status``)."""
    from sweep.display import table

    rows = []
    for e in entries:
        gpu = e.gpus > 0 or (e.resource_class == TOTAL and e.estimated > 0)
        err = "-" if e.error is None else f"{100 * e.error:+.0f}%"
        rows.append((e.resource_class, e.gpus if e.resource_class != TOTAL else "", f"{e.done}/{e.jobs}",
                     _hours(e.estimated) if gpu else "-", _hours(e.spent) if gpu else "-",
                     _hours(e.to_run) if gpu else "-", _hours(e.to_run_corrected) if gpu else "-", err, _hours(e.hours)))
    text = "budget (GPU-hours)\n" + table(rows, ("class", "GPUs/job", "done", "estimated", "spent", "to run",
                                                   "to run, corrected", "estimate error", "run time (h)"))
    if limit is not None:
        total = entries[-1]
        text += (f"\nlauncher.max_gpu_hours = {limit:g}: {_hours(total.spent)} spent, "
                 f"{_hours(max(0.0, limit - total.spent))} left for {_hours(total.to_run_corrected)} still to run")
    return text


def status_document(plan: Any, store: Any, backend: Any = None, limit: float | None = None) -> dict[str, Any]:
    """``python -m sweep status --json``: every job's row (as ``plan --json``) and the ledger, in one document."""
    from sweep.display import plan_rows

    entries = ledger(plan, store)
    return {"sweep": plan.name, "jobs": plan_rows(plan, store, backend),
            "ledger": {"classes": [e.to_json() for e in entries[:-1]], "total": entries[-1].to_json(),
                       "max_gpu_hours": limit}}


def status_text(plan: Any, store: Any, backend: Any = None, limit: float | None = None) -> str:
    """``python -m sweep status``: the job table, then the ledger."""
    from sweep.display import plan_rows, table

    rows = plan_rows(plan, store, backend)
    jobs = table([(r["id"], r["status"], r["attempts"], r["scheduler"] or "-", (r["error"] or "")[:100]) for r in rows],
                 ("job", "status", "attempts", "scheduler", "last error"))
    return f"{jobs}\n\n{render_ledger(ledger(plan, store), limit)}"
