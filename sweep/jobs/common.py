"""What the job bodies share: the cached data set, seeds and RNG states, the batch order.

The ``features`` job writes its outputs under fixed file names; ``train`` and
``eval`` read them back with ``load_cache``. The training loop itself (optimizer,
schedule, checkpoints, resume) is ``sweep.jobs.loop``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

TOWER_FILE = "tower.pt"
META_FILE = "meta.json"
MODEL_FILE = "model.pt"


def features_file(split: str) -> str:
    """File name of a split's cached features and tokenised questions."""
    return f"data_{split}.pt"


@dataclass
class Cache:
    """One split of the features job's output, as tensors."""

    feats: torch.Tensor  # (N_images, P, C) fp16
    levels: torch.Tensor  # (N_images, P, C_levels) fp16
    image_index: torch.Tensor  # (M,) int64
    q_ids: torch.Tensor  # (M, Q_max) int64, left-padded with PAD
    a_ids: torch.Tensor  # (M, A_max) int64, answer + EOS, right-padded with PAD
    qtype: torch.Tensor  # (M,) int64 index into meta["qtypes"]

    def __len__(self) -> int:
        return int(self.q_ids.shape[0])


def load_cache(features_dir: Path, split: str) -> tuple[Cache, dict[str, Any]]:
    """A split's cached tensors and the features job's metadata."""
    path = features_dir / features_file(split)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the features job at {features_dir} has not finished")
    blob = torch.load(path, weights_only=True)
    meta = json.loads((features_dir / META_FILE).read_text())
    return Cache(**blob), meta


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (one call at the start of a job body)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG state a checkpoint must carry for an exact resume."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Sample indices of a step: epoch-wise permutations seeded by (seed, epoch).

    A pure function of the step, so a resumed run draws exactly the batches the
    uninterrupted run would have drawn.
    """
    start = step * batch_size
    positions = torch.arange(start, start + batch_size)
    epochs = positions // n
    out = torch.empty(batch_size, dtype=torch.long)
    for epoch in epochs.unique().tolist():
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=g)
        sel = epochs == epoch
        out[sel] = perm[positions[sel] % n]
    return out


