"""Typed training config: the one training loop's settings, and the two kinds of stage.

``Optim`` holds what every loop in the project reads (AdamW, the schedule, clipping,
logging and checkpoint cadence), with its defaults written once, here. A stage is
``Optim`` plus what its path needs:

* ``CachedStage`` (``train.kind: cached``): the mini study, on the features job's
  cached vision features; ``steps`` x ``batch_size``.
* ``LlavaStage`` (``train.kind: llava``): the LLaVA recipe on images through a
  Hugging Face VLM; ``epochs`` over a data split, a ``global_batch_size`` shared by
  the job's ranks, and how it is spread (``parallel``, ``micro_batch_size``, ...),
  which never changes its id.

``LlmPretrain`` (``train.llm_pretrain``, mini only) trains each LLM size once before
its cells, the counterpart of the paper's pretrained LLM.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from sweep.errors import SweepError
from sweep.specs.schema import Spec, at_least, fraction, incidental, join, non_empty, positive, semantic


@dataclass(frozen=True, kw_only=True)
class Optim(Spec):
    """AdamW with linear warmup then cosine or constant learning rate; what the shared loop reads."""

    lr: float = semantic(check=positive)
    weight_decay: float = semantic(0.0, check=at_least(0))
    betas: tuple[float, float] = semantic((0.9, 0.999))
    eps: float = semantic(1e-8, check=positive)
    # Warmup: a fraction of the steps when < 1, else a number of steps.
    warmup: float = semantic(0.03, check=at_least(0))
    schedule: Literal["cosine", "constant"] = semantic("cosine")
    # Gradient-norm clipping; 0 = off.
    grad_clip: float = semantic(1.0, check=at_least(0))
    # Steps per logged loss (the mean over the window).
    log_every: int = incidental(10, check=positive)
    # Steps between checkpoints; 0 = only when asked to stop (preemption).
    checkpoint_every: int = incidental(500, check=at_least(0))

    def check(self, where: str) -> None:
        for i, beta in enumerate(self.betas):
            if not fraction.ok(beta):
                raise SweepError(join(where, f"betas.{i}"), f"must be in [0, 1), got {beta}", f"set {join(where, 'betas')}=[0.9,0.999]")


@dataclass(frozen=True, kw_only=True)
class Pretrain(Optim):
    """The mini vision tower's one-off pretraining on per-patch labels."""

    steps: int = semantic(check=positive)
    batch_size: int = semantic(check=positive)


@dataclass(frozen=True, kw_only=True)
class CachedStage(Optim):
    """One training stage of a mini cell on cached features."""

    name: str = semantic(check=non_empty)
    steps: int = semantic(check=positive)
    batch_size: int = semantic(check=positive)
    # What trains: all (compressor, projector, LLM), connector (compressor + projector), llm.
    trainable: Literal["all", "connector", "llm"] = semantic("all")

    def samples(self, data: object) -> float:
        return float(self.steps * self.batch_size)


@dataclass(frozen=True, kw_only=True)
class LlmPretrain(Optim):
    """``train.llm_pretrain``: the mini study's counterpart of a pretrained LLM.

    The paper trains every compressor's connector against the same pretrained LLM
    (stage 1, LLM frozen), then everything (stage 2). The mini LLMs start from
    scratch, so one job per LLM size and seed first trains that LLM with
    ``compressor`` at ``visual_tokens``; every cell of the size and seed starts from
    its LLM (a fresh compressor and projector), and a first stage with
    ``trainable: connector`` aligns them to it.
    """

    compressor: str = semantic("avgpool", check=non_empty)
    visual_tokens: int = semantic(16, check=positive)
    steps: int = semantic(check=positive)
    batch_size: int = semantic(check=positive)

    def stage(self, name: str) -> CachedStage:
        """The pretraining as the one stage of a train job (everything trains)."""
        optim = {f.name: getattr(self, f.name) for f in fields(Optim)}
        return CachedStage(name=name, steps=self.steps, batch_size=self.batch_size, trainable="all", **optim)


@dataclass(frozen=True, kw_only=True)
class LlavaStage(Optim):
    """One LLaVA stage: stage 1 trains the connector on captions, stage 2 everything on conversations."""

    name: str = semantic(check=non_empty)
    # Which data split of `data` (conf/data/llava.yaml) it reads.
    data: Literal["stage1", "stage2"] = semantic()
    epochs: float = semantic(1.0, check=positive)
    # Samples per optimizer step over all of the job's ranks.
    global_batch_size: int = semantic(check=positive)
    trainable: Literal["connector", "all"] = semantic()
    # bf16 autocast on CUDA (fp32 master weights); fp32 = no autocast.
    precision: Literal["bf16", "fp32"] = semantic("bf16")
    # Longest tokenised sample; longer ones are cut.
    max_length: int = semantic(2048, check=positive)
    # plain: the caption alone (stage 1); chat: the conversation through the chat template; null = by `trainable`.
    style: Literal["plain", "chat"] | None = semantic(None)
    # How the stage is spread over the job's ranks (sweep/jobs/parallel.py): auto = FSDP when several ranks train the LLM.
    parallel: Literal["auto", "ddp", "fsdp"] = incidental("auto")
    # Samples per forward pass on one rank; the rest of the rank's share is gradient accumulation.
    micro_batch_size: int = incidental(4, check=positive)
    # Recompute the LLM's activations in the backward pass (less memory, ~30% more compute).
    gradient_checkpointing: bool = incidental(False)
    # Processes per rank that decode and preprocess images ahead of the step (capped at the rank's CPUs - 1).
    loader_workers: int = incidental(0, check=at_least(0))

    @property
    def text_style(self) -> str:
        return self.style or ("plain" if self.trainable == "connector" else "chat")

    def samples(self, data: object) -> float:
        return float(getattr(data, self.data).samples) * self.epochs


@dataclass(frozen=True, kw_only=True)
class CachedTrain(Spec):
    """``conf/train/mini.yaml``: stages on the cached features of the mini tower."""

    kind: Literal["cached"] = semantic("cached")
    stages: tuple[CachedStage, ...] = semantic(check=non_empty)
    # null: every cell's LLM starts from scratch; else its LLM starts from a pretraining job (LlmPretrain).
    llm_pretrain: LlmPretrain | None = semantic(None)

    def check(self, where: str) -> None:
        _unique_names(self.stages, where)


@dataclass(frozen=True, kw_only=True)
class LlavaTrain(Spec):
    """``conf/train/paper.yaml``: the LLaVA-1.5 recipe."""

    kind: Literal["llava"] = semantic("llava")
    stages: tuple[LlavaStage, ...] = semantic(check=non_empty)
    # Text tokens per sample, for the cost estimate (visual tokens are added per cell).
    text_tokens_per_sample: float = incidental(120.0, check=positive)

    def check(self, where: str) -> None:
        _unique_names(self.stages, where)


Train = CachedTrain | LlavaTrain


def _unique_names(stages: tuple, where: str) -> None:
    names = [s.name for s in stages]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise SweepError(join(where, f"stages.{i}.name"), f"{name!r} names two stages", "give each stage its own name")
