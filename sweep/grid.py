"""Typed config -> the list of cells of the study (pure), with the grid's own checks first.

A cell is one point of the grid: (LLM, visual tokens V, compressor, seed). The
LLMs and compressors are named in the grid and looked up in their catalogues
(``conf/llm/``, ``conf/compressor/``); every problem is a ``SweepError`` naming
the field and the fix, before anything runs. Types and ranges were already
checked when the config was parsed (``sweep.specs``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sweep.errors import SweepError, close_names
from sweep.specs.config import Config
from sweep.specs.jobs import Cell

AXES = ("llm", "visual_tokens", "compressor", "seeds")


def _unique(values: Sequence[Any], axis: str) -> None:
    if len(set(map(str, values))) != len(values):
        raise SweepError(f"grid.{axis}", f"repeated values in {list(values)}", "list each value once")


def _lookup(catalogue: Mapping[str, Any], name: str, field: str, group: str) -> None:
    if name not in catalogue:
        raise SweepError(
            field,
            f"unknown {group} {name!r}.{close_names(name, catalogue)}",
            f"use one of {sorted(catalogue)}, or add conf/{group}/{name}.yaml and list it in the "
            f"`{group}` catalogue of conf/config.yaml",
        )


def expand(cfg: Config) -> list[Cell]:
    """All cells of the typed config ``cfg``, validated; the order is the grid's order."""
    from sweep.models.compressors import valid_visual_tokens
    from sweep.models.compressors.base import format_counts

    grid = cfg.grid
    for axis in AXES:
        _unique(getattr(grid, axis), axis)
    for name in grid.llm:
        _lookup(cfg.llm, name, "grid.llm", "llm")
    for name in grid.compressor:
        _lookup(cfg.compressor, name, "grid.compressor", "compressor")
    for name in grid.heldout_llm:
        if name not in grid.llm:
            raise SweepError("grid.heldout_llm", f"{name!r} is not in grid.llm {list(grid.llm)}",
                             "hold out one of the grid's LLMs, or add it to grid.llm")
    bad_v = [v for v in grid.visual_tokens if v <= 0]
    if bad_v:
        raise SweepError("grid.visual_tokens", f"V must be a positive integer, got {bad_v}", "use values such as [1,4,16]")
    g = cfg.vision.grid
    for name in grid.compressor:
        valid = valid_visual_tokens(cfg.compressor[name], g)
        bad = [v for v in grid.visual_tokens if v not in valid]
        if bad:
            raise SweepError(
                "grid.visual_tokens",
                f"compressor {name!r} cannot produce V={bad} from the {g}x{g} patch grid of vision "
                f"{cfg.vision.kind}; it can produce V in {format_counts(valid)}",
                f"drop {bad} from grid.visual_tokens, or use another compressor for them",
            )
    return [
        Cell(llm=m, visual_tokens=v, compressor=c, seed=s, heldout=m in grid.heldout_llm)
        for m in grid.llm
        for v in grid.visual_tokens
        for c in grid.compressor
        for s in grid.seeds
    ]
