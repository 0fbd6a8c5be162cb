"""Job kinds: each pairs a typed spec with a body and a version; the planner picks the kind.

A body is a function ``run(ctx: JobContext) -> dict[str, float]`` registered by a
lazy ``"module:function"`` string (``JOB_BODIES``); the heavy imports (torch,
transformers) happen inside the body, in the worker. ``role`` is the job's place in
the DAG (features -> train -> eval), which upstream links, the display and the
fitter use; the kind says which body computes it.

Bump a kind's version when its code changes what it computes: every id of that
kind (and everything downstream) changes, so old results are not reused. Each
kind has its own version, so a change to the Hugging Face path leaves the mini
study's results alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweep.registry import Registry
from sweep.specs import jobs as specs


@dataclass(frozen=True)
class JobKind:
    name: str
    role: str  # features | train | eval | probe
    body: str  # "module:function"
    version: int
    spec: type


KINDS: dict[str, JobKind] = {k.name: k for k in (
    JobKind("features", "features", "sweep.jobs.features:run", 3, specs.FeaturesSpec),
    JobKind("train", "train", "sweep.jobs.train:run", 2, specs.CachedTrainSpec),
    JobKind("hf_train", "train", "sweep.jobs.hf_train:run", 2, specs.HFTrainSpec),
    JobKind("eval", "eval", "sweep.jobs.evaluate:run", 2, specs.SyntheticEvalSpec),
    JobKind("bench_eval", "eval", "sweep.jobs.hf_eval:run", 2, specs.BenchEvalSpec),
    JobKind("probe", "probe", "sweep.jobs.probe:run", 2, specs.ProbeSpec),
)}

JOB_BODIES: Registry = Registry("job kind", {k.name: k.body for k in KINDS.values()}, field="job.kind")


def role(kind: str) -> str:
    """The DAG role of a job kind (``train`` for both training bodies, ...)."""
    return KINDS[kind].role
