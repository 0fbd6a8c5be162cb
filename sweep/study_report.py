"""The study report (one self-contained HTML page per sweep) and the study's descriptions in MLflow.

    path = publish(cfg, plan, study, overrides)    # after `fit`: report.html + MLflow notes + artifact

``outputs/sweeps/<name>/report.html`` holds, in one file that opens anywhere (styles
inline, figures embedded as data URIs): the headline (alpha, beta and V* per family
with intervals), the plan, the budget ledger, the error tables per family, the fit
tables with intervals, Figure 1, the heat maps, the frontier, the warnings and the
commands that made them. The fit's own files (``fit/summary.md``, ``fit/frontier.md``,
the PNGs) are its source, so the page shows whatever the fitter wrote. It is also an
artifact of the sweep's parent run, and the experiment's and parent run's
descriptions (MLflow's note) gain the headline.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sweep.errors import SweepError

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#1d1d1f}
h1{font-size:1.6em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1em} th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee;margin:.4em 0} code,pre{background:#f5f5f7;padding:1px 4px;border-radius:3px}
pre{padding:.6em;overflow-x:auto} .warn{color:#9a3412} .muted{color:#666}
"""


# ---- the headline ------------------------------------------------------------------------
def headline(study: Any) -> list[dict[str, Any]]:
    """Per family: alpha, beta (the paper's form) and V* per Q (the FLOPs frontier of the form the fit chose),
    each with its interval (None where unknown)."""
    rows = []
    for fam in study.families.values():
        p = fam.paper
        rows.append({
            "family": fam.family, "form": fam.best_form,
            "alpha": p.params.get("alpha"), "alpha_ci": p.ci.get("alpha"),
            "beta": p.params.get("beta"), "beta_ci": p.ci.get("beta"),
            "v_star": {q: (f.v_star.value, f.ci) for q, f in sorted(fam.frontiers.items())},
        })
    return rows


def _num(value: float | None, ci: Sequence[float] | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")


def headline_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    qs = sorted({q for r in rows for q in r["v_star"]})
    lines = ["| family | alpha | beta | " + " | ".join(f"V* at Q={q:g}" for q in qs) + " | V* from |", "|---" * (4 + len(qs)) + "|"]
    for r in rows:
        vs = [_num(*r["v_star"].get(q, (None, None))) for q in qs]
        lines.append(f"| {r['family']} | {_num(r['alpha'], r['alpha_ci'])} | {_num(r['beta'], r['beta_ci'])} | "
                     + " | ".join(vs) + f" | {r['form']} form |")
    return "\n".join(lines)


def title_markdown(plan: Any) -> str:
    return (f"**Scaling-law sweep `{plan.name}`**: LLM size x visual tokens x compressor, fitted to "
            "`Y(N, V) = A N^-alpha V^-beta + D` per benchmark family.")


def grid_markdown(cfg: Any, plan: Any) -> str:
    """Bullets: the grid, the families, the plan's size and cost."""
    g = cfg.grid
    roles: dict[str, int] = {}
    for job in plan:
        roles[job.role] = roles.get(job.role, 0) + 1
    gpu_h = sum(j.gpu_hours for j in plan)
    return "\n".join([
        f"- grid: LLM {list(g.llm)} x V {list(g.visual_tokens)} x compressor {list(g.compressor)} x seeds {list(g.seeds)}"
        + (f"; held out of the fit: {list(g.heldout_llm)}" if g.heldout_llm else ""),
        f"- families: {families_text(cfg)}",
        f"- plan: {len(plan.cells)} cells, {len(plan)} jobs ({', '.join(f'{n} {r}' for r, n in roles.items())})"
        + (f", estimated {gpu_h:,.1f} GPU-hours" if gpu_h else ""),
    ])


def study_note(cfg: Any, plan: Any, rows: Sequence[Mapping[str, Any]] | None = None, report: Path | None = None) -> str:
    """The experiment's and parent run's description (markdown): the grid, the families, and the headline once fitted."""
    lines = [title_markdown(plan), "", grid_markdown(cfg, plan)]
    if report is not None:
        lines.append(f"- report: `{report}` (also an artifact of the parent run)")
    if rows:
        lines += ["", "**Headline** (bootstrap intervals; alpha and beta of the paper's form; V* is the compute-optimal "
                  "token count at Q text tokens, from the form the fit chose):", "",
                  headline_markdown(rows)]
    else:
        lines += ["", "_Not fitted yet: `python -m sweep fit` adds the headline._"]
    return "\n".join(lines)


def families_text(cfg: Any) -> str:
    families = getattr(cfg.eval, "families", None)
    if families is None:
        from sweep.data.synthetic import FAMILIES as families  # the mini study's question types
    return "; ".join(f"{name} ({', '.join(members)})" for name, members in families.items())


# ---- markdown (what the fitter writes) to HTML ---------------------------------------------
def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def markdown_html(text: str) -> str:
    """The subset of markdown the fitter's reports use: headings, tables, bullet lists, paragraphs, bold, code."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            body = [r for r in block[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append(table_html(block[0], body, raw=False))
            continue
        if line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                item = lines[i][2:]
                cls = ' class="warn"' if item.startswith("warning:") else ""
                items.append(f"<li{cls}>{_inline(item)}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)", line)
        if heading:
            level = min(6, len(heading.group(1)) + 1)  # the page's own h2 sections sit above
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line:
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def table_html(header: Sequence[Any], rows: Iterable[Sequence[Any]], raw: bool = False) -> str:
    def cell(tag: str, value: Any) -> str:
        text = str(value) if raw else _inline(str(value))
        num = ' class="num"' if tag == "td" and re.fullmatch(r"[-+]?[\d.,]+(e[-+]?\d+)?%?", str(value)) else ""
        return f"<{tag}{num}>{text}</{tag}>"

    head = "".join(cell("th", h) for h in header)
    body = "".join("<tr>" + "".join(cell("td", v) for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image_html(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption class="muted">{html.escape(path.name)}</figcaption></figure>'


# ---- the page ------------------------------------------------------------------------------
def commands(overrides: Sequence[str]) -> list[str]:
    """The commands that made this study and its report, with the overrides as given."""
    args = "".join(f" {shlex.quote(o)}" for o in overrides)
    return [f"python -m sweep{args}", f"python -m sweep fit{args}", f"python -m sweep status{args}", "make mlflow-ui"]


def render(cfg: Any, plan: Any, store: Any, fit_dir: Path, rows: Sequence[Mapping[str, Any]] | None,
           overrides: Sequence[str], note: str | None = None, commit: str = "unknown") -> str:
    """The whole page as one HTML string."""
    from sweep.display import error_grids, plan_rows
    from sweep.ledger import ledger
    from sweep.progress import format_seconds

    name = html.escape(plan.name)
    parts = [f"<h1>Study report: sweep <code>{name}</code></h1>",
             f"<p class=muted>written {dt.datetime.now().isoformat(timespec='seconds')}, git commit {html.escape(commit)}, "
             f"job store {html.escape(str(store.root))}</p>", markdown_html(title_markdown(plan))]
    if note:
        parts.append(f'<p class="warn">{html.escape(note)}</p>')
    if rows:
        parts += ["<h2>Headline</h2>", markdown_html(headline_markdown(rows))]

    jobs = plan_rows(plan, store)
    parts.append("<h2>The plan</h2>")
    parts.append(markdown_html(grid_markdown(cfg, plan)))
    parts.append(table_html(("job", "kind", "cell", "status", "resources", "est. GPU-h", "run time"), [
        (r["id"], r["kind"] + (f":{r['stage']}" if r["stage"] and r["stage"] != r["kind"] else ""),
         "-" if not r.get("llm") else f"{r['llm']} V={r['visual_tokens']} {r['compressor']} s{r['seed']}",
         r["status"], r["resource_class"], f"{r['gpu_hours']:.2f}" if r["resources"].get("gpus") else "-",
         format_seconds((store.result(r["id"]) or {}).get("metrics", {}).get("job/seconds")) if r["status"] == "done" else "-")
        for r in jobs]))

    parts.append("<h2>Budget</h2>")
    parts.append(table_html(("class", "GPUs/job", "done", "est. GPU-h", "spent GPU-h", "to run GPU-h", "estimate error", "run time (h)"), [
        (e.resource_class, e.gpus, f"{e.done}/{e.jobs}", f"{e.estimated:.2f}", f"{e.spent:.2f}", f"{e.to_run:.2f}",
         "-" if e.error is None else f"{100 * e.error:+.0f}%", f"{e.hours:.2f}") for e in ledger(plan, store)]))

    parts.append("<h2>Errors per family</h2>")
    grids = error_grids(plan, store)
    if not grids:
        parts.append("<p>No eval job has finished yet.</p>")
    for grid in grids:
        parts.append(f"<h3>{html.escape(grid.family)}, {html.escape(grid.fixed)} (1 - accuracy, {grid.summary})</h3>")
        parts.append(table_html(grid.header(), grid.body()))

    # Without this plan's fit, the folder may hold an older fit of another grid: it is not shown.
    summary, frontier = (_read(fit_dir / "summary.md"), _read(fit_dir / "frontier.md")) if rows else ("", "")
    parts.append("<h2>Fit</h2>")
    parts.append(markdown_html(summary) if summary else f"<p>No fit: {html.escape(note or 'not fitted yet')}.</p>")
    pngs = sorted(fit_dir.glob("*.png"), key=lambda p: (p.name != "figure1.png", p.name)) if rows else []
    if pngs:
        parts.append("<h2>Figures</h2>")
        parts += [image_html(p, p.stem) for p in pngs]
    if frontier:
        parts += ["<h2>Frontier</h2>", markdown_html(frontier)]

    warnings = [line[len("- warning: "):] for line in summary.splitlines() if line.startswith("- warning: ")]
    warnings += [f"job {r['id']} {r['status']}: {r['error'] or ''}" for r in jobs if r["status"] in ("failed before",)]
    parts.append("<h2>Warnings</h2>")
    parts.append("<ul>" + "".join(f'<li class="warn">{_inline(w)}</li>' for w in warnings) + "</ul>" if warnings else "<p>None.</p>")

    parts.append("<h2>Commands</h2>")
    parts.append("<pre>" + html.escape("\n".join(commands(overrides))) + "</pre>")
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>sweep {name}: study report</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def publish(cfg: Any, plan: Any, study: Any | None, overrides: Sequence[str], note: str | None = None) -> Path:
    """Write ``<sweep.root>/sweeps/<name>/report.html``, attach it to the parent run, update the descriptions."""
    from sweep.store import Store
    from sweep.tracking import NOTE, Tracker, git_commit, source_tags

    store = Store(cfg.sweep.root, lease_s=cfg.sweep.lease_s)
    folder = store.root / "sweeps" / plan.name
    folder.mkdir(parents=True, exist_ok=True)
    rows = headline(study) if study is not None else None
    path = folder / "report.html"
    path.write_text(render(cfg, plan, store, folder / "fit", rows, overrides, note, git_commit()), encoding="utf-8")

    tracker = Tracker(cfg.tracking.uri)
    exp = tracker.find_experiment(plan.name)
    if exp is None:
        raise SweepError("sweep.name", f"MLflow at {tracker.uri} has no experiment {plan.name!r}", "run the sweep first")
    text = study_note(cfg, plan, rows, path)
    tracker.describe_experiment(exp, text)
    parent = tracker._find(exp, sweep_role="parent")
    if parent is not None:
        tracker.set_tags(parent.info.run_id, {NOTE: text})
        tracker.log_artifact(parent.info.run_id, path)
    fit = tracker._find(exp, sweep_role="fit")
    if fit is not None:  # the Source column of the fit run, as for the job runs
        tracker.set_tags(fit.info.run_id, source_tags("python -m sweep fit", git_commit()))
    return path
