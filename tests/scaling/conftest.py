"""Synthetic scaling-law data (the paper's grid, errors drawn from a known law plus noise) and the reference data's location."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from sweep.scaling import Observation

PAPER_N = (0.5, 1.8, 4.0, 7.0)  # billions
PAPER_V = (1, 4, 16, 36, 64, 144, 576)
# A visual-reasoning-like truth: alpha about 5x beta, as published.
TRUTH = {"A": 0.25, "alpha": 0.35, "beta": 0.07, "D": 0.2}


def law_table(
    truth: dict[str, float] = TRUTH,
    *,
    n_billions: Sequence[float] = PAPER_N,
    v: Sequence[float] = PAPER_V,
    noise: float = 0.005,
    seed: int = 0,
    family: str = "vqa",
    heldout_n: Sequence[float] = (),
    form: str = "multiplicative",
) -> list[Observation]:
    """One observation per (N, V) cell; cells with N in ``heldout_n`` are flagged held out."""
    rng = np.random.default_rng(seed)
    out = []
    for n in n_billions:
        for vv in v:
            if form == "multiplicative":
                y = truth["A"] * n ** -truth["alpha"] * vv ** -truth["beta"] + truth["D"]
            else:
                y = truth["A"] * n ** -truth["alpha"] + truth["B"] * vv ** -truth["beta"] + truth["D"]
            out.append(Observation(family, n * 1e9, float(vv), float(y + rng.normal(0.0, noise)), heldout=n in heldout_n))
    return out


@pytest.fixture(scope="session")
def make_table() -> Callable[..., list[Observation]]:
    return law_table


@pytest.fixture(scope="session")
def truth() -> dict[str, float]:
    return dict(TRUTH)


def reference_dir() -> Path | None:
    """Public reference data (the paper's table, Epoch AI's Chinchilla points), never copied here.

    ``$SWEEP_REFERENCE_DIR`` or ``../shared/reference`` next to the checkout; None where absent.
    """
    env = os.environ.get("SWEEP_REFERENCE_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "reference"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def reference() -> Path:
    path = reference_dir()
    if path is None:
        pytest.skip("reference data not found: set SWEEP_REFERENCE_DIR or check out ../shared/reference")
    return path
