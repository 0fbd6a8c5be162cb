"""Write a fitted study to a folder, and say it in words.

::

    paths = write_report(study, observations, "runs/fit")
    print(summary_text(study))

Files written (family names made file-safe):

- ``fit.json``: ``study.to_json()``, strict JSON (see ``tojson``);
- ``summary.md``: :func:`summary_text`;
- ``frontier.md``: one markdown table per family and Q;
- ``frontier_<family>_q<Q>.csv``: the same rows, flat;
- ``figure1.png`` and ``heatmap.png``: see ``plots``.

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
from sweep.scaling.study import FormFit, StudyFit
from sweep.scaling.table import Observation

_FRONTIER_COLUMNS = (
    "flops",
    "N_star_B",
    "V_star",
    "error_star",
    "N_numeric_B",
    "V_numeric",
    "error_numeric",
    "grid_N_B",
    "grid_V",
    "grid_fitted_error",
    "grid_observed_error",
    "extrapolated",
)


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
        for q, rows in fam.frontier.items():
            flat = [_flat_row(r) for r in rows]
            md.append(_markdown_table(f"{fam.family}, Q = {q:g}", flat))
            path = out / f"frontier_{_safe(fam.family)}_q{q:g}.csv"
            with path.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=_FRONTIER_COLUMNS)
                writer.writeheader()
                writer.writerows(flat)
            paths.append(path)
    paths[2].write_text("\n".join(md) or "No frontier: the law's exponents are not identifiable.\n", encoding="utf-8")
    paths.append(plots.figure1(fit, observations, out / "figure1.png"))
    paths.append(plots.heatmap(fit, observations, out / "heatmap.png"))
    return paths


def summary_text(fit: StudyFit) -> str:
    """A short human-readable account of every family's fit (markdown)."""
    lines = []
    for fam in fit.families.values():
        sizes = ", ".join(f"{n / BILLION:.3g}B" for n in fam.n_values)
        tokens = ", ".join(f"{v:g}" for v in fam.v_values)
        lines.append(f"## {fam.family}: {fam.n_points} points, N = {sizes}, V = {tokens}")
        delta = f" (delta {fam.huber_delta:.3g})" if fam.huber_delta else ""
        lines.append(f"loss {fam.loss}{delta}, {fam.n_boot} bootstrap resamples of cells, 95% percentile intervals; A refers to N in billions.")
        lines.append("")
        lines.append("| form | " + " | ".join(("alpha", "beta", "A", "B", "D")) + " | R^2 | RMSE | AICc |")
        lines.append("|---" * 9 + "|")
        for form in (fam.paper, fam.additive):
            if form is not None:
                lines.append(_form_row(form))
        lines.append("")
        lines.append(f"better form: **{fam.better_form}** ({fam.better_reason}).")
        for q, vs in sorted(fam.v_star.items()):
            ci = fam.v_star_ci.get(q)
            shown = "unknown" if vs.value is None else f"{vs.value:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")
            lines.append(f"- Q = {q:g}: V* = {shown} ({vs.case}: {vs.note})")
        h = fam.heldout
        if h is not None:
            what = "flagged held-out cells" if h.mode == "flagged" else f"fit without N = {', '.join(f'{n / BILLION:.3g}B' for n in h.n_values)}"
            extra = f"; additive form {h.additive_mae:.4f}" if h.additive_mae is not None else ""
            lines.append(f"- held-out check ({what}): mean |error| {h.mae:.4f}, max {h.max_abs_error:.4f}, mean relative {100 * h.mean_rel_error:.1f}%{extra}")
        for w in fam.warnings:
            lines.append(f"- warning: {w}")
        lines.append("")
    return "\n".join(lines)


def _form_row(form: FormFit) -> str:
    cells = []
    for name in ("alpha", "beta", "A", "B", "D"):
        if name not in form.params:
            cells.append("")
            continue
        val, ci = form.params[name], form.ci.get(name)
        cells.append("n/a" if val is None else f"{val:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""))
    q = form.quality
    aicc = q["aicc"] if q["aicc"] is not None else q["aic"]
    r2 = "" if q["r2"] is None else f"{q['r2']:.4f}"
    return f"| {form.form} | " + " | ".join(cells) + f" | {r2} | {q['rmse']:.4f} | {aicc:.1f} |"


def _flat_row(r: dict) -> dict:
    g = r.get("grid") or {}

    def b(x: float | None) -> float | None:
        return None if x is None else x / BILLION

    return {
        "flops": r["flops"],
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
    }


def _markdown_table(title: str, rows: list[dict]) -> str:
    def fmt(x: float | None, spec: str = ".4g") -> str:
        return "" if x is None else format(x, spec)

    out = [f"### {title}", "", "| FLOPs | N* (B) | V* | error* | V (numeric) | best cell in budget (N B, V) | its fitted / observed error |", "|---" * 7 + "|"]
    if any(r["extrapolated"] for r in rows):
        out.insert(1, "N* marked † lies outside the LLM sizes measured: the law is extrapolated there.")
    for r in rows:
        cell = f"{fmt(r['grid_N_B'], '.3g')}, {fmt(r['grid_V'], 'g')}" if r["grid_V"] is not None else "none fits"
        errs = f"{fmt(r['grid_fitted_error'])} / {fmt(r['grid_observed_error'])}" if r["grid_V"] is not None else ""
        dagger = " †" if r["extrapolated"] else ""
        cols = (f"{r['flops']:.3g}", fmt(r["N_star_B"], ".3g") + dagger, fmt(r["V_star"], ".3g"), fmt(r["error_star"]), fmt(r["V_numeric"], ".3g"), cell, errs)
        out.append("| " + " | ".join(cols) + " |")
    out.append("")
    return "\n".join(out)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "family"
