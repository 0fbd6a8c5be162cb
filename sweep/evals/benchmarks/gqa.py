"""GQA (test-dev balanced): compositional questions on real images, exact-match accuracy.

Layout under ``root`` (the files of the official GQA release)::

    testdev_balanced_questions.json   {qid: {"question", "answer", "imageId", "types": {...}, ...}}
    images/<imageId>.jpg

Score: exact match after lower-casing and dropping a trailing period (what LLaVA's
conversion does before the official GQA script compares strings). Sub-scores:
accuracy per structural type (``structural/verify``, ``structural/query``, ...)
and per semantic type (``semantic/rel``, ``semantic/attr``, ...), as the official
script reports them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.evals.benchmarks.base import SHORT_ANSWER, Benchmark, EvalItem, aligned, grouped_accuracy, mean
from sweep.evals.scoring import exact_match


class GQA(Benchmark):
    """GQA test-dev balanced split (12,578 questions)."""

    name = "gqa"

    def __init__(
        self, root: str | Path, questions: str = "testdev_balanced_questions.json", images: str = "images"
    ) -> None:
        super().__init__(root)
        self.questions, self.images = questions, images

    def load(self) -> list[EvalItem]:
        data = self._read_json(self.questions)
        if not isinstance(data, dict):
            raise self._bad(self.questions, "is not an object keyed by question id")
        items = []
        for qid, q in data.items():
            where = f"{self.questions}[{qid!r}]"
            question = self._get(q, "question", str, where)
            types = q.get("types") or {}
            items.append(
                EvalItem(
                    id=str(qid),
                    prompt=f"{question}\n{SHORT_ANSWER}",
                    target=self._get(q, "answer", str, where),
                    image_path=self.root / self.images / f"{self._get(q, 'imageId', str, where)}.jpg",
                    meta={"structural": types.get("structural", "unknown"), "semantic": types.get("semantic", "unknown")},
                )
            )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        hits = [(it, exact_match(pred, it.target)) for it, pred in pairs]
        scores = {"score": mean([h for _, h in hits]), "n": float(len(hits))}
        scores.update(grouped_accuracy([(it.meta["structural"], h) for it, h in hits], "structural"))
        scores.update(grouped_accuracy([(it.meta["semantic"], h) for it, h in hits], "semantic"))
        return scores
