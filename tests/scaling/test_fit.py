"""The fitter recovers a known law from noisy data, with honest intervals and warnings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sweep.errors import SweepError
from sweep.scaling import Observation, fit_study
from sweep.scaling.fit import Problem
from sweep.scaling.laws import MULTIPLICATIVE, Design
from sweep.scaling.settings import FitBounds

PARAMS = ("alpha", "beta", "A", "D")


@pytest.fixture(scope="module")
def vqa(make_table):
    """One family on the paper grid, fitted once for the tests that only read it."""
    obs = make_table(seed=3)
    return obs, fit_study(obs, n_boot=200, seed=1).to_json()["vqa"]


def test_recovers_known_parameters_within_intervals(vqa, truth):
    _, fam = vqa
    for name in PARAMS:
        lo, hi = fam[f"{name}_ci"]
        assert lo <= truth[name] <= hi, f"{name}: truth {truth[name]} outside [{lo:.4g}, {hi:.4g}]"
        assert lo <= fam[name] <= hi
    # The intervals must also be tight enough to mean something.
    assert abs(fam["alpha"] - truth["alpha"]) < 0.06 and fam["alpha_ci"][1] - fam["alpha_ci"][0] < 0.25
    assert abs(fam["beta"] - truth["beta"]) < 0.01 and fam["beta_ci"][1] - fam["beta_ci"][0] < 0.05
    assert abs(fam["D"] - truth["D"]) < 0.04 and fam["D_ci"][1] - fam["D_ci"][0] < 0.15
    assert fam["r2"] > 0.98 and fam["rmse"] < 0.01


def test_intervals_cover_the_truth_in_most_seeds(make_table, truth):
    seeds = range(12)
    covered = {name: 0 for name in PARAMS}
    for seed in seeds:
        obs = make_table(seed=100 + seed, noise=0.008)
        fam = fit_study(obs, n_boot=100, seed=seed, forms=("multiplicative",), heldout="none").to_json()["vqa"]
        for name in PARAMS:
            lo, hi = fam[f"{name}_ci"]
            covered[name] += lo <= truth[name] <= hi
    # Nominal 95%; measured about 95% over 40 seeds. 9 of 12 leaves room for
    # chance while failing intervals that are systematically too narrow.
    assert all(c >= 9 for c in covered.values()), covered


def test_huber_resists_an_outlier(make_table, truth):
    obs = make_table(seed=0)
    bad = obs[5]
    obs[5] = Observation(bad.family, bad.N, bad.V, bad.error + 0.15)
    l2 = fit_study(obs, n_boot=0, forms=("multiplicative",), heldout="none").to_json()["vqa"]
    hub = fit_study(obs, n_boot=0, loss="huber", forms=("multiplicative",), heldout="none").to_json()["vqa"]
    assert abs(hub["beta"] - truth["beta"]) < 0.01
    assert abs(hub["beta"] - truth["beta"]) < abs(l2["beta"] - truth["beta"]) / 2
    assert hub["loss"] == "huber" and hub["huber_delta"] > 0


def test_flagged_heldout_cells_are_predicted_not_fitted(make_table):
    obs = make_table(n_billions=(0.5, 1.8, 4.0, 7.0, 14.0), heldout_n=(14.0,), seed=4)
    fam = fit_study(obs, n_boot=20, forms=("multiplicative",)).to_json()["vqa"]
    assert fam["n_points"] == 28 and fam["heldout"]["mode"] == "flagged"
    assert fam["heldout"]["N"] == [14e9] and len(fam["heldout"]["cells"]) == 7
    assert fam["heldout_error"] < 0.02  # the paper's 14B check: within about 2 points
    # Corrupting the held-out cells must not move the fit: they are not in it.
    moved = [Observation(o.family, o.N, o.V, min(o.error + 0.3, 1.0), heldout=True) if o.heldout else o for o in obs]
    fam2 = fit_study(moved, n_boot=20, forms=("multiplicative",)).to_json()["vqa"]
    assert fam2["alpha"] == pytest.approx(fam["alpha"]) and fam2["D"] == pytest.approx(fam["D"])
    assert fam2["heldout_error"] > 0.25


def test_largest_n_check_without_flags(make_table):
    obs = make_table(seed=5)
    fam = fit_study(obs, n_boot=20, forms=("multiplicative",)).to_json()["vqa"]
    none = fit_study(obs, n_boot=20, forms=("multiplicative",), heldout="none").to_json()["vqa"]
    h = fam["heldout"]
    assert h["mode"] == "largest" and h["N"] == [7e9] and len(h["cells"]) == 7
    assert h["reduced_fit"]["alpha"] != pytest.approx(fam["alpha"], abs=1e-9)
    assert fam["alpha"] == pytest.approx(none["alpha"])  # reported parameters: the full fit
    assert 0 < fam["heldout_error"] < 0.02 and none["heldout"] is None


def test_all_v_equal_makes_beta_unidentifiable(make_table):
    fam = fit_study(make_table(v=(16,)), n_boot=20).to_json()["vqa"]
    assert fam["beta"] is None and fam["beta_ci"] is None and fam["alpha"] is not None
    assert any("beta is not identifiable" in w for w in fam["warnings"])
    assert fam["v_star"] == {"0": None, "50": None} and fam["additive"] is None


def test_parameter_on_its_bound_is_reported(make_table, truth):
    # Error that rises slightly with V: the best non-negative beta is exactly 0.
    fam = fit_study(make_table({**truth, "beta": -0.02}, seed=2), n_boot=50, forms=("multiplicative",)).to_json()["vqa"]
    assert fam["beta"] == pytest.approx(0.0, abs=1e-6)
    assert any("beta sits on its lower bound" in w for w in fam["warnings"])


def test_flat_direction_is_named():
    n = np.full(6, 1e9)
    v = np.array([1, 4, 16, 36, 64, 144], dtype=float)
    theta = np.array([np.log(0.3), 0.3, 0.1, 0.2])

    def problem(n_params: np.ndarray) -> Problem:
        design = Design.from_cells(n_params, v)
        lower, upper = MULTIPLICATIVE.box(design, 1.0, FitBounds(), (0.0, 1.0))
        return Problem.build(MULTIPLICATIVE, design, 0.3 * v**-0.1 + 0.2, lower=lower, upper=upper)

    assert problem(n).identifiability(theta) == ["alpha"]
    assert problem(np.repeat([1e9, 4e9], 3)).identifiability(theta) == []


def test_better_form_follows_the_generating_law(make_table):
    additive_truth = {"A": 0.15, "alpha": 0.4, "B": 0.2, "beta": 0.3, "D": 0.15}
    add = fit_study(make_table(additive_truth, form="additive", noise=0.003), n_boot=0, heldout="none").to_json()["vqa"]
    mult = fit_study(make_table(noise=0.003), n_boot=0, heldout="none").to_json()["vqa"]
    assert add["better_form"] == "additive" and mult["better_form"] == "multiplicative"
    assert add["additive"]["beta"] == pytest.approx(0.3, abs=0.05)


def test_json_is_strict_and_complete(vqa):
    _, fam = vqa
    json.dumps(fam, allow_nan=False)
    keys = {"v_star", "heldout_error", "heldout", "additive", "better_form", "r2", "rmse", "aic", "warnings", "frontier"}
    keys |= {f"{p}{suffix}" for p in PARAMS for suffix in ("", "_ci")}
    assert keys <= set(fam), keys - set(fam)
    assert set(fam["v_star"]) == {"0", "50"} and set(fam["frontier"]) == {"0", "50"}
    assert fam["v_star_detail"]["0"]["case"] == "corner"


def test_same_seed_same_intervals(make_table):
    obs = make_table(seed=6)
    a = fit_study(obs, n_boot=30, seed=7, forms=("multiplicative",)).to_json()["vqa"]
    b = fit_study(obs, n_boot=30, seed=7, forms=("multiplicative",)).to_json()["vqa"]
    c = fit_study(obs, n_boot=30, seed=8, forms=("multiplicative",)).to_json()["vqa"]
    assert a["alpha_ci"] == b["alpha_ci"] and a["alpha_ci"] != c["alpha_ci"]


@pytest.mark.parametrize("kw", [{"loss": "l1"}, {"heldout": "smallest"}, {"n_boot": -1}])
def test_bad_settings_are_refused(make_table, kw):
    with pytest.raises(SweepError) as err:
        fit_study(make_table(), **kw)
    assert err.value.exit_code == 2 and err.value.fix
