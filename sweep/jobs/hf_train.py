"""The ``train`` job for ``llm.kind: hf`` cells: one LLaVA stage of a CLIP -> compressor -> Qwen VLM.

Stage keys (``spec["stage"]``, conf/train/paper.yaml): ``data`` (stage1|stage2,
resolved in ``spec["data"]``), ``epochs``, ``global_batch_size``, ``lr``,
``weight_decay``, ``warmup``, ``schedule``, ``trainable`` (connector: stage 1 on
plain captions; all: stage 2 on chat conversations), ``precision``,
``checkpoint_every``, ``log_every``, and optionally ``micro_batch_size``
(default 4), ``max_length`` (default 2048), ``grad_clip``, ``style``.

The data root is not part of a job id (``plan.NON_SEMANTIC_KEYS``), so it is read
here from ``spec["data"]["root"]`` if present, else ``$SWEEP_DATA`` (what
conf/data/llava.yaml defaults to). The global batch is reached by gradient
accumulation over micro batches; each optimizer step's samples are a pure
function of (seed, step) (``common.batch_indices``), so a resumed run sees the
batches an uninterrupted one would.

Writes ``model.pt``: ``{"connector": ..., "llm": ... or None}``; the LLM is saved
once some stage so far has trained it. Single process: DDP/FSDP sharding for the
4B/7B LLMs is not done yet.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from sweep.jobs.context import JobContext

DEFAULT_MICRO_BATCH = 4


def data_root(spec: dict[str, Any]) -> Path:
    return Path(str(spec["data"].get("root") or os.environ.get("SWEEP_DATA", "/data/llava"))).expanduser()


def run(ctx: JobContext) -> dict[str, float]:
    """Train one stage; returns ``train/*`` metrics. Raises ``Preempted`` when asked to stop."""
    import torch

    from sweep.data.llava import LlavaDataset
    from sweep.jobs import common
    from sweep.jobs.context import atomic_save
    from sweep.models.hf_vlm import build_hf_vlm

    t0 = time.perf_counter()
    spec = dict(ctx.spec)
    stage, cell = dict(common.spec_get(spec, "stage", "train")), dict(common.spec_get(spec, "cell", "train"))
    seed, stage_index = int(cell.get("seed", 0)), int(spec.get("stage_index", 0))
    trainable = str(stage.get("trainable", "all"))
    device = torch.device(ctx.device if ctx.device.startswith("cuda") and torch.cuda.is_available() else "cpu")

    common.set_seed(seed)
    vlm = build_hf_vlm(spec)
    llm_trained = trainable == "all"
    if "train" in ctx.upstream:
        previous = torch.load(ctx.upstream_dir("train") / common.MODEL_FILE, weights_only=True)
        vlm.load_weights(previous)
        llm_trained = llm_trained or previous.get("llm") is not None
    vlm.to(device)
    params = vlm.set_trainable(trainable)

    paths = dict(spec["data"][stage["data"]])
    root = data_root(spec)
    style = str(stage.get("style", "plain" if trainable == "connector" else "chat"))
    ds = LlavaDataset(root / paths["json"], root / paths["images"], vlm.tokenizer, style=style,  # type: ignore[arg-type]
                      max_length=int(stage.get("max_length", 2048)), visual_tokens=vlm.visual_tokens)
    collate = ds.collator()
    global_batch = int(stage["global_batch_size"])
    micro = max(1, min(int(stage.get("micro_batch_size", DEFAULT_MICRO_BATCH)), global_batch))
    steps = max(1, math.ceil(float(stage.get("epochs", 1)) * len(ds) / global_batch))

    opt = torch.optim.AdamW(params, lr=float(stage["lr"]), weight_decay=float(stage.get("weight_decay", 0.0)))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, common.lr_lambda(steps, float(stage.get("warmup", 0.0)), str(stage.get("schedule", "cosine"))))

    def trainable_state() -> dict[str, Any]:
        return {"connector": vlm.connector_state(), "llm": vlm.llm_state() if llm_trained else None}

    start, window, tokens = 0, None, 0
    ckpt = common.latest_checkpoint(ctx.checkpoint_dir)
    if ckpt is not None:
        state = common.load_checkpoint(ckpt)
        vlm.load_weights(state["weights"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, window = int(state["step"]), list(state["window"])

    def checkpoint(step: int) -> None:
        common.save_checkpoint(ctx.checkpoint_dir, step, {"weights": trainable_state(), "optimizer": opt.state_dict(),
                                                          "scheduler": sched.state_dict(), "window": book.window})

    autocast = device.type == "cuda" and str(stage.get("precision", "bf16")) == "bf16"
    grad_clip = float(stage.get("grad_clip", 1.0) or 0.0)
    book = common.StepBook(ctx, steps, int(stage.get("log_every", 10)), int(stage.get("checkpoint_every", 0) or 0),
                           checkpoint, window)
    data_seed = seed * 1000 + stage_index  # stages of one cell see different orders
    vlm.train()
    vlm.tower.eval()
    t1 = time.perf_counter()
    for step in range(start, steps):
        idx = common.batch_indices(len(ds), global_batch, step, data_seed).tolist()
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for k in range(0, len(idx), micro):
            part = idx[k : k + micro]
            batch = collate([ds[i] for i in part])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = vlm(batch).loss
            (loss * len(part) / len(idx)).backward()
            step_loss += float(loss.detach()) * len(part) / len(idx)
            tokens += int(batch["attention_mask"].sum()) + vlm.visual_tokens * sum(img is not None for img in batch["images"])
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        sched.step()
        book.after_step(step + 1, step_loss, sched.get_last_lr()[0])
    seconds = time.perf_counter() - t1

    vlm.eval()
    atomic_save({**trainable_state(), "cell": cell, "stage": stage}, ctx.workdir / common.MODEL_FILE)
    return {
        "train/loss_final": book.last,
        "train/steps": float(steps),
        "train/samples": float(len(ds)),
        "train/seconds": time.perf_counter() - t0,
        "train/tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "train/resumed_from_step": float(start),
        "train/params_trainable": float(sum(p.numel() for p in params)),
    }
