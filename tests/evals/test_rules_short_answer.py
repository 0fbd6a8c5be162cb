"""Short-answer rules against their references' verdicts, worked out by hand from the reference code.

- GQA: LLaVA ``scripts/convert_gqa_for_eval.py`` (``rstrip('.')``, ``lower()``) + GQA ``eval.py`` (``==``);
- ChartQA: lmms-eval ``tasks/chartqa/utils.py`` ``relaxed_correctness``;
- DocVQA: lmms-eval ``api/metrics.py`` ``anls``;
- TextVQA: TextVQA's m4c evaluator (``EvalAIAnswerProcessor``, ``TextVQAAccuracyEvaluator``);
- OCRBench: the official OCRBench scoring loop;
- MMMU open questions: the official ``eval_utils.py`` ``parse_open_response`` + ``eval_open``.
"""

from __future__ import annotations

import pytest

from sweep.evals.benchmarks.chartqa import relaxed_correctness
from sweep.evals.benchmarks.docvqa import anls
from sweep.evals.benchmarks.gqa import gqa_correct
from sweep.evals.benchmarks.mmmu import mmmu_open_match, parse_mmmu_open
from sweep.evals.benchmarks.ocrbench import ocrbench_correct
from sweep.evals.benchmarks.textvqa import vqa_accuracy
from sweep.evals.normalize import normalize_vqa_answer

# ---- GQA -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "gold", "right"),
    [
        ("yes", "yes", True),
        ("Yes", "yes", True),
        ("Yes.", "yes", True),
        ("Yes..", "yes", True),  # every trailing period goes (our earlier rule dropped one)
        ("YES...", "yes", True),
        ("Dog", "dog", True),
        ("T-Shirt", "t-shirt", True),
        ("yes. ", "yes", False),  # the space keeps the period
        (" yes", "yes", False),  # nothing is trimmed (our earlier rule trimmed spaces)
        ("yes ", "yes", False),
        ("yes\n", "yes", False),
        ("Yes!", "yes", False),
        ("yes, it is", "yes", False),
        ("a dog", "dog", False),
        (".yes", "yes", False),  # only trailing periods go
        ("", "yes", False),
    ],
)
def test_gqa_like_llava_and_the_official_script(reply: str, gold: str, right: bool) -> None:
    assert gqa_correct(reply, gold) is right


# ---- ChartQA ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "gold", "right"),
    [
        ("104", "100", True),  # 4% off
        ("105", "100", True),  # exactly 5%
        ("105.5", "100", False),
        ("95", "100", True),
        ("-3.5", "-3.4", True),  # 0.1 / 3.4 = 2.9%
        ("12%", "0.12", True),  # a percentage reads as a fraction
        ("12.5%", "12%", True),  # 0.125 vs 0.12: 4.2%
        ("13%", "12%", False),  # 8.3%
        ("12%%", "0.12", True),  # every trailing % is stripped
        ("12% ", "0.12", False),  # does not end in %: float("12% ") fails, and the texts differ
        (" 12", "12", True),  # float() takes outer whitespace
        ("12\n", "12", True),
        ("1e2", "100", True),
        ("1_000", "1000", True),  # float() takes digit separators
        ("١٢", "12", True),  # float() takes Arabic-Indic digits
        ("1,000", "1000", False),  # not a number: exact match only
        ("12", "12%", False),  # 12 against 0.12
        ("0.5", "0", False),  # a zero gold needs an exact match
        ("0", "0", True),
        ("0.0", "0", False),
        ("nan", "nan", False),  # both read as NaN, and NaN is within 5% of nothing
        ("inf", "100", False),
        ("Yes", "yes", True),
        ("yes ", "yes", False),  # nothing is trimmed (our earlier rule trimmed)
        (" Spain", "Spain", False),
        ("Spain", "Portugal", False),
        ("", "0", False),
    ],
)
def test_chartqa_like_lmms_eval(reply: str, gold: str, right: bool) -> None:
    assert relaxed_correctness(reply, gold) is right


# ---- DocVQA ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "answers", "value"),
    [
        ("Dr. Lobo", ["Dear Dr. Lobo", "Dr. Lobo"], 1.0),  # the best gold answer counts
        ("  DR. LOBO\n", ["Dr. Lobo"], 1.0),  # distance 0 between the cleaned strings
        ("Dr.   Lobo", ["dr. lobo"], 1.0),
        ("Dr Lobo", ["Dr. Lobo"], 1 - 1 / 8),  # one edit; raw lengths 7 and 8
        (" Dr Lobo", ["Dr. Lobo"], 1 - 1 / 8),  # raw lengths 8 and 8
        ("Dr Lobo   ", ["Dr. Lobo"], 1 - 1 / 10),  # the raw reply is 10 long (our earlier rule: 1 - 1/8)
        ("12/15/89", ["12/15/88"], 1 - 1 / 8),
        ("Dear Dr. Lobo", ["Dr. Lobo"], 1 - 5 / 13),
        ("ßa", ["sa"], 1 - 1 / 3),  # one edit; "ßa".upper() is "SSA", three long
        ("İx", ["ix"], 0.5),  # "İx".lower() is "i̇x": one edit over the raw length 2, exactly the threshold
        ("abxy", ["abcd"], 0.5),  # exactly the threshold counts
        ("abxyz", ["abcde"], 0.0),  # 0.4: below the threshold
        ("Mr. Bob", ["Dr. Lobo"], 1 - 3 / 8),
        ("Jones", ["Dr. Lobo", "Lobo"], 0.0),  # best is 1 - 4/5
        ("", [""], 1.0),  # both empty: ratio 0
        ("", ["x"], 0.0),
    ],
)
def test_anls_like_lmms_eval(reply: str, answers: list[str], value: float) -> None:
    assert anls(reply, answers) == pytest.approx(value)


def test_anls_needs_answers_and_takes_a_threshold() -> None:
    with pytest.raises(ValueError):
        anls("x", [])
    assert anls("abxyz", "abcde", threshold=0.4) == pytest.approx(0.4)
    assert anls("Dr Lobo", "Dr. Lobo", threshold=0.9) == 0.0


# ---- TextVQA: m4c normalisation and VQA accuracy ------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Two", "2"),
        ("two dogs", "2 dogs"),
        ("None", "0"),
        ("a dog", "dog"),
        ("The Dog.", "dog"),
        ("an apple", "apple"),
        ("dont", "don't"),
        ("isnt it", "isn't it"),
        ("couldnt've", "couldn't've"),
        ("Im", "im"),  # the table's capitalised keys never match lower-cased words
        ("it's red", "it 's red"),  # the possessive/contraction 's is split off
        ("man's hat", "man 's hat"),
        ("t-shirt", "t shirt"),  # a mark inside a word becomes a space
        ("yes !", "yes"),  # a mark next to a space is deleted
        ("3.5", "3.5"),  # a period before a digit stays
        ("1,000", "1000"),
        ("Yes?", "yes"),
        ("  red\n", "red"),
        ("stop.sign", "stopsign"),  # a period not before a digit is deleted, inside a word too
        ("." * 40 + "yes", "yes"),  # all 40 periods (the evaluator stops after 32: its re.UNICODE bug)
    ],
)
def test_vqa_normalisation(raw: str, normalised: str) -> None:
    assert normalize_vqa_answer(raw) == normalised


def test_vqa_accuracy_official_values_for_k_matching_humans() -> None:
    # k humans of 10 gave the answer: mean over the 10 leave-one-out subsets of
    # min(matches among the other 9 / 3, 1).
    expected = {0: 0.0, 1: 0.3, 2: 0.6, 3: 0.9, 4: 1.0, 10: 1.0}
    for k, value in expected.items():
        answers = ["cat"] * k + ["dog"] * (10 - k)
        assert vqa_accuracy("cat", answers) == pytest.approx(value), k


def test_vqa_accuracy_normalises_both_sides() -> None:
    answers = ["2", "2", "two", "3", "three", "3", "3", "4", "4", "4"]
    assert vqa_accuracy("Two", answers) == pytest.approx(0.9)  # "Two" -> "2" matches "2", "2", "two"
    assert vqa_accuracy("a dog", ["dog"] * 2 + ["cat"] * 8) == pytest.approx(0.6)
    assert vqa_accuracy("dont know", ["don't know"] + ["x"] * 9) == pytest.approx(0.3)
    assert vqa_accuracy("Yes..", ["yes"] * 10) == 1.0
    assert vqa_accuracy("", ["yes"] * 10) == 0.0
    with pytest.raises(ValueError):
        vqa_accuracy("cat", [])


# ---- OCRBench --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "answers", "formula", "right"),
    [
        ("The text says: HELLO world", ["hello"], False, True),
        ("line one\nline two", "one line", False, True),  # newlines read as spaces
        (" YES ", ["yes"], False, True),
        ("hel lo", ["hello"], False, False),
        ("hel\tlo", ["hello"], False, False),
        ("x", ["y", "X"], False, True),  # any answer
        ("YES", ["Yes."], False, False),
        ("", ["a"], False, False),
        ("$ \\frac { a } { b } $", ["\\frac{a}{b}"], True, True),  # formulas: spaces dropped
        ("\\Delta x", ["\\delta x"], True, False),  # ... and case kept
        ("\\Delta x", ["\\Delta\nx"], True, True),
        ("a\tb", ["ab"], True, False),  # only spaces go, not tabs
    ],
)
def test_ocrbench_like_the_official_script(reply: str, answers: list[str] | str, formula: bool, right: bool) -> None:
    assert ocrbench_correct(reply, answers, formula=formula) is right


# ---- MMMU open questions ---------------------------------------------------------------------


def test_parse_mmmu_open_keeps_tails_and_numbers() -> None:
    parsed = parse_mmmu_open("First we add the forces.\nSo the result is 3.14159 N.")
    assert 3.14 in parsed  # the number, rounded to two decimals
    assert "3.14159 n" in parsed  # the lower-cased tail after "is "
    assert "first we add the forces" not in parsed  # a line without a key phrase gives nothing
    assert parse_mmmu_open("Photosynthesis") == ["photosynthesis"]  # no key phrase: the whole reply
    assert 1000.0 in parse_mmmu_open("x = 1,000")  # "=" in the last line; thousands comma dropped
    assert parse_mmmu_open("") == [""]


@pytest.mark.parametrize(
    ("gold", "reply", "right"),
    [
        ("3.14", "So the result is 3.14159", True),  # numbers equal after rounding to 2 decimals
        ("1,000", "There are 1000 apples", True),
        ("12", "x = 12.5", False),
        ("12", "The answer is 12.", True),
        ("2.5", "The speed is 2.50 m/s", True),
        ("mitochondria", "The answer is the Mitochondria.", True),  # gold text inside the parsed text
        ("b", "The answer is cab", False),  # a one-letter gold only matches at a word edge
        (["1.5", "3/2"], "It is 3/2", True),  # any of several gold answers
        ("Paris", "I do not know", False),
        ("yes", "", False),
    ],
)
def test_mmmu_open_match(gold: str | list[str], reply: str, right: bool) -> None:
    assert mmmu_open_match(gold, parse_mmmu_open(reply)) is right
