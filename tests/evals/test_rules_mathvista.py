"""MathVista: the official quick rules and normalisation, our rules in place of GPT-4, lmms-eval's prompt.

The official parts (``extract_answer`` before its GPT-4 call, ``normalize_extracted_answer``,
``safe_equal``) are checked against verdicts worked out from the MathVista code; the rest
is ours and documented in ``sweep/evals/benchmarks/mathvista.py``.
"""

from __future__ import annotations

import pytest

from sweep.evals.benchmarks.mathvista import format_prompt, mathvista_extract, mathvista_normalize, safe_equal


def _mathvista(reply: str, choices: list[str], qtype: str, atype: str, precision: int | None = None) -> str | None:
    extraction = mathvista_extract(reply, qtype, atype, choices)
    return mathvista_normalize(reply.strip() if extraction is None else extraction, choices, qtype, atype, precision)


@pytest.mark.parametrize(
    ("reply", "precision", "normalised"),
    [
        ("1.24", 1, "1.2"),  # parses whole: rounded to the precision
        ("  1.24\n", 1, "1.2"),  # the reply is stripped first
        ("The length is 1.26 cm.", 1, "1.3"),  # last number, rounded
        ("0.456", 2, "0.46"),
        ("3.1", 2, "3.1"),  # never "3.10": compared as written against the gold
        ("1e1", 1, "10.0"),  # float("1e1") parses whole
        ("Between 2 and 3, about 2.5", 1, "2.5"),  # the last number wins
        ('The answer is "7.25".', 2, "7.25"),  # the official quoted-answer rule
        ("I have no idea", 1, None),  # no number: no answer
    ],
)
def test_mathvista_float_precision(reply: str, precision: int, normalised: str | None) -> None:
    assert _mathvista(reply, [], "free_form", "float", precision) == normalised


@pytest.mark.parametrize(
    ("reply", "normalised"),
    [
        ("12", "12"),
        ("There are 12 apples.", "12"),
        ("12.7", "12"),  # the official int(float(x)) truncates
        ("About 1,000 people", "1000"),
        ("-3", "-3"),
        ("none", None),
        ("", None),  # the empty extraction does not parse as a number
    ],
)
def test_mathvista_integer(reply: str, normalised: str | None) -> None:
    assert _mathvista(reply, [], "free_form", "integer") == normalised


@pytest.mark.parametrize(
    ("reply", "choice"),
    [
        ("B", "dark red"),
        ("(B) dark red", "dark red"),  # can_infer reads B
        ("The answer is C.", "blue"),
        ("(c)", "blue"),  # the official "(x)" rule upper-cases the letter
        ("dark red", "dark red"),  # exactly a choice
        ("It is dark red", "dark red"),  # can_infer: "red" and "dark red" both inside, no pick; then the closest choice
        ("blu", "blue"),  # nothing parses: the closest choice by edit distance
        ("", "red"),  # empty: the official code takes the choice closest to "", the shortest
    ],
)
def test_mathvista_multi_choice(reply: str, choice: str) -> None:
    assert _mathvista(reply, ["red", "dark red", "blue"], "multi_choice", "text") == choice


def test_mathvista_extract_reports_what_no_rule_read() -> None:
    assert mathvista_extract("blu", "multi_choice", "text", ["red", "blue"]) is None
    assert mathvista_extract("no number here", "free_form", "integer", []) is None
    assert mathvista_extract("no list", "free_form", "list", []) is None
    assert mathvista_extract("Z", "multi_choice", "text", ["red", "blue"]) is None  # a refusal is no reading
    assert mathvista_extract("", "multi_choice", "text", ["x", "y"]) == ""
    assert _mathvista("The final list is [1, 2, 3]", [], "free_form", "list") == "[1, 2, 3]"


def test_safe_equal_compares_stripped_strings() -> None:
    assert safe_equal("12", " 12 ")
    assert safe_equal(None, "None")  # str(None), as the official code does
    assert not safe_equal(None, "12")
    assert not safe_equal("3.1", "3.10")


def test_format_prompt_is_lmms_evals() -> None:
    assert format_prompt("How long is the rod?", [], "free_form", "float", 1, "cm") == (
        "How long is the rod? (Unit: cm)\nAnswer the question using a single floating-point number with one decimal place."
    )
    assert format_prompt("Which?", ["x", "y"], "multi_choice", "text", None, None) == (
        "Which?\nA. x\nB. y\nAnswer with the option's letter from the given choices directly."
    )
    assert format_prompt("How many?", [], "free_form", "integer", None, "") == (
        "How many?\nAnswer the question using a single integer number."
    )
    assert format_prompt("Slope?", [], "free_form", "float", 3, None).endswith("with 3 decimal places.")
    assert format_prompt("Which years?", [], "free_form", "list", None, None).endswith("using a Python list.")
