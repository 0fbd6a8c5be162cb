"""POPE: object-hallucination yes/no questions on COCO val2014 images.

Layout under ``root`` (the POPE release's ``output/coco`` files, as LLaVA stores them)::

    coco/coco_pope_adversarial.json   JSON lines: {"question_id", "image", "text", "label": "yes"|"no"}
    coco/coco_pope_popular.json
    coco/coco_pope_random.json
    val2014/COCO_val2014_000000310196.jpg ...

(The ``.json`` files hold one JSON object per line.) Question ids restart in each
file, so item ids are ``"<category>/<question_id>"``.

Answers are read with LLaVA's rule (``pope_says_yes``: "no" when the first sentence
has the word no/not). Sub-scores: accuracy, precision, recall, F1 and yes-ratio,
each pooled over all questions and per category (``random/f1``, ...). The headline
is the pooled accuracy by default (the study's error is 1 - accuracy); pass
``headline="f1"`` for the F1 that the LLaVA papers quote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.errors import SweepError
from sweep.evals.benchmarks.base import SHORT_ANSWER, Benchmark, EvalItem, aligned
from sweep.evals.scoring import binary_metrics, pope_says_yes

CATEGORIES = ("adversarial", "popular", "random")


class POPE(Benchmark):
    """POPE on COCO: 3 x 3,000 questions (adversarial, popular, random sampling)."""

    name = "pope"

    def __init__(
        self,
        root: str | Path,
        categories: Sequence[str] = CATEGORIES,
        annotations: str = "coco",
        images: str = "val2014",
        headline: str = "accuracy",
    ) -> None:
        super().__init__(root)
        unknown = sorted(set(categories) - set(CATEGORIES))
        if unknown or not categories:
            problem = f"unknown or empty: {unknown or list(categories)}"
            raise SweepError("eval.pope.categories", problem, f"use some of {CATEGORIES}")
        if headline not in ("accuracy", "f1"):
            raise SweepError("eval.pope.headline", f"{headline!r} is not a POPE metric", "use 'accuracy' or 'f1'")
        self.categories, self.annotations, self.images, self.headline = tuple(categories), annotations, images, headline

    def load(self) -> list[EvalItem]:
        items = []
        for cat in self.categories:
            rel = f"{self.annotations}/coco_pope_{cat}.json"
            for i, row in enumerate(self._read_jsonl(rel)):
                where = f"{rel} line {i + 1}"
                label = self._get(row, "label", str, where).strip().lower()
                if label not in ("yes", "no"):
                    raise self._bad(f"{where}.label", f"is {label!r}, expected 'yes' or 'no'")
                qid = self._get(row, "question_id", (int, str), where)
                items.append(
                    EvalItem(
                        id=f"{cat}/{qid}",
                        prompt=f"{self._get(row, 'text', str, where)}\n{SHORT_ANSWER}",
                        target=label == "yes",
                        image_path=self.root / self.images / self._get(row, "image", str, where),
                        meta={"category": cat},
                    )
                )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        said = [pope_says_yes(pred) for _, pred in pairs]
        gold = [bool(it.target) for it, _ in pairs]
        scores = binary_metrics(said, gold)
        for cat in self.categories:
            idx = [i for i, (it, _) in enumerate(pairs) if it.meta["category"] == cat]
            if idx:
                sub = binary_metrics([said[i] for i in idx], [gold[i] for i in idx])
                scores.update({f"{cat}/{k}": v for k, v in sub.items()})
        scores["score"] = scores[self.headline]
        scores["n"] = float(len(pairs))
        return scores
