"""POPE: object-hallucination yes/no questions on COCO val2014 images.

Layout under ``root`` (the POPE release's ``output/coco`` files, as LLaVA stores them)::

    coco/coco_pope_adversarial.json   JSON lines: {"question_id", "image", "text", "label": "yes"|"no"}
    coco/coco_pope_popular.json
    coco/coco_pope_random.json
    val2014/COCO_val2014_000000310196.jpg ...

(The ``.json`` files hold one JSON object per line.) Question ids restart in each
file, so item ids are ``"<category>/<question_id>"``.

Prompt (LLaVA-1.5, ``playground/data/eval/pope/llava_pope_test.jsonl``): the
question, a newline and "Answer the question using a single word or phrase."; 128
new tokens at most (LLaVA's ``model_vqa_loader.py`` default).

Replies are read by LLaVA's ``llava/eval/eval_pope.py`` (``pope_says_yes``): only
the text before the first period counts, commas are dropped, the rest is split at
single spaces, and the reply is "no" when one of those words is exactly ``No``,
``no`` or ``not``; anything else, an empty reply included, is "yes". Sub-scores:
accuracy, precision, recall, F1 and yes-ratio pooled over all questions and per
category (``random/f1``, ...); ``f1_mean``, the mean of the categories' F1 (the
POPE number LLaVA-1.5 reports); ``unparsed``, the share of replies whose first
sentence has neither a no-word nor a ``yes`` (any case), which the rule counts as
yes by default. The headline is the pooled accuracy (the study's error is 1 -
accuracy); ``headline="f1"`` makes it the pooled F1. Where the reference divides
by zero (a model that never says yes), precision, recall and F1 are 0 here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.errors import SweepError
from sweep.evals.benchmarks.base import SHORT_ANSWER, Benchmark, EvalItem, aligned, mean

CATEGORIES = ("adversarial", "popular", "random")


def _first_sentence_words(text: str) -> list[str]:
    return text.split(".", 1)[0].replace(",", "").split(" ")


def pope_says_yes(text: str) -> bool:
    """LLaVA's ``eval_pope.py``: no when the first sentence holds the word No, no or not."""
    return not any(w in ("No", "no", "not") for w in _first_sentence_words(text))


def pope_unread(text: str) -> bool:
    """True when the first sentence says neither no (the rule's words) nor yes: the rule's default yes."""
    words = _first_sentence_words(text)
    return pope_says_yes(text) and not any(w.lower() == "yes" for w in words)


def binary_metrics(predicted: Sequence[bool], labels: Sequence[bool]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and the share of "yes" predictions (0 where a ratio has no denominator)."""
    if len(predicted) != len(labels) or not labels:
        raise ValueError("binary_metrics needs equally long, non-empty predictions and labels")
    tp = sum(p and y for p, y in zip(predicted, labels))
    fp = sum(p and not y for p, y in zip(predicted, labels))
    fn = sum(y and not p for p, y in zip(predicted, labels))
    tn = len(labels) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / len(labels),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": (tp + fp) / len(labels),
    }


class POPE(Benchmark):
    """POPE on COCO: 3 x 3,000 questions (adversarial, popular, random sampling)."""

    name = "pope"
    prompt_template = "{question}\n" + SHORT_ANSWER
    prompt_source = "LLaVA-1.5 playground/data/eval/pope/llava_pope_test.jsonl, llava/eval/model_vqa_loader.py"
    reference = "LLaVA llava/eval/eval_pope.py"
    max_new_tokens = 128
    path_options = frozenset({"annotations", "images"})

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
                        prompt=self.prompt_template.format(question=self._get(row, "text", str, where)),
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
        f1s = []
        for cat in self.categories:
            idx = [i for i, (it, _) in enumerate(pairs) if it.meta["category"] == cat]
            if idx:
                sub = binary_metrics([said[i] for i in idx], [gold[i] for i in idx])
                scores.update({f"{cat}/{k}": v for k, v in sub.items()})
                f1s.append(sub["f1"])
        scores["f1_mean"] = mean(f1s)
        scores["unparsed"] = mean([pope_unread(pred) for _, pred in pairs])
        scores["score"] = scores[self.headline]
        scores["n"] = float(len(pairs))
        return scores
