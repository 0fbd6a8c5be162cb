"""The one training loop: AdamW, warmup + cosine, clipping, windowed logging, checkpoints, exact resume.

Every training body uses it: the mini study's stages on cached features
(``sweep.jobs.train``), the LLaVA stages of a Hugging Face VLM
(``sweep.jobs.hf_train``) and the mini tower's pretraining (``sweep.jobs.features``),
so they share one set of defaults (``sweep.specs.train.Optim``) and one
checkpoint format::

    loop = TrainLoop(ctx, stage, steps, params, Single(model))   # resumes from ctx.checkpoint_dir
    result = loop.run(step_fn)       # step_fn(step) -> loss, after its own backward pass(es)

How the model's and optimizer's state is saved and restored, and how gradients
are clipped, is the ``Strategy``'s: ``Single`` for one process, ``Parallel``
(``sweep.jobs.parallel``) for DDP and FSDP ranks. Checkpoints are
``ckpt/step_XXXXXXXX.pt`` written atomically (temp file, fsync, rename); resuming
takes the newest one that loads, so a truncated file (a crash mid-write on a
filesystem without atomic rename, a full disk) costs the steps since the previous
one, not the job. One that loads but does not fit the model or the optimizer (the
model's code changed since: a job's id covers its spec, not the code) fails the job
with ``CheckpointMismatch``, which names the file and the fix; the file is left as it
is (running out of memory or a failed collective while restoring is not called a
mismatch: it is raised as it is). A stop request (Slurm preemption, Ctrl-C) saves a
checkpoint at the next step on every rank and raises ``Preempted``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from sweep.jobs.common import rng_state, set_rng_state
from sweep.jobs.context import JobContext, Preempted, atomic_save

KEEP_CHECKPOINTS = 2


class Strategy(Protocol):
    """How a loop's model is spread over its ranks: clipping, checkpoint state, restore."""

    def clip(self, params: list[torch.nn.Parameter], max_norm: float) -> None: ...

    def state(self, opt: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Model and optimizer state for a checkpoint; None on ranks that do not write it."""

    def restore(self, state: dict[str, Any], opt: torch.optim.Optimizer) -> None: ...


class Single:
    """One process, one module: its ``state_dict`` and the optimizer's."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def clip(self, params: list[torch.nn.Parameter], max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)

    def state(self, opt: torch.optim.Optimizer) -> dict[str, Any]:
        return {"model": self.module.state_dict(), "optimizer": opt.state_dict()}

    def restore(self, state: dict[str, Any], opt: torch.optim.Optimizer) -> None:
        self.module.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])


def lr_lambda(steps: int, warmup: float, schedule: str) -> Callable[[int], float]:
    """Multiplier of the base lr at a step: linear warmup (a fraction or a step count), then cosine or constant."""
    warm = int(round(warmup * steps)) if warmup < 1 else int(warmup)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        if schedule == "constant":
            return 1.0
        progress = (step - warm) / max(1, steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def save_checkpoint(ckpt_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Write ``step_<step>.pt`` atomically, then drop all but the newest few."""
    path = ckpt_dir / f"step_{step:08d}.pt"
    atomic_save({**state, "step": step, "rng": rng_state()}, path)
    for old in sorted(ckpt_dir.glob("step_*.pt"))[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path


def load_newest(ckpt_dir: Path, set_aside: bool = True, warn: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The newest checkpoint that loads (its RNG states restored), or None.

    One that does not load is said so and, with ``set_aside`` (the job's leader), renamed
    ``*.corrupt`` so the next attempt does not trip on it again.
    """
    for path in sorted(ckpt_dir.glob("step_*.pt"), reverse=True):
        try:
            state = torch.load(path, weights_only=False)
            step = int(state["step"])
        except Exception as e:  # truncated or corrupt: torch raises several types
            note = f"checkpoint {path} does not load ({type(e).__name__}: {str(e)[:120]}); resuming from the one before it"
            if set_aside:
                path.replace(path.with_name(f"{path.name}.corrupt"))
                note += f" (kept as {path.name}.corrupt)"
            (warn or _stderr)(note)
            continue
        set_rng_state(state["rng"])
        state["step"], state["path"] = step, path
        return state
    return None


class CheckpointMismatch(RuntimeError):
    """A checkpoint that loads but does not fit the job's model or optimizer (the code changed since it was written)."""

    def __init__(self, path: Path, error: Exception) -> None:
        detail = " ".join(str(error).split())
        detail = detail if len(detail) <= 300 else detail[:300] + "..."
        super().__init__(
            f"checkpoint {path} does not fit this job's model or optimizer ({type(error).__name__}: {detail}). It was "
            "written by other model code (a job's id covers its spec, not the code); nothing was changed. To start this "
            f"job from step 0, move {path.parent} away (or delete it) and run the same command again")


# RuntimeErrors that restoring can raise although the checkpoint fits the model: they pass as they are.
_NOT_A_MISMATCH: tuple[type[BaseException], ...] = (torch.OutOfMemoryError,) + (
    (torch.distributed.DistError,) if torch.distributed.is_available() else ())


def _stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


@dataclass
class LoopResult:
    start: int  # the step it resumed from (0 for a fresh run)
    steps: int
    loss: float  # the last logged window's mean loss
    seconds: float  # wall time of the steps run here


class StepBook:
    """Per-step bookkeeping: the loss averaged over each ``log_every`` window, checkpoints, stop requests.

    ``window`` (the running sum and count) is part of the checkpoint so a resumed run
    logs the same curve. In a multi-rank job the stop request is shared, so all ranks
    stop at the same step.
    """

    def __init__(self, ctx: JobContext, steps: int, log_every: int, ckpt_every: int,
                 checkpoint: Callable[[int], None], window: list[float] | None, prefix: str) -> None:
        self.ctx, self.steps, self.checkpoint, self.prefix = ctx, steps, checkpoint, prefix
        self.log_every, self.ckpt_every = max(1, log_every), ckpt_every
        self.window = list(window) if window else [0.0, 0]
        self.last = 0.0

    def after_step(self, done: int, loss: float, lr: float) -> None:
        self.window = [self.window[0] + loss, self.window[1] + 1]
        self.ctx.progress(done, self.steps, loss=self.window[0] / self.window[1], phase=self.prefix)
        if done % self.log_every == 0 or done == self.steps:
            self.last = self.window[0] / self.window[1]
            self.ctx.log_metrics({f"{self.prefix}/loss": self.last, f"{self.prefix}/lr": lr}, done)
            self.window = [0.0, 0]
        stop = self.ctx.stop_requested()
        if self.ctx.world.distributed:  # every rank stops at the same step (the leader hears the signal)
            from sweep import distributed

            stop = distributed.any_true(stop)
        if stop and done < self.steps:
            self.checkpoint(done)
            raise Preempted(f"job {self.ctx.job_id} stopped at step {done}/{self.steps}")
        if self.ckpt_every and done % self.ckpt_every == 0 and done < self.steps:
            self.checkpoint(done)


class TrainLoop:
    """AdamW + schedule over ``params`` for ``steps`` steps, resumed from the job's newest checkpoint."""

    def __init__(self, ctx: JobContext, optim: Any, steps: int, params: list[torch.nn.Parameter],
                 strategy: Strategy, prefix: str = "train", probe: Any = None) -> None:
        # probe: a sweep.jobs.peakmem.PeakMemory; its window is the steps, checkpoints left out.
        self.ctx, self.optim, self.steps, self.params, self.strategy = ctx, optim, steps, params, strategy
        self.probe = probe
        self.opt = torch.optim.AdamW(params, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                                     weight_decay=optim.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(steps, optim.warmup, optim.schedule))
        self.start, window = 0, None
        state = load_newest(ctx.checkpoint_dir, set_aside=ctx.world.leader)
        if state is not None:
            try:
                strategy.restore(state, self.opt)
            except _NOT_A_MISMATCH:
                raise  # out of memory, a failed collective: the checkpoint may be fine, so say what really failed
            except (RuntimeError, ValueError, KeyError) as e:  # strict load_state_dict: missing, unexpected, shapes
                raise CheckpointMismatch(state["path"], e) from e
            self.sched.load_state_dict(state["scheduler"])
            self.start, window = int(state["step"]), list(state["window"])
        self.book = StepBook(ctx, steps, optim.log_every, optim.checkpoint_every, self.checkpoint, window, prefix)

    def checkpoint(self, step: int) -> None:
        """Save model, optimizer, schedule and loss window (a collective under FSDP: every rank calls it)."""
        with self.probe.paused() if self.probe else contextlib.nullcontext():
            state = self.strategy.state(self.opt)
            if self.ctx.world.leader and state is not None:
                save_checkpoint(self.ctx.checkpoint_dir, step, {**state, "scheduler": self.sched.state_dict(),
                                                                "window": self.book.window})
            del state

    def run(self, step_fn: Callable[[int], float]) -> LoopResult:
        """``step_fn(step)`` computes the step's loss and its gradients; the loop does the rest."""
        t0 = time.perf_counter()
        if self.probe:
            self.probe.start()
        for step in range(self.start, self.steps):
            self.opt.zero_grad(set_to_none=True)
            loss = step_fn(step)
            if not math.isfinite(loss):  # NaN weights would be saved and the job marked done
                raise FloatingPointError(
                    f"the {self.book.prefix} loss is {loss} at step {step + 1}/{self.steps}; nothing after it is saved "
                    f"(the newest checkpoint is from before). Lower the learning rate or use precision fp32 for this stage")
            if self.optim.grad_clip > 0:
                self.strategy.clip(self.params, self.optim.grad_clip)
            self.opt.step()
            self.sched.step()
            self.book.after_step(step + 1, loss, self.sched.get_last_lr()[0])
        return LoopResult(self.start, self.steps, self.book.last, time.perf_counter() - t0)
