"""The ``train`` job: one training stage of a mini cell's VLM on the cached vision features.

Spec: ``CachedTrainSpec`` (cell, llm, compressor, stage, stage_index). Upstream:
``features`` (the cached data set) and, for a later stage, ``train`` (the previous
stage, whose ``model.pt`` is loaded); with ``train.llm_pretrain``, a cell's first
stage has ``llm`` (its LLM size's pretraining job, whose LLM weights are loaded,
the compressor and projector starting fresh). The loop is the shared one
(``sweep.jobs.loop``).

Deterministic by ``cell.seed``: the initialisation is seeded and each step's batch
is a pure function of (seed, step), so a run resumed from a checkpoint ends with
the same weights as an uninterrupted one. Writes ``model.pt`` (atomically) last.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.jobs.context import JobContext

if TYPE_CHECKING:
    import torch

    from sweep.jobs.common import Cache
    from sweep.models.vlm import VLM
    from sweep.specs.jobs import CachedTrainSpec, SyntheticEvalSpec


def build_cell_model(spec: CachedTrainSpec | SyntheticEvalSpec, meta: dict[str, Any]) -> VLM:
    """The cell's VLM from a train/eval spec and the features job's metadata (random init)."""
    from sweep.models.vlm import build_vlm

    return build_vlm(
        spec.llm,
        spec.compressor,
        vision_dim=int(meta["dim"]),
        level_dim=int(meta["level_dim"]),
        grid=int(meta["grid"]),
        visual_tokens=spec.cell.visual_tokens,
        vocab_size=len(meta["vocab"]),
        pad_id=int(meta["pad"]),
        eos_id=int(meta["eos"]),
    )


def make_batch(cache: Cache, idx: torch.Tensor, pad_id: int, levels: bool = True) -> dict[str, torch.Tensor | None]:
    """Tensors for the questions ``idx``, with padding columns all rows share trimmed away.

    ``levels=False`` leaves the multi-level features out (None): a compressor that does
    not read them (``needs_levels``) would only pay for gathering them.
    """
    q_ids, a_ids = cache.q_ids[idx], cache.a_ids[idx]
    q_mask = (q_ids != pad_id).long()
    q_keep = int(q_mask.sum(1).max())
    a_keep = int((a_ids != pad_id).sum(1).max())
    img = cache.image_index[idx]
    # index_select, not cache.feats[img]: the same rows, but advanced indexing of the fp16
    # cache is 3-5x slower on CPU (a fifth of a small cell's step; bench/bench_mini_step.py).
    return {
        "feats": cache.feats.index_select(0, img),
        "levels": cache.levels.index_select(0, img) if levels else None,
        "q_ids": q_ids[:, -q_keep:],
        "q_mask": q_mask[:, -q_keep:],
        "a_ids": a_ids[:, :a_keep],
    }


def set_trainable(model: VLM, trainable: str) -> list:
    """all: everything; connector: compressor + projector; llm: the LLM only. The trained parameters."""
    for name, p in model.named_parameters():
        is_llm = name.startswith("llm.")
        p.requires_grad_(trainable == "all" or (trainable == "llm") == is_llm)
    return [p for p in model.parameters() if p.requires_grad]


def run(ctx: JobContext) -> dict[str, float]:
    """Train one stage; returns ``train/*`` metrics. Raises ``Preempted`` when asked to stop."""
    import torch

    from sweep.jobs import common
    from sweep.jobs.context import atomic_save
    from sweep.jobs.loop import Single, TrainLoop

    if not ctx.world.leader:  # the mini model trains in one process
        return {}
    t0 = time.perf_counter()
    spec: CachedTrainSpec = ctx.spec
    stage, seed = spec.stage, spec.cell.seed
    cache, meta = common.load_cache(ctx.upstream_dir("features"), "train")
    pad_id = int(meta["pad"])

    common.set_seed(seed)
    model = build_cell_model(spec, meta)
    if "train" in ctx.upstream:
        model.load_state_dict(torch.load(model_path(ctx.upstream_dir("train")), weights_only=True)["state_dict"])
    elif "llm" in ctx.upstream:
        load_llm(model, ctx.upstream_dir("llm"))
    params = set_trainable(model, stage.trainable)
    loop = TrainLoop(ctx, stage, stage.steps, params, Single(model))
    data_seed = seed * 1000 + spec.stage_index  # different stages of one cell see different batch orders
    levels = model.compressor.needs_levels

    def step(i: int) -> float:
        batch = make_batch(cache, common.batch_indices(len(cache), stage.batch_size, i, data_seed), pad_id, levels)
        loss = model.loss(**batch, pad_id=pad_id)
        loss.backward()
        return float(loss.detach())

    model.train()
    result = loop.run(step)
    model.eval()
    atomic_save({"state_dict": model.state_dict(), "cell": spec.cell.to_dict(), "stage": stage.to_dict()},
                ctx.workdir / common.MODEL_FILE)
    ran = result.steps - result.start
    return {
        "train/loss_final": result.loss,
        "train/steps": float(result.steps),
        "train/steps_per_s": ran / result.seconds if result.seconds > 0 and ran else 0.0,
        "train/seconds": time.perf_counter() - t0,
        "train/resumed_from_step": float(result.start),
        "train/params_trainable": float(sum(p.numel() for p in params)),
    }


def load_llm(model: VLM, train_dir: Path) -> None:
    """The LLM weights of the model a finished train job left (a pretrained LLM for a fresh connector)."""
    import torch

    state = torch.load(model_path(train_dir), weights_only=True)["state_dict"]
    model.llm.load_state_dict({k.removeprefix("llm."): v for k, v in state.items() if k.startswith("llm.")})


def model_path(train_dir: Path) -> Path:
    """Where a finished train job left its weights."""
    from sweep.jobs import common

    return train_dir / common.MODEL_FILE
