"""Token compressors, chosen by config: ``conf/compressor/<name>.yaml`` names the class in ``_target_``."""

from __future__ import annotations

from typing import Any

from hydra.utils import get_class

from sweep.models.compressors.base import Compressor

_BUILD_KEYS = ("name", "_target_")


def compressor_class(entry: dict[str, Any]) -> type[Compressor]:
    """The class named by a catalogue entry's ``_target_``."""
    cls = get_class(entry["_target_"])
    if not (isinstance(cls, type) and issubclass(cls, Compressor)):
        raise TypeError(f"compressor {entry.get('name')!r}: {entry['_target_']} is not a Compressor")
    return cls


def compressor_params(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry's own keyword arguments (everything but name and _target_)."""
    return {k: v for k, v in entry.items() if k not in _BUILD_KEYS}


def valid_visual_tokens(entry: dict[str, Any], grid: int) -> list[int]:
    """Which V the compressor described by ``entry`` can produce from a ``grid x grid`` grid."""
    return compressor_class(entry).valid_visual_tokens(grid, **compressor_params(entry))


def build_compressor(
    entry: dict[str, Any],
    in_dim: int,
    out_dim: int,
    grid: int,
    visual_tokens: int,
    level_dim: int | None = None,
    question_dim: int | None = None,
) -> Compressor:
    """Instantiate the compressor of a catalogue entry for one cell.

    ``level_dim`` is the channel width of the concatenated multi-level features and
    ``question_dim`` the width of the question embedding; a compressor uses them
    only if it sets ``needs_levels`` / ``needs_question``.
    """
    cls = compressor_class(entry)
    return cls(
        in_dim=in_dim,
        out_dim=out_dim,
        grid=grid,
        visual_tokens=visual_tokens,
        level_dim=level_dim,
        question_dim=question_dim,
        **compressor_params(entry),
    )
