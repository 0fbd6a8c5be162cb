"""The public CLI surface: subcommands, flags, exit codes, JSON plan lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import sweep_cli

from sweep.cli import parse_args
from sweep.errors import SweepError

REPO = Path(__file__).resolve().parent.parent


def test_parse_args_surface() -> None:
    a = parse_args(["plan", "--json", "+grid=paper", "grid.llm=[xs]"])
    assert (a.command, a.json, a.overrides) == ("plan", True, ["+grid=paper", "grid.llm=[xs]"])
    assert parse_args(["+grid=paper"]).command == "run"
    f = parse_args(["fit", "--csv", "r.csv", "--n-unit=billions", "--json"])
    assert (f.command, f.csv, f.n_unit, f.json) == ("fit", "r.csv", "billions", True)
    with pytest.raises(SweepError, match="Did you mean plan"):
        parse_args(["pla"])
    with pytest.raises(SweepError, match="unknown option"):
        parse_args(["plan", "--jsn"])


def test_plan_json_lines_and_exit_codes(tmp_path: Path) -> None:
    env = {"SWEEP_ROOT": str(tmp_path / "out")}
    out = sweep_cli("plan", "--json", "+grid=paper", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 105
    first = rows[0]
    for key in ("id", "kind", "llm", "visual_tokens", "compressor", "seed", "status", "resources", "gpu_hours"):
        assert key in first
    assert {r["status"] for r in rows} == {"will run"}
    bad = sweep_cli("run", "grid.visual_tokens=[3]", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "grid.visual_tokens" in bad.stderr and "fix:" in bad.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()  # nothing started


def test_paper_grid_on_a_cpu_machine_stops_before_starting(tmp_path: Path) -> None:
    out = sweep_cli("+grid=paper", cwd=tmp_path, env={"SWEEP_ROOT": str(tmp_path / "out")})
    assert out.returncode == 2
    assert "GPUs" in out.stderr and "launcher=slurm" in out.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()
