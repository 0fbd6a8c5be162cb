"""``run --adaptive``: the rounds in a real MLflow store, the launcher's slots, and the loop end to end on a tiny mini grid."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import TINY_MINI, sweep_cli

from sweep.cli import load
from sweep.design.adaptive import (
    DEFAULT_REMOTE_SLOTS,
    ROUND,
    RoundLog,
    cells_per_round,
    metric_key,
)
from sweep.design.pool import Pool
from sweep.design.propose import propose
from sweep.design.settings import DesignSettings
from sweep.design.state import assess
from sweep.tracking import Tracker
from tests.test_design import rows

TINY = [*TINY_MINI, "grid.visual_tokens=[1,4,16]", "design.n_boot=50"]


def test_rounds_are_sized_by_the_launcher() -> None:
    cfg, _ = load(["launcher.workers=3"])
    assert cells_per_round(cfg.launcher, 0) == 3
    assert cells_per_round(load(["launcher=inline"])[0].launcher, 0) == 1
    assert cells_per_round(load(["launcher=ray", "+launcher.num_cpus=6"])[0].launcher, 0) == 6
    assert cells_per_round(load(["launcher=ray", "+launcher.num_gpus=8"])[0].launcher, 4) == 2
    assert cells_per_round(load(["launcher=slurm"])[0].launcher, 8) == DEFAULT_REMOTE_SLOTS


def test_metric_keys_are_mlflow_safe() -> None:
    assert metric_key("reasoning", "V*(Q=50)") == "reasoning/vstar_q50"
    assert metric_key("ocr@tokenpacker", "alpha-beta") == "ocr_at_tokenpacker/alpha_minus_beta"
    assert metric_key("ocr", "error(C=1.5e+12, Q=0)") == "ocr/error_c1.5e12_q0"


def test_rounds_are_logged_to_mlflow(tmp_path: Path, mlflow_uri: str) -> None:
    """Each round: a child run of the study's `adaptive` run with the cells and why; the intervals after it as steps."""
    cfg, plan = load(["+grid=paper"])
    settings = DesignSettings(n_boot=100)
    pool = Pool.build(plan, lambda _: False, settings)
    tracker = Tracker(mlflow_uri)
    exp = tracker.experiment("adaptive-rounds")
    parent = tracker.parent_run(exp, "adaptive-rounds", {})
    log = RoundLog(tracker, exp, parent, {"design.target": '"vstar"'})
    assert log.next_round() == 0
    start = [(m, v) for m in ("qwen15-0p5b", "qwen15-7b") for v in (1, 576)] + [("qwen15-1p8b", 16)]
    first = propose(assess(pool, [], cfg.fit, settings), settings, 5)
    run0 = log.start(0, first)
    state = assess(pool, rows(start), cfg.fit, settings)
    after0 = log.after(0, run0, state)
    second = propose(state, settings, 2)
    run1 = log.start(1, second)
    state1 = assess(pool, rows(start + [(p.cell.llm, p.cell.visual_tokens) for p in second.picks]), cfg.fit, settings)
    log.after(1, run1, state1)
    log.finish("the test ends here")

    client = tracker.client
    study = client.get_run(log.run_id)
    assert study.data.tags["mlflow.parentRunId"] == parent and study.data.tags["design_stop"] == "the test ends here"
    assert study.info.status == "FINISHED"
    key = "interval/reasoning/vstar_q50/width"
    history = sorted((m.step, m.value) for m in client.get_metric_history(log.run_id, key))
    assert [s for s, _ in history] == [0, 1]  # one step per round: the dashboard's convergence chart
    assert history[0][1] == pytest.approx(after0[key])
    rounds = sorted(client.search_runs([exp], f"tags.sweep_role = '{ROUND}'"), key=lambda r: int(r.data.tags["design_round"]))
    assert [r.info.run_name for r in rounds] == ["round-0", "round-1"]
    assert all(r.data.tags["mlflow.parentRunId"] == log.run_id and r.info.status == "FINISHED" for r in rounds)
    assert rounds[0].data.params["phase"] == "start" and rounds[1].data.params["phase"] == "design"
    assert rounds[1].data.params["cells"] == ",".join(p.cell.name for p in second.picks)
    assert all(rounds[1].data.tags[f"why.{p.cell.name}"] == p.why for p in second.picks)
    assert key in rounds[1].data.metrics and "cost/round" in rounds[1].data.metrics
    assert "design/round.json" in {a.path for a in client.list_artifacts(rounds[1].info.run_id, "design")}
    again = RoundLog(tracker, exp, parent, {})  # a rerun reopens the study's run and goes on numbering
    assert again.run_id == log.run_id and again.next_round() == 2


@pytest.mark.slow
def test_run_adaptive_on_a_tiny_mini_grid(tmp_path: Path) -> None:
    out = sweep_cli("run", "--adaptive", *TINY, cwd=tmp_path, timeout=1800)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    assert "round 0 (start)" in out.stdout and "adaptive study stopped:" in out.stdout

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mini").experiment_id
    rounds = client.search_runs([exp], f"tags.sweep_role = '{ROUND}'")
    assert len(rounds) >= 2  # 2 slots (local workers): the start design takes two rounds before the law can be fitted
    chosen = [c for r in rounds for c in r.data.params["cells"].split(",")]
    assert len(chosen) == len(set(chosen))  # no cell is chosen twice
    evals = [r for r in client.search_runs([exp], "tags.sweep_kind = 'eval'")]
    assert {r.data.params["cell.llm"] + "-v" + r.data.params["cell.visual_tokens"] for r in evals} == {c.split("-avgpool")[0] for c in chosen}
    study = client.search_runs([exp], "tags.sweep_role = 'adaptive'")[0]
    assert study.data.tags["design_stop"]

    again = sweep_cli("run", "--adaptive", *TINY, cwd=tmp_path, timeout=1800)  # a rerun reuses every finished cell
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert len(client.search_runs([exp], "tags.sweep_kind = 'eval'")) >= len(evals)
    assert "[  0/" not in again.stdout or "round" in again.stdout
