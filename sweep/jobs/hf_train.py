"""The ``hf_train`` job: one LLaVA stage of a CLIP -> compressor -> Hugging Face LLM VLM.

Spec: ``HFTrainSpec`` (cell, llm, compressor, vision, data, stage: a
``LlavaStage``, stage_index). Stage 1 (``trainable: connector``) trains the
compressor and projector on plain captions with the LLM frozen; stage 2
(``trainable: all``) trains everything on chat conversations, loss on the
assistant turns only. The loop is the shared one (``sweep.jobs.loop``); the
global batch is reached by gradient accumulation over micro batches, and each
optimizer step's samples are a pure function of (seed, step)
(``common.batch_indices``), so a resumed run sees the batches an uninterrupted
one would. ``loader_workers`` processes per rank open, decode and preprocess the
next micro batches' images ahead of the step, in the same order.

The data root is not part of a job id, so it is read from ``spec.data.root``
(which defaults to ``$SWEEP_DATA``).

Several ranks (``ctx.world``, ``sweep.distributed``) train with DDP or FSDP
(``sweep.jobs.parallel``): each step's global batch is cut into one contiguous
slice per rank and each rank accumulates its slice's micro batches (gradients
cross ranks on the last one), so the update equals the single-process one on the
same global batch. The global batch must divide by the number of ranks (the
launcher checks it before submitting). Only the leader logs and writes files;
the loss it logs is the mean over ranks.

Writes ``model.pt``: ``{"connector": ..., "llm": ... or None}`` (full tensors,
whatever the strategy); the LLM is saved once some stage so far has trained it.
Logs each rank's peak memory over the steps (``train/peak_mem_gb``, ``sweep.jobs.peakmem``),
the figure the plan's estimate (``sweep.memory``) stands for.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.jobs.context import JobContext

if TYPE_CHECKING:
    from sweep.specs.jobs import HFTrainSpec


class MicroBatches:
    """This rank's micro batches (lists of sample indices), step after step from ``start``: a ``batch_sampler``."""

    def __init__(self, n: int, global_batch: int, rank: int, per_rank: int, micro: int, seed: int, start: int, steps: int) -> None:
        self.n, self.global_batch, self.rank, self.per_rank, self.micro = n, global_batch, rank, per_rank, micro
        self.seed, self.start, self.steps = seed, start, steps

    def per_step(self) -> int:
        return math.ceil(self.per_rank / self.micro)

    def __len__(self) -> int:
        return (self.steps - self.start) * self.per_step()

    def __iter__(self) -> Iterator[list[int]]:
        from sweep.jobs.common import batch_indices

        for step in range(self.start, self.steps):
            every = batch_indices(self.n, self.global_batch, step, self.seed).tolist()
            mine = every[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]  # this rank's slice
            for k in range(0, len(mine), self.micro):
                yield mine[k : k + self.micro]


def _cpus() -> int:
    """The CPUs this process may run on (its affinity: under Slurm, the task's share of the node)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def loader_workers(requested: int) -> int:
    """``loader_workers`` as asked for, leaving the training loop at least one CPU."""
    return max(0, min(requested, _cpus() - 1))


@contextlib.contextmanager
def micro_batch_stream(ds: Any, order: MicroBatches, workers: int) -> Iterator[Iterator[dict[str, Any]]]:
    """``order``'s micro batches, collated; with ``workers``, opened and preprocessed ahead in worker processes.

    While the workers run, this process's torch threads leave them their CPUs: OpenMP threads that
    outnumber the free CPUs busy-wait and stall the loop (a 4-image batch's 1 ms ``torch.stack`` took
    25 ms on 2 CPUs; ``bench/bench_loader.py``).
    """
    import torch
    from torch.utils.data import DataLoader

    threads = torch.get_num_threads()
    if workers:
        torch.set_num_threads(max(1, min(threads, _cpus() - workers)))
    loader = DataLoader(ds, batch_sampler=order, collate_fn=ds.collator(), num_workers=workers,
                        prefetch_factor=2 if workers else None)
    try:
        yield iter(loader)  # the workers end with the iterator
    finally:
        torch.set_num_threads(threads)


def _recompute_activations(llm: Any) -> None:
    """Gradient (activation) checkpointing of the LLM's layers, non-reentrant, under either transformers API."""
    if hasattr(llm, "activation_checkpointing_enable"):  # transformers >= 5.2
        llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    llm.config.use_cache = False


def micro_steps(par: Any, batches: Iterator[dict[str, Any]], per_step: int, per_rank: int, device: Any,
                autocast: bool, seen: Any = None) -> float:
    """One optimizer step's forward and backward passes over this rank's next ``per_step`` micro batches.

    Each micro batch's loss counts by its share of the rank's slice; gradients cross ranks on the
    last one (``Parallel.accumulate``); the loop clips and steps afterwards. ``seen(batch)`` is called
    for each micro batch. Returns the step's loss, the mean over ranks.
    """
    import torch

    from sweep import distributed

    step_loss = 0.0
    for k in range(per_step):
        batch = next(batches)
        share = len(batch["ids"]) / per_rank
        with par.accumulate(last=k == per_step - 1):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = par.model(batch).loss
            (loss * share).backward()
        step_loss += float(loss.detach()) * share
        if seen is not None:
            seen(batch)
    return distributed.mean(step_loss)


def run(ctx: JobContext) -> dict[str, float]:
    """Train one stage; returns ``train/*`` metrics. Raises ``Preempted`` when asked to stop."""
    import torch

    from sweep import distributed
    from sweep.data.llava import LlavaDataset
    from sweep.jobs import common
    from sweep.jobs.context import atomic_save
    from sweep.jobs.loop import TrainLoop
    from sweep.jobs.parallel import Parallel, resolve
    from sweep.jobs.peakmem import PeakMemory, peak_metrics
    from sweep.models.hf_vlm import build_hf_vlm

    t0 = time.perf_counter()
    spec: HFTrainSpec = ctx.spec
    stage, seed = spec.stage, spec.cell.seed
    device = torch.device(ctx.device if ctx.device.startswith("cuda") and torch.cuda.is_available() else "cpu")
    world = ctx.world
    probe = PeakMemory(device)  # before the model exists: on CPU its RSS now is the baseline

    common.set_seed(seed)
    vlm = build_hf_vlm(spec.llm, spec.compressor, spec.vision, spec.cell.visual_tokens)
    llm_trained = stage.trainable == "all"
    if "train" in ctx.upstream:
        previous = torch.load(ctx.upstream_dir("train") / common.MODEL_FILE, weights_only=True)
        vlm.load_weights(previous)
        llm_trained = llm_trained or previous.get("llm") is not None
    vlm.to(device)
    vlm.set_trainable(stage.trainable)
    if stage.gradient_checkpointing and stage.trainable == "all":
        _recompute_activations(vlm.llm)
    par = Parallel(vlm, world, device, resolve(stage.parallel, world, stage.trainable == "all"), save_llm=llm_trained)
    params = [p for p in vlm.parameters() if p.requires_grad]  # FSDP replaced them with sharded ones

    files = getattr(spec.data, stage.data)
    root = Path(spec.data.root).expanduser()
    workers = loader_workers(stage.loader_workers)
    ds = LlavaDataset(root / files.json, root / files.images, vlm.tokenizer, style=stage.text_style,  # type: ignore[arg-type]
                      max_length=stage.max_length, visual_tokens=vlm.visual_tokens,
                      image_transform=vlm.image_transform() if workers else None)
    global_batch = stage.global_batch_size
    if global_batch % world.world_size:
        raise ValueError(f"train stage {stage.name!r}: global_batch_size={global_batch} does not divide by the "
                         f"job's {world.world_size} ranks; pick a multiple of {world.world_size}")
    per_rank = global_batch // world.world_size
    micro = max(1, min(stage.micro_batch_size, per_rank))
    steps = max(1, math.ceil(stage.epochs * len(ds) / global_batch))
    loop = TrainLoop(ctx, stage, steps, params, par, probe=probe)

    autocast = device.type == "cuda" and stage.precision == "bf16"
    data_seed = seed * 1000 + spec.stage_index  # stages of one cell see different orders
    order = MicroBatches(len(ds), global_batch, world.rank, per_rank, micro, data_seed, loop.start, steps)
    per_step = order.per_step()
    tokens = 0
    vlm.train()
    vlm.tower.eval()
    with micro_batch_stream(ds, order, workers) as batches:

        def count(batch: dict[str, Any]) -> None:
            nonlocal tokens
            images = sum(img is not None for img in batch["images"])
            tokens += int(batch["attention_mask"].sum()) + vlm.visual_tokens * images

        result = loop.run(lambda _: micro_steps(par, batches, per_step, per_rank, device, autocast, count))
    tokens = int(distributed.total(tokens))
    peaks = distributed.merged({world.rank: probe.peak_bytes()})  # every rank's, for the plan's estimate

    vlm.eval()
    weights = par.weights(llm_trained)
    if not world.leader or weights is None:
        return {}
    atomic_save({**weights, "cell": spec.cell.to_dict(), "stage": stage.to_dict()}, ctx.workdir / common.MODEL_FILE)
    return {
        "train/loss_final": result.loss,
        "train/steps": float(steps),
        "train/samples": float(len(ds)),
        "train/seconds": time.perf_counter() - t0,
        "train/tokens_per_s": tokens / result.seconds if result.seconds > 0 else 0.0,
        "train/resumed_from_step": float(result.start),
        "train/params_trainable": float(sum(p.numel() for p in params)),
        "train/ranks": float(world.world_size),
        "train/fsdp": float(par.mode == "fsdp"),
        "train/loader_workers": float(workers),
        **peak_metrics("train", peaks),
    }
