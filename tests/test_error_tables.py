"""The eval-error tables printed at the end of a run and shown in the study report.

Done records are written as the runner writes them, with known errors per seed; the
tables must hold their means and spreads, laid out by the axis the grid varies.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _done_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: list[str], error):
    from sweep.cli import load
    from sweep.store import Store

    monkeypatch.setenv("SWEEP_ROOT", str(tmp_path / "out"))
    _, plan = load(overrides)
    store = Store(tmp_path / "out")
    for job in plan:
        if job.role == "eval":
            store.mark_done(job.id, {"error/ocr": error(job.cell), "error/reasoning": 0.5})
    return plan, store


def test_compressor_study_tables_compare_compressors_with_the_seeds_spread(tmp_path, monkeypatch) -> None:
    from sweep.display import error_grids, error_tables

    # Seeds 0/1/2 of a cell get base + 0.1 * (seed - 1): mean = base, sd = 0.1.
    base = {("avgpool", 1): 0.8, ("avgpool", 4): 0.5, ("resampler", 1): 0.7, ("resampler", 4): 0.3}
    plan, store = _done_plan(tmp_path, monkeypatch, ["+grid=compressors", "grid.compressor=[avgpool,resampler]",
                                                     "grid.visual_tokens=[1,4]"],
                             lambda c: base[(c.compressor, c.visual_tokens)] + 0.1 * (c.seed - 1))
    grids = error_grids(plan, store)
    assert [(g.family, g.fixed, g.row_axis) for g in grids] == [("ocr", "LLM sm", "compressor"),
                                                                 ("reasoning", "LLM sm", "compressor")]
    ocr = grids[0]
    assert ocr.header() == ["compressor \\ V", "1", "4"]
    assert ocr.body() == [["avgpool", "0.800 +- 0.100", "0.500 +- 0.100"], ["resampler", "0.700 +- 0.100", "0.300 +- 0.100"]]
    text = error_tables(plan, store)
    assert "error, ocr, LLM sm (mean +- sd over seeds)" in text
    assert "error, reasoning, LLM sm (mean +- sd over seeds)" in text and "0.500 +- 0.000" in text


def test_one_compressor_one_seed_tables_have_an_llm_row_each(tmp_path, monkeypatch) -> None:
    from sweep.display import error_tables

    size = {"xs": 0.4, "sm": 0.3, "s": 0.2, "m": 0.1}
    plan, store = _done_plan(tmp_path, monkeypatch, [], lambda c: size[c.llm] / c.visual_tokens)
    text = error_tables(plan, store)
    assert text.startswith("error, ocr, compressor avgpool (mean over seeds)\nLLM \\ V  1      4      16\n")
    assert "\nxs       0.400  0.100  0.025\n" in text
    assert "+-" not in text


def test_compressor_grid_plans_every_compressor_at_every_v(tmp_path, monkeypatch) -> None:
    from sweep.cli import load

    monkeypatch.setenv("SWEEP_ROOT", str(tmp_path / "out"))
    cfg, plan = load(["+grid=compressors"])
    cells = {(j.cell.compressor, j.cell.visual_tokens, j.cell.seed) for j in plan if j.role == "eval"}
    assert len(cells) == 5 * 2 * 3 and ("pixelshuffle", 4, 2) in cells
    assert tuple(cfg.grid.llm) == ("sm",) and cfg.compressor["pixelshuffle"].params["max_ratio"] == 16
    # The fuller study the README describes adds V = 1, which pixel shuffle reaches at max_ratio 16.
    _, fuller = load(["+grid=compressors", "grid.visual_tokens=[1,4,16]"])
    assert ("pixelshuffle", 1, 2) in {(j.cell.compressor, j.cell.visual_tokens, j.cell.seed)
                                      for j in fuller if j.role == "eval"}
