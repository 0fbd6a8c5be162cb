"""The plan-time memory check: a job whose estimate per GPU exceeds its class's ``gpu_mem_gb`` is refused.

``build_plan`` calls ``refuse_oversized`` once every job has its estimate
(``sweep.memory``). One ``SweepError`` (exit 2, before anything is submitted) names the
largest job that does not fit, its estimate and terms, how many others do not fit
either, and the changes that would make it fit, each re-estimated: a smaller micro
batch, gradient checkpointing, FSDP instead of DDP, more GPUs to shard over with FSDP, a
class with larger GPUs (or a smaller eval batch for eval jobs). CPU classes (``gpus: 0``) are not checked:
their estimate is per process, and ``mem_gb`` is the scheduler's business.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from sweep import memory
from sweep.errors import SweepError

FSDP_RANKS = (2, 4, 8, 16, 32, 64)  # rank counts tried as a fix (whole nodes of the class)


def refuse_oversized(jobs: Sequence[Any], resources: Mapping[str, Any], eval_text_tokens: float) -> None:
    """Raise ``SweepError`` if a GPU job's ``memory.needs_gb`` exceeds its class's ``gpu_mem_gb``."""
    over = [j for j in jobs if j.memory is not None and j.memory.device == "cuda"
            and j.memory.needs_gb > float(j.resources.get("gpu_mem_gb", 80.0))]
    if not over:
        return
    job = max(over, key=lambda j: j.memory.needs_gb)
    est, cls = job.memory, job.resource_class
    have = float(job.resources.get("gpu_mem_gb", 80.0))
    rest = [j.label for j in over if j is not job]
    others = (f" ({len(rest)} other jobs do not fit either: {', '.join(rest[:3])}" + (", ..." if len(rest) > 3 else "") + ")"
              if rest else "")
    fixes = _fixes(job, [j for j in jobs if j.cell == job.cell], resources, eval_text_tokens, have)
    raise SweepError(
        f"resources.{cls}.gpu_mem_gb",
        f"the {job.label} job needs about {est.needs_gb:.0f} GB per GPU ({est.gb:.1f} GB of tensors at the "
        f"{est.summary()} GB; + {memory.ALLOCATOR_SLACK:.0%} allocator slack + {memory.CUDA_RESERVED_GB:.0f} GB CUDA context), "
        f"more than the {have:g} GB of each GPU of class {cls!r}{others}",
        "any of: " + "; ".join(fixes) if fixes else f"give it GPUs with more than {est.needs_gb:.0f} GB (resources.{cls}.gpu_mem_gb)")


def _fits(kind: str, spec: Any, ranks: int, text: float, have: float) -> memory.Estimate | None:
    est = memory.estimate_job(kind, spec, ranks, "cuda", text)
    return est if est is not None and est.needs_gb <= have else None


def _fixes(job: Any, cell_jobs: Sequence[Any], resources: Mapping[str, Any], text: float, have: float) -> list[str]:
    """Changes that would make ``job`` fit, each with its new estimate (another class: one all ``cell_jobs`` fit)."""
    spec, kind, cls, ranks = job.spec, job.kind, job.resource_class, memory.ranks_of(job.resources)
    out: list[str] = []
    if kind == "hf_train":
        stage, where = spec.stage, f"train.stages.{spec.stage_index}"
        for micro in range(min(stage.micro_batch_size, max(1, stage.global_batch_size // ranks)) - 1, 0, -1):
            est = _fits(kind, _with(spec, micro_batch_size=micro), ranks, text, have)
            if est:
                out.append(f"{where}.micro_batch_size={micro} ({est.needs_gb:.0f} GB)")
                break
        if stage.trainable == "all" and not stage.gradient_checkpointing:
            est = _fits(kind, _with(spec, gradient_checkpointing=True), ranks, text, have)
            if est:
                out.append(f"{where}.gradient_checkpointing=true ({est.needs_gb:.0f} GB)")
        if ranks > 1 and job.memory.mode == "ddp":  # DDP copies the whole model to every GPU; FSDP shards it
            est = _fits(kind, _with(spec, parallel="fsdp"), ranks, text, have)
            if est:
                out.append(f"{where}.parallel=fsdp ({est.needs_gb:.0f} GB)")
        if job.memory.mode == "fsdp" or stage.parallel == "fsdp":
            out += _more_gpus(job, stage, ranks, text, have)
    elif spec.batch_size > 1:
        for batch in (spec.batch_size // 2, 1):
            est = _fits(kind, dataclasses.replace(spec, batch_size=batch), ranks, text, have)
            if est:
                out.append(f"eval.batch_size={batch} ({est.needs_gb:.0f} GB)")
                break
    bigger = [name for name, res in resources.items() if name != cls and int(res.gpus) > 0 and
              all(_fits(j.kind, j.spec, memory.ranks_of(res.to_dict()), text, float(res.gpu_mem_gb)) for j in cell_jobs)]
    if bigger:
        out.append(f"llm.{job.cell.llm}.resource_class={bigger[0]} (a class all of the cell's jobs fit)")
    out.append(f"GPUs with at least {job.memory.needs_gb:.0f} GB (resources.{cls}.gpu_mem_gb, e.g. 141 for an H200)")
    return out


def _more_gpus(job: Any, stage: Any, ranks: int, text: float, have: float) -> list[str]:
    """The fewest ranks (whole nodes past one) over which FSDP makes the stage fit."""
    per_node = ranks // int(job.resources.get("nodes") or 1)
    for n in FSDP_RANKS:
        if n <= ranks or n % per_node or stage.global_batch_size % n:
            continue
        est = _fits(job.kind, job.spec, n, text, have)
        if est:
            return [f"resources.{job.resource_class}.nodes={n // per_node} (FSDP over {n} GPUs: {est.needs_gb:.0f} GB)"]
    return []


def _with(spec: Any, **stage: Any) -> Any:
    return dataclasses.replace(spec, stage=dataclasses.replace(spec.stage, **stage))
