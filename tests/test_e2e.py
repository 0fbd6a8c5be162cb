"""The whole mini study through ``python -m sweep`` in a subprocess, on a tiny grid.

Real features/train/eval jobs, a real MLflow SQLite store in a temp folder; then
a re-run that must start nothing and finish in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY_MINI, sweep_cli, sweep_env

TINY = [*TINY_MINI, "grid.visual_tokens=[1,4]"]


@pytest.mark.slow
def test_mini_study_end_to_end_then_noop_rerun(tmp_path: Path) -> None:
    first = sweep_cli(*TINY, cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (tmp_path / "mlflow.db").exists()  # MLflow's default store, in the working directory

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mini")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_role: dict[str, list] = {}
    for run in runs:
        by_role.setdefault(run.data.tags.get("sweep_role"), []).append(run)
    assert len(by_role["parent"]) == 1
    jobs = by_role["job"]
    kinds = sorted(r.data.tags["sweep_kind"] for r in jobs)
    assert kinds == ["eval"] * 4 + ["features"] + ["train"] * 4
    parent_id = by_role["parent"][0].info.run_id
    assert all(r.data.tags["mlflow.parentRunId"] == parent_id and r.info.status == "FINISHED" for r in jobs)

    evals = [r for r in jobs if r.data.tags["sweep_kind"] == "eval"]
    for r in evals:
        m, p = r.data.metrics, r.data.params
        for family in ("reasoning", "ocr"):
            assert 0.0 <= m[f"error/{family}"] <= 1.0
        assert m["V"] == float(p["cell.visual_tokens"])
        assert m["flops/inference"] == pytest.approx(2 * m["N"] * (m["Q"] + m["V"]), rel=1e-6)
        assert any(k.startswith("acc/reasoning/") for k in m)
        assert m["questions/reasoning"] > 0 and m["questions/ocr"] > 0 and m["latency/prefill_ms"] > 0  # the fitter's noise and cost
    trains = [r for r in jobs if r.data.tags["sweep_kind"] == "train"]
    for run in trains:
        history = sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda h: h.step)
        assert len(history) >= 4  # the curve is logged, not just the last value
        assert history[-1].value < history[0].value  # and it goes down
    assert "spec.json" in {a.path for a in client.list_artifacts(trains[0].info.run_id)}
    assert "fit" in by_role, first.stdout[-3000:]  # the fit ran after the sweep and logged its run
    fit_run = by_role["fit"][0]
    for family in ("reasoning", "ocr"):
        assert {f"{family}/alpha", f"{family}/beta", f"{family}/D", f"{family}/v_star/0"} <= set(fit_run.data.metrics)
    assert fit_run.data.params["fit.n_boot"] == "50"  # the settings used are recorded
    assert {"fit/figure1.png", "fit/heatmap.png"} <= {a.path for a in client.list_artifacts(parent_id, "fit")}

    t0 = time.time()
    again = sweep_cli(*TINY, cwd=tmp_path, timeout=900)
    took = time.time() - t0
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do" in again.stdout
    assert len(client.search_runs([exp.experiment_id], max_results=1000)) == len(runs)  # no duplicated runs
    assert took < 30, f"no-op re-run took {took:.1f}s"

    status = sweep_cli("status", "--json", *TINY, cwd=tmp_path, timeout=900)
    rows = json.loads(status.stdout)["jobs"]
    assert {r["status"] for r in rows} == {"done"} and len(rows) == 9

    # The compressor probe (bench/compressor_probe.py) reads the same features job, both ways.
    probe = [sys.executable, str(Path(__file__).resolve().parents[1] / "bench" / "compressor_probe.py"), "--steps", "4"]
    for extra, marker in (([], "step 4: loss"), (["--direct"], "4 steps: loss")):
        out = subprocess.run([*probe, *extra, *TINY], cwd=tmp_path, env=sweep_env(tmp_path), capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.count(marker) == 4, out.stdout  # one line per cell (xs, s x V = 1, 4)
