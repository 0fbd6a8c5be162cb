"""Answer-reading rules that two or more benchmarks share.

Each benchmark's own rules live with it (``sweep/evals/benchmarks/<name>.py``);
what is here is used by several:

- ``levenshtein(a, b)``: the edit distance (DocVQA's ANLS; MathVista's
  closest-choice fallback).
- ``can_infer(reply, choices)``: VLMEvalKit's heuristic option matcher, the
  rule stage of its multiple-choice pipeline without the LLM judge (MMBench;
  MathVista's multi-choice extraction, as VLMEvalKit's MathVista prefetch does).
- ``blank(reply)``: a reply with nothing in it, the ``unparsed`` count of the
  free-form benchmarks.

All functions are pure.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["REFUSED", "blank", "can_infer", "can_infer_option", "can_infer_text", "levenshtein"]

# VLMEvalKit's answer for "the model refused": a pick, but never a right one.
REFUSED = "Z"
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_API_FAILURE = "Failed to obtain answer via API"
# can_infer_option turns these marks into spaces before it splits the reply into words.
_WORD_BREAKS = ".()[],:;!*#{}"


def levenshtein(a: str, b: str) -> int:
    """The edit distance: insertions, deletions and substitutions of one character cost 1."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def blank(reply: str) -> bool:
    """True for an empty or whitespace-only reply: nothing any rule could read."""
    return not reply.strip()


def can_infer_option(reply: str, choices: Mapping[str, str]) -> str | None:
    """VLMEvalKit's ``can_infer_option``: the option letter standing as a word near the end.

    The marks ``. ( ) [ ] , : ; ! * # { }`` become spaces and the reply is split
    into words. When exactly one option letter is a word, it is the pick if its
    first occurrence is among the last four words (``"A picture of green."``
    picks A, a letter early in a long reply picks nothing). When no option
    letter is a word but ``Z`` is, or the reply holds one of VLMEvalKit's
    refusal sentences, the pick is ``REFUSED``. Otherwise None. A reply holding
    VLMEvalKit's API-failure marker is None here (its text is still matched by
    ``can_infer_text``). The letter is case-sensitive: ``"b"`` is no pick.
    """
    if _API_FAILURE in reply:
        return None
    if any(refusal in reply for refusal in _REFUSALS):
        return REFUSED
    spaced = reply
    for mark in _WORD_BREAKS:
        spaced = spaced.replace(mark, " ")
    words = spaced.split()
    present = [letter for letter in choices if letter in words]
    if len(present) == 1:
        return present[0] if words.index(present[0]) > len(words) - 5 else None
    if not present and REFUSED in words:
        return REFUSED
    return None


def can_infer_text(reply: str, choices: Mapping[str, str]) -> str | None:
    """VLMEvalKit's ``can_infer_text``: the one option whose text occurs in the reply.

    Case is ignored. A reply longer than twice the options' texts together is
    not read at all, and when several option texts occur (``"red"`` inside
    ``"dark red"`` too) there is no pick.
    """
    lowered = reply.lower()
    if len(lowered) > 2 * sum(len(str(text)) for text in choices.values()):
        return None
    hits = [letter for letter, text in choices.items() if str(text).lower() in lowered]
    return hits[0] if len(hits) == 1 else None


def can_infer(reply: str, choices: Mapping[str, str]) -> str | None:
    """VLMEvalKit's ``can_infer``: ``can_infer_option``, else ``can_infer_text``.

    ``choices`` maps the option letters (in order) to their texts. Returns a
    letter, ``REFUSED``, or None when neither rule reads the reply (the official
    pipeline would then ask its LLM judge; without one such a reply is wrong).
    """
    return can_infer_option(reply, choices) or can_infer_text(reply, choices)
