"""Write a fitted study to a folder, and say it in words.

::

    paths = write_report(study, observations, "runs/fit")
    print(summary_text(study))

Files written (family names made file-safe):

- ``fit.json``: ``study.to_json()``, strict JSON (see ``tojson``);
- ``summary.md``: :func:`summary_text`;
- ``frontier.md``: one markdown table per family and cost (FLOPs at each Q, latency);
- ``frontier_<family>_q<Q>.csv`` and ``frontier_<family>_latency.csv``: the same rows, flat;
- ``figure1.png``, ``heatmap.png`` and, where latency was measured, ``latency.png``: see ``plots``.

matplotlib is imported only here (through ``plots``), so fitting alone never
pays for it.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path

from sweep.scaling.laws import BILLION
from sweep.scaling.study import FamilyFit, FormFit, Frontier, StudyFit
from sweep.scaling.table import Observation

_COLUMNS = ("N_star_B", "V_star", "error_star", "N_numeric_B", "V_numeric", "error_numeric", "grid_N_B", "grid_V", "grid_fitted_error", "grid_observed_error", "extrapolated", "form")
_PARAMS = ("alpha", "beta", "gamma", "V_t", "A", "B", "D")


def write_report(fit: StudyFit, observations: Sequence[Observation], outdir: str | Path) -> list[Path]:
    """Everything about ``fit`` into ``outdir`` (created); returns the files written."""
    from sweep.scaling import plots

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "fit.json", out / "summary.md", out / "frontier.md"]
    paths[0].write_text(json.dumps(fit.to_json(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    paths[1].write_text(summary_text(fit), encoding="utf-8")
    md = []
    for fam in fit.families.values():
        named = [(f"q{q:g}", f"{fam.family}, FLOPs 2N(Q+V) at Q = {q:g}", f) for q, f in fam.frontiers.items()]
        if fam.latency is not None:
            named.append(("latency", f"{fam.family}, measured prefill latency (ms)", fam.latency))
        for suffix, title, frontier in named:
            flat = [_flat_row(r, frontier) for r in frontier.rows]
            if not flat:
                continue
            md.append(_markdown_table(title, flat, frontier.unit))
            path = out / f"frontier_{_safe(fam.family)}_{suffix}.csv"
            with path.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=("flops" if frontier.cost == "flops" else "latency_ms", *_COLUMNS))
                writer.writeheader()
                writer.writerows(flat)
            paths.append(path)
    paths[2].write_text("\n".join(md) or "No frontier: the law's exponents are not identifiable.\n", encoding="utf-8")
    paths.append(plots.figure1(fit, observations, out / "figure1.png"))
    paths.append(plots.heatmap(fit, observations, out / "heatmap.png"))
    if any(f.latency is not None for f in fit.families.values()):
        paths.append(plots.latency(fit, observations, out / "latency.png"))
    return paths


def summary_text(fit: StudyFit) -> str:
    """A short human-readable account of every family's fit (markdown)."""
    lines = []
    for fam in fit.families.values():
        lines += _family_lines(fam)
    return "\n".join(lines)


def _family_lines(fam: FamilyFit) -> list[str]:
    s, r = fam.settings, fam.resolved
    sizes = ", ".join(f"{n / BILLION:.3g}B" for n in fam.n_values)
    tokens = ", ".join(f"{v:g}" for v in fam.v_values)
    seeds = f" ({fam.n_observations} results, seeds averaged per cell)" if fam.n_observations > fam.n_points else ""
    deltas = ", ".join(f"{k} {v:.3g}" for k, v in r["huber_delta"].items() if v is not None)
    loss = f"huber (delta {deltas}, in {s.space} units)" if s.loss == "huber" else "least squares"
    lines = [
        f"## {fam.family}: {fam.n_points} cells{seeds}, N = {sizes}, V = {tokens}",
        f"{loss} on {s.space} residuals; cell weights {r['weights']}; {s.n_boot} bootstrap resamples of "
        f"{'seeds and questions (the cells’ noise)' if r['resample'] == 'noise' else 'whole cells'}, "
        f"{100 * s.ci_level:g}% percentile intervals; A refers to N in billions.",
        "",
        "| form | " + " | ".join(_PARAMS) + " | R^2 | RMSE | chi2/dof | CV error (shared folds) |",
        "|---" * (len(_PARAMS) + 5) + "|",
    ]
    lines += [_form_row(f, fam.choice.scores.get(name)) for name, f in fam.forms.items()]
    lines += ["", f"best-predicting form: **{fam.best_form}** ({fam.best_reason}).", f"law in V: {fam.verdict}"]
    a_b, a_b_ci = fam.alpha_minus_beta
    if a_b is not None:
        lines.append(f"- paper form alpha - beta = {a_b:.3g}" + (f" [{a_b_ci[0]:.3g}, {a_b_ci[1]:.3g}]" if a_b_ci else ""))
    for q, f in sorted(fam.frontiers.items()):
        lines.append(f"- FLOPs at Q = {q:g}: {_vstar_text(f)}" + _paper_text(fam, q, f))
    if fam.latency is not None and fam.latency_model is not None:
        m = fam.latency_model
        r2 = f"R^2 {m.r2:.3f}, " if m.r2 is not None else ""
        lines.append(f"- measured latency (ms = {m.coef[0]:.3g} + {m.coef[1]:.3g} N_B + {m.coef[2]:.3g} V + {m.coef[3]:.3g} N_B V; {r2}worst cell off by {100 * m.max_rel_error:.0f}%): {_vstar_text(fam.latency)}")
    h = fam.heldout
    if h is not None:
        what = "flagged held-out cells" if h.mode == "flagged" else f"fit without N = {', '.join(f'{n / BILLION:.3g}B' for n in h.n_values)}"
        others = "; ".join(f"{k} {v:.4f}" for k, v in h.by_form.items() if k != "multiplicative")
        cover = f"; {100 * h.coverage:.0f}% of its cells inside their {100 * s.ci_level:g}% prediction intervals ({h.interval_form})" if h.coverage is not None else ""
        lines.append(
            f"- held-out check ({what}): paper form mean |error| {h.mae:.4f}, max {h.max_abs_error:.4f}, mean relative {100 * h.mean_rel_error:.1f}%"
            + (f"; {others}" if others else "")
            + cover
        )
    lines += [f"- warning: {w}" for w in fam.warnings]
    lines.append("")
    return lines


def _vstar_text(f: Frontier) -> str:
    vs = f.v_star
    if vs.value is None:
        return f"V* unknown ({vs.note})"
    ci = f" [{f.ci[0]:.3g}, {f.ci[1]:.3g}]" if f.ci else ""
    moves = ""
    if not f.budget_free and f.v_range is not None and f.v_range[1] > f.v_range[0] * (1 + 1e-6):
        moves = f", {f.v_range[0]:.3g} to {f.v_range[1]:.3g} over the measured budgets"
    return f"V* = {vs.value:.3g}{ci}{moves} ({f.form}, {vs.case}: {vs.note})"


def _paper_text(fam: FamilyFit, q: float, f: Frontier) -> str:
    paper, ci = fam.paper_v_star.get(q, (None, None))
    if f.form == "multiplicative" or paper is None or paper.value is None:
        return ""
    return f"; the paper form's closed form says {paper.value:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")


def _form_row(form: FormFit, cv_score: float | None) -> str:
    cells = []
    for name in _PARAMS:
        if name not in form.params:
            cells.append("")
            continue
        val, ci = form.params[name], form.ci.get(name)
        cells.append("n/a" if val is None else f"{val:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""))
    q = form.quality
    r2 = "" if q["r2"] is None else f"{q['r2']:.4f}"
    chi2 = "" if q.get("chi2_red") is None else f"{q['chi2_red']:.2g}"
    cv = "" if cv_score is None else f"{cv_score:.4f}"
    return f"| {form.form} | " + " | ".join(cells) + f" | {r2} | {q['rmse']:.4f} | {chi2} | {cv} |"


def _flat_row(r: dict, frontier: Frontier) -> dict:
    g = r.get("grid") or {}

    def b(x: float | None) -> float | None:
        return None if x is None else x / BILLION

    return {
        "flops" if frontier.cost == "flops" else "latency_ms": r["cost"],
        "N_star_B": b(r["N"]),
        "V_star": r["V"],
        "error_star": r["error"],
        "N_numeric_B": b(r["N_numeric"]),
        "V_numeric": r["V_numeric"],
        "error_numeric": r["error_numeric"],
        "grid_N_B": b(g.get("N")),
        "grid_V": g.get("V"),
        "grid_fitted_error": g.get("fitted_error"),
        "grid_observed_error": g.get("observed_error"),
        "extrapolated": r["extrapolated"],
        "form": frontier.form,
    }


def _markdown_table(title: str, rows: list[dict], unit: str) -> str:
    def fmt(x: float | None, spec: str = ".4g") -> str:
        return "" if x is None else format(x, spec)

    budget = "flops" if "flops" in rows[0] else "latency_ms"
    head = f"| {unit} | N* (B) | V* | error* | V (numeric) | best cell in budget (N B, V) | its fitted / observed error |"
    out = [f"### {title} ({rows[0]['form']} form)", "", head, "|---" * 7 + "|"]
    if any(r["extrapolated"] for r in rows):
        out.insert(1, "N* marked † lies outside the LLM sizes measured: the law is extrapolated there.")
    for r in rows:
        cell = f"{fmt(r['grid_N_B'], '.3g')}, {fmt(r['grid_V'], 'g')}" if r["grid_V"] is not None else "none fits"
        errs = f"{fmt(r['grid_fitted_error'])} / {fmt(r['grid_observed_error'])}" if r["grid_V"] is not None else ""
        dagger = " †" if r["extrapolated"] else ""
        cols = (f"{r[budget]:.3g}", fmt(r["N_star_B"], ".3g") + dagger, fmt(r["V_star"], ".3g"), fmt(r["error_star"]), fmt(r["V_numeric"], ".3g"), cell, errs)
        out.append("| " + " | ".join(cols) + " |")
    out.append("")
    return "\n".join(out)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "family"
