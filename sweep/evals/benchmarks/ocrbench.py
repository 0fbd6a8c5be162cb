"""OCRBench (v1): 1,000 OCR questions in 10 types, containment scoring.

Layout under ``root`` (the official release)::

    OCRBench.json     [{"dataset_name": "IIIT5K", "id": 0, "image_path": "IIIT5K/imgs/...",
                        "question": "what is written in the image?",
                        "answers": ["..."] | "...", "type": "Regular Text Recognition"}, ...]
    OCRBench_Images/<image_path>

Prompt (lmms-eval ``tasks/ocrbench``): the question, stripped, with nothing
added; 128 new tokens at most.

Score (the official rule of the OCRBench repository, ``ocrbench_correct``): a
reply is right when one of the answers occurs in it, both lower-cased and
stripped, newlines read as spaces; for handwritten formulas (dataset HME100k)
spaces are removed from both and case is kept, since LaTeX is case-sensitive.
(lmms-eval's copy lower-cases HME100k replies too; we keep the official rule.)
The official "final score" is the count right out of 1,000: ``final_score`` here
is 1000 x the share right, which is that count on the full set. The headline is
the share right. Sub-scores: accuracy per question ``type/<name>`` and
``text_recognition`` (the six recognition types pooled, the official "Text
Recognition" out of 300, as a share); ``unparsed`` is the share of blank replies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.evals.benchmarks.base import Benchmark, EvalItem, aligned, grouped_accuracy, mean
from sweep.evals.scoring import blank

RECOGNITION_TYPES = frozenset(
    {
        "Regular Text Recognition",
        "Irregular Text Recognition",
        "Artistic Text Recognition",
        "Handwriting Recognition",
        "Digit String Recognition",
        "Non-Semantic Text Recognition",
    }
)
FORMULA_DATASETS = frozenset({"HME100k"})


def ocrbench_correct(reply: str, answers: Sequence[str] | str, *, formula: bool = False) -> bool:
    """OCRBench's rule: one of the answers occurs inside the reply (see the module docstring)."""

    def clean(text: str) -> str:
        if formula:
            return text.strip().replace("\n", " ").replace(" ", "")
        return text.lower().strip().replace("\n", " ")

    reply = clean(reply)
    golds = [answers] if isinstance(answers, str) else list(answers)
    return any(clean(str(a)) in reply for a in golds)


class OCRBench(Benchmark):
    """OCRBench v1."""

    name = "ocrbench"
    prompt_template = "{question}"
    prompt_source = "lmms-eval tasks/ocrbench/ocrbench.yaml"
    reference = "OCRBench official scoring (MultimodalOCR), containment"
    max_new_tokens = 128
    path_options = frozenset({"annotations", "images"})

    def __init__(self, root: str | Path, annotations: str = "OCRBench.json", images: str = "OCRBench_Images") -> None:
        super().__init__(root)
        self.annotations, self.images = annotations, images

    def load(self) -> list[EvalItem]:
        data = self._read_json(self.annotations)
        if not isinstance(data, list):
            raise self._bad(self.annotations, "is not a list of questions")
        items = []
        for i, row in enumerate(data):
            where = f"{self.annotations}[{i}]"
            answers = self._get(row, "answers", (list, str), where)
            items.append(
                EvalItem(
                    id=str(row.get("id", i)),
                    prompt=self._get(row, "question", str, where).strip(),
                    target=[answers] if isinstance(answers, str) else [str(a) for a in answers],
                    image_path=self.root / self.images / self._get(row, "image_path", str, where),
                    meta={"type": self._get(row, "type", str, where), "dataset": row.get("dataset_name", "")},
                )
            )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        hits = [
            (it.meta["type"], ocrbench_correct(pred, it.target, formula=it.meta["dataset"] in FORMULA_DATASETS))
            for it, pred in pairs
        ]
        share = mean([h for _, h in hits])
        scores = {
            "score": share,
            "final_score": 1000.0 * share,
            "n": float(len(hits)),
            "unparsed": mean([blank(pred) for _, pred in pairs]),
        }
        recognition = [h for t, h in hits if t in RECOGNITION_TYPES]
        if recognition:
            scores["text_recognition"] = mean(recognition)
        scores.update(grouped_accuracy(hits, "type"))
        return scores
