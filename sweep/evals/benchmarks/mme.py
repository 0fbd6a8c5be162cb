"""MME: 14 perception and cognition subtasks, two yes/no questions per image.

Layout under ``root`` (``MME_Benchmark_release_version``; an extra ``MME_Benchmark``
level inside it is stepped into). Each subtask folder comes in one of two shapes::

    existence/000000006040.jpg           image and questions side by side
    existence/000000006040.txt           (existence, count, position, color, OCR,
                                          commonsense_reasoning, numerical_calculation,
                                          text_translation, code_reasoning)
    artwork/images/10002.jpg             images and questions in two folders
    artwork/questions_answers_YN/10002.txt   (artwork, celebrity, landmark, posters, scene)

A question file has one ``question<TAB>Yes|No`` line per question (two per image).

Prompt (LLaVA-1.5, ``playground/data/eval/MME/llava_mme.jsonl``): the question with
its closing "Please answer yes or no." removed, a newline and "Answer the question
using a single word or phrase."; 128 new tokens at most (LLaVA's
``model_vqa_loader.py`` default).

Replies are read by the official ``eval_tool/calculation.py`` (``mme_answer``): the
reply is lower-cased (nothing is trimmed); exactly ``yes`` or ``no`` is that answer,
else ``yes`` within the first four characters means yes, else ``no`` there means no
(``"not really"``, ``"nope"``), else the reply is "other" and wrong. A lone ``y``
and a leading ``"  yes"`` (the word starts past the fourth character) are other.

Score, per subtask (the official tool's): acc = share of questions right, acc+ =
share of images with both questions right, subtask score = 100 * (acc + acc+), out
of 200. The official totals are ``perception_total`` (10 subtasks, out of 2000)
and ``cognition_total`` (4, out of 800), sums over the subtasks present.

Normalisation to [0, 1] (ours): the headline ``score`` is the sum of the subtask
scores over its maximum, i.e. the mean over subtasks of (acc + acc+) / 2, so
2000 perception + 800 cognition points map to 1.0. ``perception`` and
``cognition`` are normalised the same way; ``<subtask>/acc``,
``<subtask>/acc_plus`` are in [0, 1] and ``<subtask>/score`` is out of 200.
``n`` counts questions; ``unparsed`` is the share of replies read as other.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

from sweep.errors import SweepError, close_names
from sweep.evals.benchmarks.base import SHORT_ANSWER, Benchmark, EvalItem, aligned, mean

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
SUBTASKS = PERCEPTION + COGNITION
_IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")
# The release's own answer-format request, which LLaVA-1.5 replaces by its short-answer line.
_YES_NO_REQUEST = re.compile(r"\s*Please answer yes or no\.?\s*$")


def mme_answer(reply: str) -> str:
    """The official ``calculation.py`` reading: ``"yes"``, ``"no"`` or ``"other"``."""
    reply = reply.lower()
    if reply in ("yes", "no"):
        return reply
    head = reply[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


def acc_plus(correct_by_image: Mapping[Hashable, Sequence[bool]]) -> tuple[float, float]:
    """MME's (acc, acc+) in [0, 1]: per-question accuracy, and the share of images
    whose questions (two per image in MME) are all answered correctly."""
    if not correct_by_image:
        raise ValueError("acc_plus needs at least one image")
    flat = [c for group in correct_by_image.values() for c in group]
    acc = sum(flat) / len(flat)
    plus = sum(all(group) for group in correct_by_image.values()) / len(correct_by_image)
    return acc, plus


class MME(Benchmark):
    """MME, all 14 subtasks or a chosen few."""

    name = "mme"
    prompt_template = "{question, without 'Please answer yes or no.'}\n" + SHORT_ANSWER
    prompt_source = "LLaVA-1.5 playground/data/eval/MME/llava_mme.jsonl, llava/eval/model_vqa_loader.py"
    reference = "MME eval_tool/calculation.py (via LLaVA's convert_answer_to_mme.py)"
    max_new_tokens = 128

    def __init__(self, root: str | Path, subtasks: Sequence[str] = SUBTASKS) -> None:
        super().__init__(root)
        if (self.root / "MME_Benchmark").is_dir():
            self.root = self.root / "MME_Benchmark"
        for task in subtasks:
            if task not in SUBTASKS:
                problem = f"unknown subtask {task!r}.{close_names(task, SUBTASKS)}"
                raise SweepError("eval.mme.subtasks", problem, f"use some of {SUBTASKS}")
        if not subtasks:
            raise SweepError("eval.mme.subtasks", "is empty", f"use some of {SUBTASKS}")
        self.subtasks = tuple(subtasks)

    def _pairs(self, task: str) -> list[tuple[Path, Path]]:
        """(question file, image) for every image of a subtask."""
        folder = self.root / task
        if not folder.is_dir():
            raise self._bad(f"{task}/", f"is missing from {self.root}")
        split = (folder / "questions_answers_YN").is_dir() and (folder / "images").is_dir()
        qdir, idir = (folder / "questions_answers_YN", folder / "images") if split else (folder, folder)
        pairs = []
        for qfile in sorted(qdir.glob("*.txt")):
            image = next((idir / f"{qfile.stem}{s}" for s in _IMAGE_SUFFIXES if (idir / f"{qfile.stem}{s}").is_file()), None)
            if image is None:
                raise self._bad(f"{task}/{qfile.name}", f"has no image named {qfile.stem}.jpg/.png in {idir}")
            pairs.append((qfile, image))
        if not pairs:
            raise self._bad(f"{task}/", "holds no question files (*.txt)")
        return pairs

    def load(self) -> list[EvalItem]:
        items = []
        for task in self.subtasks:
            for qfile, image in self._pairs(task):
                lines = [ln for ln in qfile.read_text(encoding="utf-8").splitlines() if ln.strip()]
                for k, line in enumerate(lines):
                    where = f"{task}/{qfile.name} line {k + 1}"
                    question, sep, answer = line.rpartition("\t")
                    answer = answer.strip().lower()
                    if not sep or answer not in ("yes", "no"):
                        raise self._bad(where, f"is {line!r}, expected 'question<TAB>Yes' or '...<TAB>No'")
                    items.append(
                        EvalItem(
                            id=f"{task}/{qfile.stem}/{k}",
                            prompt=f"{_YES_NO_REQUEST.sub('', question.strip())}\n{SHORT_ANSWER}",
                            target=answer,
                            image_path=image,
                            meta={"subtask": task, "image": qfile.stem},
                        )
                    )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        by_task: dict[str, dict[str, list[bool]]] = {}
        answers = [mme_answer(pred) for _, pred in pairs]
        for (it, _), answer in zip(pairs, answers):
            per_image = by_task.setdefault(it.meta["subtask"], {})
            per_image.setdefault(it.meta["image"], []).append(answer == it.target)

        scores: dict[str, float] = {"n": float(len(pairs)), "unparsed": mean([a == "other" for a in answers])}
        raw: dict[str, float] = {}
        for task, per_image in by_task.items():
            acc, plus = acc_plus(per_image)
            raw[task] = 100.0 * (acc + plus)
            scores.update({f"{task}/acc": acc, f"{task}/acc_plus": plus, f"{task}/score": raw[task]})
        for group, tasks in (("perception", PERCEPTION), ("cognition", COGNITION)):
            present = [raw[t] for t in tasks if t in raw]
            if present:
                scores[f"{group}_total"] = sum(present)
                scores[group] = sum(present) / (200.0 * len(present))
        scores["score"] = mean([r / 200.0 for r in raw.values()])
        return scores
