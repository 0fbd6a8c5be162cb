"""What a job body sees: its frozen spec, its folder, its upstream folders, a metric sink.

The runner (``sweep.runner``) builds a ``JobContext`` and calls the body. A body
must be restartable: it writes checkpoints under ``ctx.checkpoint_dir`` through
``atomic_save`` and resumes from the newest one; when ``ctx.stop_requested()``
turns true (Slurm preemption, time limit) it saves a checkpoint and raises
``Preempted``. It returns its final scalar metrics; the runner logs them.

A job may run as several ranks (``ctx.world``, see ``sweep.distributed``): the
body runs on each; only the leader's ``log_metrics`` reaches MLflow, and a body
that writes files writes them on the leader only. A body that cannot use more
than one process starts with ``if not ctx.world.leader: return {}``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.distributed import World
from sweep.progress import no_progress


class Preempted(Exception):
    """Raised by a body that saved a checkpoint because it was asked to stop."""


def _never() -> bool:
    return False


def _drop_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    return None


@dataclass
class JobContext:
    """Everything a job body may use; nothing else about the sweep leaks in."""

    job_id: str
    kind: str
    spec: Any  # the job kind's typed spec (sweep.specs.jobs)
    workdir: Path
    upstream: Mapping[str, Path] = field(default_factory=dict)
    log_metrics: Callable[[Mapping[str, float], int | None], None] = _drop_metrics
    log_artifact: Callable[[Path], None] = lambda path: None
    stop_requested: Callable[[], bool] = _never
    # progress(step, total, loss=None, phase="train"): how far the job is, for the driver's live view
    # (sweep.progress); a file write on the leader, nothing elsewhere. Workers never print progress.
    progress: Callable[..., None] = no_progress
    device: str = "cpu"  # cuda:<local rank> on a GPU node
    world: World = field(default_factory=World)  # the job's ranks (sweep.distributed); one process by default

    @property
    def checkpoint_dir(self) -> Path:
        path = self.workdir / "ckpt"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def upstream_dir(self, kind: str) -> Path:
        """The output folder of the upstream job of ``kind`` (error if there is none)."""
        try:
            return self.upstream[kind]
        except KeyError:
            raise KeyError(f"job {self.job_id} has no upstream {kind!r} job (has: {sorted(self.upstream)})") from None


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename: a file under ``path`` is always whole."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
