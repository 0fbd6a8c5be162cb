"""Shared scorers: the per-answer rules the official benchmark scripts use.

Every function here is pure and scores one answer (or one group of answers); the
benchmark modules under ``sweep/evals/benchmarks/`` combine them into a
benchmark's headline score and sub-scores.

- ``vqa_accuracy(pred, answers)``: VQA accuracy against the human answers
  (TextVQA, VQA v2): min(#matching humans / 3, 1), averaged over the leave-one-out
  subsets of the answers, after ``normalize_vqa_answer``.
- ``exact_match(pred, target)``: GQA-style exact match (case, outer spaces and a
  trailing period ignored).
- ``relaxed_match(pred, target)``: ChartQA's relaxed accuracy, 5% relative
  tolerance on numbers (``"12%"`` reads as 0.12), exact match otherwise.
- ``parse_choice(text, options)``: the option letter a free-text answer picks
  (MMBench, ScienceQA, AI2D), or None.
- ``parse_yes_no(text)`` (MME rule) and ``pope_says_yes(text)`` (POPE rule).
- ``ocr_contains(pred, answers, ...)``: OCRBench's containment rule.
- ``binary_metrics``, ``acc_plus``, ``circular_accuracy``: the group-level rules
  of POPE, MME and MMBench.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence

from sweep.evals.normalize import normalize_vqa_answer

__all__ = [
    "acc_plus",
    "binary_metrics",
    "circular_accuracy",
    "exact_match",
    "normalize_vqa_answer",
    "ocr_contains",
    "parse_choice",
    "parse_yes_no",
    "pope_says_yes",
    "relaxed_match",
    "vqa_accuracy",
]


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy of one prediction against the human answers (usually ten).

    For each human answer in turn, the other answers vote: the prediction scores
    min(#others equal to it / 3, 1); the result is the mean over the answers. With
    ten answers, a prediction that k humans gave scores 0.3, 0.6, 0.9, 1.0 for
    k = 1, 2, 3, >= 4.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    pred = normalize_vqa_answer(prediction)
    humans = [normalize_vqa_answer(a) for a in answers]
    agree = sum(h == pred for h in humans)
    # Leaving out a matching answer removes one vote; leaving out another keeps all.
    total = sum(min((agree - (h == pred)) / 3.0, 1.0) for h in humans)
    return total / len(humans)


def exact_match(prediction: str, target: str) -> bool:
    """Exact match after lower-casing, trimming, and dropping one trailing period.

    LLaVA's GQA conversion does the same before the official GQA script compares
    strings, so "Yes." matches "yes" but "a dog" does not match "dog".
    """

    def clean(text: str) -> str:
        text = text.strip().lower()
        return text[:-1].rstrip() if text.endswith(".") else text

    return clean(prediction) == clean(target)


def _to_float(text: str) -> float | None:
    text = text.strip()
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_match(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """ChartQA relaxed correctness: within ``tolerance`` (relative) for numbers.

    Percentages are read as fractions on both sides, so "12%" matches "0.12" and
    "12.5%" is within 5% of "12%". A zero or non-numeric target needs an exact
    (case-insensitive) match, as in the reference implementation.
    """
    pred, gold = _to_float(prediction), _to_float(target)
    if pred is not None and gold:
        return abs(pred - gold) / abs(gold) <= tolerance
    return prediction.strip().lower() == target.strip().lower()


# ---- multiple choice -------------------------------------------------------------

# "The answer is (C)", "Answer: C": the keyword is case-insensitive, the letter must
# be a capital, so "the answer is a dog" picks nothing here.
_STATED = re.compile(r"(?i:answer)(?:\s+(?i:is)|\s*:)?\s*[(\[]?([A-Z])\b")
# The whole reply is one letter, maybe wrapped or followed by a period: "B", "(B)", "B."
_BARE = re.compile(r"[(\[]?\s*([A-Z])\s*[)\]]?\s*[.:]?")
# The reply opens with a labelled letter: "C. blue", "(C) blue", "C: blue", "C - blue".
_LEADING = re.compile(r"[(\[]?([A-Z])(?:[.:)\]]|\s+-)\s")
_TOKEN_EDGES = "()[].,:;!?*\"'"


def _option_map(options: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    if isinstance(options, Mapping):
        return {str(k): str(v) for k, v in options.items()}
    return {chr(ord("A") + i): str(v) for i, v in enumerate(options)}


def parse_choice(text: str, options: Mapping[str, str] | Sequence[str]) -> str | None:
    """The option letter that a free-text answer picks, or None when it picks none.

    ``options`` maps letters to option texts (a list is lettered A, B, ...). The
    rules, first hit wins (MMBench's matching without its LLM judge):

    1. the reply is just a letter: ``"B"``, ``"(B)"``, ``"B."``;
    2. a stated answer: ``"The answer is C"``, ``"Answer: (C)"``;
    3. the reply opens with a labelled letter: ``"C. blue"``, ``"(C) blue"``;
    4. exactly one valid letter stands alone as a word (a lone ``"A"`` in a reply of
       more than three words is read as the article and ignored);
    5. the text of exactly one option occurs in the reply (case-insensitive; an
       option whose text is part of a longer matching option's text yields to it).

    A letter that names no option (``"E"`` of a four-option question) is no pick.
    """
    choices = _option_map(options)
    reply = text.strip()
    for found in (_BARE.fullmatch(reply), _STATED.search(reply), _LEADING.match(reply)):
        if found and found.group(1) in choices:
            return found.group(1)

    words = [w.strip(_TOKEN_EDGES) for w in reply.split()]
    standalone = {w for w in words if w in choices}
    if "A" in standalone and len(words) > 3:
        standalone.discard("A")
    if len(standalone) == 1:
        return standalone.pop()

    lowered = reply.lower()
    hits = {k: v.strip().lower() for k, v in choices.items() if v.strip() and v.strip().lower() in lowered}
    # "dark red" also contains "red": keep only hits that no other hit contains.
    maximal = [k for k, v in hits.items() if not any(v != w and v in w for w in hits.values())]
    return maximal[0] if len(maximal) == 1 else None


# ---- yes / no ---------------------------------------------------------------------


def parse_yes_no(text: str) -> str | None:
    """MME's rule: "yes", "no", or None when the reply is neither.

    Periods are dropped and case ignored; an exact "yes"/"no" (or "y"/"n") counts,
    else the first four characters decide ("Yes, there is" -> yes, "No." -> no).
    """
    reply = text.lower().strip().replace(".", "")
    if reply in ("yes", "no"):
        return reply
    if len(reply) == 1:
        return {"y": "yes", "n": "no"}.get(reply)
    head = reply[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return None


def pope_says_yes(text: str) -> bool:
    """POPE's rule (LLaVA's script): no unless the first sentence says no/not.

    Only the text before the first period counts, commas are dropped, and the reply
    is a "no" when one of its words is exactly "No", "no" or "not".
    """
    first = text.split(".", 1)[0].replace(",", "")
    return not any(w in ("No", "no", "not") for w in first.split(" "))


def binary_metrics(predicted: Sequence[bool], labels: Sequence[bool]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and the share of "yes" predictions.

    Precision (recall, F1) is 0 when the model never says yes (no positive labels).
    """
    if len(predicted) != len(labels) or not labels:
        raise ValueError("binary_metrics needs equally long, non-empty predictions and labels")
    tp = sum(p and y for p, y in zip(predicted, labels))
    fp = sum(p and not y for p, y in zip(predicted, labels))
    fn = sum(y and not p for p, y in zip(predicted, labels))
    tn = len(labels) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / len(labels),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": (tp + fp) / len(labels),
    }


# ---- group rules ------------------------------------------------------------------


def acc_plus(correct_by_image: Mapping[Hashable, Sequence[bool]]) -> tuple[float, float]:
    """MME's (acc, acc+) in [0, 1]: per-question accuracy, and the share of images
    whose questions (two per image in MME) are all answered correctly."""
    if not correct_by_image:
        raise ValueError("acc_plus needs at least one image")
    flat = [c for group in correct_by_image.values() for c in group]
    acc = sum(flat) / len(flat)
    plus = sum(all(group) for group in correct_by_image.values()) / len(correct_by_image)
    return acc, plus


def circular_accuracy(correct_by_question: Mapping[Hashable, Sequence[bool]]) -> float:
    """MMBench CircularEval: a question counts only if every rotated copy is right."""
    if not correct_by_question:
        raise ValueError("circular_accuracy needs at least one question")
    return sum(all(group) for group in correct_by_question.values()) / len(correct_by_question)


def ocr_contains(prediction: str, answers: Sequence[str] | str, *, formula: bool = False) -> bool:
    """OCRBench: right when one of the answers occurs inside the prediction.

    Case is ignored and newlines read as spaces. For handwritten formulas
    (``formula=True``, the HME100k subset) all spaces are removed from both sides
    and case is kept, since LaTeX is case-sensitive (``\\Delta`` vs ``\\delta``).
    """

    def clean(text: str) -> str:
        text = text.strip().replace("\n", " ")
        return text.replace(" ", "") if formula else text.lower()

    pred = clean(prediction)
    golds = [answers] if isinstance(answers, str) else list(answers)
    return any(clean(str(a)) in pred for a in golds)
