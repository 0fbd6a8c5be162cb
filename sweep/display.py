"""What the user reads: the plan table, progress lines, the summary and the error tables."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from sweep.plan import Job, Plan
from sweep.runner import Outcome
from sweep.store import CANCELLED, DONE, FAILED, PREEMPTED, RUNNING, SUBMITTED, BackendState, JobState, Store

WILL_RUN, WILL_RESUME, FAILED_BEFORE = "will run", "will resume", "failed before"


def status_label(state: JobState, backend: BackendState | None = None) -> str:
    """The plan's word for a job: done / running / submitted / cancelled / failed before / will resume / will run.

    ``backend`` is what a scheduler (Slurm) says about the job, when it was submitted to one.
    """
    if state.state == DONE:
        return "done"
    if state.state == RUNNING:
        return "running"
    if backend is not None and backend.active:
        return "running" if backend.state == "RUNNING" else "submitted"
    if backend is not None and backend.state == "CANCELLED":
        return CANCELLED
    if state.state == SUBMITTED and backend is not None and backend.state != "UNKNOWN":
        return WILL_RESUME if state.has_checkpoint else FAILED_BEFORE  # ended there without a word from the job
    if state.state == SUBMITTED:
        return "submitted"
    if state.state == FAILED:
        return FAILED_BEFORE
    if state.state == PREEMPTED or state.has_checkpoint:
        return WILL_RESUME
    return WILL_RUN


def plan_rows(plan: Plan, store: Store, backend: Mapping[str, BackendState] | None = None) -> list[dict[str, Any]]:
    """One JSON-able record per job, in plan order; ``backend``: scheduler states by job id."""
    rows = []
    for job in plan:
        state = store.state(job.id)
        sched = (backend or {}).get(job.id)
        rows.append({
            "id": job.id, "kind": job.role, "job_kind": job.kind, "stage": job.stage,
            **(job.cell.identity() if job.cell else {}), "heldout": bool(job.cell and job.cell.heldout),
            "status": status_label(state, sched), "attempts": state.attempts, "error": state.error,
            "scheduler": f"{sched.state} {sched.ref}" if sched else None,
            "resource_class": job.resource_class, "resources": dict(job.resources),
            "flops": job.flops, "gpu_hours": round(job.gpu_hours, 3), "mfu_measured": job.mfu_measured, "deps": list(job.deps),
            "memory": job.memory.to_dict() if job.memory else None,  # peak per GPU (per process on CPU), GiB
        })
    return rows


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_plan(name: str, rows: Sequence[Mapping[str, Any]]) -> str:
    body = table(
        [(r["id"], r["kind"] + (f":{r['stage']}" if r["stage"] and r["stage"] != r["kind"] else ""),
          r["status"] + (" (held out)" if r["heldout"] and r["kind"] == "eval" else ""),
          r["resource_class"], f"{r['gpu_hours']:.1f}" if r["resources"].get("gpus") else "-", _memory_cell(r)) for r in rows],
        ("job", "kind", "status", "resources", "est. GPU-h", "GB/GPU need/has"),
    )
    counts = Counter(r["status"] for r in rows)
    total_gpu = sum(r["gpu_hours"] for r in rows)
    todo_gpu = sum(r["gpu_hours"] for r in rows if r["status"] != "done")
    cells = len({(r.get("llm"), r.get("visual_tokens"), r.get("compressor"), r.get("seed")) for r in rows if r.get("llm")})
    summary = (f"sweep {name!r}: {cells} cells, {len(rows)} jobs ("
               + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")")
    if total_gpu:
        summary += f"; estimated {total_gpu:,.0f} GPU-hours in all, {todo_gpu:,.0f} still to run"
        measured = sum(bool(r.get("mfu_measured")) for r in rows)
        summary += (f" ({measured} train jobs at the MFU `make bench-gpu` measured, cost.measured; the rest at cost.assumed_mfu)"
                    if measured else " (at cost.assumed_mfu; for measured figures run `make bench-gpu` on a GPU node, "
                                     "then cost.measured=bench_gpu.json)")
    return f"{body}\n{summary}"


def _memory_cell(row: Mapping[str, Any]) -> str:
    """The memory a job needs per GPU (of its class's gpu_mem_gb), or per process on CPU; '-' without an estimate."""
    mem = row.get("memory")
    if not mem:
        return "-"
    if mem["device"] == "cuda":
        return f"{mem['needs_gb']:.0f}/{row['resources'].get('gpu_mem_gb', 80):g}"
    return f"{mem['gb']:.1f} (CPU)"


class Progress:
    """Prints a line when a job starts or ends, with a running count; ``emit`` writes a line (default: print)."""

    def __init__(self, total: int, out: TextIO = sys.stdout, emit: Callable[[str], None] | None = None) -> None:
        self.total, self.done, self.out, self.t0 = total, 0, out, time.time()
        self.emit = emit or (lambda text: print(text, file=self.out, flush=True))

    def started(self, job: Job, attempt: int) -> None:
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self.emit(f"[{self.done:>3}/{self.total}] start  {job.label}{again}")

    def waiting(self, job: Job, holder: str) -> None:
        self.emit(f"[{self.done:>3}/{self.total}] waiting for {job.label}, held by {holder} (another run)")

    def finished(self, job: Job, outcome: Outcome, final: bool = True) -> None:
        self.done += final
        detail = ""
        if outcome.state == DONE:
            m = outcome.metrics
            bits = [f"{k}={m[k]:.3f}" for k in ("train/loss_final", "error/reasoning", "error/ocr", "vision/patch_acc") if k in m]
            detail = " ".join(bits)
        elif outcome.error:
            detail = outcome.error.splitlines()[0][:200]
        took = f"{outcome.seconds:6.1f}s" if outcome.seconds else "      "
        self.emit(f"[{self.done:>3}/{self.total}] {outcome.state:<6} {job.label} {took} {detail}".rstrip())


@dataclass(frozen=True)
class ErrorGrid:
    """One family's eval errors as a table: ``rows`` x V, one table per value of the other axis.

    With one compressor the rows are the LLMs (one table per compressor); with several the
    rows are the compressors, one table per LLM, so compressors are compared side by side.
    ``cells`` holds each cell's errors, one per seed.
    """

    family: str
    fixed: str  # "compressor avgpool" or "LLM sm"
    row_axis: str  # "LLM" or "compressor"
    rows: list[str]
    vs: list[int]
    cells: dict[tuple[str, int], list[float]]

    @property
    def summary(self) -> str:
        """How the cells summarise their seeds."""
        return "mean +- sd over seeds" if any(len(v) > 1 for v in self.cells.values()) else "mean over seeds"

    @property
    def title(self) -> str:
        """What the table holds: ``error, <family>, <fixed axis> (<summary>)``."""
        return f"error, {self.family}, {self.fixed} ({self.summary})"

    def cell(self, row: str, v: int) -> str:
        """``0.123``, or ``0.123 +- 0.045`` for several seeds (sd with ddof 1); empty when missing."""
        values = self.cells.get((row, v))
        if not values:
            return ""
        mean = sum(values) / len(values)
        if len(values) == 1:
            return f"{mean:.3f}"
        sd = (sum((x - mean) ** 2 for x in values) / (len(values) - 1)) ** 0.5
        return f"{mean:.3f} +- {sd:.3f}"

    def header(self) -> list[str]:
        """``LLM \\ V`` (or ``compressor \\ V``), then the Vs."""
        return [f"{self.row_axis} \\ V", *map(str, self.vs)]

    def body(self) -> list[list[str]]:
        """One row per ``rows`` entry: its label, then a cell per V."""
        return [[row, *(self.cell(row, v) for v in self.vs)] for row in self.rows]


def error_grids(plan: Plan, store: Store) -> list[ErrorGrid]:
    """The eval jobs' errors per family as ``ErrorGrid`` tables, from their done records."""
    by_compressor = len({job.cell.compressor for job in plan if job.role == "eval" and job.cell is not None}) > 1
    found: dict[tuple[str, str], dict[tuple[str, int], list[float]]] = {}
    rows: dict[str, list[str]] = {}
    vs: list[int] = []
    for job in plan:
        if job.role != "eval" or job.cell is None:
            continue
        record = store.result(job.id)
        if not record:
            continue
        c = job.cell
        fixed, row = (f"LLM {c.llm}", c.compressor) if by_compressor else (f"compressor {c.compressor}", c.llm)
        seen = rows.setdefault(fixed, [])
        seen += [row] if row not in seen else []
        vs += [c.visual_tokens] if c.visual_tokens not in vs else []
        for key, value in record["metrics"].items():
            if key.startswith("error/"):
                found.setdefault((key[len("error/"):], fixed), {}).setdefault((row, c.visual_tokens), []).append(value)
    axis = "compressor" if by_compressor else "LLM"
    return [ErrorGrid(family, fixed, axis, rows[fixed], vs, cells) for (family, fixed), cells in sorted(found.items())]


def error_tables(plan: Plan, store: Store) -> str:
    """Eval error per family as plain-text tables (see ``ErrorGrid``), from the done records."""
    return "\n\n".join(f"{g.title}\n" + table(g.body(), g.header()) for g in error_grids(plan, store))
