"""Multiple-choice rules against their references' verdicts, worked out by hand from the reference code.

- AI2D: lmms-eval ``tasks/ai2d`` (``MultiChoiceRegexFilter`` ``^\\s*([A-Z])\\.``, then
  ``exact_match`` with ``ignore_case`` and ``ignore_punctuation`` on numpy strings);
- ScienceQA: LLaVA ``llava/eval/eval_science_qa.py`` (options A-E; exact letter, ``"X. "``
  prefix, exactly one match of ``The answer is ([A-Z]).``);
- MMMU: the official ``eval_utils.py`` ``parse_multi_choice_response``.

MMBench's reading (VLMEvalKit ``can_infer``) is tested in ``test_scoring.py``.
Several cases are ones where the reference is stricter than our earlier rules
(``"The answer is B."`` on AI2D, ``"dark red"`` picking nothing, ``image 2`` not
matching ``<image 2>``) or laxer (``"b"`` on AI2D, ``"The answer is B, because"`` on
ScienceQA).
"""

from __future__ import annotations

import pytest

from sweep.evals.benchmarks.ai2d import ai2d_correct, ai2d_reading, exact_match_text
from sweep.evals.benchmarks.mmmu import parse_mmmu_choice
from sweep.evals.benchmarks.scienceqa import scienceqa_pick

# ---- AI2D ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "right"),
    [
        ("B", True),
        ("b", True),  # case is ignored
        ("(B)", True),  # punctuation is dropped
        ("B)", True),
        ("B.", True),  # the filter reads "B"
        ("b.", True),  # the filter needs a capital, but "b." -> "b" after the normalisation
        ("B. larva", True),  # the filter reads "B"
        (" B.", True),  # the filter allows leading spaces
        ("**B**", True),
        ("[B]!", True),
        ("B.C.", True),  # the filter reads the first letter
        ("B\x00", True),  # numpy drops trailing NULs
        (" B", False),  # spaces are kept: " b" != "b"
        ("B ", False),
        ("B\n", False),
        ("b. larva", False),  # no filter match (lower case): "b larva"
        ("b) larva", False),
        ("The answer is B.", False),  # "the answer is b"
        ("Answer: B", False),
        ("B: larva", False),
        ("larva", False),  # the option's text
        ("BC", False),
        ("A", False),
        ("C. pupa", False),  # the filter reads C
        ("D. B", False),
        ("Ｂ", False),  # a full-width letter lower-cases to "ｂ"
        ("", False),
    ],
)
def test_ai2d_like_lmms_eval(reply: str, right: bool) -> None:
    assert ai2d_correct(reply, "B") is right


def test_ai2d_numpy_string_details() -> None:
    # np.char.lower keeps the width: "İ".lower() is two characters, numpy keeps the first.
    assert exact_match_text("İ") == "i"
    assert exact_match_text("Aİ") == "ai"
    # Punctuation removal can leave a NUL at the end, which numpy then ignores.
    assert exact_match_text("B\x00.") == "b"
    assert exact_match_text("B\x00x") == "b\x00x"
    # Only ASCII punctuation goes.
    assert exact_match_text("«B»") == "«b»"
    assert ai2d_reading("  C. cow") == "c"


# ---- ScienceQA (LLaVA eval_science_qa.py) ---------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "n_choices", "pick"),
    [
        ("B", 3, "B"),
        ("B. whale", 3, "B"),
        ("B.", 3, None),  # two characters: neither an exact letter nor "X. ..."
        ("B.\n", 3, None),  # [1:3] is ".\n", and no "The answer is"
        ("B. The answer is A.", 3, "B"),  # the prefix rule comes first
        ("The answer is B.", 3, "B"),
        ("The answer is B, because it swims.", 3, "B"),  # the unescaped "." matches ","
        ("The answer is A!", 3, "A"),
        ("The answer is BB", 3, "B"),
        ("I think The answer is C.", 3, "C"),  # searched anywhere
        ("The answer is B", 3, None),  # nothing after the letter
        ("The answer is B\n", 3, None),  # "." does not match a newline
        ("The answer is B. The answer is B.", 3, None),  # two matches
        ("The answer is (B).", 3, None),
        ("the answer is B.", 3, None),  # case matters
        ("The answer is b.", 3, None),
        (" B", 3, None),  # nothing is trimmed
        ("B ", 3, None),
        ("(B)", 3, None),
        ("b", 3, None),
        ("whale", 3, None),  # the option's text is no pick
        ("D", 3, None),  # a letter beyond the choices
        ("The answer is D.", 3, None),
        ("The answer is F.", 6, None),  # the reference knows the letters A-E only
        ("E", 5, "E"),
        ("F", 6, None),
        ("", 3, None),
    ],
)
def test_scienceqa_like_llava(reply: str, n_choices: int, pick: str | None) -> None:
    assert scienceqa_pick(reply, n_choices) == pick


# ---- MMMU multiple choice (official eval_utils.py) ---------------------------------------------

MMMU_OPTIONS = ["a cat", "a dog", "red", "blue"]
IMAGE_OPTIONS = ["<image 1>", "<image 2>", "<image 3>"]


@pytest.mark.parametrize(
    ("reply", "options", "letter"),
    [
        ("B", MMMU_OPTIONS, "B"),
        ("(B)", MMMU_OPTIONS, "B"),
        ("(B).", MMMU_OPTIONS, "B"),
        ("The answer is C.", MMMU_OPTIONS, "C"),  # end marks stripped, then a lone letter
        ("'D'", MMMU_OPTIONS, "D"),  # "'" is an end mark
        ("C: red", MMMU_OPTIONS, None),  # "C:" is neither "(C)" nor a lone letter, and the reply is short
        ("I first thought (B), but it is (C)", MMMU_OPTIONS, "C"),  # bracketed letters: the last wins
        ("(A) and B", MMMU_OPTIONS, "A"),  # a bracketed letter stops the search for lone ones
        ("A dog is shown, so the answer is B", MMMU_OPTIONS, "B"),  # "A" (the article) and "B": the last wins
        ("I am fairly sure that it shows a dog", MMMU_OPTIONS, "B"),  # over five words: option text counts
        ("a dog", MMMU_OPTIONS, None),  # five words or fewer: option text does not count
        ("It is either a cat or a dog here", MMMU_OPTIONS, "B"),  # two option texts: the one that occurs last
        ("b", MMMU_OPTIONS, None),
        ("E", MMMU_OPTIONS, None),  # not an option
        ("I cannot tell from the picture", MMMU_OPTIONS, None),
        ("", MMMU_OPTIONS, None),
        # Option texts as released: "<image 2>" is inside the first reply, not inside the second.
        ("I would pick <image 2> for this one", IMAGE_OPTIONS, "B"),
        ("I would pick image 2 for this one", IMAGE_OPTIONS, None),
        ("I choose image 2", IMAGE_OPTIONS, None),
    ],
)
def test_mmmu_choice_like_the_official_parser(reply: str, options: list[str], letter: str | None) -> None:
    assert parse_mmmu_choice(reply, options) == letter
