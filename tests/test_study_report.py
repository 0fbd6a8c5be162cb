"""The study report page and the headline in MLflow, from a real fit of a mini plan's eval records.

The eval jobs' done records are written as the runner writes them (errors drawn from the
paper's law); the fit, its files and the MLflow store are real. The page is checked as
HTML here and in headless Chromium by tests/test_watching.py.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest


def test_markdown_of_the_fitter_becomes_html() -> None:
    from sweep.study_report import markdown_html

    html = markdown_html("## ocr: 4 points\n| form | alpha |\n|---|---|\n| paper | 0.3 [0.1, 0.5] |\n\n"
                         "better form: **paper** (`AICc`).\n- Q = 0: V* = 1\n- warning: beta <b>sits</b> on a bound\n")
    assert "<h3>ocr: 4 points</h3>" in html
    assert "<thead><tr><th>form</th><th>alpha</th></tr></thead><tbody><tr><td>paper</td><td>0.3 [0.1, 0.5]</td></tr>" in html
    assert "<strong>paper</strong>" in html and "<code>AICc</code>" in html
    assert '<li class="warn">warning: beta &lt;b&gt;sits&lt;/b&gt; on a bound</li>' in html  # escaped, flagged
    assert "<li>Q = 0: V* = 1</li>" in html


@pytest.fixture
def fitted(tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch):
    """A mini plan whose 9 eval jobs are done, fitted, with its experiment and parent run in MLflow."""
    from sweep.cli import load
    from sweep.scaling import Observation, fit_study, write_report
    from sweep.store import Store
    from sweep.tracking import Tracker

    monkeypatch.setenv("SWEEP_ROOT", str(tmp_path / "out"))
    overrides = [f"tracking.uri={mlflow_uri}", "sweep.name=report-test"]
    cfg, plan = load(overrides)
    store = Store(cfg.sweep.root)
    obs = []
    for job in plan:
        if job.role != "eval":
            store.mark_done(job.id, {"job/seconds": 12.0})
            continue
        n = {"xs": 2.0e4, "sm": 4.7e4, "s": 8.3e4, "m": 3.3e5}[job.cell.llm]
        errors = {f: 0.1 + 0.5 * (n / 1e4) ** -a * job.cell.visual_tokens ** -b for f, a, b in (("reasoning", 0.5, 0.1), ("ocr", 0.1, 0.5))}
        store.mark_done(job.id, {"job/seconds": 2.0, **{f"error/{f}": e for f, e in errors.items()}})
        obs += [Observation(family=f, N=n, V=float(job.cell.visual_tokens), error=e, Q=10.0, llm=job.cell.llm) for f, e in errors.items()]
    study = fit_study(obs, n_boot=20, seed=0)
    write_report(study, obs, store.root / "sweeps" / plan.name / "fit")
    tracker = Tracker(mlflow_uri)
    exp = tracker.experiment(plan.name)
    parent = tracker.parent_run(exp, plan.name, {})
    return cfg, plan, study, overrides, tracker, exp, parent


def test_report_page_holds_the_study_and_goes_to_mlflow(fitted) -> None:
    from sweep.study_report import publish
    from sweep.tracking import NOTE

    cfg, plan, study, overrides, tracker, exp, parent = fitted
    path = publish(cfg, plan, study, overrides)
    assert path == Path(cfg.sweep.root).resolve() / "sweeps" / "report-test" / "report.html"
    page = path.read_text()
    for section in ("Headline", "The plan", "Budget", "Errors per family", "Fit", "Figures", "Frontier", "Warnings", "Commands"):
        assert f"<h2>{section}</h2>" in page, section
    assert page.count("<tr><td>") >= 19 + 9  # every job of the plan, every cell of the error tables
    assert "python -m sweep tracking.uri=" in page and "python -m sweep fit " in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 2  # Figure 1 and the heat map, inside the page
    assert all(base64.b64decode(b).startswith(b"\x89PNG") for b in images)
    assert "http" not in page.replace("http://127.0.0.1", "")  # nothing fetched from elsewhere
    fam = study.families["reasoning"]
    alpha = fam.paper.params["alpha"]
    assert f"{alpha:.3g}" in page

    note = tracker.client.get_experiment(exp).tags[NOTE]
    assert "**Headline**" in note and f"{alpha:.3g}" in note and "reasoning" in note and "ocr" in note
    assert "grid: LLM ['xs', 'sm', 's', 'm'] x V [1, 4, 16]" in note
    assert tracker.client.get_run(parent).data.tags[NOTE] == note
    assert "report.html" in {a.path for a in tracker.client.list_artifacts(parent)}


def test_report_without_a_fit_says_why(fitted) -> None:
    from sweep.study_report import publish

    cfg, plan, _, overrides, tracker, exp, _ = fitted
    path = publish(cfg, plan, None, overrides, note="fit skipped: too few cells")
    page = path.read_text()
    assert "fit skipped: too few cells" in page and "<h2>Headline</h2>" not in page
    assert "<h2>Figures</h2>" not in page  # the folder holds a fit, but not of this call: not shown
    assert "Not fitted yet" in tracker.client.get_experiment(exp).tags["mlflow.note.content"]
