"""DocVQA (validation): questions about scanned document pages, scored by ANLS.

Layout under ``root`` (the ``val`` folder of the official DocVQA release,
Single-Page Document VQA, task 1)::

    val_v1.0.json     {"dataset_name": "docvqa", "dataset_split": "val", "data": [
                        {"questionId": 49153, "question": "What is the ...?",
                         "image": "documents/pybv0228_81.png", "docId": 14465,
                         "answers": ["0.28"], "question_types": ["figure/diagram"], ...}, ...]}
    documents/<name>.png       (``image`` is relative to root)

The validation split has 5,349 questions. The test split's file
(``test_v1.0.json``) has no answers: it loads, but only the official server scores it.

Prompt (lmms-eval ``tasks/docvqa/_default_template_docvqa_yaml``): the question,
a newline and "Answer the question using a single word or phrase."; 128 new
tokens at most.

Score: ANLS as lmms-eval's ``anls`` metric (``api/metrics.py``) computes it
(``anls``): per gold answer, the edit distance between the cleaned strings
(stripped, lower-cased, whitespace runs collapsed to one space) divided by the
longer of the *raw* reply and gold after upper-casing; the question's value is 1
minus the smallest such ratio, set to 0 below 0.5 (exactly 0.5 counts). Because
the lengths are the raw, upper-cased ones, outer or doubled spaces and characters
whose case mapping changes length (``"ß"`` upper-cases to ``"SS"``) shift the
score: ``" Dr Lobo"`` against ``"Dr. Lobo"`` scores 1 - 1/8 while a reply of
``"Dr Lobo"`` plus three spaces scores 1 - 1/10. The headline is the mean.
Sub-scores: mean ANLS per ``question_type/<type>`` (``form``, ``table/list``,
``handwritten``, ...; a question with several types counts in each);
``unparsed`` is the share of blank replies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.evals.benchmarks.base import SHORT_ANSWER, Benchmark, EvalItem, grouped_accuracy, mean
from sweep.evals.scoring import blank, levenshtein


def anls(prediction: str, answers: Sequence[str] | str, threshold: float = 0.5) -> float:
    """lmms-eval's ANLS of one reply against the gold answers (see the module docstring)."""
    golds = [answers] if isinstance(answers, str) else list(answers)
    if not golds:
        raise ValueError("anls needs at least one gold answer")
    reply = " ".join(prediction.strip().lower().split())
    ratios = []
    for answer in golds:
        gold = " ".join(answer.strip().lower().split())
        length = max(len(answer.upper()), len(prediction.upper()))
        ratios.append(0.0 if length == 0 else float(levenshtein(gold, reply)) / float(length))
    value = 1 - min(ratios)
    return 0.0 if value < threshold else value


class DocVQA(Benchmark):
    """DocVQA single-page validation split (or another split's file of the same form)."""

    name = "docvqa"
    prompt_template = "{question}\n" + SHORT_ANSWER
    prompt_source = "lmms-eval tasks/docvqa/_default_template_docvqa_yaml (docvqa_val)"
    reference = "lmms-eval api/metrics.py anls (threshold 0.5)"
    max_new_tokens = 128
    path_options = frozenset({"annotations"})

    def __init__(self, root: str | Path, annotations: str = "val_v1.0.json") -> None:
        super().__init__(root)
        self.annotations = annotations

    def load(self) -> list[EvalItem]:
        data = self._get(self._read_json(self.annotations), "data", list, self.annotations)
        items = []
        for i, row in enumerate(data):
            where = f"{self.annotations}.data[{i}]"
            answers = None
            if isinstance(row, Mapping) and "answers" in row:
                answers = self._get(row, "answers", list, where)
                if not answers:
                    raise self._bad(f"{where}.answers", "is empty; every validation question has an answer")
            types = row.get("question_types") if isinstance(row, Mapping) else None
            if types is not None and not isinstance(types, list):
                raise self._bad(f"{where}.question_types", f"is {type(types).__name__}, expected list")
            items.append(
                EvalItem(
                    id=str(self._get(row, "questionId", (int, str), where)),
                    prompt=self.prompt_template.format(question=self._get(row, "question", str, where)),
                    target=None if answers is None else [str(a) for a in answers],
                    image_path=self.root / self._get(row, "image", str, where),
                    meta={"question_types": [str(t) for t in types or []], "doc_id": str(row.get("docId", ""))},
                )
            )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = self._scored_pairs(items, predictions, self.annotations, "validation")
        values = [(it, anls(pred, it.target)) for it, pred in pairs]
        scores = {
            "score": mean([v for _, v in values]),
            "n": float(len(values)),
            "unparsed": mean([blank(pred) for _, pred in pairs]),
        }
        by_type = [(t, v) for it, v in values for t in it.meta["question_types"]]
        scores.update(grouped_accuracy(by_type, "question_type"))
        return scores
