"""MathVista (testmini): mathematical reasoning over images, 1,000 problems.

Layout under ``root`` (the official release: ``data/testmini.json`` of the MathVista
repository and the images of its ``images.zip``)::

    testmini.json   {"<pid>": {"pid": "1", "question": "...", "image": "images/1.jpg",
                               "choices": ["...", ...] | null, "unit": "cm" | null,
                               "precision": 1.0 | null, "answer": "1.2",
                               "question_type": "multi_choice" | "free_form",
                               "answer_type": "text" | "integer" | "float" | "list",
                               "metadata": {"task": "...", "category": "...", ...},
                               "query": "Hint: ...\\nQuestion: ...\\nChoices:\\n(A) ..."}, ...}
    images/<pid>.jpg          (``image`` is relative to root)

A list of such records (the hub's rows written out as JSON) works too; items are
keyed by ``pid``.

Prompt (lmms-eval ``tasks/mathvista/mathvista_testmini_format.yaml``, shot type
``format-prompt``, ``format_prompt``): the question (with `` (Unit: <unit>)`` when
there is one), the choices as ``A. ...`` lines, and a one-line instruction by
answer type, joined by newlines: "Answer with the option's letter from the given
choices directly." (multiple choice), "Answer the question using a single integer
number.", "... a single floating-point number with one (two) decimal place(s).",
"Answer the question using a Python list."; 1024 new tokens at most. (lmms-eval
has no instruction for other precisions or for free-form text; ours there are
"... with <k> decimal places." and the short-answer line.) The record's own
``query`` (the official MathVista prompt) is not used.

Score: accuracy. The official pipeline has GPT-4 extract the answer from the reply,
then normalises it (``normalize_extracted_answer``) and compares it with the gold
answer (``safe_equal``). We call no GPT-4. ``mathvista_extract`` strips the reply
(as lmms-eval does) and keeps the official quick rules (an empty reply gives
nothing; a multi-choice reply that is exactly a choice gives it; for an integer
(float) answer, a reply that parses whole as one gives it; ``The answer is
"X".`` gives ``X``), then replaces the GPT-4 step with rules of its own:
VLMEvalKit's ``can_infer`` for multiple choice (as VLMEvalKit's own MathVista
prefetch does), the last number for integer and float answers, the last
``[...]`` for lists. ``mathvista_normalize`` then does what the official
normalisation does (a ``(B)`` or a letter becomes that choice, any other text the
choice closest by edit distance; integers are truncated, floats rounded to the
record's ``precision``), and ``safe_equal`` compares ``str(x).strip()`` of both.
Scores can therefore differ from the GPT-extracted numbers of the MathVista
leaderboard, mostly for long free-form replies. Sub-scores:
``question_type/{multi_choice,free_form}``, ``task/<name>`` (from
``metadata.task``) and ``unparsed``, the share of replies none of these rules
read (a multi-choice reply that only the closest-choice fallback placed, a number
question without a number, a list question without a list).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sweep.evals.benchmarks.base import LETTER_ANSWER, SHORT_ANSWER, Benchmark, EvalItem, aligned, grouped_accuracy, mean
from sweep.evals.scoring import REFUSED, blank, can_infer, levenshtein

QUESTION_TYPES = ("multi_choice", "free_form")
ANSWER_TYPES = ("text", "integer", "float", "list")
# lmms-eval's format-prompt instructions (mathvista_evals.py create_one_query).
_INSTRUCTIONS = {
    "multi_choice": LETTER_ANSWER,
    "integer": "Answer the question using a single integer number.",
    "float1": "Answer the question using a single floating-point number with one decimal place.",
    "float2": "Answer the question using a single floating-point number with two decimal places.",
    "list": "Answer the question using a Python list.",
}


def format_prompt(
    question: str, choices: Sequence[str], question_type: str, answer_type: str, precision: int | None, unit: str | None
) -> str:
    """lmms-eval's zero-shot ``format-prompt`` query: question (and unit), lettered choices, instruction."""
    if question_type == "multi_choice":
        instruction = _INSTRUCTIONS["multi_choice"]
    elif answer_type == "float":
        instruction = _INSTRUCTIONS.get(f"float{precision}") or (
            f"Answer the question using a single floating-point number with {precision} decimal places."
        )
    else:
        instruction = _INSTRUCTIONS.get(answer_type, SHORT_ANSWER)
    text = question + (f" (Unit: {unit})" if unit else "")
    listed = "\n".join(f"{chr(ord('A') + i)}. {c}" for i, c in enumerate(choices))
    return "\n".join(part for part in (text, listed, instruction) if part).strip()


# ---- extraction and normalisation ------------------------------------------------------------

# The official quick rule: The answer is "text". -> text
_QUOTED_ANSWER = re.compile(r'The answer is "(.*)"\.')
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_PY_LIST = re.compile(r"\[[^\[\]]*\]")
_PAREN_LETTER = re.compile(r"\(([a-zA-Z])\)")


def mathvista_extract(response: str, question_type: str, answer_type: str, choices: Sequence[str]) -> str | None:
    """The answer in a MathVista reply by rules only, or None where no rule reads it.

    The reply is stripped first (lmms-eval's ``mathvista_process_results``). The
    official quick rules: ``""`` for an empty reply; a multi-choice reply that is
    exactly one of the choices; for an integer (float) answer, ``str(int(x))``
    (``str(float(x))``) of a reply that parses whole; ``X`` of ``The answer is
    "X".``. In place of the GPT-4 step: the letter VLMEvalKit's ``can_infer``
    reads (multiple choice), the last number with thousands commas dropped
    (integer, float), the last ``[...]`` (list).
    """
    response = response.strip()
    if response == "":
        return ""
    if question_type == "multi_choice" and response in choices:
        return response
    for kind, cast in (("integer", int), ("float", float)):
        if answer_type == kind:
            try:
                return str(cast(response))
            except ValueError:
                pass
    quoted = _QUOTED_ANSWER.search(response)
    if quoted:
        return quoted.group(1)
    if question_type == "multi_choice":
        letter = can_infer(response, {chr(ord("A") + i): c for i, c in enumerate(choices)})
        return letter if letter and letter != REFUSED else None
    if answer_type in ("integer", "float"):
        numbers = _NUMBER.findall(response)
        return numbers[-1].replace(",", "") if numbers else None
    if answer_type == "list":
        lists = _PY_LIST.findall(response)
        return lists[-1] if lists else None
    return response


def mathvista_normalize(
    extraction: str, choices: Sequence[str], question_type: str, answer_type: str, precision: int | None
) -> str | None:
    """MathVista's ``normalize_extracted_answer``.

    Multi-choice: ``"(B) text"`` reads as ``B``, a letter becomes its choice's text,
    and anything else becomes the choice with the smallest edit distance to it (so
    a multi-choice reply always names some choice). Integer: ``str(int(float(x)))``
    (truncation: ``"12.7"`` -> ``"12"``). Float: ``str(round(float(x), precision))``
    (``"1.24"`` at precision 1 -> ``"1.2"``). A number that does not parse gives
    None (wrong). Other answer types are kept as they are.
    """
    if question_type == "multi_choice":
        extraction = extraction.strip()
        letter = _PAREN_LETTER.findall(extraction)
        if letter:
            extraction = letter[0].upper()
        letters = [chr(ord("A") + i) for i in range(len(choices))]
        if extraction in letters:
            return choices[letters.index(extraction)]
        distances = [levenshtein(extraction, choice) for choice in choices]
        return choices[distances.index(min(distances))]
    try:
        if answer_type == "integer":
            return str(int(float(extraction)))
        if answer_type == "float":
            return str(round(float(extraction), int(precision or 0)))
    except (ValueError, OverflowError):
        return None
    return extraction


def safe_equal(prediction: str | None, answer: str) -> bool:
    """MathVista's ``safe_equal``: the two are equal as stripped strings (None reads as ``"None"``)."""
    return str(prediction).strip() == str(answer).strip()


class MathVista(Benchmark):
    """MathVista testmini."""

    name = "mathvista"
    prompt_template = (
        "{question}[ (Unit: {unit})]\n[{choices}\n]{instruction}; instruction by answer type: "
        + "; ".join(f"{k}: {v}" for k, v in _INSTRUCTIONS.items())
    )
    prompt_source = "lmms-eval tasks/mathvista/mathvista_testmini_format.yaml (shot_type format-prompt)"
    reference = "MathVista quick rules + normalize_extracted_answer + safe_equal; our rules in place of GPT-4"
    max_new_tokens = 1024
    path_options = frozenset({"annotations"})

    def __init__(self, root: str | Path, annotations: str = "testmini.json") -> None:
        super().__init__(root)
        self.annotations = annotations

    def _problems(self) -> list[tuple[str, Any]]:
        data = self._read_json(self.annotations)
        if isinstance(data, dict):
            return [(str(pid), prob) for pid, prob in data.items()]
        if isinstance(data, list):
            where = self.annotations
            return [(str(self._get(row, "pid", (str, int), f"{where}[{i}]")), row) for i, row in enumerate(data)]
        raise self._bad(self.annotations, "is neither an object keyed by pid nor a list of problems")

    def load(self) -> list[EvalItem]:
        items = []
        for pid, prob in self._problems():
            where = f"{self.annotations}[{pid!r}]"
            question = self._get(prob, "question", str, where)
            qtype = self._get(prob, "question_type", str, where)
            if qtype not in QUESTION_TYPES:
                raise self._bad(f"{where}.question_type", f"is {qtype!r}, not one of {QUESTION_TYPES}")
            atype = self._get(prob, "answer_type", str, where)
            if atype not in ANSWER_TYPES:
                raise self._bad(f"{where}.answer_type", f"is {atype!r}, not one of {ANSWER_TYPES}")
            answer = str(self._get(prob, "answer", (str, int, float), where))
            choices = [str(c) for c in (prob.get("choices") or [])]
            if qtype == "multi_choice":
                if len(choices) < 2:
                    raise self._bad(f"{where}.choices", f"has {len(choices)} choices; a multi_choice problem needs two")
                if answer not in choices:
                    raise self._bad(f"{where}.answer", f"is {answer!r}, which is not one of the choices {choices}")
            precision = prob.get("precision")
            if atype == "float":
                if isinstance(precision, bool) or not isinstance(precision, (int, float)):
                    raise self._bad(f"{where}.precision", f"is {precision!r}; a float answer needs its decimal places")
                precision = int(precision)
            else:
                precision = None
            unit = prob.get("unit")
            query = format_prompt(question, choices, qtype, atype, precision, unit if isinstance(unit, str) else None)
            metadata = prob.get("metadata") if isinstance(prob.get("metadata"), Mapping) else {}
            items.append(
                EvalItem(
                    id=pid,
                    prompt=query,
                    target=answer,
                    image_path=self.root / self._get(prob, "image", str, where),
                    meta={
                        "question_type": qtype,
                        "answer_type": atype,
                        "choices": choices,
                        "precision": precision,
                        "task": str(metadata.get("task") or ""),
                    },
                )
            )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        hits, unread = [], []
        for it, pred in pairs:
            m = it.meta
            extraction = mathvista_extract(pred, m["question_type"], m["answer_type"], m["choices"])
            unread.append(extraction is None or blank(pred))
            normalised = mathvista_normalize(
                pred.strip() if extraction is None else extraction,
                m["choices"], m["question_type"], m["answer_type"], m["precision"],
            )
            hits.append((it, safe_equal(normalised, it.target)))
        scores = {"score": mean([h for _, h in hits]), "n": float(len(hits)), "unparsed": mean(unread)}
        scores.update(grouped_accuracy([(it.meta["question_type"], h) for it, h in hits], "question_type"))
        scores.update(grouped_accuracy([(it.meta["task"], h) for it, h in hits if it.meta["task"]], "task"))
        return scores
