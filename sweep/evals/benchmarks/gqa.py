"""GQA (test-dev balanced): compositional questions on real images, exact-match accuracy.

Layout under ``root`` (the files of the official GQA release)::

    testdev_balanced_questions.json   {qid: {"question", "answer", "imageId", "types": {...}, ...}}
    images/<imageId>.jpg

Prompt (LLaVA-1.5, ``playground/data/eval/gqa/llava_gqa_testdev_balanced.jsonl``):
the question, a newline and "Answer the question using a single word or phrase.";
128 new tokens at most (the default of LLaVA's ``model_vqa_loader.py``).

Score, as LLaVA's ``scripts/convert_gqa_for_eval.py`` then the official GQA
``eval.py`` compute it (``gqa_correct``): every trailing period is dropped
(``"Yes.."`` -> ``"Yes"``), then the reply is lower-cased and must equal the gold
answer exactly. Nothing else is trimmed, so ``" yes"`` and ``"yes "`` are wrong and
``"yes. "`` keeps its period. Sub-scores: accuracy per structural type
(``structural/verify``, ...) and per semantic type (``semantic/rel``, ...), as the
official script reports them; ``unparsed`` is the share of blank replies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.evals.benchmarks.base import SHORT_ANSWER, Benchmark, EvalItem, aligned, grouped_accuracy, mean
from sweep.evals.scoring import blank


def gqa_correct(reply: str, gold: str) -> bool:
    """LLaVA's conversion (``rstrip('.')``, ``lower()``) then the official string equality."""
    return reply.rstrip(".").lower() == gold


class GQA(Benchmark):
    """GQA test-dev balanced split (12,578 questions)."""

    name = "gqa"
    prompt_template = "{question}\n" + SHORT_ANSWER
    prompt_source = "LLaVA-1.5 playground/data/eval/gqa/llava_gqa_testdev_balanced.jsonl, llava/eval/model_vqa_loader.py"
    reference = "LLaVA scripts/convert_gqa_for_eval.py + GQA eval.py (exact match)"
    max_new_tokens = 128
    path_options = frozenset({"questions", "images"})

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
                    prompt=self.prompt_template.format(question=question),
                    target=self._get(q, "answer", str, where),
                    image_path=self.root / self.images / f"{self._get(q, 'imageId', str, where)}.jpg",
                    meta={"structural": types.get("structural", "unknown"), "semantic": types.get("semantic", "unknown")},
                )
            )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        hits = [(it, gqa_correct(pred, it.target)) for it, pred in pairs]
        scores = {"score": mean([h for _, h in hits]), "n": float(len(hits)), "unparsed": mean([blank(p) for _, p in pairs])}
        scores.update(grouped_accuracy([(it.meta["structural"], h) for it, h in hits], "structural"))
        scores.update(grouped_accuracy([(it.meta["semantic"], h) for it, h in hits], "semantic"))
        return scores
