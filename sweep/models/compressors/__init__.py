"""Token compressors, chosen by config: ``conf/compressor/<name>.yaml`` names the class in ``_target_``.

``_target_`` is a registered name (``COMPRESSORS``: avgpool, tokenpacker, quecc,
resampler, pixelshuffle) or any importable ``Compressor`` subclass
(``package.module:Class`` or ``package.module.Class``), so a user's own compressor
plugs in without touching this package. The entry's other keys are the class's
options, checked against its constructor when the config is parsed
(``sweep.specs.models.CompressorEntry``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweep.models.compressors.base import Compressor
from sweep.registry import Registry

if TYPE_CHECKING:
    from sweep.specs.models import CompressorEntry

COMPRESSORS: Registry[type[Compressor]] = Registry("compressor", {
    "avgpool": "sweep.models.compressors.avgpool:AvgPool",
    "tokenpacker": "sweep.models.compressors.tokenpacker:TokenPacker",
    "quecc": "sweep.models.compressors.quecc:QueCC",
    "resampler": "sweep.models.compressors.resampler:Resampler",
    "pixelshuffle": "sweep.models.compressors.pixelshuffle:PixelShuffle",
}, field="compressor", base=Compressor)


def compressor_class(entry: CompressorEntry) -> type[Compressor]:
    """The class an entry's ``_target_`` names."""
    target = entry.target
    return COMPRESSORS.load_target(COMPRESSORS.target(target) if target in COMPRESSORS else target,
                                   f"compressor.{entry.name}._target_", entry.name)


def valid_visual_tokens(entry: CompressorEntry, grid: int) -> list[int]:
    """Which V the compressor of ``entry`` can produce from a ``grid x grid`` grid."""
    return compressor_class(entry).valid_visual_tokens(grid, **entry.params)


def build_compressor(entry: CompressorEntry, in_dim: int, out_dim: int, grid: int, visual_tokens: int,
                     level_dim: int | None = None, question_dim: int | None = None) -> Compressor:
    """Instantiate the compressor of a catalogue entry for one cell.

    ``level_dim`` is the channel width of the concatenated multi-level features and
    ``question_dim`` the width of the question embedding; a compressor uses them
    only if it sets ``needs_levels`` / ``needs_question``.
    """
    return compressor_class(entry)(in_dim=in_dim, out_dim=out_dim, grid=grid, visual_tokens=visual_tokens,
                                   level_dim=level_dim, question_dim=question_dim, **entry.params)
