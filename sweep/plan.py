"""The plan: the study's jobs as a DAG of frozen, typed, content-addressed specs (pure).

    features (shared, when the mini tower is pretrained here)
        [-> LLM pretraining (per LLM size and seed, with train.llm_pretrain)]
        -> train stage 1 (per cell) -> train stage 2 ... -> eval (per cell)

The planner chooses each job's kind, and so its body: cached-features training
and synthetic eval for the mini path, Hugging Face training and benchmark eval
for the paper path (``sweep.jobs.KINDS``). Each job carries its fully resolved
spec (``sweep.specs.jobs``); its id hashes the spec's semantic fields, the
kind's version and the upstream ids (``sweep.ids``). Resources, cost and
memory estimates ride along but are not part of the id; a GPU job whose memory
estimate (``sweep.memory``) exceeds its class's ``gpu_mem_gb`` is refused here
(``sweep.memory_check``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sweep import cost, memory
from sweep.errors import SweepError
from sweep.grid import expand
from sweep.ids import job_id
from sweep.jobs import KINDS
from sweep.memory_check import refuse_oversized
from sweep.specs.config import Config
from sweep.specs.jobs import (BenchEvalSpec, CachedTrainSpec, Cell, FeaturesSpec, HFTrainSpec, JobSpec,
                              SyntheticEvalSpec, bench_runs)
from sweep.specs.train import LlmPretrain

MINI_TEXT_TOKENS = 12.0  # question + answer tokens per synthetic sample, for estimates


@dataclass(frozen=True)
class Job:
    """One node of the DAG."""

    id: str
    kind: str  # which body runs it (sweep.jobs.KINDS)
    spec: JobSpec
    upstream: Mapping[str, str] = field(default_factory=dict)  # upstream role -> job id
    cell: Cell | None = None
    resource_class: str = "cpu"
    resources: Mapping[str, Any] = field(default_factory=dict)
    flops: float = 0.0
    gpu_hours: float = 0.0
    mfu_measured: bool = False  # gpu_hours uses the MFU bench_gpu.py measured for this LLM
    memory: memory.Estimate | None = None  # peak memory per GPU (per process on CPU); None: no estimate

    @property
    def role(self) -> str:
        """features, train, eval or probe: the job's place in the DAG."""
        return KINDS[self.kind].role

    @property
    def deps(self) -> tuple[str, ...]:
        return tuple(self.upstream.values())

    @property
    def stage(self) -> str | None:
        stage = getattr(self.spec, "stage", None)
        return None if stage is None else stage.name

    @property
    def label(self) -> str:
        what = self.role if not self.stage or self.stage == self.role else f"{self.role}:{self.stage}"
        return f"{what} {self.cell.name}" if self.cell else what


@dataclass(frozen=True)
class Plan:
    """Jobs in topological order (every job after its upstream jobs)."""

    name: str
    jobs: tuple[Job, ...]
    cells: tuple[Cell, ...]

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def get(self, job_id: str) -> Job:
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise KeyError(job_id)

    def dependents(self, job_id: str) -> list[Job]:
        """Jobs that (transitively) need ``job_id``."""
        out: list[Job] = []
        frontier = {job_id}
        for job in self.jobs:
            if frontier.intersection(job.deps):
                out.append(job)
                frontier.add(job.id)
        return out


def make_id(kind: str, name: str, spec: JobSpec, upstream: Mapping[str, str]) -> str:
    """The content id of a job: its kind, the spec's semantic fields, the kind's version, the upstream ids."""
    return job_id(kind, name, spec.identity(), KINDS[kind].version, list(upstream.values()))


def _resources(cfg: Config, cls: str, field_name: str) -> dict[str, Any]:
    if cls not in cfg.resources:
        raise SweepError(field_name, f"resource class {cls!r} is not defined",
                         f"add resources.{cls} to conf/config.yaml or pick one of {sorted(cfg.resources)}")
    return cfg.resources[cls].to_dict()


def build_plan(cfg: Config) -> Plan:
    """The DAG of the typed config ``cfg``; raises ``SweepError`` on bad input."""
    cells = expand(cfg)
    mini = cfg.path == "mini"
    jobs: list[Job] = []

    features: dict[str, str] = {}
    if mini:
        spec = FeaturesSpec(vision=cfg.vision, data=cfg.data)  # type: ignore[arg-type]
        fid = make_id("features", "", spec, {})
        jobs.append(Job(id=fid, kind="features", spec=spec, resource_class="cpu", resources=_resources(cfg, "cpu", "resources")))
        features = {"features": fid}

    text_train = MINI_TEXT_TOKENS if mini else cfg.train.text_tokens_per_sample  # type: ignore[union-attr]
    text_eval = MINI_TEXT_TOKENS if mini else cfg.eval.text_tokens_per_sample  # type: ignore[union-attr]
    eval_samples = float(cfg.eval.max_questions if mini else cfg.eval.samples_per_cell)  # type: ignore[union-attr]
    tower = None if mini else cfg.vision
    measured = cost.measured_mfu(cfg.cost)
    benches = None if mini else bench_runs(cfg.eval)  # type: ignore[arg-type]
    stages = cfg.train.stages

    pretrain = getattr(cfg.train, "llm_pretrain", None)
    if pretrain is not None:
        _check_pretrain(cfg, pretrain)
    readers: dict[tuple[str, int], str] = {}  # (LLM, seed) -> its pretraining job

    for cell in cells:
        llm, comp = cfg.llm[cell.llm], cfg.compressor[cell.compressor]
        rclass = llm.resource_class
        res = _resources(cfg, rclass, f"llm.{cell.llm}.resource_class")
        gpus = int(res["gpus"]) * int(res["nodes"])
        ranks, device = memory.ranks_of(res), "cuda" if gpus else "cpu"
        upstream = dict(features)
        if pretrain is not None:
            key = (cell.llm, cell.seed)
            if key not in readers:
                at = Cell(llm=cell.llm, visual_tokens=pretrain.visual_tokens, compressor=pretrain.compressor, seed=cell.seed)
                stage = pretrain.stage(f"llm_pretrain-{cell.llm}-s{cell.seed}")
                spec = CachedTrainSpec(cell=at, llm=llm, compressor=cfg.compressor[pretrain.compressor], stage=stage)  # type: ignore[arg-type]
                # It belongs to no cell (cell=None): like the features job, every cell of this LLM and seed shares it.
                job = _train_job(cfg, "train", stage.name, spec, features, None, res, measured.get(cell.llm), text_train, text_eval, None)
                jobs.append(job)
                readers[key] = job.id
            upstream["llm"] = readers[key]
        for i, stage in enumerate(stages):
            kind = "train" if mini else "hf_train"
            spec = (CachedTrainSpec(cell=cell, llm=llm, compressor=comp, stage=stage, stage_index=i) if mini else  # type: ignore[arg-type]
                    HFTrainSpec(cell=cell, llm=llm, compressor=comp, vision=cfg.vision, data=cfg.data, stage=stage,  # type: ignore[arg-type]
                                stage_index=i))
            name = f"{cell.name}-{stage.name}" if len(stages) > 1 else cell.name
            job = _train_job(cfg, kind, name, spec, upstream, cell, res, measured.get(cell.llm), text_train, text_eval, tower)
            jobs.append(job)
            upstream = {**features, "train": job.id}
        if mini:
            kind, espec = "eval", SyntheticEvalSpec(cell=cell, llm=llm, compressor=comp, eval=cfg.eval)  # type: ignore[arg-type]
        else:
            kind, espec = "bench_eval", BenchEvalSpec(cell=cell, llm=llm, compressor=comp, vision=cfg.vision,  # type: ignore[arg-type]
                                                      families=cfg.eval.families, benchmarks=benches,  # type: ignore[union-attr,arg-type]
                                                      max_items=cfg.eval.max_items, batch_size=cfg.eval.batch_size)  # type: ignore[union-attr]
        eid = make_id(kind, cell.name, espec, upstream)
        flops = cost.eval_flops(llm, cell.visual_tokens, text_eval, eval_samples, tower)
        jobs.append(Job(id=eid, kind=kind, spec=espec, upstream=upstream, cell=cell, resource_class=rclass,
                        resources=res, flops=flops, gpu_hours=cost.gpu_hours(flops, gpus, cfg.cost),
                        memory=memory.estimate_job(kind, espec, ranks, device, text_eval)))
    refuse_oversized(jobs, cfg.resources, text_eval)
    return Plan(name=cfg.sweep.name, jobs=tuple(jobs), cells=tuple(cells))


def _check_pretrain(cfg: Config, pretrain: LlmPretrain) -> None:
    """``train.llm_pretrain`` names a compressor of the catalogue that can produce its ``visual_tokens``."""
    from sweep.models.compressors import valid_visual_tokens
    from sweep.models.compressors.base import format_counts

    if pretrain.compressor not in cfg.compressor:
        raise SweepError("train.llm_pretrain.compressor", f"{pretrain.compressor!r} is not a compressor of the catalogue",
                         f"use one of {', '.join(sorted(cfg.compressor))}")
    valid = valid_visual_tokens(cfg.compressor[pretrain.compressor], cfg.vision.grid)
    if pretrain.visual_tokens not in valid:
        raise SweepError("train.llm_pretrain.visual_tokens",
                         f"{pretrain.compressor!r} cannot produce V={pretrain.visual_tokens} from the "
                         f"{cfg.vision.grid}x{cfg.vision.grid} patch grid; it can produce V in {format_counts(valid)}",
                         "set train.llm_pretrain.visual_tokens to one of those")


def _train_job(cfg: Config, kind: str, name: str, spec: CachedTrainSpec | HFTrainSpec, upstream: Mapping[str, str],
               cell: Cell | None, res: dict[str, Any], mfu: float | None, text_train: float, text_eval: float, tower: Any) -> Job:
    """One train job with its cost and memory estimates; ``cell`` None for a shared one (LLM pretraining)."""
    stage, at = spec.stage, spec.cell
    gpus = int(res["gpus"]) * int(res["nodes"])
    flops = cost.train_flops(spec.llm, stage, at.visual_tokens, text_train, stage.samples(cfg.data), tower)  # type: ignore[arg-type]
    return Job(id=make_id(kind, name, spec, upstream), kind=kind, spec=spec, upstream=dict(upstream), cell=cell,
               resource_class=spec.llm.resource_class, resources=res, flops=flops, mfu_measured=mfu is not None,
               gpu_hours=cost.gpu_hours(flops, gpus, cfg.cost, mfu),
               memory=memory.estimate_job(kind, spec, memory.ranks_of(res), "cuda" if gpus else "cpu", text_eval))
