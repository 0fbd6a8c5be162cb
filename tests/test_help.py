"""``python -m sweep --help``: the config groups and their choices, read from conf/ and the ConfigStore."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _help(env: dict[str, str] | None = None) -> str:
    out = subprocess.run([sys.executable, "-m", "sweep", "--help"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **(env or {})}, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_help_lists_every_group_and_choice_of_conf() -> None:
    text = _help()
    assert "usage" in text.lower() or "python -m sweep" in text  # the usage comes first
    assert "== Configuration groups ==" in text
    groups = {line.split(":", 1)[0]: line.split(":", 1)[1] for line in text.splitlines() if re.match(r"^[a-z]+:\s", line)}
    on_disk = {d.name for d in (REPO / "conf").iterdir() if d.is_dir()}
    assert on_disk <= set(groups), (on_disk, groups)
    for group in on_disk:
        choices = {c.strip() for c in groups[group].split("(default")[0].split(",")}
        assert {f.stem for f in (REPO / "conf" / group).glob("*.yaml")} <= choices
    # The launcher group is Hydra's ConfigStore (launchers/config.py), not YAML files.
    assert {"local", "inline", "ray", "slurm"} <= {c.strip() for c in groups["launcher"].split("(default")[0].split(",")}
    assert "(default: local)" in groups["launcher"] and "(default: mini)" in groups["grid"]


def test_help_follows_the_config_folder(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "grid" / "tiny.yaml").write_text("# @package _global_\ngrid:\n  name: tiny\n")
    text = _help({"SWEEP_CONFIG_DIR": str(conf)})
    grid = next(line for line in text.splitlines() if line.startswith("grid:"))
    assert "tiny" in grid and "paper" in grid
