"""Eval runs in a real MLflow store -> observations with seeds, question counts and latency."""

from __future__ import annotations

import pytest

from sweep.fitting import observations_from_runs, setting_params
from sweep.scaling import FitSettings, fit_study


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'm.db'}")
    exp = client.create_experiment("mini")
    for llm, n in (("xs", 2e4), ("s", 8e4), ("m", 3e5)):
        for v in (1, 4, 16):
            for seed in (0, 1):
                run = client.create_run(exp)
                rid = run.info.run_id
                params = {"cell.llm": llm, "cell.compressor": "avgpool", "cell.seed": seed, "cell.visual_tokens": v}
                err = 0.1 + 0.5 * (n / 2e4) ** -0.3 * v**-0.2 + 0.01 * seed
                metrics = {"N": n, "V": v, "Q": 9.0, "error/ocr": err, "questions/ocr": 660.0, "latency/prefill_ms": 1.0 + n / 1e5 + v / 50}
                client.log_batch(rid, metrics=[Metric(k, float(x), 0, 0) for k, x in metrics.items()], params=[Param(k, str(x)) for k, x in params.items()])
                client.set_terminated(rid)
    return client.search_runs([exp], max_results=100)


def test_each_seed_is_an_observation_with_its_noise_and_latency(runs):
    obs = observations_from_runs(runs)
    assert len(obs) == 18 and {o.seed for o in obs} == {0, 1}
    assert all(o.n_questions == 660.0 and o.latency_ms is not None and o.Q == 9.0 for o in obs)
    xs = sorted((o for o in obs if o.llm == "xs" and o.V == 1), key=lambda o: o.seed)
    assert xs[1].error - xs[0].error == pytest.approx(0.01)
    fam = fit_study(obs, n_boot=50, forms=("multiplicative",)).families["ocr"]
    assert fam.n_points == 9 and fam.n_observations == 18
    assert fam.resolved == {**fam.resolved, "weights": "noise", "resample": "noise", "cost": "both"}
    assert fam.noise.tau2[0] > 0 and fam.latency is not None


def test_settings_become_params():
    params = setting_params(FitSettings(loss="huber"))
    assert params["fit.loss"] == "huber" and params["fit.bounds.alpha"] == "[0.0, 5.0]" and params["fit.space"] == "linear"
