"""OCRBench (v1): 1,000 OCR questions in 10 types, containment scoring.

Layout under ``root`` (the official release)::

    OCRBench.json     [{"dataset_name": "IIIT5K", "id": 0, "image_path": "IIIT5K/imgs/...",
                        "question": "what is written in the image?",
                        "answers": ["..."] | "...", "type": "Regular Text Recognition"}, ...]
    OCRBench_Images/<image_path>

Score (the official rule): a reply is right when one of the answers occurs in it,
case-insensitive with newlines read as spaces; for handwritten formulas (dataset
HME100k) spaces are removed and case kept. The official "final score" is the count
right out of 1,000; the headline here is that count over the number of questions.
Sub-scores: accuracy per question ``type/<name>`` and ``text_recognition`` (the six
recognition types pooled, the official "Text Recognition" out of 300, as a share).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.evals.benchmarks.base import Benchmark, EvalItem, aligned, grouped_accuracy, mean
from sweep.evals.scoring import ocr_contains

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


class OCRBench(Benchmark):
    """OCRBench v1."""

    name = "ocrbench"

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
            (it.meta["type"], ocr_contains(pred, it.target, formula=it.meta["dataset"] in FORMULA_DATASETS))
            for it, pred in pairs
        ]
        scores = {"score": mean([h for _, h in hits]), "n": float(len(hits))}
        recognition = [h for t, h in hits if t in RECOGNITION_TYPES]
        if recognition:
            scores["text_recognition"] = mean(recognition)
        scores.update(grouped_accuracy(hits, "type"))
        return scores
