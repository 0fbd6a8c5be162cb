"""Every fit setting comes from the config, for MLflow and CSV fits alike, and is checked first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweep.cli import main
from sweep.config import compose, resolved
from sweep.errors import SweepError
from sweep.scaling import FitBounds, FitSettings, Observation, fit_study


def test_the_config_section_is_the_dataclass_defaults():
    # conf/config.yaml writes every key out; it must say what FitSettings() says.
    assert FitSettings.from_mapping(resolved(compose([]))["fit"]) == FitSettings()
    # And the typed root config carries it as its fit section.
    from sweep.specs.config import Config

    assert Config.parse(resolved(compose(["fit.space=log"])), "").fit == FitSettings(space="log")


def test_mapping_round_trip_and_lists_become_tuples():
    s = FitSettings.from_mapping({"forms": ["additive"], "q_values": [0, 12], "bounds": {"alpha": [0, 2]}, "huber_delta": 1})
    assert s.forms == ("multiplicative", "additive")  # the paper's form is always fitted
    assert s.q_values == (0.0, 12.0) and s.bounds == FitBounds(alpha=(0.0, 2.0)) and s.huber_delta == 1.0
    assert FitSettings.from_mapping(s.to_json()) == s
    json.dumps(s.to_json())


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"los": "huber"}, "fit.los", "Did you mean loss"),
        ({"loss": "l1"}, "fit.loss", "l2, huber"),
        ({"space": "logg"}, "fit.space", "Did you mean log"),
        ({"n_boot": 1.5}, "fit.n_boot", "whole number"),
        ({"n_boot": True}, "fit.n_boot", "whole number"),
        ({"n_boot": -1}, "fit.n_boot", "negative"),
        ({"huber_delta": -0.1}, "fit.huber_delta", "positive"),
        ({"huber_delta": "small"}, "fit.huber_delta", "finite number"),
        ({"metric_range": "any"}, "fit.metric_range", "unit, positive"),
        ({"forms": ["power"]}, "fit.forms", "not a form"),
        ({"forms": "additive"}, "fit.forms", "must be a list"),
        ({"bounds": {"alpha": [2, 1]}}, "fit.bounds.alpha", "0 <= low < high"),
        ({"bounds": {"gamma": [0, 1]}}, "fit.bounds.gamma", "unknown key"),
        ({"bounds": {"alpha": [0, 1, 2]}}, "fit.bounds.alpha", "2 items"),
        ({"ci_level": 95}, "fit.ci_level", "outside"),
        ({"cost": "dollars"}, "fit.cost", "flops"),
        ({"starts": [0, 1]}, "fit.starts", "positive"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(values, field, words):
    with pytest.raises(SweepError) as err:
        FitSettings.from_mapping(values)
    e = err.value
    assert e.field == field and e.exit_code == 2 and e.fix
    assert words in f"{e.problem} {e.fix}", (e.problem, e.fix)


def write_table(tmp_path: Path, rows: list[str], header: str = "family,N,V,error") -> Path:
    path = tmp_path / "t.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def grid(error=lambda n, v: 0.2 + 0.3 * n**-0.3 * v**-0.06) -> list[str]:
    return [f"vqa,{n},{v},{error(n, v):.6f}" for n in (0.5, 1.8, 4, 7) for v in (1, 4, 16, 36, 64, 144, 576)]


def run_fit(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["fit", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_csv_fit_applies_the_overrides(tmp_path, capsys):
    # The bug of the issue: fit --csv used to ignore every fit.* override and exit 0.
    path = str(write_table(tmp_path, grid()))
    code, out, _ = run_fit(capsys, "--csv", path, "--json", "fit.loss=huber", "fit.huber_delta=0.004", "fit.n_boot=0", "fit.q_values=[0,20]")
    fam = json.loads(out)["vqa"]
    assert code == 0 and fam["loss"] == "huber" and fam["settings"]["huber_delta"] == 0.004
    assert fam["forms"]["multiplicative"]["huber_delta"] == 0.004 and fam["alpha_ci"] is None
    assert set(fam["v_star"]) == {"0", "20"} and fam["n_boot"] == 0


@pytest.mark.parametrize(
    ("override", "field"),
    [("fit.loss=bogus", "fit.loss"), ("fit.los=huber", "fit.los"), ("fit.n_boot=many", "fit.n_boot"), ("fit.bounds.gama=[0,1]", "fit.bounds.gama")],
)
def test_csv_fit_refuses_bad_overrides(tmp_path, capsys, override, field):
    code, out, err = run_fit(capsys, "--csv", str(write_table(tmp_path, grid())), override)
    assert code == 2 and out == "" and err.startswith(f"error: {field}:")


def test_csv_fit_refuses_other_overrides(tmp_path, capsys):
    code, _, err = run_fit(capsys, "--csv", str(write_table(tmp_path, grid())), "launcher=ray")
    assert code == 2 and "only fit.* overrides" in err


def test_a_sweep_command_checks_the_fit_section_before_planning(capsys):
    assert main(["plan", "fit.space=lin"]) == 2
    assert "fit.space" in capsys.readouterr().err


def test_losses_above_one_need_the_positive_range(tmp_path, capsys):
    rows = [f"lm,{n},{v},{2.0 + 3.0 * n**-0.3 + 1.5 * v**-0.2:.5f}" for n in (0.5, 1.8, 4, 7) for v in (1, 8, 64, 512)]
    path = str(write_table(tmp_path, rows))
    code, _, err = run_fit(capsys, "--csv", path)
    assert code == 2 and "fit.metric_range=positive" in err and "percentage" in err
    code, out, _ = run_fit(capsys, "--csv", path, "--json", "fit.metric_range=positive", "fit.n_boot=0")
    fam = json.loads(out)["lm"]
    assert code == 0 and fam["additive"]["D"] == pytest.approx(2.0, abs=0.05)


def test_data_dependent_settings_are_refused_before_fitting(make_table):
    obs = make_table(seed=1)
    zero = [Observation(o.family, o.N, o.V, 0.0 if i == 0 else o.error) for i, o in enumerate(obs)]
    cases = [(zero, {"space": "log"}, "fit.space"), (obs, {"weights": "noise"}, "fit.weights"), (obs, {"resample": "noise"}, "fit.resample"), (obs, {"cost": "latency"}, "fit.cost")]
    for data, kw, field in cases:
        with pytest.raises(SweepError) as err:
            fit_study(data, n_boot=0, **kw)
        assert err.value.field == field and "family vqa" in err.value.problem


def test_auto_settings_resolve_from_the_data(make_table):
    plain = fit_study(make_table(seed=1), n_boot=0, forms=("multiplicative",)).to_json()["vqa"]["resolved"]
    assert (plain["weights"], plain["resample"], plain["cost"]) == ("equal", "cells", "flops")
    noisy = [Observation(o.family, o.N, o.V, o.error, n_questions=500, latency_ms=1 + o.N / 1e9 * o.V / 100) for o in make_table(seed=1)]
    full = fit_study(noisy, n_boot=0, forms=("multiplicative",)).to_json()["vqa"]["resolved"]
    assert (full["weights"], full["resample"], full["cost"]) == ("noise", "noise", "both")
