"""MMBench (English dev split): single-choice perception and reasoning, CircularEval.

Layout under ``root``: one TSV of the official release, images inline as base64::

    mmbench_dev_20230712.tsv   (the file LLaVA-1.5 uses; or MMBench_DEV_EN.tsv, ...)
    columns: index  question  hint  A  B  C  D  answer  category  image  [l2-category  split ...]

Options may stop before D. A cell counts as missing as LLaVA's ``is_none`` reads
what pandas loads: empty, one of pandas' NA strings (``nan``, ``NaN``, ``None``,
``N/A``, ``NA``, ``NULL``, ...), or ``nan``/``none`` in any case. Two file
conventions exist and both are handled:

- the legacy TSVs already hold the rotated copies of each question as extra rows,
  with ``index = original index + k * 1e6`` and the answer letter rotated; an image
  cell of 64 characters or less then names the ``index`` of the row that holds the
  image (VLMEvalKit's de-duplication);
- newer TSVs hold each question once; with ``circular=True`` (default) the loader
  adds the rotated copies itself, shifting the options left by k (copy k of a
  question with n options has index + k * 1e6, option k first), as LLaVA's
  ``--all-rounds`` does.

Prompt (LLaVA-1.5, ``llava/eval/model_vqa_mmbench.py --single-pred-prompt``):
the hint and a newline when there is one, the question, the options as ``A. ...``
lines, and "Answer with the option's letter from the given choices directly.";
nothing is trimmed; 1024 new tokens at most.

Score (CircularEval): a question counts as right only when every copy of it is
answered right; copies are grouped by ``index % 1e6``. Replies are read by
VLMEvalKit's ``can_infer`` (``sweep.evals.scoring``), the rule stage of the
official pipeline: an option letter standing as a word among the last four words,
else the one option whose text occurs in a reply no longer than twice the options'
texts. The official tool then asks an LLM judge about replies that match nothing;
we do not, so such replies are wrong, and their share is ``unparsed``. ``n``
counts questions, not copies. Sub-scores: ``circular`` (the same CircularEval
accuracy, MMBench's headline convention), ``vanilla`` (accuracy on the original
rows only), per ``category/<name>`` and per ``l2_category/<name>`` (circular).
The test split's TSV has no answers: it loads, but only the official server scores it.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

from sweep.evals.benchmarks.base import LETTER_ANSWER, Benchmark, EvalItem, mean
from sweep.evals.scoring import can_infer

LETTERS = ("A", "B", "C", "D")
COPY_OFFSET = 1_000_000
_IMAGE_REF_MAX = 64  # an image cell this short names another row's index


# The strings pandas reads as NA by default (LLaVA and VLMEvalKit load the TSV with pandas).
_PANDAS_NA = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
    "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})  # fmt: skip


def _missing(value: str | None) -> bool:
    """LLaVA's ``is_none`` on a cell as pandas loads it."""
    return value is None or value in _PANDAS_NA or value.lower() in ("nan", "none")


def circular_accuracy(correct_by_question: Mapping[Hashable, Sequence[bool]]) -> float:
    """MMBench CircularEval: a question counts only if every rotated copy is right."""
    if not correct_by_question:
        raise ValueError("circular_accuracy needs at least one question")
    return sum(all(group) for group in correct_by_question.values()) / len(correct_by_question)


class MMBench(Benchmark):
    """MMBench from one TSV; CircularEval over rotated copies."""

    name = "mmbench"
    prompt_template = "[{hint}\n]{question}\n{choices}\n" + LETTER_ANSWER
    prompt_source = "LLaVA-1.5 llava/eval/model_vqa_mmbench.py --single-pred-prompt (scripts/v1_5/eval/mmbench.sh)"
    reference = "VLMEvalKit can_infer (rule stage, no LLM judge), CircularEval"
    max_new_tokens = 1024
    path_options = frozenset({"tsv"})

    def __init__(self, root: str | Path, tsv: str = "mmbench_dev_20230712.tsv", circular: bool = True) -> None:
        super().__init__(root)
        self.tsv, self.circular = tsv, circular

    def _rows(self) -> list[dict[str, str]]:
        path = self._file(self.tsv)
        # Base64 images make cells far longer than csv's default limit of 128 KiB.
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        needed = {"index", "question", "A", "B", "image"}
        if not rows or not needed <= set(rows[0]):
            have = sorted(rows[0]) if rows else []
            raise self._bad(self.tsv, f"lacks the MMBench columns {sorted(needed)} (has {have})")
        return rows

    def load(self) -> list[EvalItem]:
        rows = self._rows()
        by_index: dict[int, dict[str, str]] = {}
        for n, row in enumerate(rows):
            try:
                by_index[int(float(row["index"]))] = row
            except ValueError as err:
                raise self._bad(f"{self.tsv} row {n + 1}.index", f"is {row['index']!r}, not a number") from err
        pre_rotated = any(i >= COPY_OFFSET for i in by_index)

        items = []
        for index, row in by_index.items():
            where = f"{self.tsv} index {index}"
            options = []
            for letter in LETTERS:
                if _missing(row.get(letter)):
                    break
                options.append(row[letter])
            if len(options) < 2:
                raise self._bad(where, "has fewer than two options")
            image = row["image"]
            if len(image) <= _IMAGE_REF_MAX:
                try:
                    ref = by_index.get(int(float(image)))
                except ValueError:
                    ref = None
                if ref is None or len(ref["image"]) <= _IMAGE_REF_MAX:
                    problem = f"is {image!r}: neither base64 data nor the index of a row with an image"
                    raise self._bad(f"{where}.image", problem)
                image = ref["image"]
            answer = None if _missing(row.get("answer")) else row["answer"].strip()
            if answer is not None and answer not in LETTERS[: len(options)]:
                raise self._bad(f"{where}.answer", f"is {answer!r}, not one of the {len(options)} option letters")
            rotations = range(len(options)) if self.circular and not pre_rotated else range(1)
            for k in rotations:
                items.append(self._item(index + k * COPY_OFFSET, row, options[k:] + options[:k], answer, k, image))
        return items

    def _item(
        self, index: int, row: dict[str, str], options: list[str], answer: str | None, shift: int, image: str
    ) -> EvalItem:
        """Copy ``shift`` of a question: options rotated left by ``shift``, answer letter moved with them."""
        letters = LETTERS[: len(options)]
        target = None if answer is None else letters[(letters.index(answer) - shift) % len(options)]
        hint = "" if _missing(row.get("hint")) else f"{row['hint']}\n"
        listed = "\n".join(f"{letter}. {text}" for letter, text in zip(letters, options))
        return EvalItem(
            id=str(index),
            prompt=f"{hint}{row['question']}\n{listed}\n{LETTER_ANSWER}",
            target=target,
            image_b64=image,
            meta={
                "options": dict(zip(letters, options)),
                "question": index % COPY_OFFSET,
                "original": index < COPY_OFFSET,
                "category": (row.get("category") or "unknown").strip(),
                "l2_category": (row.get("l2-category") or "unknown").strip(),
            },
        )

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = self._scored_pairs(items, predictions, self.tsv, "dev")
        by_question: dict[int, list[bool]] = {}
        labels: dict[int, tuple[str, str]] = {}
        originals, unread = [], []
        for it, pred in pairs:
            pick = can_infer(pred, it.meta["options"])
            unread.append(pick is None)
            hit = pick == it.target
            by_question.setdefault(it.meta["question"], []).append(hit)
            labels[it.meta["question"]] = (it.meta["category"], it.meta["l2_category"])
            if it.meta["original"]:
                originals.append(hit)
        circular = circular_accuracy(by_question)
        scores = {"score": circular, "circular": circular, "n": float(len(by_question)), "unparsed": mean(unread)}
        if originals:
            scores["vanilla"] = mean(originals)
        for pos, prefix in ((0, "category"), (1, "l2_category")):
            for name in sorted({lab[pos] for lab in labels.values()}):
                subset = {q: hits for q, hits in by_question.items() if labels[q][pos] == name}
                scores[f"{prefix}/{name}"] = circular_accuracy(subset)
        return scores
