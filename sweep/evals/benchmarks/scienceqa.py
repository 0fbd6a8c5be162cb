"""ScienceQA-IMG: the science multiple-choice questions that come with an image.

Layout under ``root`` (the files of the official ScienceQA release)::

    problems.json      {pid: {"question", "choices": [...], "answer": <index>, "hint",
                              "image": "image.png" | null, "subject", "grade", ...}}
    pid_splits.json    {"train": [pid, ...], "val": [...], "test": [...], ...}
    images/test/<pid>/image.png

Only the problems of ``split`` (default ``test``) that have an image are loaded
(2,017 in the test split), the "IMG" subset LLaVA reports.

Prompt (LLaVA-1.5, ``playground/data/eval/scienceqa/llava_test_CQM-A.json`` with
``model_vqa_science.py --single-pred-prompt``): ``Context: <hint>`` when there is
a hint, the question, the choices as ``A. ...`` lines, and "Answer with the
option's letter from the given choices directly."; 1024 new tokens at most.

Score: accuracy of the option read by LLaVA's ``llava/eval/eval_science_qa.py``
(``scienceqa_pick``), first rule that applies:

1. the reply is exactly one of ``A``-``E`` (no spaces around it);
2. it is at least three characters long and starts with one of ``A``-``E``
   followed by ``". "`` (``"B. whale"``);
3. the pattern ``The answer is ([A-Z]).`` occurs exactly once; its ``.`` is
   unescaped, so any character but a newline may follow the letter (``"The answer
   is B, because"`` and ``"The answer is A!"`` are picks, ``"The answer is B"`` at
   the very end is not, and two such sentences are no pick).

A letter beyond the question's choices, and everything else (the option's text,
``"(B)"``, ``"b"``), is wrong. Sub-scores per subject (``subject/natural
science``, ...); ``unparsed`` is the share of replies that name no choice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.evals.benchmarks.base import (
    LETTER_ANSWER,
    Benchmark,
    EvalItem,
    aligned,
    grouped_accuracy,
    lettered,
    mean,
)

# eval_science_qa.py's --options default: letters A-E, whatever the number of choices.
SQA_OPTIONS = ("A", "B", "C", "D", "E")
_STATED = re.compile(r"The answer is ([A-Z]).")


def scienceqa_pick(reply: str, n_choices: int) -> str | None:
    """The letter LLaVA's ``eval_science_qa.py`` reads, or None where it reads no valid choice."""
    if reply in SQA_OPTIONS:
        answer: str | None = reply
    elif len(reply) >= 3 and reply[0] in SQA_OPTIONS and reply[1:3] == ". ":
        answer = reply[0]
    else:
        found = _STATED.findall(reply)
        answer = found[0] if len(found) == 1 else None
    return answer if answer in SQA_OPTIONS[:n_choices] else None


class ScienceQAImg(Benchmark):
    """ScienceQA, image questions of one split."""

    name = "scienceqa_img"
    prompt_template = "[Context: {hint}\n]{question}\n{choices}\n" + LETTER_ANSWER
    prompt_source = "LLaVA-1.5 playground/data/eval/scienceqa/llava_test_CQM-A.json, llava/eval/model_vqa_science.py"
    reference = "LLaVA llava/eval/eval_science_qa.py"
    max_new_tokens = 1024
    path_options = frozenset({"images"})

    def __init__(self, root: str | Path, split: str = "test", images: str = "images") -> None:
        super().__init__(root)
        self.split, self.images = split, images

    def load(self) -> list[EvalItem]:
        problems = self._read_json("problems.json")
        splits = self._read_json("pid_splits.json")
        if not isinstance(problems, dict):
            raise self._bad("problems.json", "is not an object keyed by problem id")
        pids = self._get(splits, self.split, list, "pid_splits.json")
        items = []
        for pid in pids:
            if pid not in problems:
                raise self._bad(f"pid_splits.json[{self.split!r}]", f"names problem {pid!r}, which problems.json lacks")
            prob, where = problems[pid], f"problems.json[{pid!r}]"
            image = prob.get("image")
            if not image:
                continue
            choices = self._get(prob, "choices", list, where)
            answer = self._get(prob, "answer", int, where)
            if not 0 <= answer < len(choices):
                raise self._bad(f"{where}.answer", f"is {answer}, but there are {len(choices)} choices")
            hint = (prob.get("hint") or "").strip()
            context = f"Context: {hint}\n" if hint else ""
            question = self._get(prob, "question", str, where)
            items.append(
                EvalItem(
                    id=str(pid),
                    prompt=f"{context}{question}\n{lettered([str(c) for c in choices])}\n{LETTER_ANSWER}",
                    target=chr(ord("A") + answer),
                    image_path=self.root / self.images / self.split / str(pid) / str(image),
                    meta={"choices": [str(c) for c in choices], "subject": prob.get("subject", "unknown")},
                )
            )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        picks = [(it, scienceqa_pick(pred, len(it.meta["choices"]))) for it, pred in pairs]
        hits = [(it, pick == it.target) for it, pick in picks]
        scores = {
            "score": mean([h for _, h in hits]),
            "n": float(len(hits)),
            "unparsed": mean([pick is None for _, pick in picks]),
        }
        scores.update(grouped_accuracy([(it.meta["subject"], h) for it, h in hits], "subject"))
        return scores
