"""A frontier in measured cost: the latency model, V* against latency beside FLOPs, the report."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from sweep.scaling import fit_study, write_report
from sweep.scaling.latency import fit_latency

# Memory-bound small batches: time per parameter dominates, tokens cost little per parameter.
COEF = (6.0, 2.0, 0.01, 0.002)  # ms, ms per billion params, ms per token, ms per (billion params x token)


def latency_ms(n_params: float, v: float) -> float:
    n_b = n_params / 1e9
    return COEF[0] + COEF[1] * n_b + COEF[2] * v + COEF[3] * n_b * v


def test_latency_model_recovers_its_coefficients():
    n = np.repeat([0.5e9, 1.8e9, 4e9, 7e9], 4)
    v = np.tile([1.0, 16.0, 144.0, 576.0], 4)
    model = fit_latency(n, v, np.array([latency_ms(a, b) for a, b in zip(n, v)]))
    assert np.allclose(model.coef, COEF, rtol=1e-6) and model.r2 == pytest.approx(1.0)
    assert model(7e9, 64) == pytest.approx(latency_ms(7e9, 64))
    assert model.cost().n_at(latency_ms(4e9, 36), np.array([36.0]))[0] == pytest.approx(4e9)


@pytest.fixture(scope="module")
def timed(make_table):
    rng = np.random.default_rng(0)
    obs = [replace(o, latency_ms=latency_ms(o.N, o.V) * (1 + 0.01 * rng.standard_normal())) for o in make_table(seed=7)]
    return obs, fit_study(obs, n_boot=100, forms=("multiplicative",))


def test_v_star_against_latency_beside_flops(timed):
    _, study = timed
    fam = study.families["vqa"]
    j = fam.to_json()
    lat = j["latency"]
    assert j["resolved"]["cost"] == "both" and lat["cost"] == "latency" and lat["unit"] == "ms"
    assert lat["model"]["r2"] > 0.99
    # FLOPs say one token (alpha > beta, Q = 0); in latency, tokens are nearly free next to
    # the parameters' cost, so more of them pay: the measured cost moves the optimum.
    assert j["v_star"]["0"] == 1.0 and lat["v_star"] > 4
    lo, hi = lat["ci"]
    assert lo <= lat["v_star"] <= hi
    # Every row spends its latency budget, and no V on the budget line does better.
    model = fam.latency_model
    cost = model.cost()
    v_dense = np.geomspace(1, fam.v_max, 20001)
    for row in lat["frontier"]:
        assert model(row["N"], row["V"]) == pytest.approx(row["cost"], rel=1e-6)
        n_dense = cost.n_at(row["cost"], v_dense)
        ok = n_dense > 0
        assert row["error"] <= fam.predict(n_dense[ok], v_dense[ok]).min() + 1e-9


def test_latency_in_report_plot_and_metrics(timed, tmp_path):
    obs, study = timed
    paths = {p.name for p in write_report(study, obs, tmp_path)}
    assert {"latency.png", "frontier_vqa_latency.csv", "frontier_vqa_q0.csv"} <= paths
    with (tmp_path / "frontier_vqa_latency.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and "latency_ms" in rows[0] and rows[0]["form"] == "multiplicative"
    assert "measured latency" in (tmp_path / "summary.md").read_text()
    assert json.loads((tmp_path / "fit.json").read_text())["vqa"]["latency"]["v_star"] is not None

    from sweep.fitting import numeric_leaves

    metrics = dict(numeric_leaves(study.to_json()))
    assert "vqa/latency/v_star" in metrics and "vqa/v_star/0" in metrics
    assert not any("/cells/" in k for k in metrics)  # per-cell tables stay in fit.json


def test_latency_that_does_not_grow_with_n_gives_no_frontier(make_table, tmp_path):
    """Tiny models on a CPU: fixed costs swamp N, the latency model's N terms fit to 0; no division by zero."""
    import warnings

    rng = np.random.default_rng(1)
    obs = [replace(o, latency_ms=(1.5 + 0.001 * o.V) * (1 + 0.01 * rng.standard_normal())) for o in make_table(seed=7)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's divide-by-zero and invalid-value warnings reached the user's terminal
        study = fit_study(obs, n_boot=50, forms=("multiplicative",))
        write_report(study, obs, tmp_path)
    fam = study.families["vqa"]
    assert fam.latency_model.coef[1] == 0 and fam.latency_model.coef[3] == 0
    lat = fam.to_json()["latency"]
    assert lat["v_star"] is None and lat["frontier"] == []
    assert "does not grow with N" in (tmp_path / "summary.md").read_text()
    assert fam.to_json()["v_star"]["0"] == 1.0  # the FLOPs frontier is untouched


def test_flops_only_when_asked_or_unmeasured(timed, make_table):
    obs, _ = timed
    assert fit_study(obs, n_boot=0, cost="flops", forms=("multiplicative",)).to_json()["vqa"]["latency"] is None
    assert fit_study(make_table(seed=7), n_boot=0, forms=("multiplicative",)).to_json()["vqa"]["latency"] is None
