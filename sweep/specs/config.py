"""The whole composed config as one typed object, checked before anything starts.

    cfg = Config.parse(resolved(compose(overrides)), "")   # SweepError on the first problem
    cfg.train.stages[0].lr, cfg.launcher.workers, cfg.llm["xs"].hidden_size

Every section has a type; an unknown top-level key (``+foo=1``) or an unknown key
anywhere below is refused with close names. ``check`` then refuses combinations the
job bodies cannot run (a Hugging Face LLM with the mini tower, benchmark eval on
synthetic data, a resource class that is not defined, ...), each naming the field
and the fix. The grid's own checks (names in the catalogues, V each compressor can
produce) are in ``sweep.grid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from launchers.config import Launcher
from sweep.design.settings import DesignSettings
from sweep.errors import SweepError, close_names
from sweep.scaling.settings import FitSettings
from sweep.specs.data import BenchmarkEval, Data, Eval, LlavaData, SyntheticData, SyntheticEval
from sweep.specs.models import HFLLM, LLM, ClipVision, CompressorEntry, MiniLLM, MiniVision, Vision
from sweep.specs.schema import Spec, at_least, incidental, non_empty, positive, probability, semantic
from sweep.specs.train import CachedTrain, LlavaTrain, Train


@dataclass(frozen=True, kw_only=True)
class SweepSection(Spec):
    # The sweep's name = its MLflow experiment; defaults to the grid's name.
    name: str = incidental(check=non_empty)
    # Where job folders live (shared storage on a cluster).
    root: str = incidental(check=non_empty)
    # Seconds without a heartbeat after which a job's lease counts as abandoned.
    lease_s: float = incidental(120.0, check=positive)


@dataclass(frozen=True, kw_only=True)
class ResourceClass(Spec):
    """What a job of this class asks its scheduler for; never part of an id."""

    gpus: int = incidental(0, check=at_least(0))
    cpus: int = incidental(1, check=at_least(1))
    mem_gb: float = incidental(check=positive)
    time_min: int = incidental(check=positive)
    nodes: int = incidental(1, check=at_least(1))
    # Processes per node; null = one per GPU (at least one).
    tasks_per_node: int | None = incidental(None, check=at_least(1))
    # Memory of each of its GPUs, GB: the plan refuses a job whose estimate per GPU (sweep.memory) exceeds it.
    gpu_mem_gb: float = incidental(80.0, check=positive)


@dataclass(frozen=True, kw_only=True)
class Cost(Spec):
    """Converts FLOPs into GPU-hours for the plan's estimate."""

    gpu_peak_tflops: float = incidental(989.0, check=positive)
    assumed_mfu: float = incidental(0.35, check=probability)
    # The JSON `make bench-gpu` wrote: train jobs of the LLMs it measured use their measured MFU.
    measured: str | None = incidental(None)


@dataclass(frozen=True, kw_only=True)
class Grid(Spec):
    """The study's axes; LLMs and compressors are names from their catalogues."""

    name: str = incidental(check=non_empty)
    llm: tuple[str, ...] = incidental(check=non_empty)
    visual_tokens: tuple[int, ...] = incidental(check=non_empty)
    compressor: tuple[str, ...] = incidental(check=non_empty)
    seeds: tuple[int, ...] = incidental((0,), check=non_empty)
    # LLMs trained and evaluated but left out of the fit, to test extrapolation.
    heldout_llm: tuple[str, ...] = incidental(())


@dataclass(frozen=True, kw_only=True)
class Tracking(Spec):
    # MLflow tracking URI: a SQLite file, a folder or a server (http://host:5000). Credentials go in
    # MLFLOW_TRACKING_USERNAME / _PASSWORD; ones written in the URI are moved there and never logged.
    uri: str = incidental(check=non_empty)
    # Seconds one call to the store keeps retrying through an outage (a server restart) before it fails.
    retry_s: float = incidental(120.0, check=positive)
    # Seconds one HTTP request waits for the server (the check before a run waits at most 5).
    timeout_s: float = incidental(30.0, check=positive)


# Which parts go together: (llm kind, vision kind, data kind, train kind, eval kind) for each path.
PATHS = {
    "mini": (MiniLLM, MiniVision, SyntheticData, CachedTrain, SyntheticEval),
    "hf": (HFLLM, ClipVision, LlavaData, LlavaTrain, BenchmarkEval),
}
GROUP_FIX = {"mini": "vision=mini data=synthetic train=mini eval=mini", "hf": "+grid=paper (vision=clip-vit-l-336 data=llava train=paper eval=paper)"}


@dataclass(frozen=True, kw_only=True)
class Config(Spec):
    """``conf/config.yaml`` composed with its groups and the overrides."""

    sweep: SweepSection = incidental()
    resources: dict[str, ResourceClass] = incidental(check=non_empty)
    cost: Cost = incidental(factory=Cost)
    fit: FitSettings = incidental(factory=FitSettings)  # sweep/scaling/settings.py documents each key
    design: DesignSettings = incidental(factory=DesignSettings)  # suggest / run --adaptive: sweep/design/settings.py
    grid: Grid = incidental()
    llm: dict[str, LLM] = semantic()
    compressor: dict[str, CompressorEntry] = semantic()
    vision: Vision = semantic()
    data: Data = semantic()
    train: Train = semantic()
    eval: Eval = semantic()
    launcher: Launcher = incidental()
    tracking: Tracking = incidental()

    def check(self, where: str) -> None:
        for group in ("llm", "compressor"):
            for key, entry in getattr(self, group).items():
                if "." in key:
                    raise SweepError(f"conf/{group}/{key}", "the catalogue name contains a dot, so "
                                     f"`{group}.<name>.field=...` overrides cannot reach it", "rename it without dots, e.g. qwen15-0p5b")
                if entry.name != key:
                    raise SweepError(f"{group}.{key}.name", f"is {entry.name!r} but the entry is listed as {key!r}",
                                     f"set {group}.{key}.name={key}")
        for key, llm in self.llm.items():
            if llm.resource_class not in self.resources:
                raise SweepError(f"llm.{key}.resource_class", f"resource class {llm.resource_class!r} is not defined."
                                 f"{close_names(llm.resource_class, self.resources)}",
                                 f"use one of {', '.join(self.resources)}, or add resources.{llm.resource_class}")
        self._check_path()
        if isinstance(self.vision, MiniVision) and isinstance(self.data, SyntheticData):
            from sweep.data.synthetic import CELL, IMAGE_UNIT, image_size_problem

            problem = image_size_problem(self.data.image_size)
            if problem:
                raise SweepError("data.image_size", problem,
                                 f"use a multiple of {IMAGE_UNIT}, e.g. data.image_size=64 vision.image_size=64")
            if self.data.image_size != self.vision.image_size:
                raise SweepError("data.image_size", f"is {self.data.image_size} but vision.image_size is {self.vision.image_size}",
                                 "make them equal")
            if self.vision.patch_size != CELL:
                raise SweepError("vision.patch_size", f"is {self.vision.patch_size}, but the synthetic images are drawn on "
                                 f"{CELL}x{CELL}-pixel cells and the tower's labels are per cell", f"set vision.patch_size={CELL}")

    def _check_path(self) -> None:
        """The grid's LLMs, the tower, the data, the train and eval kinds must all belong to one path."""
        kinds = {type(self.llm[name]) for name in self.grid.llm if name in self.llm}
        path = "hf" if HFLLM in kinds else "mini"
        if len(kinds) > 1:
            raise SweepError("grid.llm", f"mixes mini LLMs and Hugging Face LLMs ({list(self.grid.llm)})",
                             "run them as two sweeps: the mini ones with the mini groups, the HF ones with +grid=paper")
        parts = dict(zip(("vision", "data", "train", "eval"), PATHS[path][1:]))
        for group, want in parts.items():
            have = getattr(self, group)
            if not isinstance(have, want):
                tag = getattr(have, "kind", "?")
                llms = "the Hugging Face LLMs" if path == "hf" else "the mini LLMs"
                raise SweepError(f"{group}.kind", f"is {tag!r}, which {llms} of grid.llm={list(self.grid.llm)} cannot use",
                                 f"use the {path} groups together: {GROUP_FIX[path]}")

    @property
    def path(self) -> str:
        """``mini`` (cached features, tiny LLMs) or ``hf`` (CLIP + Hugging Face LLMs)."""
        return "hf" if isinstance(self.vision, ClipVision) else "mini"

    @property
    def stages(self) -> tuple[Any, ...]:
        return self.train.stages


def parse_config(data: Any) -> Config:
    """The typed config of a resolved (plain) config dict."""
    return Config.parse(data, "")

