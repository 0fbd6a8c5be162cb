"""ChartQA (test): questions about charts, relaxed accuracy.

Layout under ``root`` (the ``ChartQA Dataset`` folder of the official release)::

    test/test_human.json       [{"imgname": "41699051005347.png", "query": "...", "label": "..."}, ...]
    test/test_augmented.json   (same form; a {"data": [...]} wrapper is accepted too)
    test/png/<imgname>

Both splits load by default (1,250 questions each); item ids are
``"<split>/<position in file>"``.

Prompt (lmms-eval ``tasks/chartqa/chartqa.yaml``): the question, a newline and
"Answer the question using a single word or phrase."; 16 new tokens at most.

Score: lmms-eval's ``relaxed_correctness`` (``tasks/chartqa/utils.py``), pooled
over the loaded splits: when the gold answer reads as a non-zero number and the
reply reads as a number, the reply is right within 5% of it (relative); otherwise
the two must be equal after lower-casing, with nothing trimmed. "Reads as a
number" is Python's ``float`` (outer whitespace, ``1e3``, ``inf`` and ``nan``
included), after every trailing ``%`` is stripped from a text that ends in one
and the number divided by 100 (``"12%"`` is 0.12, ``"12%%"`` too; ``"12% "`` is
not a number). ``"1,000"`` is not a number. Sub-scores ``human`` and
``augmented``; ``unparsed`` is the share of blank replies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.errors import SweepError
from sweep.evals.benchmarks.base import SHORT_ANSWER, Benchmark, EvalItem, aligned, grouped_accuracy, mean
from sweep.evals.scoring import blank

SPLITS = ("human", "augmented")


def _as_number(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(reply: str, gold: str, max_relative_change: float = 0.05) -> bool:
    """lmms-eval's ChartQA verdict: within 5% of a non-zero numeric gold, else equal ignoring case."""
    value, target = _as_number(reply), _as_number(gold)
    if value is not None and target:
        return abs(value - target) / abs(target) <= max_relative_change
    return reply.lower() == gold.lower()


class ChartQA(Benchmark):
    """ChartQA test split, human-written and augmented questions."""

    name = "chartqa"
    prompt_template = "{question}\n" + SHORT_ANSWER
    prompt_source = "lmms-eval tasks/chartqa/chartqa.yaml"
    reference = "lmms-eval tasks/chartqa/utils.py relaxed_correctness (5%)"
    max_new_tokens = 16

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
                        prompt=self.prompt_template.format(question=self._get(row, "query", str, where)),
                        target=str(self._get(row, "label", (str, int, float), where)),
                        image_path=self.root / "test" / "png" / self._get(row, "imgname", str, where),
                        meta={"split": split},
                    )
                )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        hits = [(it.meta["split"], relaxed_correctness(pred, it.target)) for it, pred in pairs]
        scores = {"score": mean([h for _, h in hits]), "n": float(len(hits)), "unparsed": mean([blank(p) for _, p in pairs])}
        scores.update({k.split("/", 1)[1]: v for k, v in grouped_accuracy(hits, "split").items()})
        return scores
