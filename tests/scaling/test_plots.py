"""The report folder: strict JSON, frontier tables, and real PNG figures."""

from __future__ import annotations

import csv
import json

import pytest
from matplotlib.image import imread

from sweep.scaling import fit_study, summary_text, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(make_table, tmp_path_factory):
    vqa = make_table(n_billions=(0.5, 1.8, 4.0, 7.0, 14.0), heldout_n=(14.0,), seed=1)
    ocr = make_table({"A": 0.3, "alpha": 0.1, "beta": 0.25, "D": 0.15}, family="ocr", seed=2)
    obs = vqa + ocr
    study = fit_study(obs, n_boot=40)
    out = tmp_path_factory.mktemp("report")
    return study, obs, out, write_report(study, obs, out)


def test_every_file_is_written(report):
    _, _, out, paths = report
    names = {p.name for p in paths}
    assert {"fit.json", "summary.md", "frontier.md", "figure1.png", "heatmap.png"} <= names
    assert {"frontier_vqa_q0.csv", "frontier_vqa_q50.csv", "frontier_ocr_q0.csv", "frontier_ocr_q50.csv"} <= names
    assert all(p.parent == out and p.stat().st_size > 0 for p in paths)


def test_json_round_trips(report):
    study, _, out, _ = report
    data = json.loads((out / "fit.json").read_text())
    assert data == json.loads(json.dumps(study.to_json()))
    assert data["vqa"]["heldout"]["mode"] == "flagged" and data["ocr"]["heldout"]["mode"] == "largest"
    assert data["ocr"]["v_star_detail"]["0"]["case"] == "cap"  # tokens matter more for OCR


@pytest.mark.parametrize(("name", "min_panels_wide"), [("figure1.png", 2), ("heatmap.png", 3)])
def test_figures_are_real_pngs(report, name, min_panels_wide):
    _, _, out, _ = report
    path = out / name
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = imread(path)
    height, width = img.shape[:2]
    assert width >= 400 * min_panels_wide and height >= 2 * 300  # a panel per Q (or per view), a row per family
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_frontier_csv_columns(report):
    _, _, out, _ = report
    with (out / "frontier_vqa_q50.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {"flops", "N_star_B", "V_star", "V_numeric", "grid_N_B", "grid_V", "extrapolated"} <= set(rows[0])
    assert all(float(r["V_star"]) == pytest.approx(float(r["V_numeric"]), rel=1e-4) for r in rows)


def test_summary_names_forms_and_checks(report):
    study, _, out, _ = report
    text = summary_text(study)
    assert text == (out / "summary.md").read_text()
    for needle in ("## vqa", "## ocr", "multiplicative", "additive", "threshold", "best-predicting form", "law in V:", "held-out check", "V* =", "CV error"):
        assert needle in text, needle


def test_report_survives_an_unidentifiable_family(make_table, tmp_path):
    obs = make_table(v=(16,), seed=3)
    paths = write_report(fit_study(obs, n_boot=10), obs, tmp_path)
    assert (tmp_path / "figure1.png").read_bytes()[:8] == PNG_MAGIC
    assert "not identifiable" in (tmp_path / "summary.md").read_text()
    assert len(paths) >= 5
