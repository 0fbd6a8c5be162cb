"""TextVQA (validation): questions that need reading text in the image, VQA accuracy.

Layout under ``root`` (the files of the official TextVQA 0.5.1 release)::

    TextVQA_0.5.1_val.json    {"data": [{"question_id", "question", "image_id",
                                          "answers": [10 human answers], ...}, ...]}
    train_images/<image_id>.jpg   (the validation images ship in the train folder)

The prompt is the question plus LLaVA's short-answer instruction, without OCR
tokens. Score: mean VQA accuracy (``vqa_accuracy``: normalised answers,
min(#humans / 3, 1) averaged over the leave-one-out subsets), the metric of the
TextVQA evaluator that LLaVA and lmms-eval use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.evals.benchmarks.base import SHORT_ANSWER, Benchmark, EvalItem, aligned, mean
from sweep.evals.scoring import vqa_accuracy


class TextVQA(Benchmark):
    """TextVQA validation split (5,000 questions)."""

    name = "textvqa"

    def __init__(self, root: str | Path, annotations: str = "TextVQA_0.5.1_val.json", images: str = "train_images") -> None:
        super().__init__(root)
        self.annotations, self.images = annotations, images

    def load(self) -> list[EvalItem]:
        data = self._get(self._read_json(self.annotations), "data", list, self.annotations)
        items = []
        for i, row in enumerate(data):
            where = f"{self.annotations}.data[{i}]"
            answers = self._get(row, "answers", list, where)
            if not answers:
                raise self._bad(f"{where}.answers", "is empty; the validation split has 10 answers per question")
            items.append(
                EvalItem(
                    id=str(self._get(row, "question_id", (int, str), where)),
                    prompt=f"{self._get(row, 'question', str, where)}\n{SHORT_ANSWER}",
                    target=[str(a) for a in answers],
                    image_path=self.root / self.images / f"{self._get(row, 'image_id', str, where)}.jpg",
                )
            )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        return {"score": mean([vqa_accuracy(pred, it.target) for it, pred in pairs]), "n": float(len(pairs))}
