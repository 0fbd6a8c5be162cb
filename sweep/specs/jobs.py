"""What each job kind receives: a frozen, fully resolved spec, built by the plan.

One type per job kind (``sweep.jobs.KINDS`` pairs each with its body and version):

    features     FeaturesSpec    mini tower pretraining + feature cache (one per mini study)
    train        CachedTrainSpec one stage of a mini cell on cached features
    hf_train     HFTrainSpec     one LLaVA stage of a Hugging Face VLM on images
    eval         SyntheticEvalSpec  exact match on the synthetic test split
    bench_eval   BenchEvalSpec   real benchmarks with their official scorers
    probe        ProbeSpec       a backend smoke test (no model)

The job's id hashes ``spec.identity()`` (semantic fields only), the kind's version
and the upstream ids, so a default written in a spec type is part of the id and a
logging cadence or a path is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweep.specs.data import BenchmarkEval, LlavaData, SyntheticData, SyntheticEval
from sweep.specs.models import HFLLM, ClipVision, CompressorEntry, MiniLLM, MiniVision
from sweep.specs.schema import Spec, incidental, semantic
from sweep.specs.train import CachedStage, LlavaStage


@dataclass(frozen=True, kw_only=True)
class Cell(Spec):
    """One point of the grid: (LLM, visual tokens V, compressor, seed)."""

    llm: str = semantic()
    visual_tokens: int = semantic()
    compressor: str = semantic()
    seed: int = semantic()
    # Trained and evaluated, but left out of the fit (extrapolation check): a fit-time label only.
    heldout: bool = incidental(False)

    @property
    def name(self) -> str:
        return f"{self.llm}-v{self.visual_tokens}-{self.compressor}-s{self.seed}"


@dataclass(frozen=True, kw_only=True)
class FeaturesSpec(Spec):
    vision: MiniVision = semantic()
    data: SyntheticData = semantic()


@dataclass(frozen=True, kw_only=True)
class CachedTrainSpec(Spec):
    cell: Cell = semantic()
    llm: MiniLLM = semantic()
    compressor: CompressorEntry = semantic()
    stage: CachedStage = semantic()
    stage_index: int = semantic(0)


@dataclass(frozen=True, kw_only=True)
class HFTrainSpec(Spec):
    cell: Cell = semantic()
    llm: HFLLM = semantic()
    compressor: CompressorEntry = semantic()
    vision: ClipVision = semantic()
    data: LlavaData = semantic()
    stage: LlavaStage = semantic()
    stage_index: int = semantic(0)


@dataclass(frozen=True, kw_only=True)
class SyntheticEvalSpec(Spec):
    cell: Cell = semantic()
    llm: MiniLLM = semantic()
    compressor: CompressorEntry = semantic()
    eval: SyntheticEval = semantic()


@dataclass(frozen=True, kw_only=True)
class BenchRun(Spec):
    """One benchmark as an eval job runs it, every setting resolved."""

    name: str = semantic()
    root: str = incidental()
    max_new_tokens: int = semantic()
    options: dict[str, Any] = semantic(factory=dict)
    # What the benchmark class says changes its scores (prompt template, scorer version).
    method: dict[str, Any] = semantic(factory=dict)


@dataclass(frozen=True, kw_only=True)
class BenchEvalSpec(Spec):
    cell: Cell = semantic()
    llm: HFLLM = semantic()
    compressor: CompressorEntry = semantic()
    vision: ClipVision = semantic()
    families: dict[str, tuple[str, ...]] = semantic()
    benchmarks: tuple[BenchRun, ...] = semantic()
    max_items: int = semantic(0)
    batch_size: int = incidental(8)

    def benchmark(self, name: str) -> BenchRun:
        return next(b for b in self.benchmarks if b.name == name)


@dataclass(frozen=True, kw_only=True)
class ProbeSpec(Spec):
    """A trivial job for checking a backend (sweep/jobs/probe.py)."""

    name: str = semantic()
    sleep_s: float = semantic(0.0)
    fail_attempts: int = semantic(0)
    steps: int = semantic(1)
    value: float = semantic(1.0)
    # A file the job appends start/end lines to (ordering checks).
    trace: str | None = incidental(None)


def bench_runs(conf: BenchmarkEval) -> tuple[BenchRun, ...]:
    """Each benchmark of the families with its settings resolved: root, generation length, method."""
    from sweep.evals.registry import BENCHMARKS

    runs = []
    for name in dict.fromkeys(b for members in conf.families.values() for b in members):
        klass = BENCHMARKS.load(name)
        opts = conf.options_for(name)
        new = opts.max_new_tokens or conf.max_new_tokens or int(klass.max_new_tokens)
        method = dict(klass.identity(**{**opts.options, "max_new_tokens": new}))
        runs.append(BenchRun(name=name, root=opts.root or f"{conf.root.rstrip('/')}/{name}", max_new_tokens=new,
                             options=dict(opts.options), method=method))
    return tuple(runs)


JobSpec = FeaturesSpec | CachedTrainSpec | HFTrainSpec | SyntheticEvalSpec | BenchEvalSpec | ProbeSpec
