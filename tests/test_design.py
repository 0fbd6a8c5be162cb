"""Adaptive study design: the start design, costs, the criterion, the stop rule, ``suggest`` on the mini and paper grids."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import sweep_cli

from sweep.cli import load, parse_args
from sweep.design.criterion import choose, gain
from sweep.design.pool import CPU_HOURS, GPU_HOURS, Pool, budget_of, start_design
from sweep.design.propose import propose, stop_reason
from sweep.design.settings import DesignSettings, flag_overrides
from sweep.design.sources import align
from sweep.design.state import assess
from sweep.design.targets import v_star
from sweep.errors import SweepError
from sweep.scaling import Observation
from sweep.scaling.frontier import v_star as v_star_scalar

REPO = Path(__file__).resolve().parent.parent
PAPER_N = {"qwen15-0p5b": 0.5e9, "qwen15-1p8b": 1.8e9, "qwen15-4b": 4e9, "qwen15-7b": 7e9}
TRUTH = {"reasoning": (0.25, 0.30, 0.06, 0.35), "ocr": (0.45, 0.05, 0.25, 0.10)}  # A, alpha, beta, D


def rows(cells: list[tuple[str, int]], seed: int = 0, questions: float = 5000.0, truth: dict | None = None) -> list[Observation]:
    """Binomial measurements of the paper grid's cells under the paper form with ``truth`` (default TRUTH)."""
    rng = np.random.default_rng(seed)
    out = []
    for llm, v in cells:
        for family, (a, alpha, beta, d) in (truth or TRUTH).items():
            p = a * (PAPER_N[llm] / 1e9) ** -alpha * v ** -beta + d
            out.append(Observation(family, PAPER_N[llm], float(v), rng.binomial(int(questions), p) / questions,
                                   llm=llm, n_questions=questions, seed=0))
    return out


@pytest.fixture(scope="module")
def paper() -> tuple:
    cfg, plan = load(["+grid=paper"])
    return cfg, plan, Pool.build(plan, lambda _: False, DesignSettings(n_boot=200))


def test_start_design_is_corners_and_centre_cheapest_first(paper: tuple) -> None:
    cfg, plan, pool = paper
    cost = pool.cost_of
    start = start_design(pool.cells, lambda c: pool.n_plan[c.llm], lambda c: cost([c]))
    got = [(c.llm, c.visual_tokens) for c in start]
    corners = {(m, v) for m in ("qwen15-0p5b", "qwen15-7b") for v in (1, 576)}
    assert corners <= set(got) and len(got) == 5
    # The centre: the LLM nearest the middle of log N (1.8B), the V nearest the middle of log V (16 and 36
    # are equally near 24: the cheaper, 16).
    assert set(got) - corners == {("qwen15-1p8b", 16)}
    costs = [cost([c]) for c in start]
    assert costs == sorted(costs) and got[0] == ("qwen15-0p5b", 1) and got[-1] == ("qwen15-7b", 576)
    assert all(c.llm != "qwen15-14b" for c in pool.cells)  # the held-out LLM is never a candidate


def test_no_results_propose_the_start_design_within_the_budget(paper: tuple) -> None:
    cfg, plan, pool = paper
    settings = DesignSettings(budget=8.0, n_boot=200)
    p = propose(assess(pool, [], cfg.fit, settings), settings, k=5)
    assert p.phase == "start" and p.state.note == "no results yet"
    # 7B at V=576 (23 GPU-hours) does not fit in 8; the cheaper start cells do, cheapest first.
    assert [(pk.cell.llm, pk.cell.visual_tokens) for pk in p.picks] == [("qwen15-0p5b", 1), ("qwen15-1p8b", 16), ("qwen15-0p5b", 576), ("qwen15-7b", 1)]
    assert p.cost == pytest.approx(sum(pk.cost for pk in p.picks)) and p.cost <= 8.0
    assert all("start design" in pk.why for pk in p.picks)


def test_costs_come_from_the_plan_and_done_jobs_cost_nothing() -> None:
    cfg, plan = load(["grid.llm=[xs,s]", "grid.visual_tokens=[1,4]"])
    settings = DesignSettings()
    pool = Pool.build(plan, lambda _: False, settings)
    assert pool.unit == CPU_HOURS  # a CPU grid is priced in estimated CPU-hours
    features = next(j for j in plan if j.role == "features")
    train = next(j for j in plan if j.role == "train" and j.cell.llm == "s")
    steps = train.spec.stage.steps
    assert pool.job_cost[train.id] == pytest.approx((settings.cpu_overhead_s + steps * settings.cpu_step_s + train.flops / (settings.cpu_gflops * 1e9)) / 3600)
    cell = train.cell
    # The shared feature cache is counted once, in whatever batch needs it first.
    assert pool.cost_of([cell]) == pytest.approx(pool.own_cost(cell) + pool.job_cost[features.id])
    assert pool.cost_of(pool.cells) == pytest.approx(pool.total) and pool.spent == 0.0
    reused = Pool.build(plan, {features.id, train.id}.__contains__, settings)
    assert reused.cost_of([cell]) == pytest.approx(pool.own_cost(cell) - pool.job_cost[train.id])
    assert reused.spent == pytest.approx(pool.job_cost[features.id] + pool.job_cost[train.id])
    assert budget_of(DesignSettings(budget_share=0.6), pool) == pytest.approx(0.6 * pool.total)
    gpu = Pool.build(load(["+grid=paper"])[1], lambda _: False, settings)
    assert gpu.unit == GPU_HOURS and gpu.total == pytest.approx(sum(j.gpu_hours for j in gpu.plan if j.cell and not j.cell.heldout))


def test_vectorised_v_star_matches_the_fitter() -> None:
    for alpha in (0.0, 0.05, 0.3):
        for beta in (0.0, 0.05, 0.2):
            for q in (0.0, 12.0, 50.0):
                want = v_star_scalar(alpha, beta, q, 576.0).value
                assert v_star(np.array([alpha]), np.array([beta]), q, 576.0)[0] == pytest.approx(want)


def models(pool: Pool, cells: list[tuple[str, int]], target: str = "vstar", seed: int = 0, truth: dict | None = None):
    cfg = load(["+grid=paper"])[0]
    settings = DesignSettings(target=target, n_boot=200)
    return assess(pool, rows(cells, seed, truth=truth), cfg.fit, settings)


def test_the_cheaper_of_two_equally_informative_cells_goes_first(paper: tuple) -> None:
    _, _, pool = paper
    state = models(pool, [(m, v) for m in PAPER_N for v in (1, 576)] + [("qwen15-1p8b", 16)])
    assert state.models, state.note
    a, b = object(), object()  # two candidates at the same (N, V): equally informative
    point = {a: (1.8e9, 64.0, "avgpool"), b: (1.8e9, 64.0, "avgpool")}
    price = {a: 2.0, b: 1.0}
    picks = choose(state.models, [a, b], point.__getitem__, lambda cs: sum(price[c] for c in cs), 1, None, 0.0, GPU_HOURS)
    assert len(picks) == 1 and picks[0].cell is b and picks[0].gain > 0
    # Equal gain per GPU-hour is not enough either: at equal gain the cheaper cell ranks first.
    price[a] = 1.0
    first = choose(state.models, [a, b], point.__getitem__, lambda cs: sum(price[c] for c in cs), 1, None, 0.0, GPU_HOURS)[0]
    assert first.cell is a  # same gain, same cost: the first listed
    price[a] = 0.5
    assert choose(state.models, [a, b], point.__getitem__, lambda cs: sum(price[c] for c in cs), 1, None, 0.0, GPU_HOURS)[0].cell is a


def test_a_batch_values_each_cell_for_what_it_adds(paper: tuple) -> None:
    _, _, pool = paper
    state = models(pool, [(m, v) for m in ("qwen15-0p5b", "qwen15-7b") for v in (1, 576)] + [("qwen15-1p8b", 16)])
    m = state.models[0]
    before = m.widths()
    after_one = m.after(1.8e9, 144.0)
    # Measuring a cell shrinks the cloud: no target gets wider, and what one cell settles counts once.
    assert np.all(after_one.widths() <= before + 1e-9)
    again = after_one.expected_widths(1.8e9, 144.0, after_one.noise_of(1.8e9, 144.0))
    first = m.expected_widths(1.8e9, 144.0, m.noise_of(1.8e9, 144.0))
    assert gain(after_one.widths(), again, 0.0).sum() <= gain(before, first, 0.0).sum() + 1e-9


def test_a_corner_target_whose_derivative_vanishes_still_has_a_gain() -> None:
    """V*(Q=0) is 1 or v_max by the sign of alpha - beta: no derivative, but the expectation over the next value moves."""
    cfg, plan = load(["+grid=paper"])
    pool = Pool.build(plan, lambda _: False, DesignSettings(n_boot=300))
    truth = {**TRUTH, "reasoning": (0.25, 0.08, 0.07, 0.35)}  # alpha barely above beta: the sign is unsure from few cells
    state = models(pool, [("qwen15-0p5b", 1), ("qwen15-0p5b", 16), ("qwen15-1p8b", 4), ("qwen15-1p8b", 16), ("qwen15-4b", 1)], seed=3, truth=truth)
    m = next(x for x in state.models if x.family == "reasoning")
    keys = [t.key for t in m.targets]
    w = m.widths()[keys.index("V*(Q=0)")]
    assert w == pytest.approx(575.0)  # the draws split between 1 and 576
    exp = m.expected_widths(7e9, 576.0, m.noise_of(7e9, 576.0))[keys.index("V*(Q=0)")]
    assert 0.0 <= exp < w


def test_stop_rule() -> None:
    w = {"reasoning V*(Q=0)": 0.0, "reasoning V*(Q=50)": 3.0}
    assert "narrower than 4" in stop_reason(w, 4.0, spent=1.0, budget=None, cheapest_next=1.0, unit=GPU_HOURS)
    assert stop_reason(w, 2.0, spent=1.0, budget=None, cheapest_next=1.0, unit=GPU_HOURS) is None
    assert "every cell" in stop_reason(w, None, spent=1.0, budget=None, cheapest_next=None, unit=GPU_HOURS)
    assert "budget is spent" in stop_reason(w, None, spent=9.5, budget=10.0, cheapest_next=0.6, unit=GPU_HOURS)
    assert stop_reason(w, None, spent=9.5, budget=10.0, cheapest_next=0.5, unit=GPU_HOURS) is None
    assert stop_reason({}, 1.0, spent=0.0, budget=None, cheapest_next=1.0, unit=GPU_HOURS) is None  # nothing fitted yet: go on


def test_propose_stops_when_every_interval_is_narrow_enough(paper: tuple) -> None:
    _, _, pool = paper
    state = models(pool, [(m, v) for m in PAPER_N for v in (1, 16, 576)])
    wide = max(state.widths().values())
    p = propose(state, DesignSettings(until_ci=wide * 1.01 + 1e-6, n_boot=200), k=3)
    assert p.stop and "narrower than" in p.stop and not p.picks
    p = propose(state, DesignSettings(n_boot=200), k=3)
    assert p.phase == "design" and p.picks and not p.stop
    measured = {(c.llm, c.visual_tokens) for c in pool.cells if c.name in state.measured}
    assert all((pk.cell.llm, pk.cell.visual_tokens) not in measured for pk in p.picks)
    ratios = [pk.gain / pk.cost for pk in p.picks]
    assert ratios[0] == max(ratios)  # best first


def test_csv_rows_are_matched_to_the_grid_llms_in_order() -> None:
    llms = {"a": 0.308e9, "b": 1.22e9, "c": 3.17e9, "d": 6.53e9, "e": 12.6e9}
    assert align([0.5e9, 1.8e9, 4e9, 7e9], llms, "t.csv") == {0.5e9: "a", 1.8e9: "b", 4e9: "c", 7e9: "d"}
    assert align([7e9, 14e9], llms, "t.csv") == {7e9: "d", 14e9: "e"}
    with pytest.raises(SweepError, match="within a factor of 3"):
        align([0.01e9], llms, "t.csv")
    with pytest.raises(SweepError, match="llm column"):
        align([1e9, 2e9, 3e9, 4e9, 5e9, 6e9], llms, "t.csv")


def test_flags_are_design_settings() -> None:
    assert flag_overrides("3", "60%", "alpha-beta", "2.5") == ["design.k=3", "design.budget_share=0.6", "design.target=alpha-beta", "design.until_ci=2.5"]
    assert flag_overrides(None, "12", None, None) == ["design.budget=12"]
    with pytest.raises(SweepError, match="--budget"):
        flag_overrides(None, "lots%", None, None)
    args = parse_args(["run", "--adaptive", "--budget", "60%", "--until-ci=2"])
    assert (args.command, args.adaptive, args.budget, args.until_ci) == ("run", True, "60%", "2")
    with pytest.raises(SweepError, match="applies to suggest and run --adaptive"):
        parse_args(["run", "--budget", "3"])
    with pytest.raises(SweepError, match="is a flag of run"):
        parse_args(["plan", "--adaptive"])
    with pytest.raises(SweepError, match="design.budget"):
        DesignSettings.parse({"budget": 3.0, "budget_share": 0.5}, "design")


def test_suggest_cli_with_no_results_creates_nothing(tmp_path: Path) -> None:
    out = sweep_cli("suggest", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["phase"] == "start" and data["unit"] == CPU_HOURS and data["measured"] == []
    got = [(s["llm"], s["visual_tokens"]) for s in data["suggestions"]]
    assert set(got) == {("xs", 1), ("xs", 16), ("m", 1), ("m", 16), ("s", 4)}
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "outputs").exists()
    bad = sweep_cli("suggest", "--target", "vstr", cwd=tmp_path)
    assert bad.returncode == 2 and "design.target" in bad.stderr and "Did you mean vstar" in bad.stderr


def test_suggest_plans_on_the_paper_grid_from_a_csv(tmp_path: Path) -> None:
    start = [(m, v) for m in ("qwen15-0p5b", "qwen15-7b") for v in (1, 576)] + [("qwen15-1p8b", 16)]
    csv = tmp_path / "results.csv"
    csv.write_text("family,N,V,error,n_questions\n" + "".join(
        f"{o.family},{o.N / 1e9:g},{o.V:g},{o.error:.5f},{o.n_questions:g}\n" for o in rows(start)))
    pool_v = "grid.visual_tokens=[1,4,9,16,36,64,144,576]"  # 9: off the paper's values, and avgpool can make it from 24x24
    out = sweep_cli("suggest", "+grid=paper", pool_v, "--csv", str(csv), "--k", "3", "--budget", "40", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["phase"] == "design" and data["unit"] == GPU_HOURS and len(data["measured"]) == 5
    assert data["cells"] == 32 and data["budget"] == 40.0
    assert {"reasoning V*(Q=0)", "reasoning V*(Q=50)", "ocr V*(Q=0)", "ocr V*(Q=50)"} == set(data["intervals"])
    picks = data["suggestions"]
    assert 1 <= len(picks) <= 3 and all(p["cost"] > 0 and p["gain"] > 0 for p in picks)
    assert sum(p["cost"] for p in picks) <= 40.0
    assert all((p["llm"], p["visual_tokens"]) not in set(start) for p in picks)
    text = sweep_cli("suggest", "+grid=paper", "--csv", str(csv), "--k", "2", cwd=tmp_path)
    assert text.returncode == 0 and "gain per GPU-hour" in text.stdout and "reasoning V*(Q=50)" in text.stdout
    odd = sweep_cli("suggest", "+grid=paper", "grid.visual_tokens=[1,5]", "--csv", str(csv), cwd=tmp_path)
    assert odd.returncode == 2 and "grid.visual_tokens" in odd.stderr  # the pool is checked as the plan checks it
    assert not (tmp_path / "mlflow.db").exists()


def test_replicates_only_add_the_seed_share_of_the_noise(paper: tuple) -> None:
    _, _, pool = paper
    state = models(pool, [(m, v) for m in ("qwen15-0p5b", "qwen15-7b") for v in (1, 576)] + [("qwen15-1p8b", 16)])
    m = state.models[0]
    new = m.noise_of(1.8e9, 64.0)
    assert np.isfinite(new) and new > 0
    # Another seed of a measured cell shares its questions: with no seed spread known and the law
    # fitting within the binomial noise, a second seed adds (almost) nothing.
    calm = replace(m, noise=m.noise.with_inflation(1.0))
    assert calm.noise_of(0.5e9, 1.0) == np.inf or calm.noise_of(0.5e9, 1.0) > 100 * new


def test_the_design_reads_the_same_intervals_as_fit(paper: tuple) -> None:
    """With design.n_boot unset the design's cloud is `fit`'s paper-form bootstrap: the same V* intervals."""
    cfg, plan, pool = paper
    obs = rows([(m, v) for m in PAPER_N for v in (1, 36, 576)])
    state = assess(pool, obs, cfg.fit, DesignSettings())
    from sweep.scaling import fit_study

    study = fit_study(obs, cfg.fit)
    for family, fam in study.families.items():
        for q, (_, ci) in fam.paper_v_star.items():
            _, lo, hi = state.intervals()[f"{family} V*(Q={q:g})"]
            assert (lo, hi) == pytest.approx(ci)


@pytest.mark.parametrize("target, unit", [("alpha-beta", ""), ("frontier", "error")])
def test_other_targets(paper: tuple, target: str, unit: str) -> None:
    cfg, plan, pool = paper
    settings = DesignSettings(target=target, n_boot=200)
    state = assess(pool, rows([(m, v) for m in ("qwen15-0p5b", "qwen15-7b") for v in (1, 576)] + [("qwen15-1p8b", 16)]), cfg.fit, settings)
    keys = list(state.intervals())
    if target == "alpha-beta":
        assert keys == ["reasoning alpha-beta", "ocr alpha-beta"]
        value, lo, hi = state.intervals()["reasoning alpha-beta"]
        assert lo <= value <= hi and value == pytest.approx(TRUTH["reasoning"][1] - TRUTH["reasoning"][2], abs=0.1)
    else:
        assert len(keys) == 2 * 2 * 2  # families x Q x the two default budgets
        assert all(0.0 <= v <= 1.0 for v, _, _ in state.intervals().values())
    assert set(state.units().values()) == {unit}
    p = propose(state, settings, 2)
    assert p.phase == "design" and p.picks and all(pk.gain > 0 for pk in p.picks)


def test_a_start_cell_the_budget_cannot_pay_for_does_not_stall_the_design(paper: tuple) -> None:
    cfg, plan, pool = paper
    cheap_start = [("qwen15-0p5b", 1), ("qwen15-1p8b", 16), ("qwen15-0p5b", 576), ("qwen15-7b", 1)]
    settings = DesignSettings(budget=10.0, n_boot=200)  # the 7B, V=576 corner costs 23 GPU-hours
    state = assess(pool, rows(cheap_start), cfg.fit, settings)
    p = propose(state, settings, 3)
    assert p.phase == "design" and p.picks and p.cost <= 10.0
    assert all((pk.cell.llm, pk.cell.visual_tokens) != ("qwen15-7b", 576) for pk in p.picks)
