"""The shared rules (``sweep.evals.scoring``) and the family averages.

``can_infer`` is VLMEvalKit's heuristic option matcher (``vlmeval/utils/matching_util.py``);
each expected pick below is what that code returns, worked out by hand from it:
``can_infer_option`` replaces ``. ( ) [ ] , : ; ! * # { }`` by spaces, splits into
words, and takes the one option letter that is a word if its first occurrence is
past ``len(words) - 5``; ``can_infer_text`` takes the one option text inside the
lower-cased reply unless the reply is longer than twice the option texts together.
"""

from __future__ import annotations

import pytest

from sweep.errors import SweepError
from sweep.evals.families import family_errors
from sweep.evals.scoring import REFUSED, blank, can_infer, can_infer_option, can_infer_text, levenshtein

# Option texts total 3 + 5 + 4 = 12 characters: can_infer_text reads replies of at most 24.
COLORS = {"A": "red", "B": "green", "C": "blue"}


@pytest.mark.parametrize(
    ("reply", "pick"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("**B**", "B"),
        ("[C]", "C"),
        ("B\n", "B"),
        ("Answer: C", "C"),  # ':' is a word break
        ("C: blue", "C"),
        ("(C) blue", "C"),
        ("The answer is B.", "B"),  # B is word 4 of 4
        ("A picture of green.", "A"),  # the article A is the only letter word, within the last four words
        ("I think the correct option here is B", "B"),  # word 8 of 8
        ("Looking at it closely, the square is green, so B", "B"),
        ("It is green", "B"),  # no letter word: the option text
        ("green", "B"),
        ("GREEN!", "B"),  # the text match ignores case
        ("b", None),  # a lower-case letter is no letter word, and no option text is inside "b"
        ("A and B", None),  # two letter words: no letter pick; no option text inside
        ("red and blue", None),  # two option texts
        ("E", None),  # not an option letter
        ("Z", REFUSED),  # no option letter but Z: VLMEvalKit's refusal answer
        ("Cannot determine the answer", REFUSED),
        ("", None),
        ("   ", None),
        # The letter word is the first of ten words (index 0, not past 10 - 5) and the
        # reply is 49 characters, over twice the 12 characters of option text.
        ("B is right since the square is clearly very green", None),
        ("Failed to obtain answer via API: green", None),  # the API marker stops the letter rule; 38 > 24 characters
    ],
)
def test_can_infer_against_vlmevalkit(reply: str, pick: str | None) -> None:
    assert can_infer(reply, COLORS) == pick


def test_can_infer_text_needs_exactly_one_option_inside() -> None:
    nested = {"A": "red", "B": "dark red"}
    # "red" occurs inside "dark red" too: two candidates, no pick (our earlier rule took the longer one).
    assert can_infer_text("dark red", nested) is None
    assert can_infer_text("red", nested) == "A"
    # 2 * (3 + 8) = 22 characters at most: 22 reads, 23 does not.
    assert can_infer_text("it is red I'd say!!!!!", nested) == "A"
    assert can_infer_text("it is red I'd say!!!!!!", nested) is None


def test_can_infer_option_word_position() -> None:
    # Six words, the letter first: index 0 is not past 6 - 5 = 1; at index 2 it is.
    assert can_infer_option("B one two three four five", COLORS) is None
    assert can_infer_option("one two B three four five", COLORS) == "B"
    # The API marker: no letter pick even with a clean letter.
    assert can_infer_option("Failed to obtain answer via API B", COLORS) is None


def test_blank() -> None:
    assert blank("") and blank(" \n\t") and not blank(" x ")


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("kitten", "sitting", 3), ("flaw", "lawn", 2), ("", "abc", 3), ("same", "same", 0), ("ab", "ba", 2)],
)
def test_levenshtein(a: str, b: str, distance: int) -> None:
    assert levenshtein(a, b) == distance
    assert levenshtein(b, a) == distance


# ---- family averages ---------------------------------------------------------------------


def test_family_errors() -> None:
    scores = {"gqa": 0.6, "pope": 0.8, "textvqa": 0.5, "ocrbench": 0.3}
    errors = family_errors(scores, {"reasoning": ["gqa", "pope"], "ocr": ["textvqa", "ocrbench"]})
    assert errors == pytest.approx({"reasoning": 0.3, "ocr": 0.6})


def test_family_errors_reject_unknown_benchmarks_and_percentages() -> None:
    with pytest.raises(SweepError, match="Did you mean gqa"):
        family_errors({"gqa": 0.5}, {"reasoning": ["gq"]})
    with pytest.raises(SweepError, match="not a score in"):
        family_errors({"gqa": 62.0}, {"reasoning": ["gqa"]})
    with pytest.raises(SweepError, match="non-empty"):
        family_errors({"gqa": 0.5}, {"reasoning": []})
