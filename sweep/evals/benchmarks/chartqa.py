"""ChartQA (test): questions about charts, relaxed accuracy.

Layout under ``root`` (the ``ChartQA Dataset`` folder of the official release)::

    test/test_human.json       [{"imgname": "41699051005347.png", "query": "...", "label": "..."}, ...]
    test/test_augmented.json   (same form; a {"data": [...]} wrapper is accepted too)
    test/png/<imgname>

Both splits load by default (1,250 questions each); item ids are
``"<split>/<position in file>"``. The prompt is the question plus a
single-word-or-phrase instruction.

Score: relaxed accuracy (``relaxed_match``: a numeric answer within 5% of the gold
number counts, percentages read as fractions; other answers need an exact,
case-insensitive match), pooled over the loaded splits as lmms-eval reports it;
sub-scores ``human`` and ``augmented``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.errors import SweepError
from sweep.evals.benchmarks.base import SHORT_ANSWER, Benchmark, EvalItem, aligned, grouped_accuracy, mean
from sweep.evals.scoring import relaxed_match

SPLITS = ("human", "augmented")


class ChartQA(Benchmark):
    """ChartQA test split, human-written and augmented questions."""

    name = "chartqa"

    def __init__(self, root: str | Path, splits: Sequence[str] = SPLITS) -> None:
        super().__init__(root)
        if not splits or set(splits) - set(SPLITS):
            raise SweepError("eval.chartqa.splits", f"is {list(splits)}", f"use some of {SPLITS}")
        self.splits = tuple(splits)

    def load(self) -> list[EvalItem]:
        items = []
        for split in self.splits:
            rel = f"test/test_{split}.json"
            data = self._read_json(rel)
            rows = data.get("data") if isinstance(data, dict) else data
            if not isinstance(rows, list):
                raise self._bad(rel, "is not a list of questions")
            for i, row in enumerate(rows):
                where = f"{rel}[{i}]"
                items.append(
                    EvalItem(
                        id=f"{split}/{i}",
                        prompt=f"{self._get(row, 'query', str, where)}\n{SHORT_ANSWER}",
                        target=str(self._get(row, "label", (str, int, float), where)),
                        image_path=self.root / "test" / "png" / self._get(row, "imgname", str, where),
                        meta={"split": split},
                    )
                )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        hits = [(it.meta["split"], relaxed_match(pred, it.target)) for it, pred in pairs]
        scores = {"score": mean([h for _, h in hits]), "n": float(len(hits))}
        scores.update({k.split("/", 1)[1]: v for k, v in grouped_accuracy(hits, "split").items()})
        return scores
