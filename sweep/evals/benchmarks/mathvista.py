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
keyed by ``pid``. The prompt is the record's ``query``, the official zero-shot
prompt (answer-format hint, question, choices); a record without one gets the
same built from its fields.

Score: accuracy. The official pipeline has GPT-4 extract the answer from the reply,
then normalises it (``normalize_extracted_answer``) and compares it with the gold
answer (``safe_equal``). We call no GPT-4: ``mathvista_extract`` keeps the official
quick rules and replaces the GPT-4 step with rules of our own (the option letter
or text, the last number, the last list), then ``mathvista_normalize`` does what
the official normalisation does (a letter or any other text becomes the closest
choice; integers are truncated, floats rounded to the record's ``precision``) and
the result must equal the gold string. Scores can therefore differ from the
GPT-extracted numbers of the MathVista leaderboard, mostly for long free-form
replies. Sub-scores: ``question_type/{multi_choice,free_form}`` and ``task/<name>``
(from ``metadata.task``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sweep.evals.benchmarks.base import Benchmark, EvalItem, aligned, grouped_accuracy, mean
from sweep.evals.scoring import mathvista_extract, mathvista_normalize

QUESTION_TYPES = ("multi_choice", "free_form")
ANSWER_TYPES = ("text", "integer", "float", "list")
# The official answer-format hints (build_query.py), used when a record has no query.
_HINTS = {
    "multi_choice": "Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.",
    "integer": (
        "Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end."
    ),
    "float1": (
        "Please answer the question requiring a floating-point number with one decimal place and provide the final "
        "value, e.g., 1.2, 1.3, 1.4, at the end."
    ),
    "float2": (
        "Please answer the question requiring a floating-point number with two decimal places and provide the final "
        "value, e.g., 1.23, 1.34, 1.45, at the end."
    ),
    "list": (
        "Please answer the question requiring a Python list as an answer and provide the final list, "
        "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end."
    ),
}


def build_query(
    question: str, choices: Sequence[str], question_type: str, answer_type: str, precision: int | None, unit: str | None
) -> str:
    """The official zero-shot query: hint, question (with its unit), lettered choices."""
    if question_type == "multi_choice":
        hint = _HINTS["multi_choice"]
    elif answer_type == "float":
        hint = _HINTS.get(f"float{precision}") or (
            f"Please answer the question requiring a floating-point number with {precision} decimal places "
            "and provide the final value at the end."
        )
    else:
        hint = _HINTS.get(answer_type, "Please answer the question and provide the final answer at the end.")
    lines = [f"Hint: {hint}", f"Question: {question}" + (f" (Unit: {unit})" if unit else "")]
    if choices:
        lines += ["Choices:"] + [f"({chr(ord('A') + i)}) {c}" for i, c in enumerate(choices)]
    return "\n".join(lines)


class MathVista(Benchmark):
    """MathVista testmini."""

    name = "mathvista"
    # Its prompts ask for reasoning, then the answer at the end: room for both.
    max_new_tokens = 128

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
            query = prob.get("query")
            if not (isinstance(query, str) and query.strip()):
                query = build_query(question, choices, qtype, atype, precision, prob.get("unit"))
            metadata = prob.get("metadata") if isinstance(prob.get("metadata"), Mapping) else {}
            items.append(
                EvalItem(
                    id=pid,
                    prompt=query.strip(),
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
        hits = []
        for it, pred in pairs:
            m = it.meta
            extraction = mathvista_extract(pred, m["question_type"], m["answer_type"], m["choices"])
            normalised = mathvista_normalize(
                extraction, m["choices"], m["question_type"], m["answer_type"], m["precision"]
            )
            hits.append((it, normalised == it.target))
        scores = {"score": mean([h for _, h in hits]), "n": float(len(hits))}
        scores.update(grouped_accuracy([(it.meta["question_type"], h) for it, h in hits], "question_type"))
        scores.update(grouped_accuracy([(it.meta["task"], h) for it, h in hits if it.meta["task"]], "task"))
        return scores
