"""Config -> the list of cells of the study (pure), with every input checked first.

A cell is one point of the grid: (LLM, visual tokens V, compressor, seed). The
LLMs and compressors are named in the grid and looked up in their catalogues
(``conf/llm/``, ``conf/compressor/``); every problem is reported as a
``SweepError`` naming the field and the fix, before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sweep.errors import SweepError, close_names

AXES = ("llm", "visual_tokens", "compressor", "seeds")


@dataclass(frozen=True)
class Cell:
    """One point of the grid."""

    llm: str
    visual_tokens: int
    compressor: str
    seed: int
    heldout: bool = False

    @property
    def name(self) -> str:
        return f"{self.llm}-v{self.visual_tokens}-{self.compressor}-s{self.seed}"

    def as_dict(self) -> dict[str, Any]:
        return {"llm": self.llm, "visual_tokens": self.visual_tokens, "compressor": self.compressor, "seed": self.seed}


def vision_grid(vision: Mapping[str, Any]) -> int:
    """Side G of the vision tower's patch grid (P = G*G patch tokens)."""
    size, patch = vision.get("image_size"), vision.get("patch_size")
    if not isinstance(size, int) or not isinstance(patch, int) or patch <= 0 or size % patch:
        raise SweepError(
            "vision.image_size / vision.patch_size",
            f"image_size={size} is not a positive multiple of patch_size={patch}",
            "pick an image size divisible by the patch size",
        )
    return size // patch


def _axis(grid: Mapping[str, Any], axis: str) -> list[Any]:
    values = grid.get(axis)
    if isinstance(values, (str, int)):
        values = [values]
    if not isinstance(values, Sequence) or len(values) == 0:
        raise SweepError(f"grid.{axis}", f"the axis is empty ({values!r})", f"give at least one value, e.g. grid.{axis}=[...]")
    if len(set(map(str, values))) != len(values):
        raise SweepError(f"grid.{axis}", f"repeated values in {list(values)}", "list each value once")
    return list(values)


def _lookup(catalogue: Mapping[str, Any], name: Any, field: str, group: str) -> None:
    if str(name) not in catalogue:
        raise SweepError(
            field,
            f"unknown {group} {name!r}.{close_names(str(name), catalogue)}",
            f"use one of {sorted(catalogue)}, or add conf/{group}/{name}.yaml and list it in the "
            f"`{group}` catalogue of conf/config.yaml",
        )


def check_training(train: Mapping[str, Any]) -> None:
    """Every stage must do some work with a positive learning rate and batch size."""
    stages = train.get("stages") or []
    if not stages:
        raise SweepError("train.stages", "no training stage is configured", "add at least one stage (see conf/train/)")
    for i, stage in enumerate(stages):
        where = f"train.stages[{i}] ({stage.get('name', '?')})"
        for key in ("steps", "epochs"):
            if key in stage and not (isinstance(stage[key], (int, float)) and stage[key] > 0):
                raise SweepError(f"{where}.{key}", f"must be positive, got {stage[key]!r}", f"set train.stages.{i}.{key} to a value > 0")
        if "steps" not in stage and "epochs" not in stage:
            raise SweepError(where, "has neither steps nor epochs", f"set train.stages.{i}.steps or .epochs")
        lr = stage.get("lr")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise SweepError(f"{where}.lr", f"the learning rate must be positive, got {lr!r}", f"set train.stages.{i}.lr > 0, e.g. 1e-3")
        for key in ("batch_size", "global_batch_size"):
            if key in stage and not (isinstance(stage[key], int) and stage[key] > 0):
                raise SweepError(f"{where}.{key}", f"must be a positive integer, got {stage[key]!r}", f"set train.stages.{i}.{key} > 0")


def expand(cfg: Mapping[str, Any]) -> list[Cell]:
    """All cells of the resolved config ``cfg``, validated; the order is the grid's order."""
    from sweep.models.compressors import valid_visual_tokens
    from sweep.models.compressors.base import format_counts

    grid = cfg.get("grid")
    if not isinstance(grid, Mapping):
        raise SweepError("grid", "no grid is selected", "add +grid=mini or +grid=paper")
    for group in ("llm", "compressor"):
        dotted = [k for k in cfg[group] if "." in str(k)]
        if dotted:
            raise SweepError(f"conf/{group}", f"catalogue names {dotted} contain a dot, so `{group}.<name>.field=...` "
                             "overrides cannot reach them", "rename them without dots, e.g. qwen15-0p5b for Qwen-1.5 0.5B")
    llms, vs, comps, seeds = (_axis(grid, a) for a in AXES)
    for name in llms:
        _lookup(cfg["llm"], name, "grid.llm", "llm")
    for name in comps:
        _lookup(cfg["compressor"], name, "grid.compressor", "compressor")
    heldout = list(grid.get("heldout_llm") or [])
    for name in heldout:
        if name not in llms:
            raise SweepError("grid.heldout_llm", f"{name!r} is not in grid.llm {llms}", "hold out one of the grid's LLMs, or add it to grid.llm")
    for v in vs:
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise SweepError("grid.visual_tokens", f"V must be a positive integer, got {v!r}", "use values such as [1,4,16]")
    for s in seeds:
        if not isinstance(s, int) or isinstance(s, bool):
            raise SweepError("grid.seeds", f"a seed must be an integer, got {s!r}", "use values such as [0,1]")
    g = vision_grid(cfg["vision"])
    for name in comps:
        valid = valid_visual_tokens(cfg["compressor"][name], g)
        bad = [v for v in vs if v not in valid]
        if bad:
            raise SweepError(
                "grid.visual_tokens",
                f"compressor {name!r} cannot produce V={bad} from the {g}x{g} patch grid of vision "
                f"{cfg['vision'].get('kind')}; it can produce V in {format_counts(valid)}",
                f"drop {bad} from grid.visual_tokens, or use another compressor for them",
            )
    check_training(cfg["train"])
    return [
        Cell(llm=m, visual_tokens=v, compressor=c, seed=s, heldout=m in heldout)
        for m in llms
        for v in vs
        for c in comps
        for s in seeds
    ]
