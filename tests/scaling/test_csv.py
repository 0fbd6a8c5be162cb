"""CSV input: units, optional columns, and every bad input named with its row, column and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.errors import SweepError
from sweep.scaling import Observation, fit_study, load_csv, read_csv, validate

HEADER = "family,N,V,error"


def write(tmp_path: Path, lines: list[str], name: str = "r.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def grid_rows(n_values=(0.5, 1.8, 4, 7), v_values=(1, 16, 144), family="vqa") -> list[str]:
    return [f"{family},{n},{v},{0.2 + 0.2 * n**-0.3 * v**-0.05:.5f}" for n in n_values for v in v_values]


def refused(path: Path, **kw) -> SweepError:
    with pytest.raises(SweepError) as err:
        read_csv(path, **kw)
    assert err.value.exit_code == 2 and err.value.fix
    return err.value


def test_billions_are_detected_and_converted(tmp_path):
    table = load_csv(write(tmp_path, [HEADER, *grid_rows()]))
    assert table.n_unit == "billions" and "billions" in table.note
    assert sorted({o.N for o in table.observations}) == [0.5e9, 1.8e9, 4e9, 7e9]


def test_parameter_counts_pass_through(tmp_path):
    rows = [f"vqa,{n * 1e9:.0f},{v},0.3" for n in (0.5, 1.8, 4, 7) for v in (1, 16)]
    assert load_csv(write(tmp_path, [HEADER, *rows])).n_unit == "params"
    assert {o.N for o in read_csv(write(tmp_path, [HEADER, *rows]), n_unit="params")} == {5e8, 1.8e9, 4e9, 7e9}


def test_explicit_unit_wins(tmp_path):
    rows = [f"vqa,{n},{v},0.3" for n in (2e4, 5e4, 1e5, 3e5) for v in (1, 16)]  # tiny CPU models
    obs = read_csv(write(tmp_path, [HEADER, *rows]), n_unit="params")
    assert min(o.N for o in obs) == 2e4


def test_optional_columns(tmp_path):
    rows = [r + ",50,qwen,false" for r in grid_rows()] + ["vqa,14,1,0.3,50,qwen-14b,true"]
    obs = read_csv(write(tmp_path, [HEADER + ",Q,llm,heldout", *rows]))
    assert sum(o.heldout for o in obs) == 1 and obs[-1].llm == "qwen-14b" and obs[0].Q == 50.0


def test_end_to_end_json_from_csv(tmp_path):
    fam = fit_study(read_csv(write(tmp_path, [HEADER, *grid_rows(v_values=(1, 4, 16, 36, 64, 144, 576))])), n_boot=30).to_json()["vqa"]
    assert set(fam["v_star"]) >= {"0", "50"}
    for key in ("alpha", "beta", "A", "D", "alpha_ci", "beta_ci", "A_ci", "D_ci", "heldout_error"):
        assert fam[key] is not None, key


def test_missing_column_is_named(tmp_path):
    err = refused(write(tmp_path, ["family,N,V,eror", "vqa,1,1,0.3"]))
    assert "column error" in err.field and "missing" in err.problem
    assert "'error'" in err.fix and "eror" in err.fix  # the near miss is suggested


@pytest.mark.parametrize(
    ("bad_row", "column", "words"),
    [
        ("vqa,-1,4,0.3", "column N", "not positive"),
        ("vqa,0,4,0.3", "column N", "not positive"),
        ("vqa,1,0,0.3", "column V", "not positive"),
        ("vqa,1,4,1.5", "column error", "outside [0, 1]"),
        ("vqa,1,4,-0.1", "column error", "outside [0, 1]"),
        ("vqa,1,4,abc", "column error", "not a number"),
        ("vqa,1,4,nan", "column error", "not finite"),
        (",1,4,0.3", "column family", "empty"),
        ("vqa,1,4,0.3,maybe", "column heldout", "not true or false"),
    ],
)
def test_bad_values_name_row_and_column(tmp_path, bad_row, column, words):
    header = HEADER + (",heldout" if bad_row.count(",") == 4 else "")
    rows = grid_rows()[:3] + [bad_row] + grid_rows()[3:]
    err = refused(write(tmp_path, [header, *rows]))
    assert "row 5" in err.field and column in err.field, err.field  # header is row 1
    assert words in err.problem


def test_percentages_get_a_hint(tmp_path):
    err = refused(write(tmp_path, [HEADER, "vqa,1,4,35.5", *grid_rows()]))
    assert "percentage" in err.fix


def test_fewer_points_than_parameters(tmp_path):
    rows = grid_rows() + ["ocr,0.5,1,0.4", "ocr,1.8,1,0.35", "ocr,4,1,0.3"]
    err = refused(write(tmp_path, [HEADER, *rows]))
    assert "family ocr" in err.field and "3 fitted cell" in err.problem and "4" in err.problem


def test_mixed_units_are_refused(tmp_path):
    err = refused(write(tmp_path, [HEADER, "vqa,0.5,1,0.4", "vqa,7000000000,1,0.3", *grid_rows()]))
    assert "column N" in err.field and "n_unit" in err.fix


@pytest.mark.parametrize("lines", [[], [HEADER]])
def test_empty_files(tmp_path, lines):
    refused(write(tmp_path, lines))


def test_missing_file_and_bad_unit(tmp_path):
    refused(tmp_path / "nope.csv")
    refused(write(tmp_path, [HEADER, *grid_rows()]), n_unit="millions")


def test_validate_checks_observations_built_in_code():
    good = [Observation("vqa", n * 1e9, v, 0.3) for n in (0.5, 1.8) for v in (1, 16)]
    validate(good)
    for bad in (Observation("vqa", -1.0, 1, 0.3), Observation("vqa", 1e9, 0.0, 0.3), Observation("vqa", 1e9, 1, 1.2)):
        with pytest.raises(SweepError):
            validate([*good, bad])
    with pytest.raises(SweepError, match="fewer than the 4 parameters"):
        validate(good[:3] + [Observation("vqa", 7e9, 1, 0.3, heldout=True)])
    # The compressor study's shape: one LLM, three V. The error says so and what to read instead.
    with pytest.raises(SweepError, match=r"one LLM size \(N = 1\.8e\+09\).*\n.*error tables.*grid\.llm"):
        validate([Observation("vqa", 1.8e9, v, 0.3) for v in (1, 4, 16)])
