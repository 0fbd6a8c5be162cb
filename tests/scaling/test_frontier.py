"""The inference-optimal frontier: closed form, numeric search and brute force agree."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.scaling import fit_study, flops, frontier_rows, optimum_numeric, paper_error, v_star
from sweep.scaling import CostModel
from sweep.scaling.frontier import budgets
from sweep.scaling.laws import MULTIPLICATIVE, Design

V_MAX = 576.0


def test_closed_form_cases():
    corner = v_star(0.3, 0.06, 0, V_MAX)
    assert (corner.value, corner.case) == (1.0, "corner") and "V >= 1" in corner.note
    interior = v_star(0.3, 0.06, 50, V_MAX)
    assert interior.case == "interior" and interior.value == pytest.approx(0.06 * 50 / 0.24)
    tokens_win = v_star(0.1, 0.25, 50, V_MAX)
    assert (tokens_win.value, tokens_win.case, tokens_win.unconstrained) == (V_MAX, "cap", None)
    capped = v_star(0.2, 0.19, 50, V_MAX)  # beta*Q/(alpha-beta) = 950 > 576
    assert capped.case == "cap" and capped.value == V_MAX and capped.unconstrained == pytest.approx(950)
    small = v_star(0.3, 0.004, 50, V_MAX)  # 0.68 < 1: the corner again
    assert small.case == "corner" and small.value == 1.0
    assert v_star(None, 0.1, 0, V_MAX).case == "unknown"


def test_published_result_alpha_five_times_beta():
    # Visual reasoning: alpha ~ 5 beta gives V* = Q/4, about a dozen tokens at Q = 50.
    assert v_star(0.5, 0.1, 50, V_MAX).value == pytest.approx(12.5)
    assert v_star(0.5, 0.1, 0, V_MAX).value == 1.0


@pytest.mark.parametrize(
    ("alpha", "beta", "q"),
    [(0.35, 0.07, 0), (0.35, 0.07, 50), (0.35, 0.07, 300), (0.1, 0.25, 0), (0.1, 0.25, 50), (0.2, 0.19, 50), (0.6, 0.3, 10)],
)
def test_numeric_and_brute_force_agree_with_closed_form(alpha, beta, q):
    params = {"A": 0.25, "alpha": alpha, "beta": beta, "D": 0.2}
    closed = v_star(alpha, beta, q, V_MAX).value
    v_dense = np.geomspace(1.0, V_MAX, 200_001)
    for budget in (1e10, 3e11, 5e12):
        n, v, err = optimum_numeric(params, budget, q, V_MAX)
        assert v == pytest.approx(closed, rel=1e-4)
        assert flops(n, v, q) == pytest.approx(budget)
        # An independent check: the minimum over a dense grid on the budget line.
        dense = paper_error(params, budget / (2 * (q + v_dense)), v_dense)
        assert v_dense[np.argmin(dense)] == pytest.approx(closed, rel=1e-3)
        closed_err = paper_error(params, budget / (2 * (q + closed)), closed)
        assert err == pytest.approx(float(closed_err), rel=1e-9)
        assert err <= dense.min() + 1e-12


def test_frontier_rows_spend_the_budget_and_beat_the_grid():
    params = {"A": 0.25, "alpha": 0.35, "beta": 0.07, "D": 0.2}
    frame = Design(np.zeros(1), np.zeros(1), 0.0, 0.0)
    theta = MULTIPLICATIVE.from_public(params, frame)
    cost = CostModel.flops(50)
    cells = [(n * 1e9, v, float(paper_error(params, n * 1e9, v)), float(flops(n * 1e9, v, 50))) for n in (0.5, 1.8, 4, 7) for v in (1, 16, 576)]
    c = budgets([x[3] for x in cells])
    closed = v_star(0.35, 0.07, 50, V_MAX)
    rows = frontier_rows(MULTIPLICATIVE, theta, frame, cost, c, cells, V_MAX, closed)
    assert len(rows) == len(c)
    for row in rows:
        assert flops(row["N"], row["V"], 50) == pytest.approx(row["flops"])
        assert row["V_numeric"] == pytest.approx(row["V"], rel=1e-4)
        grid = row["grid"]
        assert grid is not None and grid["cost"] <= row["flops"] * (1 + 1e-9)
        assert row["error"] <= grid["fitted_error"] + 1e-12  # the continuous optimum is never worse
    assert rows[0]["extrapolated"] and not rows[len(rows) // 2]["extrapolated"]
    assert [r["grid"]["V"] for r in rows][-1] in (1, 16, 576)


def test_fitted_study_frontier_matches_its_own_closed_form(make_table):
    fam = fit_study(make_table(seed=9), n_boot=50, forms=("multiplicative",)).to_json()["vqa"]
    a, b = fam["alpha"], fam["beta"]
    assert fam["v_star"]["0"] == 1.0
    assert fam["v_star"]["50"] == pytest.approx(b * 50 / (a - b))
    for q in ("0", "50"):
        detail = fam["v_star_detail"][q]
        assert detail["numeric"] == pytest.approx(detail["v_star"], rel=1e-4)
        lo, hi = detail["ci"]
        assert lo <= detail["v_star"] <= hi
        for row in fam["frontier"][q]:
            assert row["V_numeric"] == pytest.approx(row["V"], rel=1e-4)


def test_observed_q_joins_the_frontier(make_table):
    from dataclasses import replace

    obs = [replace(o, Q=20.0) for o in make_table(seed=1)]
    fam = fit_study(obs, n_boot=0, forms=("multiplicative",)).to_json()["vqa"]
    assert set(fam["v_star"]) == {"0", "20", "50"}
